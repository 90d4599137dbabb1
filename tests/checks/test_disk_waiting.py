"""A daemon waiting for disk space: disk.low-space names it as the cause; no queue.stuck for the file it holds."""

from __future__ import annotations

import os

from .conftest import codes, make_ws, only, run

WAITING = {
    "state": "waiting",
    "waiting_for": "disk",
    "waiting_file": "a.jsonl",
    "waiting_since": "2026-01-01T00:00:00+00:00",
    "waiting_reason": "disk full: 4096 bytes free on /mnt, a checkpoint needs ~2000000",
    "disk": {"mount": "/mnt", "free_bytes": 4096, "need_bytes": 2000000},
}


def test_low_space_names_the_waiting_daemon_and_queue_is_not_stuck(tmp_path):
    make_ws(
        tmp_path,
        {"queue/processing/a.jsonl": '{"text": "x"}\n', "status/daemon_state.json": {**WAITING, "pid": os.getpid()}},
        toml="[thresholds]\ndisk_min_free_percent = 0\ndisk_min_free_bytes = 0\n",
    )
    report = run(tmp_path, "disk")
    f = only(report, "disk.low-space")
    assert f.severity.value == "critical" and f.data["daemon_waiting"] is True
    assert f.root_cause[0].startswith(f"The daemon (PID {os.getpid()}) is waiting for disk space since 2026-01-01")
    assert "disk full: 4096 bytes free on /mnt" in f.root_cause[0]
    assert "queue.stuck" not in codes(run(tmp_path, "queue"))


def test_a_dead_daemons_waiting_state_explains_nothing(tmp_path):
    make_ws(
        tmp_path,
        {"queue/processing/a.jsonl": '{"text": "x"}\n', "status/daemon_state.json": {**WAITING, "pid": 2**22 + 1}},
        toml="[thresholds]\ndisk_min_free_percent = 0\ndisk_min_free_bytes = 0\n",
    )
    assert "disk.low-space" not in codes(run(tmp_path, "disk"))
    assert "queue.stuck" in codes(run(tmp_path, "queue"))
