"""The supervisor is part of the contract (issue 24 item 1), with real processes: a supervised daemon killed
with -9 is an info finding with the restart count; a killed supervisor is said to be one (not "nothing
supervises"); and `healthkit fix --safe` starts the daemon under a supervisor again, as its plan says."""

from __future__ import annotations

import json
import os
import signal

import psutil
import pytest

from healthkit.trainer.daemon import start_daemon
from healthkit.trainer.layout import iso_now

from .conftest import all_logs, hk, queue_file, read_json, wait_for

pytestmark = pytest.mark.slow


def _audit(base) -> dict:
    r = hk("audit", str(base), "--format", "json", "--select", "daemon")
    assert r.stdout.strip().startswith("{"), r.stdout[-2000:] + r.stderr[-2000:]
    return json.loads(r.stdout)


def _supervisor_of(pid: int) -> psutil.Process:
    parent = psutil.Process(pid).parent()
    assert parent is not None and "healthkit.trainer.supervise" in parent.cmdline(), (pid, parent)
    return parent


def test_a_supervised_crash_and_a_dead_supervisor_are_told_as_they_are(
    make_ws, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HEALTHKIT_SUPERVISE_BACKOFF_S", "0.2")
    monkeypatch.setenv("HEALTHKIT_TRAINER_STEP_SLEEP_S", "0.2")  # training outlives the test's kills
    lay = make_ws(max_steps=2000, save_steps=1000, eval_steps=1000)
    queue_file(lay, "long.jsonl", n=200, seed=3)
    first = start_daemon(lay.base, supervise=True)
    sup = _supervisor_of(first)
    wait_for(lambda: read_json(lay.daemon_state).get("child_pid"), 120, 0.1, "training to start\n" + all_logs(lay))

    # 1. kill -9 the daemon: its supervisor restarts it, and the audit says so (info, with the facts)
    os.kill(first, signal.SIGKILL)
    second = wait_for(
        lambda: (d := read_json(lay.daemon_state)).get("pid") not in (None, first) and d.get("ready_at") and d["pid"],
        60,
        0.1,
        "a restarted daemon\n" + all_logs(lay),
    )
    state = read_json(lay.supervisor_state)
    assert state["pid"] == sup.pid and state["state"] == "running" and state["restarts"] == 1
    # "since" is the supervisor's process start: the clock the daemon's own is read by
    assert state["started_at"] == iso_now(state["create_time"]) <= read_json(lay.daemon_state)["started_at"]
    assert state["last_crash"]["daemon_pid"] == first and state["last_crash"]["signal"] == "SIGKILL"
    report = _audit(lay.base)
    (found,) = [f for f in report["findings"] if f["code"] == "daemon.restarted"]
    assert found["severity"] == "info" and found["data"]["restarts"] == 1 and found["data"]["supervisor_pid"] == sup.pid
    assert f"daemon PID {first} was killed by SIGKILL" in found["problem"][0]
    assert "1 restart(s)" in found["problem"][1]
    assert report["status"] == "ok", report["findings"]
    lines = hk("daemon", "status", str(lay.base)).stdout.splitlines()
    assert lines[0].startswith("daemon: ") and f"PID {second}" in lines[0] and "1 restart" in lines[0], lines
    assert lines[1] == (
        f"supervisor: PID {sup.pid} (since {state['started_at']}), 1 restart; last crash: daemon PID {first} "
        f"killed by SIGKILL at {state['last_crash']['at']}"
    ), lines

    # 2. kill -9 the supervisor: the daemon runs on unsupervised, and the audit says so
    sup.kill()
    sup.wait(10)
    report = _audit(lay.base)
    (alone,) = [f for f in report["findings"] if f["code"] == "daemon.supervisor-dead"]
    assert alone["severity"] == "warning" and alone["data"] == {
        "supervisor_pid": sup.pid,
        "daemon_pid": second,
        "restarts": 1,
    }
    assert not [
        f for f in report["findings"] if f["code"] == "daemon.restarted"
    ]  # no live supervisor restarted anything now
    # ... then kill -9 the daemon too: the report says the supervisor died
    os.kill(second, signal.SIGKILL)
    wait_for(lambda: not psutil.pid_exists(second) or psutil.Process(second).status() == psutil.STATUS_ZOMBIE, 10)
    report = _audit(lay.base)
    (dead,) = [f for f in report["findings"] if f["code"] == "daemon.dead"]
    cause = " ".join(dead["root_cause"])
    assert f"ran under a supervisor (PID {sup.pid}" in cause and "which is gone too" in cause, cause
    assert "Nothing supervises" not in cause
    assert "restarted the daemon 1 time(s)" in cause
    lines = hk("daemon", "status", str(lay.base)).stdout.splitlines()
    assert lines[0].startswith("daemon: not running") and not any("(adopted)" in x for x in lines), lines
    assert (
        lines[1]
        == f"supervisor: PID {sup.pid} is gone (it ended without recording why: killed?); nothing restarts the daemon"
    )
    child = read_json(lay.daemon_state)["child_pid"]
    assert (
        f"training: PID {child} on long.jsonl runs with no daemon over it "
        "(`healthkit fix --safe` starts a daemon that adopts it)" in lines
    ), lines

    # 3. fix --safe starts it supervised again, and the plan says so
    plan = hk("fix", str(lay.base), "--safe", "--dry-run")
    assert "healthkit.trainer.supervise" in plan.stdout and "under its supervisor" in plan.stdout, plan.stdout
    r = hk("fix", str(lay.base), "--safe", timeout=180)
    assert r.returncode in (0, 1), r.stdout + r.stderr
    third = wait_for(
        lambda: (
            (d := read_json(lay.daemon_state)).get("pid") not in (None, first, second)
            and d.get("ready_at")
            and d["pid"]
        ),
        60,
        0.1,
        "the fixed daemon\n" + r.stdout + all_logs(lay),
    )
    new_sup = _supervisor_of(third)
    assert new_sup.pid != sup.pid and read_json(lay.supervisor_state)["pid"] == new_sup.pid
    assert read_json(lay.daemon_state)["supervised"] is True
    hk("daemon", "stop", str(lay.base))
