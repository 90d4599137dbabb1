"""The trainer's daemon as a Slurm job on a real one-node cluster: submit, the time-limit signal, save, requeue, resume.

USR1 is sent as Slurm sends it at `--signal=B:USR1@lead` (to the batch shell, which the script `exec`s into the
daemon), with `scancel --signal=USR1 --batch`: the time limit's own signal comes with a granularity of a minute. A
requeued job waits for its begin time (about two minutes); the test moves that begin time to now, as an admin can.
``HEALTHKIT_SLURM_TIMELINE_OUT`` (optional) receives the timeline.
"""

from __future__ import annotations

import json
import os
import re
import time

import pytest

from healthkit.contract.events import read_events

from ..slurm.conftest import slurm_cluster  # noqa: F401 - the session's cluster
from .conftest import all_logs, daemon_log, hk, queue_file, read_json, wait_for

pytestmark = pytest.mark.slow


def slurm_events(lay) -> list[dict]:
    return [e for e in read_events(lay.logs)[0] if str(e.get("event", "")).startswith("slurm")]


def test_submit_signal_save_requeue_pending_audit_resume(make_ws, slurm_cluster) -> None:
    lay = make_ws(max_steps=120, save_steps=25, save_total_limit=2)
    with open(lay.base / "healthkit.toml", "a", encoding="utf-8") as fh:
        fh.write('[daemon]\nscheduler = "slurm"\n[slurm]\nsignal_lead_seconds = 120\n')
    queue_file(lay, "a.jsonl", n=120, seed=1)
    env = {**os.environ, "HEALTHKIT_TRAINER_STEP_SLEEP_S": "0.15"}
    t: dict[str, float] = {"submit": time.time()}
    script = hk("daemon", "slurm-script", str(lay.base))
    assert script.returncode == 0 and "exec " in script.stdout and "--signal=B:USR1@120" in script.stdout, script.stdout
    sup = hk("daemon", "start", str(lay.base), "--supervise", env=env)
    assert sup.returncode == 64 and "Slurm's requeue is the supervisor" in sup.stderr
    out = hk("daemon", "start", str(lay.base), env=env)
    assert out.returncode == 0, out.stdout + out.stderr
    job = re.search(r"submitted batch job (\d+)", out.stdout).group(1)
    wait_for(lambda: (read_json(lay.status).get("step") or 0) >= 30, 180, what="the job to train\n" + all_logs(lay))
    t["training"] = time.time()
    name = slurm_cluster.run("squeue", "-h", "-j", job, "-o", "%j|%k").stdout.strip()
    assert name == f"healthkit-{(lay.base / '.healthkit-id').read_text().strip()}|{lay.base}"
    r = hk("audit", str(lay.base), "--select", "slurm", "--format", "json")
    assert json.loads(r.stdout)["findings"] == [], r.stdout
    # The time limit's signal, as Slurm sends it to the batch shell (the daemon, through exec).
    step_at_signal = read_json(lay.status).get("step")
    assert slurm_cluster.run("scancel", "--signal=USR1", "--batch", job).returncode == 0
    t["signal"] = time.time()
    wait_for(
        lambda: any(e["event"] == "slurm-requeue" for e in slurm_events(lay)),
        120,
        what="the requeue\n" + daemon_log(lay),
    )
    t["requeued"] = time.time()
    saved = sorted(int(p.name.split("-")[1]) for p in lay.checkpoints.glob("checkpoint-*"))
    assert saved and max(saved) >= step_at_signal, (saved, step_at_signal)  # saved at the next step boundary
    wait_for(lambda: "PENDING" in slurm_cluster.run("squeue", "-h", "-j", job, "-o", "%T").stdout, 60, what="pending")
    r = json.loads(hk("audit", str(lay.base), "--select", "slurm", "--format", "json").stdout)
    codes = sorted(f["code"] for f in r["findings"])
    assert codes == ["slurm.pending", "slurm.requeued"], r["findings"]
    pending = next(f for f in r["findings"] if f["code"] == "slurm.pending")
    assert f"Job {job}" in pending["problem"][0] and "PENDING" in pending["problem"][0]
    t["pending_audit"] = time.time()
    st = hk("daemon", "status", str(lay.base))
    assert f"slurm: job {job} PENDING, reason BeginTime" in st.stdout, st.stdout

    def rerun() -> bool:
        """The requeued job ran; while it still waits for its begin time, ask again. An update made while the
        requeue is still settling can be lost on a loaded machine (one CI run in several waited out 180 s)."""
        if len([e for e in slurm_events(lay) if e["event"] == "slurm-job"]) >= 2:
            return True
        state = slurm_cluster.run("squeue", "-h", "-j", job, "-o", "%T %r").stdout
        if "PENDING" in state and "BeginTime" in state:
            slurm_cluster.run("scontrol", "update", f"JobId={job}", "StartTime=now")
        return False

    wait_for(rerun, 180, interval=1.0, what="the requeued job to run\n" + daemon_log(lay))
    t["rerun"] = time.time()
    wait_for(
        lambda: re.search(r"spawn file=a\.jsonl pid=\d+ attempt=\d+ resume=checkpoint-(\d+)", daemon_log(lay)),
        120,
        what="the resume\n" + daemon_log(lay),
    )
    resumed = int(re.findall(r"resume=checkpoint-(\d+)", daemon_log(lay))[-1])
    assert resumed == max(saved)
    wait_for(lambda: (read_json(lay.status).get("step") or 0) > resumed, 120, what="training after the resume")
    t["resumed"] = time.time()
    # TERM (scancel): save if the window allows, end, no requeue.
    slurm_cluster.run("scancel", job)
    wait_for(lambda: any(e["event"] == "slurm-end" for e in slurm_events(lay)), 60, what="the end\n" + daemon_log(lay))
    assert sum(e["event"] == "slurm-requeue" for e in slurm_events(lay)) == 1
    timeline = {
        "job": job,
        "step_at_signal": step_at_signal,
        "saved_step": max(saved),
        "resumed_from": resumed,
        "steps_lost": max(0, step_at_signal - max(saved)),
        **{k: round(v - t["submit"], 2) for k, v in t.items()},
    }
    if os.environ.get("HEALTHKIT_SLURM_TIMELINE_OUT"):
        with open(os.environ["HEALTHKIT_SLURM_TIMELINE_OUT"], "w", encoding="utf-8") as fh:
            json.dump(timeline, fh, indent=2)


