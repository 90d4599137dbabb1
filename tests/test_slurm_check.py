"""The slurm check without a cluster: squeue absent or hanging is UNKNOWN with the reason (never a hang), requeues
and a requeue storm come from the event log; `daemon start` reads healthkit.toml and refuses what the audit refuses."""

from __future__ import annotations

import os
import subprocess
import sys
import time

from healthkit.contract.events import SLURM_JOB, SLURM_REQUEUE, EventLog
from healthkit.core.api import audit
from healthkit.core.findings import Status

from .conftest import make_checkpoint, write_json

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def slurm_ws(tmp_path, squeue: str | None):
    write_json(tmp_path / "config.json", {"base_model": "m"})
    (tmp_path / "queue" / "inbox").mkdir(parents=True)
    (tmp_path / "healthkit.toml").write_text('[daemon]\nscheduler = "slurm"\n')
    (tmp_path / ".healthkit-id").write_text("c" * 32 + "\n")
    bin_dir = tmp_path.parent / f"{tmp_path.name}-bin"
    bin_dir.mkdir()
    if squeue is not None:
        (bin_dir / "squeue").write_text(squeue)
        (bin_dir / "squeue").chmod(0o755)
    return bin_dir


def run_audit(ws, bin_dir, monkeypatch):
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}/usr/bin/nonexistent")
    return audit(ws, select=["slurm"], record_costs=False)


def result(report):
    return next(r for r in report.results if r.check == "slurm")


def test_absent_squeue_is_unknown_with_the_reason(tmp_path, monkeypatch):
    (tmp_path / "ws").mkdir()
    b = slurm_ws(tmp_path / "ws", None)
    r = result(run_audit(tmp_path / "ws", b, monkeypatch))
    assert r.status is Status.UNKNOWN
    assert any("squeue is not installed on this host" in n and "lease is the fallback" in n for n in r.notes)


def test_a_hanging_scheduler_is_unknown_within_its_timeout(tmp_path, monkeypatch):
    (tmp_path / "ws").mkdir()
    b = slurm_ws(tmp_path / "ws", "#!/bin/sh\nexec /bin/sleep 60\n")
    t0 = time.monotonic()
    r = result(run_audit(tmp_path / "ws", b, monkeypatch))
    assert time.monotonic() - t0 < 9
    assert r.status is Status.UNKNOWN and any("squeue did not answer within 5s" in n for n in r.notes)


def test_pending_requeued_and_storm(tmp_path, monkeypatch):
    ws = tmp_path / "ws"
    ws.mkdir()
    b = slurm_ws(ws, "#!/bin/sh\necho '42|PENDING|BeginTime|1:00:00'\n")
    make_checkpoint(ws / "current_model", 10)
    old = time.time() - 3600
    os.utime(ws / "current_model" / "checkpoint-10", (old, old))
    log = EventLog(ws / "logs")
    log.append(SLURM_JOB, job_id="42")
    log.append(SLURM_REQUEUE, job_id="42")
    rep = run_audit(ws, b, monkeypatch)
    assert sorted(f.code for f in rep.findings) == ["slurm.pending", "slurm.requeued"]
    pending = next(f for f in rep.findings if f.code == "slurm.pending")
    assert pending.problem[0].startswith("Job 42 (healthkit-" + "c" * 32 + ") is PENDING: reason BeginTime")
    log.append(SLURM_REQUEUE, job_id="42")
    log.append(SLURM_REQUEUE, job_id="42")
    rep = run_audit(ws, b, monkeypatch)
    storm = next(f for f in rep.findings if f.code == "slurm.requeue-storm")
    assert storm.severity.value == "critical" and "no new checkpoint" in storm.problem[0]


def test_a_workspace_without_slurm_asks_no_scheduler(tmp_path, monkeypatch):
    write_json(tmp_path / "config.json", {"base_model": "m"})
    r = result(run_audit(tmp_path, tmp_path, monkeypatch))
    assert r.status is Status.OK and r.notes == []


