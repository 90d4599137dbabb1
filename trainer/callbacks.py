"""The training-side hooks: status file, control requests (pause/resume/stop), GPU stats and their costs.

One `TrainerCallback` steering training only through ``control``. Everything that can
block runs on the `hooks.Background` thread; what runs on the training thread is two
stat calls per step plus dict updates at log steps, all timed.
"""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from healthkit.contract.config_model import TrainingConfig
from healthkit.system.fsutil import atomic_write

from . import control as ctl
from .hooks import Background, HookCosts, write_costs
from .layout import Layout, iso_now

GPU_EVERY_S = 10.0
COSTS_EVERY_S = 10.0
PAUSE_POLL_S = 0.1
STEP_SLEEP_ENV = "HEALTHKIT_TRAINER_STEP_SLEEP_S"  # slows each step: tests and demos only


class HealthCallback(TrainerCallback):
    def __init__(
        self,
        layout: Layout,
        cfg: TrainingConfig,
        current_file: str,
        *,
        rank0: bool = True,
        distributed: bool = False,
        attempt: int = 1,
        resumed_from: str | None = None,
        write_files: bool = True,
        handle_sigterm: bool = True,
        lease_guard: Any = None,
    ):
        self.layout = layout
        self.cfg = cfg
        self.file_name = current_file
        self.data_order: str | None = None  # set by train_file: the example order this file trains in
        self.rank0 = rank0
        self.distributed = distributed
        self.write_files = write_files and rank0
        self.costs = HookCosts()
        self.bg = Background(self.costs, cfg.hook_timeout_s) if self.write_files else None
        self.stop_requested = False
        self.lease_guard = lease_guard  # trainer.lease.LeaseGuard: its thread sets fenced_why; a step reads only that
        self.fenced: str | None = None
        self.evaluated = False
        self.save_seconds: float | None = None  # how long the Trainer's last save took (set by train_file's Trainer)
        self._term = False
        self._t0: float | None = None
        self._frozen: float | None = None
        self._paused_s = 0.0
        self._first_step = 0
        self._last_status = 0.0
        self._last_costs = 0.0
        self._gpu_next = 0.0
        self._gpu_available = True
        self.step_sleep = float(os.environ.get(STEP_SLEEP_ENV) or 0)
        self.status: dict[str, Any] = {
            "state": "training",
            "step": 0,
            "total_steps": None,
            "loss": None,
            "val_loss": None,
            "val_train_gap": None,
            "loss_step": None,
            "val_loss_step": None,  # where each was measured: a chart plots them there, not at `step`
            "current_file": current_file,
            "started_at": iso_now(),
            "updated_at": iso_now(),
            "eta_seconds": None,
            "gpu": None,
            "epoch": None,
            "learning_rate": None,
            "attempt": attempt,
            "resumed_from": resumed_from,
            "last_checkpoint": None,
            "pid": os.getpid(),
            "eval_steps": cfg.eval_steps if cfg.eval_strategy == "steps" else None,
            "paused_at": None,
            "pause_reason": None,
        }
        if handle_sigterm:
            try:
                signal.signal(signal.SIGTERM, self._on_sigterm)
            except ValueError:  # not the main thread
                pass

    # helpers ---------------------------------------------------------------
    def _on_sigterm(self, signum: int, frame: Any) -> None:
        self._term = True  # a stop request: honoured at the next step boundary, with a checkpoint

    def train_time_s(self) -> float:
        if self._frozen is not None:
            return self._frozen
        return 0.0 if self._t0 is None else max(0.0, time.perf_counter() - self._t0 - self._paused_s)

    def _write_status(self, force: bool = False) -> None:
        if not self.write_files or self.bg is None:
            return
        now = time.perf_counter()
        if not force and now - self._last_status < self.cfg.status_interval_s:
            return
        self._last_status = now
        self.status["updated_at"] = iso_now()
        text = json.dumps(self.status, sort_keys=True) + "\n"
        path = self.layout.status
        # Rewritten every log step: atomic (rename) but not fsynced, a lost last update on power
        # failure is harmless, and two fsyncs per step were most of the hooks' cost.
        self.bg.submit("status_write", lambda: atomic_write(path, text, durable=False))

    def _maybe_background(self, state: Any, force: bool = False) -> None:
        if self.bg is None:
            return
        now = time.perf_counter()
        if self._gpu_available and now >= self._gpu_next:
            self._gpu_next = now + GPU_EVERY_S
            self.bg.submit("gpu_query", self._query_gpu)
        if force or now - self._last_costs >= COSTS_EVERY_S:
            self._last_costs = now
            step, tt = state.global_step, self.train_time_s()
            self.bg.submit("costs_write", lambda: write_costs(self.layout.monitoring_costs, self.costs, step, tt))

    def _query_gpu(self) -> None:
        from healthkit.system import gpu

        stats = gpu.read_gpu_stats(int(os.environ.get("LOCAL_RANK", "0")))
        if stats is None:
            self._gpu_available = False  # no GPU here: stop asking
        self.status["gpu"] = (
            None if stats is None else {k: stats[k] for k in ("memory_used_mb", "memory_total_mb", "temperature_c")}
        )

    def _poll_control(self) -> tuple[bool, bool]:
        pause = stop = False
        if self.rank0:
            c = self.layout.control
            pause = os.path.exists(c / "pause")
            stop = self._term or os.path.exists(c / "stop")
        else:
            stop = self._term
        if self.distributed:  # every rank must take the same decision at the same step
            import torch
            import torch.distributed as dist

            if dist.is_available() and dist.is_initialized():
                dev = (
                    torch.device("cuda", torch.cuda.current_device())
                    if dist.get_backend() == "nccl"
                    else torch.device("cpu")
                )
                t = torch.tensor([int(pause), int(stop)], device=dev)
                dist.all_reduce(t, op=dist.ReduceOp.MAX)
                pause, stop = bool(t[0]), bool(t[1])
        return pause, stop

    def _eta(self, state: Any) -> float | None:
        done = state.global_step - self._first_step
        if done <= 0 or not state.max_steps:
            return None
        return round(self.train_time_s() / done * max(0, state.max_steps - state.global_step), 1)

    # events ----------------------------------------------------------------
    def _apply_config_on_resume(self, args: Any, state: Any) -> None:
        """A resume loads logging/eval/save_steps from the checkpoint's trainer_state.json; config.json wins.

        HF's resume restores these three from the checkpoint (TrainerState.load_from_json) and
        only warns: eval_steps changed from 50 to 500 between a stop and the resume kept
        evaluating every 50. Here they are recomputed from this run's arguments (as HF does for
        a fresh run), and each change is logged and recorded in the status file.
        """
        before = {k: getattr(state, f"{k}_steps", None) for k in ("logging", "eval", "save")}
        state.compute_steps(args, state.max_steps)
        changed = {
            f"{k}_steps": {"checkpoint": v, "config": getattr(state, f"{k}_steps")}
            for k, v in before.items()
            if v is not None and v != getattr(state, f"{k}_steps")
        }
        if changed:
            import logging

            logging.getLogger("healthkit.trainer.train_file").warning(
                "resumed at step %d: %s (config.json applies; the checkpoint's trainer_state.json had the old values)",
                state.global_step,
                ", ".join(f"{k} {c['checkpoint']} -> {c['config']}" for k, c in changed.items()),
            )
        self.status["settings_on_resume"] = changed or None

    def _carry_losses(self, state: Any) -> None:
        """A resumed run's status starts from the last losses its restored log_history holds (with their steps): after a
        stop and start, or a supervisor's restart, the status must not read `val_loss: null` until the next evaluation."""
        s = self.status
        for entry in reversed(getattr(state, "log_history", None) or []):
            step = entry.get("step")
            if s["val_loss"] is None and _finite(entry.get("eval_loss")):
                s["val_loss"], s["val_loss_step"] = float(entry["eval_loss"]), step
            if s["loss"] is None and _finite(entry.get("loss")):
                s["loss"], s["loss_step"] = float(entry["loss"]), step
            if s["val_loss"] is not None and s["loss"] is not None:
                break
        if s["val_loss"] is not None and s["loss"] is not None:
            s["val_train_gap"] = round(s["val_loss"] - s["loss"], 6)

    def on_train_begin(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
        t0 = time.perf_counter()
        self._t0 = t0
        if state.global_step > 0:
            self._apply_config_on_resume(args, state)
            self._carry_losses(state)
        self._first_step = state.global_step
        self.status.update(step=state.global_step, total_steps=state.max_steps, state="training")
        self._write_status(force=True)
        self._maybe_background(state, force=True)
        self.costs.record("callback", time.perf_counter() - t0)

    def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
        t0 = time.perf_counter()
        guard = self.lease_guard
        if guard is not None and not self.fenced and guard.check():
            self.fenced = (
                guard.fenced_why
            )  # fenced: stop at once, commit nothing (another holder may own the workspace)
            control.should_save = False
            control.should_training_stop = True
            self.status["state"] = "fenced"
            return
        pause, stop = self._poll_control()
        if pause and not stop:
            stop = self._pause(state)
            t0 = time.perf_counter()
        if stop:
            self.stop_requested = True
            control.should_save = True  # a stop always leaves a checkpoint to resume from
            control.should_training_stop = True
            self.status["state"] = "stopping"
            self._write_status(force=True)
        if self.bg is not None:
            self.bg.check_hung()
        self.costs.record("control_poll", time.perf_counter() - t0)
        if self.step_sleep:
            time.sleep(self.step_sleep)

    def _pause(self, state: Any) -> bool:
        """Hold at this step boundary until resumed; True when a stop arrives meanwhile."""
        p0 = time.perf_counter()
        req = ctl.read(self.layout) if self.rank0 else None
        self.status.update(
            state="paused",
            step=state.global_step,
            paused_at=(req.paused_at if req else None) or iso_now(),
            pause_reason=req.pause_reason if req else None,
            eta_seconds=None,
        )
        self._write_status(force=True)
        stop = False
        while True:
            time.sleep(PAUSE_POLL_S)
            pause, stop = self._poll_control()
            if stop or not pause:
                break
            if self.bg is not None:
                self.bg.check_hung()
        self._paused_s += time.perf_counter() - p0
        self.status.update(state="training", paused_at=None, pause_reason=None)  # never sticky
        self._write_status(force=True)
        return stop

    def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None, **kw: Any) -> None:
        if not self.write_files:
            return
        t0 = time.perf_counter()
        logs = logs or {}
        s = self.status
        if "loss" in logs:
            s["loss"] = float(logs["loss"])
            s["loss_step"] = state.global_step
            if s["val_loss"] is not None:
                s["val_train_gap"] = round(s["val_loss"] - s["loss"], 6)
        if "learning_rate" in logs:
            s["learning_rate"] = float(logs["learning_rate"])
        s.update(step=state.global_step, total_steps=state.max_steps, epoch=state.epoch, eta_seconds=self._eta(state))
        self._write_status()
        self._maybe_background(state)
        self.costs.record("callback", time.perf_counter() - t0)

    def on_evaluate(
        self, args: Any, state: Any, control: Any, metrics: dict[str, Any] | None = None, **kw: Any
    ) -> None:
        self.evaluated = True
        if not self.write_files:
            return
        t0 = time.perf_counter()
        metrics = metrics or {}
        if "eval_runtime" in metrics:
            self.costs.record_evaluation(float(metrics["eval_runtime"]))
        if "eval_loss" in metrics:
            s = self.status
            s["val_loss"] = float(metrics["eval_loss"])
            s["val_loss_step"] = state.global_step
            s["val_train_gap"] = round(s["val_loss"] - s["loss"], 6) if s["loss"] is not None else None
            s["step"] = state.global_step
            self._write_status(force=True)
        self.costs.record("callback", time.perf_counter() - t0)

    def on_save(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
        if not self.write_files:
            return
        t0 = time.perf_counter()
        saved = os.path.join(args.output_dir, f"checkpoint-{state.global_step}")
        if os.path.isdir(saved):  # the proof of ownership the daemon asks for before it ever deletes one
            from .checkpoints import mark

            mark(Path(saved), self.file_name, state.global_step, self.data_order)
        self.status["last_checkpoint"] = f"checkpoint-{state.global_step}"
        self.status["last_save_s"] = None if self.save_seconds is None else round(self.save_seconds, 3)
        try:  # after HF's rotation: what save_total_limit (+ the best) leaves at rest
            self.status["checkpoints"] = sum(1 for n in os.listdir(args.output_dir) if n.startswith("checkpoint-"))
        except OSError:
            pass
        self._write_status(force=True)
        self._maybe_background(state, force=True)
        self.costs.record("callback", time.perf_counter() - t0)

    def on_train_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
        self._frozen = self.train_time_s()
        if not self.write_files:
            return
        self.status.update(step=state.global_step, eta_seconds=0 if not self.stop_requested else None)
        if self.stop_requested:
            self.status["state"] = "idle"  # stopped on request; the daemon resumes this file later
        self._write_status(force=True)
        self._maybe_background(state, force=True)

    def finish(self, state_name: str | None = None, **fields: Any) -> None:
        """Final status (written on this thread, waited for) and costs; then stop the worker."""
        if not self.write_files or self.bg is None:
            return
        if state_name:
            self.status["state"] = state_name
        self.status.update(fields)
        self.bg.flush()
        self.status["updated_at"] = iso_now()
        atomic_write(self.layout.status, json.dumps(self.status, sort_keys=True) + "\n")
        write_costs(self.layout.monitoring_costs, self.costs, self.status.get("step") or 0, self.train_time_s())
        self.bg.close()


def _finite(v: Any) -> bool:
    import math

    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
