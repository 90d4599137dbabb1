"""The run guards itself: a non-finite training loss stops the file before any checkpoint of it is written.

The Trainer subclass (train_file.trainer_class) hands every micro-batch's loss to `LossGuard.observe`;
`on_step_end`, which runs before the Trainer's save of that step, reads it: at the first non-finite loss
it cancels the save and stops training, and the file fails with the step and the reason. A spike or a
divergence (the audit's rule, healthkit.core.signalstats, over the logged losses) is logged, or stops the file
the same way with `guard.spike_action = "stop"`.

Test hook: HEALTHKIT_TEST_INJECT_NAN_AT_STEP=N makes the loss of step N (1-based, as `global_step` will read
after it) NaN before backward, so the weights really turn NaN: no CPU setting produces a NaN in a few steps.
"""

from __future__ import annotations

import logging
import math
import os
from typing import Any

from transformers import TrainerCallback

from healthkit.contract.settings import SignalSettings
from healthkit.core.signalstats import divergence, spike, warmup_end

INJECT_ENV = "HEALTHKIT_TEST_INJECT_NAN_AT_STEP"  # tests only: read by `inject_at` below, nowhere else
SPIKE_TAIL = 200  # logs the spike rule looks at on each log (its window is 20): the cost stays flat over a long run

log = logging.getLogger("healthkit.trainer.guard")


def inject_at() -> int | None:
    """The step whose loss the test hook turns NaN (HEALTHKIT_TEST_INJECT_NAN_AT_STEP), or None."""
    raw = os.environ.get(INJECT_ENV, "")
    return int(raw) if raw.strip().isdigit() else None


class LossGuard(TrainerCallback):
    """Stops the file at the first non-finite training loss (every step) and, if asked, at a loss spike (every log)."""

    def __init__(self, spike_action: str = "warn", *, distributed: bool = False):
        self.spike_action = spike_action
        self.distributed = distributed
        self.limits = SignalSettings()
        self._bad: Any = None  # the non-finite loss seen in this step's micro-batches (a float), or None
        self._last_value: float | None = None
        self._steps: list[float] = []
        self._losses: list[float] = []
        self._lrs: list[list[float]] = []
        self._spike_seen = False
        self.last_finite: tuple[int, float] | None = None
        self.reason: str | None = None  # why the file must fail; None: the guard did not stop it
        self.stopped_at: int | None = None

    # fed by the Trainer subclass ---------------------------------------------------------------------------------
    def observe(self, loss: Any) -> None:
        """A micro-batch's training loss as training_step returned it (a tensor): one host sync, as HF's NaN filter does."""
        try:
            value = float(loss.detach().float().mean()) if hasattr(loss, "detach") else float(loss)
        except (TypeError, ValueError, RuntimeError):
            return
        if not math.isfinite(value):
            if self._bad is None:
                self._bad = value
        else:
            self._last_value = value

    def _agree(self, flag: bool) -> bool:
        """Every rank takes the same decision at the same step (a NaN on one rank stops all)."""
        if not self.distributed:
            return flag
        import torch
        import torch.distributed as dist

        if not (dist.is_available() and dist.is_initialized()):
            return flag
        dev = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")
        t = torch.tensor([int(flag)], device=dev)
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return bool(t[0])

    def _stop(self, control: Any, step: int, reason: str) -> None:
        control.should_save = False  # nothing of this step (or after) reaches a checkpoint
        control.should_evaluate = False
        control.should_training_stop = True
        if self.reason is None:
            self.reason, self.stopped_at = reason, step
            log.error("guard: %s; training stops before any further save", reason)

    # callback events ----------------------------------------------------------------------------------------------
    def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
        bad = self._agree(self._bad is not None)
        if bad:
            last = (
                f"the last finite loss was {self.last_finite[1]:.4g} at step {self.last_finite[0]}"
                if self.last_finite
                else "no finite loss before it"
            )
            value = self._bad if self._bad is not None else math.nan
            self._stop(
                control, state.global_step, f"training loss non-finite ({value}) at step {state.global_step}; {last}"
            )
        elif self._last_value is not None:
            self.last_finite = (state.global_step, self._last_value)
        self._bad = None
        if self.reason is not None:
            self._stop(control, state.global_step, self.reason)

    def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None, **kw: Any) -> None:
        logs = logs or {}
        loss = logs.get("loss")
        if not isinstance(loss, (int, float)) or not math.isfinite(loss) or self.reason is not None:
            return
        self._steps.append(float(state.global_step))
        self._losses.append(float(loss))
        if isinstance(logs.get("learning_rate"), (int, float)):
            self._lrs.append([float(state.global_step), float(logs["learning_rate"])])
        found = self._spike()
        if found is None or self._spike_seen:
            return
        self._spike_seen = True
        what = (
            f"loss diverged to {found.value:.4g} at step {found.step:g}, {found.ratio:.1f}x its starting loss"
            if found.divergence
            else f"loss spiked to {found.value:.4g} at step {found.step:g}, {found.ratio:.1f}x the median before it, and "
            "did not come back"
        )
        if self.spike_action == "stop":
            self._stop(control, state.global_step, f"{what} (guard.spike_action = stop)")
        else:
            log.warning("guard: %s (guard.spike_action = warn: training goes on)", what)

    def _spike(self) -> Any:
        head = self._losses[:5]
        steps, vals = self._steps, self._losses
        d = divergence(
            steps[:5] + steps[max(5, len(steps) - SPIKE_TAIL) :],
            head + vals[max(5, len(vals) - SPIKE_TAIL) :],
            self.limits,
        )
        if d is not None:
            return d
        tail_steps, tail = steps[-SPIKE_TAIL:], vals[-SPIKE_TAIL:]
        return spike(tail_steps, tail, warmup_end(self._lrs, steps, self.limits), self.limits)

    def on_epoch_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
        if self.reason is not None:
            self._stop(control, state.global_step, self.reason)

    def on_save(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
        if self.reason is not None:  # cannot happen: every save after the stop is cancelled; say so if it ever does
            log.error("guard: a checkpoint was saved at step %d after the guard stopped the run", state.global_step)
