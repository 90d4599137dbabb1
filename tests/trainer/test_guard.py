"""The run guards itself: a non-finite loss stops the file before any checkpoint of it; a diverging run is flagged.

The NaN is injected by the test-only hook HEALTHKIT_TEST_INJECT_NAN_AT_STEP (trainer/guard.py): the loss of that
step is multiplied by NaN before backward, so the weights really turn NaN (no CPU setting does it in a few steps).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from healthkit.trainer import queue as q
from healthkit.trainer.layout import Layout

from .conftest import REPO, queue_file, wait_for

transformers = pytest.importorskip("transformers", reason="transformers not installed (extra `trainer`)")


def _control():
    return SimpleNamespace(should_save=True, should_evaluate=False, should_training_stop=False, should_log=False)


def test_guard_cancels_the_save_of_the_step_whose_loss_is_nan_and_every_later_one():
    import torch

    from healthkit.trainer.guard import LossGuard

    g = LossGuard()
    c = _control()
    g.observe(torch.tensor(2.5))
    g.on_step_end(None, SimpleNamespace(global_step=7), c)
    assert c.should_save and not c.should_training_stop and g.last_finite == (7, 2.5)
    g.observe(torch.tensor(float("nan")))
    g.on_step_end(None, SimpleNamespace(global_step=8), c)
    assert not c.should_save and c.should_training_stop
    assert g.stopped_at == 8 and "non-finite (nan) at step 8" in g.reason and "2.5 at step 7" in g.reason
    c2 = _control()
    g.on_epoch_end(None, SimpleNamespace(global_step=8), c2)  # a save at the epoch's end is cancelled too
    assert not c2.should_save


@pytest.mark.parametrize("action, stops", [("warn", False), ("stop", True)])
def test_spike_action(action, stops):
    from healthkit.trainer.guard import LossGuard

    g = LossGuard(action)
    c = _control()
    for s in range(1, 40):
        g.on_log(None, SimpleNamespace(global_step=s), c, logs={"loss": 7.0 if s < 20 else 30.0, "learning_rate": 0.99})
    assert c.should_training_stop is stops and (g.reason is not None) is stops
    if stops:
        assert "diverged" in g.reason and "guard.spike_action = stop" in g.reason and not c.should_save


def _train_file(lay: Layout, name: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    entry = next(e for e in q.pending(lay) if e.name == name)
    path = q.claim(lay, entry)
    return subprocess.run(
        [sys.executable, "-m", "healthkit.trainer.train_file", "--workspace", str(lay.base), "--file", str(path)],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=REPO,
        env={**os.environ, **env},
    )


def _finite_weights(ckpt: Path) -> bool:
    import torch
    from safetensors.torch import load_file

    return all(bool(torch.isfinite(t).all()) for t in load_file(str(ckpt / "model.safetensors")).values())


@pytest.mark.slow
def test_guard_stops_a_real_run_at_an_injected_nan_before_its_save(make_ws):
    """NaN at step 10, a save step that is no logging step: the save of step 10 never happens; the file fails with the
    step and the reason; checkpoint-5, sound, stays for `queue retry`; the audit reads why."""
    lay = make_ws(logging_steps=4, save_steps=5, eval_steps=50, max_steps=20, save_total_limit=3)
    queue_file(lay, "a.jsonl")
    r = _train_file(lay, "a.jsonl", {"HEALTHKIT_TEST_INJECT_NAN_AT_STEP": "10"})
    assert r.returncode == 65, r.stderr[-3000:]
    names = sorted(p.name for p in lay.checkpoints.glob("checkpoint-*"))
    assert names == ["checkpoint-5"], names
    assert _finite_weights(lay.checkpoints / "checkpoint-5")
    err = json.loads((lay.failed / "a.jsonl.error.json").read_text())
    assert "training loss non-finite (nan) at step 10" in err["error"]
    assert "checkpoint-5, is kept for `healthkit queue retry`" in err["error"]
    status = json.loads(lay.status.read_text())
    assert status["state"] == "crashed" and status["error"].startswith("failed: training loss non-finite")
    assert status["step"] == 10
    from healthkit.core.api import audit

    report = audit(lay.base, select=["queue.failed"], record_costs=False)
    assert any("step 10" in " ".join(f.problem) + json.dumps(f.data) for f in report.findings), [
        f.problem for f in report.findings
    ]


@pytest.mark.slow
def test_a_real_run_at_a_diverging_learning_rate_is_flagged(make_ws):
    """learning_rate 0.99: the loss climbs to several times its start. The guard warns (spike_action warn, the default),
    training goes on; stopped on request later, the audit says training.loss-spike (a divergence) with the step and
    the newest complete checkpoint before it."""
    lay = make_ws(learning_rate=0.99, logging_steps=1, save_steps=5, eval_steps=100, max_steps=200, save_total_limit=20)
    queue_file(lay, "a.jsonl", n=80)
    entry = next(e for e in q.pending(lay) if e.name == "a.jsonl")
    path = q.claim(lay, entry)
    log = lay.base / "train.log"
    with open(log, "w") as out:
        child = subprocess.Popen(
            [sys.executable, "-m", "healthkit.trainer.train_file", "--workspace", str(lay.base), "--file", str(path)],
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=REPO,
            env={**os.environ, "HEALTHKIT_TRAINER_STEP_SLEEP_S": "0.05"},
        )
    try:
        wait_for(
            lambda: "guard: loss diverged" in log.read_text() and (_step(lay) or 0) >= 40,
            timeout=300,
            what="a divergence and 40 steps",
        )
        child.terminate()  # a stop request: a checkpoint of the step it is at, the file stays in processing/
        assert child.wait(timeout=120) == 75, log.read_text()[-3000:]
    finally:
        if child.poll() is None:
            child.kill()
    from healthkit.checks.trainsignal import signal_check
    from healthkit.core.workspace import Workspace

    out = signal_check(Workspace.open(lay.base))
    f = next((f for f in out.findings if f.code == "training.loss-spike"), None)
    assert f is not None and f.data["divergence"], [(x.code, x.title) for x in out.findings]
    print("\n", f.title, "|", f.problem[0], "|", f.recommendations[0])
    keep = f.data["rewind_to"]
    assert keep is None or int(keep.split("-")[1]) <= f.data["step"]


def _step(lay: Layout) -> int | None:
    try:
        return json.loads(lay.status.read_text()).get("step")
    except (OSError, ValueError):
        return None
