"""Issue 11 with real processes: `healthkit fix --safe` loses no checkpoint, never starts a second training, and
leaves a daemon the user stopped stopped (real daemon, real tiny Trainer runs, the real CLI)."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator

import psutil
import pytest

from healthkit.trainer.daemon import start_daemon
from healthkit.trainer.launch import child_env
from healthkit.trainer.layout import Layout

from ..conftest import make_checkpoint
from ..fix.conftest import tree_hashes
from .conftest import all_logs, daemon_log, hk, queue_file, read_json, wait_for

pytestmark = pytest.mark.slow

HAND_TRAIN = """\
import os, time
while not os.path.exists("stop-me"):
    time.sleep(0.05)
"""


@contextlib.contextmanager
def hand_started_train_py(lay: Layout) -> Iterator[psutil.Popen]:
    """A `python train.py` a person started in the workspace; it runs until `stop-me` exists, and is always killed."""
    (lay.base / "train.py").write_text(HAND_TRAIN)
    hand = psutil.Popen([sys.executable, "train.py"], cwd=lay.base, start_new_session=True)
    try:
        wait_for(lambda: "train.py" in " ".join(hand.cmdline()), 10, what="train.py to run")
        yield hand
    finally:
        if hand.poll() is None:
            hand.kill()
            hand.wait()


def _foreign_checkpoints(lay: Layout, steps: tuple[int, ...]) -> dict[str, dict[str, str]]:
    """Checkpoints no healthkit run wrote (restored from a backup): HF layout, distinct bytes, no marker."""
    for s in steps:
        make_checkpoint(lay.checkpoints, s, weights=os.urandom(2048))
    return {f"checkpoint-{s}": tree_hashes(lay.checkpoints / f"checkpoint-{s}") for s in steps}


def _codes(lay: Layout, select: str) -> set[str]:
    r = hk("audit", str(lay.base), "--format", "json", "--select", select)
    assert r.stdout.strip().startswith("{"), r.stdout[-2000:] + r.stderr[-2000:]
    return {f["code"] for f in json.loads(r.stdout)["findings"]}


def _procs_of(lay: Layout, module: str) -> list[psutil.Process]:
    out = []
    for p in psutil.process_iter(["cmdline"]):
        cmd = p.info["cmdline"] or []
        if cmd[1:3] == ["-m", module] and str(lay.base) in cmd:  # runs it (the watcher only names the daemon's argv)
            out.append(p)
    return out


def test_fix_safe_moves_checkpoints_not_ours_aside_intact_and_its_plan_says_so(make_ws, monkeypatch) -> None:
    monkeypatch.setenv("HEALTHKIT_TRAINER_STEP_SLEEP_S", "0.05")
    lay = make_ws(max_steps=10)
    before = _foreign_checkpoints(lay, (100, 200, 300))
    queue_file(lay, "a.jsonl", seed=1)
    assert "daemon.not-running" in _codes(lay, "daemon")

    dry = hk("fix", str(lay.base), "--safe", "--dry-run")
    for name in before:
        assert (
            f"before training a.jsonl the daemon will move {name} aside to current_model/.foreign-<time>/" in dry.stdout
        ), dry.stdout
    assert {n: tree_hashes(lay.checkpoints / n) for n in before} == before

    r = hk("fix", str(lay.base), "--safe", timeout=180)
    assert "move checkpoint-100 aside" in r.stdout and "started the daemon" in r.stdout, (
        r.stdout[-3000:] + r.stderr[-2000:]
    )
    state = wait_for(
        lambda: (s := read_json(lay.daemon_state)).get("set_aside") and s, 60, what="the move\n" + all_logs(lay)
    )
    (aside,) = sorted(lay.checkpoints.glob(".foreign-*"))
    assert state["set_aside"]["folder"] == str(aside.relative_to(lay.base))
    assert {n: tree_hashes(aside / n) for n in before} == before  # every byte, every file
    assert "removed checkpoint" not in daemon_log(lay) and "checkpoint: moved checkpoint-300" in daemon_log(lay)
    assert "checkpoints.set-aside" in _codes(lay, "checkpoints.set-aside")
    wait_for(lambda: (lay.done / "a.jsonl").exists(), 180, 0.2, "the file to finish\n" + all_logs(lay))
    assert {n: tree_hashes(aside / n) for n in before} == before  # HF's rotation never reached them


def test_fix_safe_never_starts_a_second_training_beside_a_hand_started_train_py(make_ws, monkeypatch) -> None:
    monkeypatch.setenv("HEALTHKIT_TRAINER_STEP_SLEEP_S", "0.05")
    lay = make_ws(max_steps=10)
    queue_file(lay, "a.jsonl", seed=1)
    with hand_started_train_py(lay) as hand:
        assert "daemon.orphaned-training" in _codes(lay, "daemon")

        r = hk("fix", str(lay.base), "--safe", timeout=120)
        out = r.stdout + r.stderr
        assert f"Start the daemon once training PID {hand.pid} has ended" in out, out[-3000:]
        assert "adopts only its own trainer.train_file children" in out
        assert "adopts the running training instead" not in out
        wait_for(lambda: _procs_of(lay, "healthkit.fix.start_after"), 10, what="the watcher")
        # The fix has returned: a start beside train.py would have happened already.
        assert not _procs_of(lay, "healthkit.trainer.daemon") and not _procs_of(lay, "healthkit.trainer.train_file")
        assert hand.is_running() and not lay.pid_file.exists()

        ended_after = time.time()
        (lay.base / "stop-me").write_text("")
        hand.wait(30)
        wait_for(
            lambda: _procs_of(lay, "healthkit.trainer.daemon"),
            60,
            0.1,
            "the daemon after train.py ended\n" + all_logs(lay),
        )
        st = wait_for(
            lambda: (d := read_json(lay.daemon_state)).get("child_started_at") and d,
            60,
            0.1,
            "a child\n" + all_logs(lay),
        )
        assert st["child_started_at"] >= ended_after and st["adopted"] is False  # only once train.py had ended
        assert "watcher" in r.stdout and "the training has ended; starting the daemon" in all_logs(lay)
        wait_for(lambda: (lay.done / "a.jsonl").exists(), 180, 0.2, "the queued file to train\n" + all_logs(lay))


def test_daemon_start_by_hand_refuses_to_train_beside_a_hand_started_train_py(make_ws) -> None:
    lay = make_ws(max_steps=5)
    queue_file(lay, "a.jsonl", seed=1)
    with hand_started_train_py(lay) as hand:
        for extra in ([], ["--foreground"], ["--supervise"]):
            r = hk("daemon", "start", str(lay.base), *extra, timeout=60)
            assert r.returncode == 73, (extra, r.returncode, r.stdout, r.stderr)
            assert f"PID {hand.pid} (" in r.stderr and "train.py" in r.stderr and "Nothing was started" in r.stderr, (
                r.stderr
            )
            assert f"healthkit fix --safe {lay.base}" in r.stderr and "Traceback" not in r.stderr
        assert not _procs_of(lay, "healthkit.trainer.daemon") and not lay.pid_file.exists()
        # Started as a module, as the systemd unit does: the daemon itself refuses, and says so to the audit.
        r = subprocess.run(
            [sys.executable, "-m", "healthkit.trainer.daemon", "--workspace", str(lay.base)],
            cwd=lay.base,
            capture_output=True,
            text=True,
            timeout=60,
            env=child_env(),
        )
        assert r.returncode == 73 and f"PID {hand.pid} (" in r.stderr and "Traceback" not in r.stderr, (
            r.returncode,
            r.stderr,
        )
        assert not lay.pid_file.exists() and not _procs_of(lay, "healthkit.trainer.train_file")
        audit = json.loads(hk("audit", str(lay.base), "--format", "json", "--select", "daemon").stdout)
        assert any(
            f"PID {hand.pid}" in line and line.startswith("The last start was refused")
            for f in audit["findings"]
            for line in f["problem"]
        ), audit["findings"]
        assert (lay.inbox / "a.jsonl").exists() and hand.is_running()
        (lay.base / "stop-me").write_text("")
        hand.wait(30)
        r = hk("daemon", "start", str(lay.base), timeout=120)  # train.py has ended: nothing to train beside
        assert r.returncode == 0, r.stdout + r.stderr
        wait_for(lambda: (lay.done / "a.jsonl").exists(), 180, 0.2, "the queued file to train\n" + all_logs(lay))


def test_a_deliberate_stop_mid_file_is_recorded_reported_as_info_and_never_restarted(make_ws, monkeypatch) -> None:
    monkeypatch.setenv("HEALTHKIT_TRAINER_STEP_SLEEP_S", "0.1")
    lay = make_ws(max_steps=40)
    queue_file(lay, "a.jsonl", seed=1)
    start_daemon(lay.base)
    wait_for(lambda: (read_json(lay.status).get("step") or 0) >= 2, 90, what="training\n" + all_logs(lay))
    r = hk("daemon", "stop", str(lay.base), "--reason", "maintenance window", "--wait", "60")
    assert r.returncode == 0, r.stdout + r.stderr
    st = read_json(lay.daemon_state)
    req = st["stop_request"]
    assert st["state"] == "stopped" and req["reason"] == "maintenance window" and req["waiting"] == ["a.jsonl"]
    assert "healthkit daemon stop" in req["by"] and req["at"]
    assert (lay.processing / "a.jsonl").exists()

    r = hk("audit", str(lay.base), "--format", "json", "--select", "daemon,queue")
    report = json.loads(r.stdout)
    assert [f["code"] for f in report["findings"]] == ["daemon.stopped"], r.stdout[-3000:]
    f = report["findings"][0]
    assert f[
        "severity"
    ] == "info" and "1 file waits in processing/ and resumes on `healthkit daemon start`" in " ".join(f["problem"])

    r = hk("fix", str(lay.base), "--safe", timeout=120)
    assert not lay.pid_file.exists() and not _procs_of(lay, "healthkit.trainer.daemon"), r.stdout[-3000:]
    assert read_json(lay.daemon_state)["state"] == "stopped"
