"""The callback inside a real (tiny) `Trainer.train()` in this process: pause, resume and stop within one step; the status file."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from healthkit.contract.config_model import TrainingConfig
from healthkit.trainer import control as ctl
from healthkit.trainer.layout import Layout

from .conftest import FAST_CONFIG, read_json, wait_for

transformers = pytest.importorskip("transformers", reason="transformers not installed (extra `trainer`)")

STATUS_KEYS = {
    "state",
    "step",
    "total_steps",
    "loss",
    "val_loss",
    "val_train_gap",
    "current_file",
    "started_at",
    "updated_at",
    "eta_seconds",
    "gpu",
}


class StepClock(transformers.TrainerCallback):
    """Records when each step ended (placed before the health callback, so a pause holds after the record)."""

    def __init__(self, delay: float = 0.0):
        self.ends: list[tuple[int, float]] = []
        self.delay = delay

    def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
        self.ends.append((state.global_step, time.monotonic()))
        if self.delay:
            time.sleep(self.delay)

    def steps_done_by(self, t: float) -> int:
        return max([s for s, at in self.ends if at <= t], default=0)


def _trainer(lay: Layout, model_dir: Path, max_steps: int, delay: float = 0.0, **cfg_over: Any):
    from transformers import AutoModelForCausalLM, AutoTokenizer, DataCollatorForLanguageModeling, Trainer

    from healthkit.trainer.callbacks import HealthCallback
    from healthkit.trainer.data import TokenizedDataset
    from healthkit.trainer.tiny import sample_texts
    from healthkit.trainer.train_file import training_arguments

    cfg = TrainingConfig.model_validate({**FAST_CONFIG, "max_steps": max_steps, **cfg_over})
    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    texts = sample_texts(40, seed=3, words=8)
    clock = StepClock(delay)
    health = HealthCallback(lay, cfg, "a.jsonl", handle_sigterm=False)
    trainer = Trainer(
        model=model,
        args=training_arguments(cfg, lay, True, 1),
        train_dataset=TokenizedDataset(tok, texts[:32], cfg.max_seq_length),
        eval_dataset=TokenizedDataset(tok, texts[32:], cfg.max_seq_length),
        data_collator=DataCollatorForLanguageModeling(tok, mlm=False),
        processing_class=tok,
        callbacks=[clock, health],
    )
    return trainer, health, clock


def test_pause_resume_stop_each_within_one_step(lay: Layout, tiny_model_dir: Path) -> None:
    trainer, health, clock = _trainer(lay, tiny_model_dir, max_steps=200, delay=0.03)
    seen: dict[str, Any] = {}
    errors: list[BaseException] = []

    def driver() -> None:
        try:
            wait_for(lambda: clock.steps_done_by(time.monotonic()) >= 3, 60, what="3 steps")
            t = time.monotonic()
            ctl.request_pause(lay, "test pause")
            seen["pause_req"] = clock.steps_done_by(t)
            st = wait_for(lambda: (s := read_json(lay.status)).get("state") == "paused" and s, 10, what="paused status")
            seen["paused_status"] = st
            n = len(clock.ends)
            time.sleep(0.6)
            seen["steps_while_paused"] = len(clock.ends) - n
            t = time.monotonic()
            ctl.request_resume(lay)
            wait_for(lambda: clock.steps_done_by(time.monotonic()) >= st["step"] + 3, 30, what="steps after resume")
            seen["resumed_status"] = read_json(lay.status)
            t = time.monotonic()
            ctl.request_stop(lay)
            seen["stop_req"] = clock.steps_done_by(t)
        except BaseException as exc:
            errors.append(exc)
            ctl.request_stop(lay)

    th = threading.Thread(target=driver, daemon=True)
    th.start()
    trainer.train()
    th.join(10)
    assert not errors, errors
    st = seen["paused_status"]
    # pause: the step in flight finishes, the next boundary holds (one step at most)
    assert st["step"] <= seen["pause_req"] + 1 and st["pause_reason"] == "test pause" and st["paused_at"]
    assert seen["steps_while_paused"] <= 1  # the StepClock record of the held step itself, nothing more
    assert (
        seen["resumed_status"]["paused_at"] is None and seen["resumed_status"]["pause_reason"] is None
    )  # never sticky
    stopped_at = trainer.state.global_step
    assert health.stop_requested and stopped_at <= seen["stop_req"] + 1 and stopped_at < 200
    ckpt = lay.checkpoints / f"checkpoint-{stopped_at}"  # a stop saves a checkpoint first
    assert (ckpt / "trainer_state.json").exists()
    from healthkit.trainer.checkpoints import is_complete

    assert is_complete(ckpt)


def test_status_file_fields_and_validation_loss(lay: Layout, tiny_model_dir: Path) -> None:
    trainer, health, _ = _trainer(lay, tiny_model_dir, max_steps=12, logging_steps=2, eval_steps=4, save_steps=4)
    trainer.train()
    health.finish("completed")
    st = json.loads(lay.status.read_text())
    assert set(st) >= STATUS_KEYS
    assert (
        st["state"] == "completed" and st["step"] == 12 and st["total_steps"] == 12 and st["current_file"] == "a.jsonl"
    )
    assert isinstance(st["val_loss"], float) and isinstance(st["loss"], float)
    assert st["val_train_gap"] == pytest.approx(st["val_loss"] - st["loss"], abs=1e-5)
    assert st["gpu"] is None  # no GPU here: null, not an error
    costs = json.loads(lay.monitoring_costs.read_text())["training"]
    assert {"status_write", "control_poll", "callback"} <= set(costs["hooks"]) and costs["step"] == 12
    assert costs["evaluation"]["calls"] == 3 and costs["hook_share"] is not None
    ckpts = sorted(p.name for p in lay.checkpoints.glob("checkpoint-*"))
    assert ckpts == ["checkpoint-12", "checkpoint-8"]  # save_total_limit=2


def test_a_hanging_status_disk_does_not_stall_training(
    lay: Layout, tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import healthkit.trainer.callbacks as cbmod

    release = threading.Event()
    real = cbmod.atomic_write

    def slow_write(path: Path, data: Any, **kw: Any) -> None:
        release.wait(30)  # a status write that hangs (NFS gone away)
        real(path, data, **kw)

    monkeypatch.setattr(cbmod, "atomic_write", slow_write)
    trainer, health, clock = _trainer(
        lay, tiny_model_dir, max_steps=10, delay=0.08, hook_timeout_s=0.2
    )  # >= 0.8 s of steps
    t0 = time.monotonic()
    trainer.train()
    assert time.monotonic() - t0 < 20 and trainer.state.global_step == 10
    assert health.costs.hooks["status_write"]["timeouts"] >= 1
    release.set()