def test_the_same_job_without_exec_loses_everything_since_its_last_periodic_save(make_ws, slurm_cluster) -> None:
    """The baseline the signal handling is measured against: a batch script that runs the daemon as bash's foreground
    child (no `exec`): B:USR1 reaches bash, which has no trap and dies; the job ends and Slurm kills the rest."""
    lay = make_ws(max_steps=120, save_steps=25, save_total_limit=2)
    queue_file(lay, "a.jsonl", n=120, seed=1)
    script = hk("daemon", "slurm-script", str(lay.base)).stdout.replace("\nexec ", "\n")
    assert "\nexec " not in script
    env = {**os.environ, "HEALTHKIT_TRAINER_STEP_SLEEP_S": "0.15"}
    import subprocess

    out = subprocess.run(["sbatch", "--parsable"], input=script, capture_output=True, text=True, timeout=30, env=env)
    job = out.stdout.strip().split(";")[0]
    assert job.isdigit(), out.stderr
    wait_for(lambda: (read_json(lay.status).get("step") or 0) >= 32, 180, what="the job to train\n" + all_logs(lay))
    step_at_signal = read_json(lay.status).get("step")
    slurm_cluster.run("scancel", "--signal=USR1", "--batch", job)
    wait_for(lambda: not slurm_cluster.run("squeue", "-h", "-j", job).stdout.strip(), 60, what="the job to end")
    saved = sorted(int(p.name.split("-")[1]) for p in lay.checkpoints.glob("checkpoint-*"))
    assert max(saved) < step_at_signal  # nothing saved at the signal: back to the last periodic save
    assert not any(e["event"] == "slurm-requeue" for e in slurm_events(lay))
    if os.environ.get("HEALTHKIT_SLURM_TIMELINE_OUT"):
        path = os.environ["HEALTHKIT_SLURM_TIMELINE_OUT"] + ".no-exec"
        with open(path, "w", encoding="utf-8") as fh:
            json.dump(
                {
                    "job": job,
                    "step_at_signal": step_at_signal,
                    "last_periodic_save": max(saved),
                    "steps_lost": step_at_signal - max(saved),
                    "requeued": False,
                },
                fh,
                indent=2,
            )
