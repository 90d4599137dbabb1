"""The run's own signal: a non-finite, spiking or flat loss, an exploding gradient, a learning rate at 0, a slowdown.

Read only through the run's format (`Workspace.run`: HF log_history, Lightning metrics.csv,
TensorBoard scalars, checkpoint save times where a log has no times); the statistics are
healthkit.core.signalstats' pure functions, the thresholds healthkit.toml's `[signal]` table.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from healthkit import CheckOutput, CodeDoc, Evidence, Finding, FixRef, Severity, check
from healthkit.contract.retry_checkpoints import owner_of
from healthkit.core.signalstats import (
    grad_explosion,
    loss_flat,
    loss_spike,
    lr_zero,
    non_finite,
    slowdown,
)
from healthkit.core.workspace import Workspace
from healthkit.formats.base import Checkpoint, RunRecord

from ._common import q

REWIND = FixRef(
    "rewind-to-checkpoint",
    "Stop the file, move the checkpoints after the named one aside, resume from it skipping the fault's batches",
    "unsafe",
)
NON_FINITE = CodeDoc(
    "training.loss-non-finite",
    "critical",
    "The training loss is NaN or infinite",
    what="A logged training loss is not a finite number; it names the first such step and the last finite value. "
    "A loss of exactly 0.0 beside a non-finite `grad_norm` counts too: transformers' `logging_nan_inf_filter` "
    "(on by default) leaves non-finite step losses out of the logged average, so a window of NaN logs 0.0.",
    why="Once the weights are NaN every further step is wasted, and every checkpoint saved after it holds NaN weights "
    "that a resume would load.",
    fix="Stop the run, resume from the newest complete checkpoint before the first non-finite step (the finding names "
    "it), and remove the cause: a lower learning rate, gradient clipping (`max_grad_norm`), bf16 instead of fp16, "
    "or the bad batch. In the healthkit trainer's workspaces `healthkit fix --unsafe` does the rewind "
    "(`rewind-to-checkpoint`, `--to checkpoint-N` to choose another).",
    fixes=(REWIND,),
)
SPIKE = CodeDoc(
    "training.loss-spike",
    "warning",
    "The training loss jumped and did not come back, or diverged",
    what="After warmup, a log far above the run's own recent spread (a robust standard deviation from the MAD of the "
    "log-loss over the window before it, and at least `[signal] spike_min_ratio` times its median) whose next "
    "logs stay up; or, anywhere (warmup included, even if it later falls back), a climb to "
    "`[signal] divergence_factor` times the starting loss. It names the step and the newest complete checkpoint "
    "before it, or says that none remains.",
    why="A spike that does not recover leaves the model worse than it was; training on from it wastes the steps after. "
    "Large runs (PaLM, OPT) restart about 100 steps before a spike and skip the batches that caused it.",
    fix="Resume from the named checkpoint, skipping the batches of the spike's window, or lower the learning rate; "
    "keep that checkpoint (prune and rotation must not delete it). In the healthkit trainer's workspaces "
    "`healthkit fix --unsafe` does the rewind (`rewind-to-checkpoint`, `--to checkpoint-N` to choose another).",
    fixes=(REWIND,),
)
FLAT = CodeDoc(
    "training.loss-flat",
    "warning",
    "The training loss is constant",
    what="The loss has one exact value (0.0, or any other) over `[signal] flat_min_logs` consecutive logs or more. "
    "Real losses vary in their fourth decimal from one log to the next.",
    why="A loss of exactly 0.0 usually means no token is trained on (every label masked to -100, as in axolotl #2357); "
    "another constant means the model is not being updated. Either way the steps learn nothing.",
    fix="Check the labels the collator builds (are any not -100?), `train_on_inputs`, the learning rate and which "
    "parameters require gradients.",
)
GRAD = CodeDoc(
    "training.grad-explosion",
    "warning",
    "The gradient norm exploded",
    what="The gradient norm is `[signal] grad_factor` times (default 100: two orders of magnitude) its running median "
    "for `[signal] grad_min_logs` consecutive logs, or once right before a non-finite one. A single blip is not "
    "an explosion.",
    why="An exploding gradient comes before a NaN or a loss spike; the weights it updates are damaged.",
    fix="Clip gradients (`max_grad_norm`, e.g. 1.0), lower the learning rate or lengthen warmup; resume from the newest "
    "checkpoint before it.",
)
LR_ZERO = CodeDoc(
    "training.lr-zero",
    "warning",
    "The learning rate is 0 while much of the run remains",
    what="The learning rate has been 0 for the newest `[signal] lr_zero_min_logs` logs or more, and when it reached 0 "
    "at least `[signal] lr_zero_min_share_left` of `max_steps` remained. The warmup's start and a schedule that "
    "ends at 0 at `max_steps` are not this.",
    why="Every step at a learning rate of 0 costs its GPU time and changes nothing: a schedule built for fewer steps "
    "than the run (one epoch's steps, an old max_steps) ends early.",
    fix="Stop the run and restart from its newest checkpoint with a schedule built for the run's real length "
    "(`max_steps`, `num_training_steps`).",
)
SLOWDOWN = CodeDoc(
    "training.slowdown",
    "warning",
    "Training slowed to under half its own speed",
    what="Steps per hour between timed points (a log's wall times, else checkpoint save times) fell below "
    "`[signal] slowdown_factor` of the run's own median for `[signal] slowdown_min_slow` consecutive intervals. "
    "Judged only with `[signal] slowdown_min_intervals` timed intervals or more; it names the steps.",
    why="Thermal throttling, a slow or full disk, swapping or a starved data loader make every hour buy fewer steps.",
    fix="Look at the GPU's clocks and temperature (`nvidia-smi -q -d PERFORMANCE,TEMPERATURE`), the disk "
    "(`iostat -x 5`), swap (`vmstat 5`) and the data loader's workers.",
)

CODES = [NON_FINITE, SPIKE, FLAT, GRAD, LR_ZERO, SLOWDOWN]


def _g(v: float) -> str:
    return f"{v:.4g}" if math.isfinite(v) else ("NaN" if math.isnan(v) else ("inf" if v > 0 else "-inf"))


def _around(steps: Sequence[float], step: float, before: int = 2, after: int = 3) -> tuple[float, float]:
    """The steps of a few logs before and after ``step`` (the evidence's window)."""
    i = next((k for k, s in enumerate(steps) if s >= step), len(steps) - 1)
    return steps[max(0, i - before)], steps[min(len(steps) - 1, i + after)]


def _signal_evidence(ws: Workspace, rec: RunRecord, lo: float, hi: float) -> Evidence:
    said = rec.said_signal(lo, hi, lambda p: q(ws, p))
    return Evidence(said.command, said.observed)


def rewind_point(ws: Workspace, before: float | None) -> Checkpoint | None:
    """The newest complete checkpoint at or before step ``before`` (None: rotation left none)."""
    if before is None:
        return None
    for c in reversed(ws.checkpoints):
        if c.step <= before and ws.completeness_of(c).complete:
            return c
    return None


def rewind_fixes(keep: Checkpoint | None) -> list[FixRef]:
    """The rewind fix where our trainer saved the checkpoint (its marker names the file): it knows how to resume
    there and skip batches; another stack's run is resumed with its own tool."""
    return [REWIND] if keep is not None and owner_of(keep.path) is not None else []


def _rewind_sentences(ws: Workspace, step: float, before: float | None) -> tuple[str, Checkpoint | None]:
    """(a recommendation naming the checkpoint to resume from, that checkpoint) for a fault at ``step``."""
    keep = rewind_point(ws, before)
    after = [c.name for c in ws.checkpoints if c.step >= step]
    if keep is None:
        return (
            f"No complete checkpoint from before step {step:g} remains (none was saved, or rotation deleted them): restart the file from "
            "the beginning or from the base model, with the cause removed",
            None,
        )
    later = f"; {', '.join(after)} came after it and hold(s) the damaged weights" if after else ""
    return (
        f"Resume from `{keep.name}` (step {keep.step}), the newest complete checkpoint before step {step:g}{later}",
        keep,
    )


def _non_finite(ws: Workspace, rec: RunRecord, steps: list[float]) -> Finding | None:
    nf = non_finite(rec.train, rec.grad_norm)
    if nf is None:
        return None
    what = (
        f"The loss logged at step {nf.step:g} is {_g(nf.value)} beside a grad_norm of {_g(nf.grad_norm or math.nan)}: "
        "transformers' `logging_nan_inf_filter` (on by default) drops non-finite step losses, so a window of only "
        "NaN losses logs 0.0"
        if nf.hidden
        else f"The loss logged at step {nf.step:g} is {_g(nf.value)}"
    )
    last = (
        f"The last finite loss was {_g(nf.last_finite)} at step {nf.last_finite_step:g}"
        if nf.last_finite is not None
        else "No finite loss was logged before it"
    )
    rewind, keep = _rewind_sentences(ws, nf.step, nf.last_finite_step)
    lo, hi = _around(steps, nf.step)
    return Finding(
        code=NON_FINITE.code,
        severity=Severity.CRITICAL,
        title=f"Training loss is not finite from step {nf.step:g}",
        problem=[what, last, f"{nf.count} log(s) from step {nf.step:g} on are non-finite"],
        impact=[
            "Every step after it trains NaN weights: GPU time spent for nothing",
            "Checkpoints saved after it hold NaN weights that a resume would load",
        ],
        evidence=[_signal_evidence(ws, rec, lo, hi)],
        root_cause=[
            "The run diverged: a learning rate too high for this model and data, no gradient clipping, fp16 "
            "overflow, or a bad batch"
        ],
        recommendations=[
            rewind,
            "Lower the learning rate or enable gradient clipping (`max_grad_norm`) before resuming; "
            "prefer bf16 to fp16",
        ],
        urgency="immediate",
        fixes=rewind_fixes(keep),
        data={
            "step": nf.step,
            "last_finite_step": nf.last_finite_step,
            "last_finite": nf.last_finite,
            "hidden_by_filter": nf.hidden,
            "rewind_to": keep.name if keep else None,
        },
    )


def _spike(ws: Workspace, rec: RunRecord, steps: list[float]) -> Finding | None:
    sp = loss_spike(rec.train, rec.grad_norm, rec.learning_rate, ws.settings.signal)
    if sp is None:
        return None
    rewind, keep = _rewind_sentences(ws, sp.step, sp.last_normal_step)
    lo, hi = _around(steps, sp.step, 2, 4)
    if sp.divergence:
        title = f"Training loss diverged from step {sp.step:g}: {sp.ratio:.1f}x its starting loss"
        problem = [
            f"The loss climbed from {_g(sp.start)} at the start to {_g(sp.value)} (step {sp.step:g} on), "
            f"{sp.ratio:.1f}x the starting loss; {ws.settings.signal.divergence_factor:g}x is a divergence",
            f"The newest loss is {_g(sp.after_median or math.nan)}",
        ]
    else:
        title = f"Training loss spiked at step {sp.step:g} and did not come back"
        problem = [
            f"The loss jumped to {_g(sp.value)} at step {sp.step:g}, {sp.ratio:.1f}x the median "
            f"({_g(sp.baseline)}) of a window of {ws.settings.signal.window_logs} logs before it, far beyond their spread",
            f"The median of the logs from it on stayed at {_g(sp.after_median or math.nan)}: it did not recover",
        ]
    return Finding(
        code=SPIKE.code,
        severity=Severity.WARNING,
        title=title,
        problem=problem,
        impact=["The model is worse than before the jump; the steps since are spent climbing back, if they do"],
        evidence=[_signal_evidence(ws, rec, lo, hi)],
        root_cause=[
            "A learning rate too high for this stage, a bad batch, or numerical overflow "
            "(large runs see tens of such spikes: PaLM restarted ~100 steps before each and skipped 200-500 batches)"
        ],
        recommendations=[rewind, "Skip the batches of the spike's window when resuming, or lower the learning rate"],
        urgency="short-term",
        fixes=rewind_fixes(keep),
        data={
            "step": sp.step,
            "ratio": sp.ratio,
            "divergence": sp.divergence,
            "rewind_to": keep.name if keep else None,
            "last_normal_step": sp.last_normal_step,
        },
    )


def _flat(ws: Workspace, rec: RunRecord) -> Finding | None:
    fl = loss_flat(rec.train, rec.grad_norm, ws.settings.signal)
    if fl is None:
        return None
    zero = fl.value == 0.0
    return Finding(
        code=FLAT.code,
        severity=Severity.WARNING,
        title=f"Training loss constant at {_g(fl.value)} from step {fl.step:g}",
        problem=[
            f"{fl.logs} consecutive logs, steps {fl.step:g} to {fl.last_step:g}, have a loss of exactly {_g(fl.value)}"
            + (" (up to the newest log)" if fl.to_end else "")
        ],
        impact=["Those steps learn nothing: their GPU time is spent for no change in the model"],
        evidence=[_signal_evidence(ws, rec, fl.step, _around([p[0] for p in rec.train], fl.step, 0, 4)[1])],
        root_cause=[
            "No token is trained on: every label is masked (-100), e.g. the prompt mask covers the whole "
            "sequence or sequences are truncated before the answer (axolotl #2357)"
            if zero
            else "The model is not being updated: a learning rate of 0, frozen parameters, or gradients that are all 0"
        ],
        recommendations=[
            "Check the labels the collator builds (count the positions that are not -100) and "
            "`train_on_inputs`/truncation"
            if zero
            else "Check the learning rate and which parameters require gradients"
        ],
        urgency="short-term",
        data={"step": fl.step, "last_step": fl.last_step, "value": fl.value, "logs": fl.logs},
    )


def _grad(ws: Workspace, rec: RunRecord) -> Finding | None:
    ex = grad_explosion(rec.grad_norm, ws.settings.signal)
    if ex is None:
        return None
    steps = [p[0] for p in rec.grad_norm]
    lo, hi = _around(steps, ex.step)
    rewind, keep = _rewind_sentences(ws, ex.step, next((s for s in reversed(steps) if s < ex.step), None))
    return Finding(
        code=GRAD.code,
        severity=Severity.WARNING,
        title=f"Gradient norm exploded at step {ex.step:g}: {ex.ratio:.0f}x its running median",
        problem=[
            f"grad_norm reached {_g(ex.value)} at step {ex.step:g} ({ex.ratio:.0f}x its running median of "
            f"{_g(ex.median)}), for {ex.logs} consecutive log(s), peaking at {_g(ex.peak)}"
        ],
        impact=["Updates this large damage the weights; a NaN or a loss spike usually follows"],
        evidence=[_signal_evidence(ws, rec, lo, hi)],
        root_cause=["No (or too loose) gradient clipping, a learning rate too high, or a bad batch"],
        recommendations=["Clip gradients (`max_grad_norm`, e.g. 1.0) and lower the learning rate", rewind],
        urgency="short-term",
        data={"step": ex.step, "ratio": ex.ratio, "rewind_to": keep.name if keep else None},
    )


def _lr_zero(ws: Workspace, rec: RunRecord) -> Finding | None:
    z = lr_zero(rec.learning_rate, rec.max_steps, ws.settings.signal)
    if z is None:
        return None
    steps = [p[0] for p in rec.learning_rate]
    lo, hi = _around(steps, z.step, 2, 2)
    of = f"of max_steps ({z.max_steps:g})" if z.max_steps else "of the logged steps"
    return Finding(
        code=LR_ZERO.code,
        severity=Severity.WARNING,
        title=f"Learning rate 0 since step {z.step:g} with {z.share_left:.0%} {of} left",
        problem=[
            f"The learning rate is 0 from step {z.step:g} to the newest log (step {z.last_step:g}, {z.logs} logs)",
            f"When it reached 0, {z.share_left:.0%} {of} remained",
        ],
        impact=["Every step at a learning rate of 0 costs GPU time and changes nothing"],
        evidence=[_signal_evidence(ws, rec, lo, hi)],
        root_cause=[
            "The schedule was built for fewer steps than the run makes (e.g. one epoch's steps, or an old "
            "`max_steps`), so it reached its end early"
        ],
        recommendations=[
            "Stop the run and restart from its newest checkpoint with a schedule for the run's real length "
            "(`max_steps` / `num_training_steps`)"
        ],
        urgency="short-term",
        data={"step": z.step, "share_left": z.share_left},
    )


def _slowdown(ws: Workspace, rec: RunRecord) -> tuple[Finding | None, int]:
    sl, judged = slowdown(rec.times, ws.settings.signal)
    if sl is None:
        return None, judged
    lo, hi = _around([t[0] for t in rec.times], sl.step, 3, 4)
    wide = rec.said_times(lo, hi, lambda p: q(ws, p))
    where = "and is still slow" if sl.ongoing else f"until step {sl.until_step:g}"
    return Finding(
        code=SLOWDOWN.code,
        severity=Severity.WARNING,
        title=f"Training slowed to {sl.rate / sl.median_rate:.0%} of its speed from step {sl.step:g}",
        problem=[
            f"From step {sl.step:g} {where}, the run made {sl.rate:.0f} steps/hour against its median of "
            f"{sl.median_rate:.0f} over {sl.intervals} timed intervals ({sl.slow} slow in a row)",
            f"Times: {rec.times_from}",
        ],
        impact=["Each hour buys fewer steps: the run ends later and costs more"],
        evidence=[Evidence(wide.command, wide.observed)],
        root_cause=["Thermal throttling, a slow or full disk, swapping, or a starved data loader"],
        recommendations=[
            "Look at the GPU's clocks and temperature (`nvidia-smi -q -d PERFORMANCE,TEMPERATURE`), the disk "
            "(`iostat -x 5`), swap (`vmstat 5`) and the data loader's workers"
        ],
        urgency="short-term",
        data={
            "step": sl.step,
            "until_step": sl.until_step,
            "rate": sl.rate,
            "median_rate": sl.median_rate,
            "ongoing": sl.ongoing,
        },
    ), judged


@check("signal", title="Training signal", codes=CODES, tags=["training"])
def signal_check(ws: Workspace) -> CheckOutput:
    rec = ws.run
    if rec is None or not (rec.train or rec.grad_norm or rec.learning_rate or rec.times):
        return CheckOutput()
    steps = [p[0] for p in rec.train]
    findings = [
        f
        for f in (
            _non_finite(ws, rec, steps) if rec.train else None,
            _spike(ws, rec, steps) if rec.train else None,
            _flat(ws, rec) if rec.train else None,
            _grad(ws, rec),
            _lr_zero(ws, rec),
        )
        if f is not None
    ]
    slow, judged = _slowdown(ws, rec)
    if slow is not None:
        findings.append(slow)
    facts = {
        "signal": {
            "loss_logs": len(rec.train),
            "grad_norm_logs": len(rec.grad_norm),
            "learning_rate_logs": len(rec.learning_rate),
            "timed_intervals": judged,
            "times_from": rec.times_from or None,
        }
    }
    return CheckOutput(findings=findings, facts=facts)
