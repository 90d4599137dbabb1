"""Two hosts, one workspace, the real trainer: node1 trains, the power goes, another host heals and continues.

node1 is a sibling PID/UTS namespace running the real daemon and its training child over the shared folder; the
audit runs from a namespace that cannot see them. After the power cut the lease expires, the audit turns CRITICAL
(`daemon.lease-expired`, naming node1), and `healthkit fix --safe` from this host starts a daemon that resumes the
interrupted file from its newest complete checkpoint. ``HEALTHKIT_TIMELINE_OUT`` (optional) receives the timeline.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time

import pytest

from ..multihost.conftest import Host, audit_from, require_namespaces
from .conftest import REPO, all_logs, daemon_log, hk, queue_file, read_json, wait_for

pytestmark = pytest.mark.slow

LEASE_S, MARGIN_S = 4.0, 1.0


def test_power_cut_on_node1_then_heal_here_continues_from_the_newest_checkpoint(make_ws, monkeypatch):
    require_namespaces()
    lay = make_ws(max_steps=40, save_steps=5, save_total_limit=2)
    with open(lay.base / "healthkit.toml", "a", encoding="utf-8") as fh:
        fh.write(f"[daemon]\nlease_seconds = {LEASE_S}\n[thresholds]\nclock_skew_seconds = {MARGIN_S}\n")
    queue_file(lay, "a.jsonl", n=80, seed=1)
    node1, login1 = Host("node1"), Host("login1")
    t: dict[str, float] = {}
    try:
        t["start"] = time.time()
        node1.spawn(
            [sys.executable, "-m", "healthkit.trainer.daemon", "--workspace", str(lay.base)],
            cwd=lay.base,
            env={"HEALTHKIT_TRAINER_STEP_SLEEP_S": "0.2", "PYTHONPATH": str(REPO)},
        )
        wait_for(
            lambda: (s := read_json(lay.status)).get("state") == "training" and (s.get("step") or 0) >= 2,
            120,
            what="node1 to train\n" + all_logs(lay),
        )
        t["training"] = time.time()
        report = audit_from(login1, lay.base, "daemon", "queue", "checkpoints")
        codes = sorted(f["code"] for f in report["findings"])
        assert "daemon.remote" in codes and not {
            "daemon.pid-reused",
            "daemon.dead",
            "daemon.orphaned-training",
            "queue.stuck",
        } & set(codes), codes
        remote = next(f for f in report["findings"] if f["code"] == "daemon.remote")
        assert "runs on node1, renewed" in remote["problem"][0]
        t["remote_seen"] = time.time()
        wait_for(lambda: (read_json(lay.status).get("step") or 0) >= 12, 120, what="step 12\n" + all_logs(lay))
        node1.power_cut()
        t["power_cut"] = time.time()
        cut_step = read_json(lay.status).get("step")
        ckpts = sorted(int(p.name.split("-")[1]) for p in lay.checkpoints.glob("checkpoint-*"))

        def critical():
            r = audit_from(login1, lay.base, "daemon")
            return r if "daemon.lease-expired" in {f["code"] for f in r["findings"]} else None

        r = wait_for(critical, 60, what="daemon.lease-expired")
        t["critical"] = time.time()
        f = next(x for x in r["findings"] if x["code"] == "daemon.lease-expired")
        assert f["severity"] == "critical" and "node1" in f["problem"][0]
        out = hk("fix", str(lay.base), "--safe", timeout=180, env={**os.environ, "HEALTHKIT_TRAINER_STEP_SLEEP_S": "0"})
        assert out.returncode in (0, 1), out.stdout[-3000:] + out.stderr[-2000:]
        t["healed"] = time.time()
        wait_for(lambda: list(lay.done.glob("a.jsonl")), 240, 0.2, "the file to finish here\n" + all_logs(lay))
        t["done"] = time.time()
        log = daemon_log(lay)
        resumed = re.findall(r"spawn file=a\.jsonl pid=\d+ attempt=\d+ resume=checkpoint-(\d+)", log)
        assert resumed and int(resumed[-1]) == max(ckpts), (resumed, ckpts, log[-3000:])
        assert "took over the workspace from host node1" in log
        lease = json.loads((lay.base / ".daemon.lease").read_text())
        assert lease["host"] == os.uname().nodename and lease["generation"] == 2
        final = json.loads((lay.models / "a" / "healthkit_final.json").read_text())
        assert final["global_step"] == 40
        timeline = {
            "lease_seconds": LEASE_S,
            "margin_seconds": MARGIN_S,
            "step_at_cut": cut_step,
            "checkpoints_at_cut": ckpts,
            "resumed_from_step": int(resumed[-1]),
            **{k: round(v - t["start"], 2) for k, v in t.items()},
            "cut_to_critical_s": round(t["critical"] - t["power_cut"], 2),
        }
        if os.environ.get("HEALTHKIT_TIMELINE_OUT"):
            with open(os.environ["HEALTHKIT_TIMELINE_OUT"], "w", encoding="utf-8") as fh:
                json.dump(timeline, fh, indent=2)
    finally:
        node1.power_cut()
        hk("daemon", "stop", str(lay.base))


def test_an_orphaned_training_that_cannot_renew_fences_itself_before_its_lease_expires(make_ws, tmp_path):
    """node1's daemon dies and node1 can no longer write the lease (flock host-local, as where it is node-local): its
    orphaned training renews nothing, so it stops without a checkpoint before the lease can expire; this host starts
    only after the expiry and continues from the newest checkpoint that generation committed."""
    require_namespaces()
    import psutil

    lay = make_ws(max_steps=60, save_steps=5, save_total_limit=2)
    with open(lay.base / "healthkit.toml", "a", encoding="utf-8") as fh:
        fh.write(f"[daemon]\nlease_seconds = {LEASE_S}\n[thresholds]\nclock_skew_seconds = {MARGIN_S}\n")
    queue_file(lay, "a.jsonl", n=80, seed=1)
    node1 = Host("node1")
    env = {"HEALTHKIT_TRAINER_STEP_SLEEP_S": "0.2", "PYTHONPATH": str(REPO), "HEALTHKIT_TEST_HOST_LOCAL_LOCKS": "1"}
    try:
        sh = node1.spawn(
            [
                "sh",
                "-c",
                '"$@"; sleep 600',
                "sh",
                sys.executable,
                "-m",
                "healthkit.trainer.daemon",
                "--workspace",
                str(lay.base),
            ],
            cwd=lay.base,
            env=env,
        )
        wait_for(lambda: (read_json(lay.status).get("step") or 0) >= 7, 120, what="node1 to train\n" + all_logs(lay))
        ns_init = psutil.Process(sh.pid).children()[0]
        daemon = next(p for p in ns_init.children() if "healthkit.trainer.daemon" in " ".join(p.cmdline()))
        child = next(p for p in daemon.children() if "healthkit.trainer.train_file" in " ".join(p.cmdline()))
        daemon.kill()  # node1's daemon dies; its training runs on and renews the lease itself
        wait_for(
            lambda: json.loads((lay.base / ".daemon.lease").read_text()).get("renewed_by") not in (None, 1),
            30,
            what="the orphan to renew",
        )
        frozen = tmp_path / "frozen.lease"
        frozen.write_bytes((lay.base / ".daemon.lease").read_bytes())
        subprocess.run(
            [
                "nsenter",
                "-t",
                str(ns_init.pid),
                "-m",
                "mount",
                "-r",
                "--bind",
                str(frozen),
                str(lay.base / ".daemon.lease"),
            ],
            check=True,
        )  # node1 can no longer renew
        last = json.loads(frozen.read_text())
        wait_for(
            lambda: not child.is_running() or child.status() == psutil.STATUS_ZOMBIE, 30, what="the orphan to fence"
        )
        train_log = (lay.logs / "train-a.log").read_text()
        m = re.search(r"^(\S+ \S+) \[train .*fenced at step (\d+): the lease was not renewed", train_log, re.M)
        assert m, train_log[-3000:]
        from datetime import datetime

        stopped = datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S,%f").timestamp()  # the log's local time
        # Training stopped (no step, no commit after this line) before the lease's own end: no reader, whatever
        # its clock within the margin, could yet have called it expired.
        assert stopped < last["renewed_at"] + LEASE_S, (stopped - last["renewed_at"], train_log[-2000:])
        ckpts = sorted(int(p.name.split("-")[1]) for p in lay.checkpoints.glob("checkpoint-*"))
        assert ckpts and max(ckpts) < int(m.group(2))  # the save at the fenced step was refused
        assert f"checkpoint of step {m.group(2)} not written: fenced" in train_log or max(ckpts) < int(m.group(2))
        env = {**os.environ, "HEALTHKIT_TRAINER_STEP_SLEEP_S": "0"}
        if time.time() < last["renewed_at"] + LEASE_S + MARGIN_S - 1:  # still fresh here: nothing may start
            early = hk("fix", str(lay.base), "--safe", timeout=180, env=env)
            if time.time() < last["renewed_at"] + LEASE_S + MARGIN_S:
                assert "daemon.remote" in early.stdout and "Start the daemon" not in early.stdout, early.stdout
        wait_for(
            lambda: "daemon.lease-expired" in hk("audit", str(lay.base), "--select", "daemon").stdout,
            30,
            what="the lease to expire",
        )
        out = hk("fix", str(lay.base), "--safe", timeout=180, env=env)
        assert out.returncode in (0, 1), out.stdout[-3000:] + out.stderr[-2000:]
        assert "daemon.lease-expired" in out.stdout, out.stdout[-3000:]
        wait_for(lambda: list(lay.done.glob("a.jsonl")), 240, 0.2, "the file to finish here\n" + all_logs(lay))
        resumed = re.findall(r"spawn file=a\.jsonl pid=\d+ attempt=\d+ resume=checkpoint-(\d+)", daemon_log(lay))
        assert int(resumed[-1]) == max(ckpts)
    finally:
        node1.power_cut()
        hk("daemon", "stop", str(lay.base))
