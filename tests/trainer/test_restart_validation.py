"""A restart is no validation alarm (issue 31, item 3): after a stop and a start, the resumed run's status file still
knows the last validation loss, and a cron audit between the restart and the next evaluation raises nothing."""

from __future__ import annotations

import json

import pytest

from healthkit.trainer.daemon import start_daemon

from .conftest import all_logs, hk, queue_file, read_json, wait_for

pytestmark = pytest.mark.slow


def test_audit_right_after_a_restart_sees_validation_running(make_ws, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HEALTHKIT_TRAINER_STEP_SLEEP_S", "0.3")
    lay = make_ws(max_steps=60, eval_steps=20, save_steps=20, logging_steps=1, monitor_port=None)
    (lay.base / "healthkit.toml").write_text("[thresholds]\ndisk_min_free_percent = 0\ndisk_min_free_bytes = 0\n")
    queue_file(lay, "a.jsonl", n=80, seed=2)
    start_daemon(lay.base)
    wait_for(
        lambda: (read_json(lay.status).get("val_loss_step") or 0) >= 20, 120, 0.1, "an evaluation\n" + all_logs(lay)
    )
    r = hk("daemon", "stop", str(lay.base), "--wait", "60")
    assert r.returncode == 0, r.stdout + r.stderr
    stopped = read_json(lay.last_result)["step"]
    assert 20 <= stopped < 40, stopped

    start_daemon(lay.base)
    wait_for(
        lambda: (s := read_json(lay.status)).get("resumed_from") and s.get("state") == "training",
        120,
        0.05,
        "the resumed run\n" + all_logs(lay),
    )
    r = hk("audit", str(lay.base), "--format", "json", "--select", "validation")
    st = read_json(lay.status)
    assert st["step"] < 40, "the audit ran after the next evaluation: it did not test the window after a restart"
    rep = json.loads(r.stdout)
    assert [f["code"] for f in rep["findings"]] == [], json.dumps(rep["findings"], indent=1)
    assert st["val_loss"] is not None and st["val_loss_step"] == 20, st
    assert hk("daemon", "stop", str(lay.base), "--wait", "60").returncode == 0