def test_daemon_start_refuses_an_unknown_setting_like_the_audit(tmp_path):
    (tmp_path / "healthkit.toml").write_text('[daemon]\nlauncher = "slurm"\n')
    out = subprocess.run(
        [sys.executable, "-m", "healthkit.cli", "daemon", "start", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
    )
    assert (
        out.returncode == 78
        and "daemon.launcher: unknown setting" in out.stderr
        and "nothing was started" in out.stderr
    )
    assert not (tmp_path / ".daemon.pid").exists()


def _fake(bin_dir, name, text):
    (bin_dir / name).write_text(text)
    (bin_dir / name).chmod(0o755)


def test_ended_by_the_node_with_work_queued_and_timeout_without_a_save(tmp_path, monkeypatch):
    ws = tmp_path / "ws"
    ws.mkdir()
    b = slurm_ws(ws, "#!/bin/sh\nexit 0\n")  # squeue: the job is gone from the queue
    (ws / "queue" / "inbox" / "next.jsonl").write_text("{}\n")
    EventLog(ws / "logs").append(SLURM_JOB, job_id="77")
    _fake(
        b,
        "scontrol",
        "#!/bin/sh\necho 'JobId=77 JobName=healthkit-x JobState=NODE_FAIL Reason=NodeDown "
        "EndTime=2026-12-06T08:00:00 Requeue=1'\n",
    )
    rep = run_audit(ws, b, monkeypatch)
    f = next(x for x in rep.findings if x.code == "slurm.ended")
    assert f.severity.value == "critical" and "ended as NODE_FAIL" in f.problem[0] and "1 file(s)" in f.problem[0]
    end = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(time.time() - 60))
    _fake(b, "scontrol", f"#!/bin/sh\necho 'JobId=77 JobState=TIMEOUT Reason=TimeLimit EndTime={end}'\n")
    make_checkpoint(ws / "current_model", 10)
    old = time.time() - 3600
    os.utime(ws / "current_model" / "checkpoint-10", (old, old))
    rep = run_audit(ws, b, monkeypatch)
    assert [x.code for x in rep.findings] == ["slurm.timeout-unsaved"]
    os.utime(ws / "current_model" / "checkpoint-10")  # saved after the signal was due: nothing lost
    assert run_audit(ws, b, monkeypatch).findings == []


def test_time_left_before_the_next_save_is_a_warning(tmp_path, monkeypatch):
    ws = tmp_path / "ws"
    ws.mkdir()
    b = slurm_ws(ws, "#!/bin/sh\necho '5|RUNNING|None|0:30'\n")
    write_json(ws / "config.json", {"base_model": "m", "save_steps": 25})
    write_json(
        ws / "status" / "training_status.json",
        {"state": "training", "step": 10, "total_steps": 110, "eta_seconds": 1000},
    )
    rep = run_audit(ws, b, monkeypatch)
    f = next(x for x in rep.findings if x.code == "slurm.limit-before-save")
    assert f.severity.value == "warning" and "next periodic save (step 25) is about 150 s away" in f.problem[0]
    _fake(b, "squeue", "#!/bin/sh\necho '5|RUNNING|None|1:00:00'\n")
    assert run_audit(ws, b, monkeypatch).findings == []


def test_daemon_stop_cancels_a_pending_job_and_status_shows_it(tmp_path):
    ws = tmp_path / "ws"
    ws.mkdir()
    b = slurm_ws(ws, "#!/bin/sh\necho '9|PENDING|Priority|1:00:00'\n")
    _fake(b, "scancel", f'#!/bin/sh\necho "$@" >> {tmp_path / "cancelled"}\n')
    env = {**os.environ, "PATH": f"{b}{os.pathsep}{os.environ['PATH']}"}
    st = subprocess.run(
        [sys.executable, "-m", "healthkit.cli", "daemon", "status", str(ws)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
        env=env,
    )
    assert "slurm: job 9 PENDING, reason Priority, time left 1:00:00" in st.stdout, st.stdout + st.stderr
    out = subprocess.run(
        [sys.executable, "-m", "healthkit.cli", "daemon", "stop", str(ws)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
        env=env,
    )
    assert out.returncode == 0 and "cancelled pending job 9" in out.stdout, out.stdout + out.stderr
    assert (tmp_path / "cancelled").read_text().split() == ["9"]


def test_fix_safe_submits_again_a_job_that_ended_with_work_queued_but_not_while_one_is_queued(tmp_path):
    ws = tmp_path / "ws"
    ws.mkdir()
    b = slurm_ws(ws, f"#!/bin/sh\ncat {tmp_path / 'squeue.out'} 2>/dev/null\n")
    (ws / "queue" / "inbox" / "next.jsonl").write_text("{}\n")
    EventLog(ws / "logs").append(SLURM_JOB, job_id="77")
    _fake(b, "scontrol", "#!/bin/sh\necho 'JobId=77 JobState=PREEMPTED Reason=None EndTime=2026-12-06T08:00:00'\n")
    _fake(b, "sbatch", f"#!/bin/sh\ncat > {tmp_path / 'submitted.sh'}\necho '78;hk'\n")
    env = {**os.environ, "PATH": f"{b}{os.pathsep}{os.environ['PATH']}"}
    fix = [sys.executable, "-m", "healthkit.cli", "fix", str(ws), "--safe"]
    (tmp_path / "squeue.out").write_text("80|PENDING|Priority|1:00:00\n")  # a job for it waits: nothing is submitted
    out = subprocess.run(fix, capture_output=True, text=True, timeout=120, cwd=REPO, env=env)
    assert not (tmp_path / "submitted.sh").exists(), out.stdout
    (tmp_path / "squeue.out").write_text("")
    out = subprocess.run(fix, capture_output=True, text=True, timeout=120, cwd=REPO, env=env)
    assert "submitted batch job 78" in out.stdout, out.stdout + out.stderr
    script = (tmp_path / "submitted.sh").read_text()
    assert "exec " in script and "healthkit.trainer.daemon" in script and "--signal=B:USR1@300" in script
