"""Goodput on a real run killed twice: the child alone (the daemon resumes it), then the daemon and the child, 20 s of
nothing, then `healthkit fix --safe` starts the daemon again. The audit's redone steps and lost seconds are held
against what this test measured (the steps reached before each kill, the checkpoint each resume began from, the
time nothing ran)."""

from __future__ import annotations

import json
import os
import signal
import time

import pytest

from healthkit.trainer.daemon import start_daemon

from .conftest import all_logs, hk, queue_file, read_json, wait_for
from .test_daemon_e2e import queue_drained

pytestmark = pytest.mark.slow


def _step(lay) -> int:
    st = read_json(lay.status)
    return st.get("step") if isinstance(st.get("step"), int) and st.get("state") == "training" else -1


def _newest_checkpoint_at_most(lay, step: int) -> int:
    return max(
        (int(p.name.split("-")[1]) for p in lay.checkpoints.glob("checkpoint-*") if int(p.name.split("-")[1]) <= step),
        default=0,
    )


def test_goodput_of_a_real_run_killed_twice(make_ws, monkeypatch):
    monkeypatch.setenv("HEALTHKIT_TRAINER_STEP_SLEEP_S", "0.1")
    lay = make_ws(max_steps=150, save_steps=20, logging_steps=1, eval_steps=1000, save_total_limit=3)
    queue_file(lay, "a.jsonl", n=80)
    start_daemon(lay.base)
    try:
        # 1: the child alone, between two saves
        wait_for(lambda: _step(lay) >= 30, timeout=300, what="step 30")
        st = read_json(lay.daemon_state)
        reached1 = _step(lay)
        from1 = _newest_checkpoint_at_most(lay, reached1)
        os.kill(st["child_pid"], signal.SIGKILL)
        wait_for(lambda: _step(lay) > reached1 + 25, timeout=300, what="the resumed child past the first kill")
        # 2: the daemon and the child; 20 s of nothing; then fix --safe
        st = read_json(lay.daemon_state)
        reached2 = _step(lay)
        from2 = _newest_checkpoint_at_most(lay, reached2)
        os.kill(st["pid"], signal.SIGKILL)
        os.kill(st["child_pid"], signal.SIGKILL)
        killed = time.time()
        time.sleep(20)  # the scenario itself: nothing runs for 20 s
        r = hk("fix", str(lay.base), "--safe", timeout=300)
        fixed = time.time()
        assert r.returncode in (0, 1), r.stdout + r.stderr
        wait_for(lambda: queue_drained(lay, 1), timeout=600, what="the file done")
    except BaseException:
        print(all_logs(lay))
        raise
    r = hk("audit", str(lay.base), "--format", "json", "--select", "goodput")
    g = json.loads(r.stdout)["goodput"]
    lost = {x["cause"]: x for x in g["lost"]}
    measured_redone = (reached1 - from1) + (reached2 - from2)
    print(
        f"\nmeasured: reached {reached1} (resumed from {from1}), reached {reached2} (resumed from {from2}): "
        f"{measured_redone} steps redone; nothing ran {fixed - killed:.1f} s (20 s asleep + fix --safe)"
    )
    print("audit:", json.dumps(g))
    assert abs(lost["redone-steps"]["steps"] - measured_redone) <= 2, (lost, measured_redone)
    assert lost["redone-steps"]["seconds"] > 0
    assert 19.0 <= lost["no-daemon"]["seconds"] <= fixed - killed + 2.0, (lost["no-daemon"], fixed - killed)
    assert lost["restart"]["seconds"] > 0
    assert g["productive_seconds"] + sum(x["seconds"] for x in g["lost"]) == pytest.approx(g["wall_seconds"], abs=0.01)
    assert 0 < g["ratio"] < 1 and not g["estimate"]
