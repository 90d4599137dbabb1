"""`healthkit daemon status` tells the truth (issue 24 item 2), asserted line by line.

A state file outlives the processes it names: a child PID is shown only while it is that very training process,
"adopted" only under a live daemon, a failed file comes with its reason, and a status file that still describes
the previous file is not shown as the new file's progress.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from healthkit.trainer.layout import Layout
from healthkit.trainer.statustext import status_lines

from .conftest import hk, wait_for

T = "2026-12-01T10:00:00+00:00"


def write(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data), encoding="utf-8")


def status_out(lay: Layout) -> list[str]:
    r = hk("daemon", "status", str(lay.base))
    assert r.returncode == 3, r.stdout + r.stderr  # no daemon runs
    return r.stdout.splitlines()


@pytest.fixture
def fake_training(lay: Layout):
    """A real process with our training's argv for this workspace (it only sleeps)."""
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import time; time.sleep(300)",
            "healthkit.trainer.train_file",
            "--workspace",
            str(lay.base),
            "--file",
            str(lay.processing / "chat_run3.jsonl"),
        ]
    )
    wait_for(
        lambda: "healthkit.trainer.train_file" in psutil.Process(proc.pid).cmdline(), 30, 0.05, "the fake training"
    )
    yield proc
    proc.kill()
    proc.wait()


def test_an_orphan_is_not_called_adopted_when_no_daemon_runs(lay, fake_training):
    (lay.processing / "chat_run3.jsonl").write_text('{"text": "x"}\n')
    write(
        lay.daemon_state,
        {
            "state": "running",
            "pid": 999999,
            "current_file": "chat_run3.jsonl",
            "adopted": True,
            "child_pid": fake_training.pid,
            "child_started_at": psutil.Process(fake_training.pid).create_time(),
        },
    )
    write(
        lay.status,
        {
            "state": "training",
            "current_file": "chat_run3.jsonl",
            "step": 40,
            "total_steps": 600,
            "loss": 1.5,
            "val_loss": 1.7,
            "updated_at": T,
        },
    )
    assert status_out(lay) == [
        "daemon: not running (last state running)",
        f"training: PID {fake_training.pid} on chat_run3.jsonl runs with no daemon over it "
        "(`healthkit fix --safe` starts a daemon that adopts it)",
        f"progress: training, step 40/600, loss 1.5, val_loss 1.7 (updated {T})",
        "queue: inbox 0, processing 1, done 0, failed 0",
    ]
    fake_training.kill()
    fake_training.wait()
    out = status_out(lay)  # gone: no training line at all
    assert out[0] == "daemon: not running (last state running)" and not any(
        line.startswith("training:") for line in out
    ), out


def test_a_failed_file_says_why_and_a_stale_child_is_not_shown(lay):
    (lay.failed / "chat_300.jsonl").write_text('{"text": "x"}\n')
    write(
        lay.failed / "chat_300.jsonl.error.json",
        {
            "file": "chat_300.jsonl",
            "error": "exit code 1 (failed 3 times; last log: logs/train-chat_300.log)",
            "failed_at": T,
            "attempts": 3,
        },
    )
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    write(
        lay.daemon_state,
        {"state": "idle", "current_file": "chat_300.jsonl", "child_pid": dead.pid, "child_started_at": 1.0},
    )
    write(
        lay.status,
        {
            "state": "idle",
            "current_file": None,
            "step": 600,
            "total_steps": 600,
            "loss": 0.9,
            "val_loss": None,
            "error": "failed: exit code 1",
            "updated_at": T,
        },
    )
    assert status_out(lay) == [
        "daemon: not running (last state idle)",
        "progress: idle, no file in training",
        "queue: inbox 0, processing 0, done 0, failed 1",
        f"failed: chat_300.jsonl: exit code 1 (failed 3 times; last log: logs/train-chat_300.log) (at {T})",
    ]


def _snapshot(state: dict, training: dict, *, running: bool = True, alive: bool = True) -> dict:
    return {
        "running": running,
        "pid": 12 if running else None,
        "state": state,
        "training": training,
        "queue": {"inbox": [], "processing": ["new.jsonl"], "done": ["old.jsonl"], "failed": []},
        "child_alive": alive,
        "failed": [],
    }


def test_a_new_file_does_not_show_the_previous_files_step():
    state = {"state": "running", "started_at": T, "current_file": "new.jsonl", "child_pid": 40, "adopted": False}
    old = {
        "state": "completed",
        "current_file": "old.jsonl",
        "step": 600,
        "total_steps": 600,
        "loss": 0.8,
        "val_loss": 0.9,
        "updated_at": T,
    }
    assert status_lines(_snapshot(state, old)) == [
        f"daemon: running (PID 12, since {T})",
        "training: PID 40 on new.jsonl",
        "progress: new.jsonl starting, no step yet (the status file still describes old.jsonl)",
        "queue: inbox 0, processing 1, done 1, failed 0",
    ]


def test_adopted_only_under_a_live_daemon_and_a_past_run_is_named():
    state = {"state": "running", "started_at": T, "current_file": "new.jsonl", "child_pid": 40, "adopted": True}
    now = {
        "state": "training",
        "current_file": "new.jsonl",
        "step": 3,
        "total_steps": 600,
        "loss": 2.0,
        "updated_at": T,
    }
    assert status_lines(_snapshot(state, now))[1:3] == [
        "training: PID 40 on new.jsonl (adopted)",
        f"progress: training, step 3/600, loss 2, no validation loss yet (updated {T})",
    ]
    done = {
        "state": "completed",
        "current_file": "old.jsonl",
        "step": 600,
        "total_steps": 600,
        "loss": 0.8,
        "val_loss": 0.9,
        "updated_at": T,
    }
    idle = {"state": "idle", "started_at": T}
    assert status_lines(_snapshot(idle, done)) == [
        f"daemon: idle (PID 12, since {T})",
        f"progress: completed (old.jsonl, last run), step 600/600, loss 0.8, val_loss 0.9 (updated {T})",
        "queue: inbox 0, processing 1, done 1, failed 0",
    ]


def test_the_supervisor_line_says_what_it_is():
    from healthkit.trainer.statustext import supervisor_line

    sup = {
        "pid": 50,
        "state": "running",
        "started_at": T,
        "restarts": 2,
        "last_crash": {"daemon_pid": 41, "signal": "SIGKILL", "exit_code": None, "at": T},
    }
    assert (
        supervisor_line(sup, True)
        == f"supervisor: PID 50 (since {T}), 2 restarts; last crash: daemon PID 41 killed by SIGKILL at {T}"
    )
    assert supervisor_line(sup, False) == (
        "supervisor: PID 50 is gone (it ended without recording why: killed?); nothing restarts the daemon"
    )
    ended = {**sup, "state": "gave-up", "ended_at": T, "reason": "the daemon crashed 5 times in a row"}
    assert supervisor_line(ended, False) == f"supervisor: ended (gave-up) at {T}: the daemon crashed 5 times in a row"
    assert supervisor_line({}, False) is None
