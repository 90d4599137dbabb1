"""Does validation really run (a number in val_loss, eval_loss in log_history), and is the gap growing?"""

from __future__ import annotations

import json
import math
from typing import Any

from healthkit import CheckOutput, CodeDoc, Evidence, Finding, FixRef, Healthy, Severity, check
from healthkit.core.workspace import MISSING, Workspace
from healthkit.system.records import record

from ._common import jq_pick, number, q

ENABLE = FixRef("enable-evaluation", "Turn evaluation on in config.json", "unsafe")

NOT_RUNNING = CodeDoc(
    "validation.not-running",
    "warning",
    "No validation loss although evaluation should have run",
    what="The status file's validation loss is null, or the run's loss history (HF's log_history, Lightning's metrics.csv, "
    "TensorBoard events) has no validation loss after the step at "
    "which evaluation was due.",
    why="Without validation loss nobody can see overfitting or judge generalization; a key training signal is silently missing.",
    fix="Turn evaluation on (eval_strategy, eval_steps) with validation data that exists; the likely cause is named in the finding.",
    fix_safety="Unsafe: changing evaluation changes the training run (time per step, best-model selection).",
    fixes=(ENABLE,),
)
NO_KEY = CodeDoc(
    "validation.status-key-missing",
    "warning",
    "The status file has no validation-loss key at all",
    what="The status file does not contain the key the audit reads validation loss from (a missing key, not a null value): "
    "the writer may use another name (e.g. `validation_loss`).",
    why="A report that asks for `val_loss` gets null and concludes validation is broken when it may be fine, or the reverse.",
    fix='Map the key in healthkit.toml ([status_keys] val_loss = "validation_loss"), or make the writer use `val_loss`.',
)
OVERFITTING = CodeDoc(
    "validation.overfitting",
    "warning",
    "Validation loss clearly above its best while training loss falls",
    what="The latest eval_loss is at least `overfit_min_rise` (default 2%) above the best seen, over at least "
    "`overfit_min_evals` evaluations (the best and those after it), while training loss kept falling. Smaller "
    "wobbles are noise.",
    why="The model is memorizing the training data; further steps make it worse on anything else.",
    fix="Stop at (or load) the best checkpoint, lower the learning rate or epochs, add data or regularization.",
)
NON_FINITE = CodeDoc(
    "validation.non-finite",
    "warning",
    "Validation loss is NaN or infinite",
    what="Evaluation runs, but the validation loss it reports is not a finite number.",
    why="A NaN loss hides everything the validation signal is for; it usually means the run diverged (NaN weights) or "
    "evaluation saw no usable tokens (empty or fully-padded validation batches).",
    fix="Check the training loss for divergence (lower the learning rate, enable gradient clipping) and the validation data.",
)


def log_series(ws: Workspace) -> tuple[list[list[float]], list[list[float]], int | None]:
    """(train [[step, loss]], eval [[step, eval_loss]], global_step) from the run's record (its format's loss history)."""
    rec = ws.run
    if rec is None:
        return [], [], None
    return rec.train, rec.evals, rec.global_step


def _strategy(ws: Workspace) -> Any:
    """eval_strategy (or its pre-4.41 name evaluation_strategy); MISSING when the config says neither."""
    strategy = ws.config_value("eval_strategy", MISSING)
    if strategy is MISSING:
        strategy = ws.config_value("evaluation_strategy", MISSING)
    return strategy


def _val_key_candidates(ws: Workspace, data: dict[str, Any]) -> list[str]:
    """Status keys that look like a validation loss under another name (`validation_loss`, `eval_loss`), best first."""
    taken = {ws.status_key(k) for k in ("val_train_gap", "loss")}
    found = [k for k in data if k not in taken and ("val" in k.lower() or "eval" in k.lower())]

    def rank(k: str) -> tuple[int, str]:
        low = k.lower()
        lossy = "loss" in low and not any(w in low for w in ("gap", "train", "step", "time"))
        return (0 if lossy else 1, k)

    return sorted(found, key=rank)


def _strategy_cause(ws: Workspace) -> tuple[str | None, str | None]:
    """(a cause, or a note that the trainer's default applies) from eval_strategy, as config.json shows it."""
    strategy = _strategy(ws)
    if strategy == "no":
        return 'Evaluation is disabled (`eval_strategy: "no"`)', None
    if strategy is not MISSING and strategy is not None:
        return None, None
    if ws.settings.paths.config_schema == "healthkit":
        from healthkit.contract.configschema import default

        return (
            None,
            f"config.json sets no `eval_strategy`, so the trainer's default (`{default('eval_strategy')}`) applies",
        )
    return (
        '`eval_strategy` is not set: unless the training script sets it, Hugging Face\'s default (`"no"`) '
        "turns evaluation off"
    ), None


def _data_cause(ws: Workspace) -> tuple[str | None, str | None, bool]:
    """(a cause, a note that the trainer's default applies, whether validation data exists) from the validation keys."""
    vfile = ws.config_value("validation_file", None)
    if isinstance(vfile, str) and vfile:
        p = ws.path(vfile)
        if not p.exists():
            return f"The validation file `{vfile}` does not exist", None, False
        if p.is_file() and p.stat().st_size == 0:
            return f"The validation file `{vfile}` is empty", None, False
        return None, None, True
    if number(ws.config_value("validation_split", None)):
        return None, None, True
    if ws.config_value("validation_split", MISSING) is MISSING and ws.settings.paths.config_schema == "healthkit":
        from healthkit.contract.configschema import default  # our trainer holds out a share of each file by default

        share = number(default("validation_split"))
        if share:
            return (
                None,
                f"config.json sets no `validation_split`, so the trainer holds out {share:.0%} of each file",
                True,
            )
    return "No validation data is configured (no `validation_file`, no `validation_split`)", None, False


def _likely_cause(ws: Workspace, eval_steps: Any, steps_done: float | None) -> tuple[list[str], bool]:
    """Name why evaluation is not happening; second value: whether validation data exists (fix applies).

    Every sentence must hold for the config.json the finding shows: "configured" only for what it
    sets, the trainer's defaults named as defaults.
    """
    strategy_cause, strategy_note = _strategy_cause(ws)
    data_cause, data_note, has_data = _data_cause(ws)
    if strategy_cause and data_cause and _strategy(ws) != "no":
        strategy_cause = None  # an unset eval_strategy may be set by the script; the data problem is certain
    causes = [c for c in (strategy_cause, data_cause) if c]
    es = number(eval_steps)
    if _strategy(ws) != "no" and es and steps_done is not None and es > steps_done:
        causes.append(f"`eval_steps` ({es:g}) is beyond the {steps_done:g} steps done")
    if not causes:
        notes = [n for n in (strategy_note, data_note) if n]
        basis = "; ".join(notes) + ": evaluation should run" if notes else "Evaluation is configured and data exists"
        causes.append(
            f"{basis}, yet no eval loss is recorded: the evaluation loop fails "
            "or its result is not written to the status file (check the training log)"
        )
    return causes, has_data


def _best_checkpoint(ws: Workspace, best_step: float) -> str | None:
    """The checkpoint to keep: HF's own `best_model_checkpoint` if it recorded one, else the one saved at the best step."""
    named = ws.run.best if ws.run is not None else ()
    if named:
        return named[0]
    return next((c.name for c in ws.checkpoints if c.step == best_step), None)


def _evals_evidence(ws: Workspace, window: list[list[float]]) -> Evidence:
    """The evaluations from the best on, as the run's format shows them (jq on trainer_state.json, a CSV, ...)."""
    said = ws.run.said_evals(window, lambda p: q(ws, p)) if ws.run is not None else None
    if said is None:
        return Evidence("# no loss history", "")
    return Evidence(said.command, said.observed)


def _overfitting(ws: Workspace, train: list[list[float]], evals: list[list[float]]) -> Finding | None:
    """validation.overfitting: the latest eval loss clearly above the best seen, while training loss fell.

    Noise is not a rise: eval loss wobbling by a fraction of a percent is normal. It takes a rise of
    `overfit_min_rise` (relative) over the best, sustained across at least `overfit_min_evals`
    evaluations (the best and those after it), with training loss lower than it was at the best.
    """
    th = ws.settings.thresholds
    if len(evals) < th.overfit_min_evals:
        return None
    best_i = min(range(len(evals)), key=lambda i: (evals[i][1], -i))  # the latest of equal bests
    (best_step, best), (last_step, latest) = evals[best_i], evals[-1]
    window = evals[best_i:]
    if len(window) < th.overfit_min_evals or best <= 0 or (latest - best) / best < th.overfit_min_rise:
        return None

    def train_at(step: float) -> float | None:
        before = [loss for s, loss in train if s <= step]
        return before[-1] if before else None

    t_best, t_last = train_at(best_step), train_at(last_step)
    if t_best is None or t_last is None or t_last >= t_best:
        return None
    keep = _best_checkpoint(ws, best_step)
    rise = (latest - best) / best
    return Finding(
        code=OVERFITTING.code,
        severity=Severity.WARNING,
        title="Overfitting: validation loss rising above its best",
        problem=[
            f"eval_loss went {best:.4g} (best, step {best_step:g}) → "
            + " → ".join(f"{e:.4g}" for _, e in window[1:])
            + f": {rise:+.1%} over the best, beyond the {th.overfit_min_rise:.0%} that counts as noise",
            f"Training loss kept falling ({t_best:.4g} → {t_last:.4g})",
        ],
        impact=["Each further step makes the model worse on unseen data"],
        evidence=[_evals_evidence(ws, window)],
        root_cause=[
            f"The model is fitting the training data past the point where it generalizes best (step {best_step:g})"
        ],
        recommendations=[
            f"Keep `{keep}` (the best validation loss); stop or roll back to it"
            if keep
            else f"No checkpoint from the best step ({best_step:g}) survives: save on the evaluation steps "
            "(save_steps = eval_steps) and set load_best_model_at_end",
            "Lower epochs or learning rate, or add data",
        ],
        urgency="short-term",
        data={"evals": window, "best_step": best_step, "best_eval_loss": best, "rise": rise, "best_checkpoint": keep},
    )


@record
class _Seen:
    """What the validation rules share: the Trainer's log series and when evaluation was due."""

    train: list[list[float]]
    evals: list[list[float]]
    global_step: int | None
    steps_done: float | None
    eval_steps: Any
    es: float | None
    strategy: Any
    due: bool


def _seen(ws: Workspace) -> _Seen:
    train, evals, global_step = log_series(ws)
    step = number(ws.status_value("step"))
    steps_done = step if step is not None else (float(global_step) if global_step is not None else None)
    eval_steps = ws.config_value("eval_steps", None)
    if eval_steps is None and ws.run is not None:
        eval_steps = ws.run.eval_steps  # HF records the interval it used in every trainer_state.json
    strategy = _strategy(ws)
    if strategy is MISSING:
        strategy = "steps"
    if eval_steps is None and ws.settings.paths.config_schema == "healthkit":
        from healthkit.contract.configschema import default

        eval_steps = default("eval_steps")
    es = number(eval_steps)
    # Unset, HF's eval_steps is logging_steps (500 unless set): the first evaluation is not due before that.
    first_due = es if es is not None else (number(ws.config_value("logging_steps", None)) or 500.0)
    due = steps_done is not None and (strategy == "no" or steps_done > first_due)
    return _Seen(train, evals, global_step, steps_done, eval_steps, es, strategy, due)


def _status_val_is_fresher(ws: Workspace) -> bool:
    """The status file holds a finite validation loss and is at least as fresh as the newest trainer_state.json.

    A home-grown daemon computes validation itself and writes it only to its status file
    (its trainer_state.json has no eval_loss): that fresh number is proof validation runs.
    """
    val = number(ws.status_value("val_loss"))
    if val is None or not math.isfinite(val):
        return False
    rec = ws.run
    return rec is None or rec.mtime is None or (ws.status.mtime or 0.0) >= rec.mtime


def _missing_key(ws: Workspace, seen: _Seen) -> Finding | None:
    """validation.status-key-missing: no validation-loss key at all, and no eval_loss in log_history either."""
    st = ws.status
    key = ws.status_key("val_loss")
    if seen.evals:
        return None
    similar = _val_key_candidates(ws, st.data)
    return Finding(
        code=NO_KEY.code,
        severity=Severity.WARNING,
        title=f"Status file has no `{key}` key",
        problem=[f"`{ws.rel(st.path)}` has no `{key}` key at all (a missing key, not a null value)"]
        + ([f"It has similarly named keys: {', '.join(f'`{k}`' for k in similar)}"] if similar else []),
        impact=["Validation health cannot be read from the status file"],
        evidence=[Evidence(f"jq -c 'keys' {q(ws, st.path)}", json.dumps(sorted(st.data), separators=(",", ":")))],
        recommendations=[
            f'If the writer uses another name, map it: healthkit.toml [status_keys] val_loss = "{similar[0]}"'
            if similar
            else "Make the training status writer record the validation loss"
        ],
        urgency="short-term",
        data={"key": key, "similar": similar},
    )


def _history_evaluated_lately(seen: _Seen) -> bool:
    """The run's own history holds a validation loss within the last two intervals (the rule the history is judged by):
    a status file that reads null since a restart (a writer that starts its status afresh) is no proof of anything."""
    if not seen.evals or not seen.es or seen.steps_done is None:
        return False
    return seen.steps_done < seen.evals[-1][0] + 2 * seen.es and math.isfinite(seen.evals[-1][1])


def _null_in_status(ws: Workspace, seen: _Seen) -> Finding:
    """validation.not-running: the status file shows a null validation loss after evaluation was due."""
    st = ws.status
    key, gap_key = ws.status_key("val_loss"), ws.status_key("val_train_gap")
    causes, has_data = _likely_cause(ws, seen.eval_steps, seen.steps_done)
    return Finding(
        code=NOT_RUNNING.code,
        severity=Severity.WARNING,
        title="Validation not running",
        problem=[f"`{ws.rel(st.path)}` shows `{key}: null`"]
        + ([f"`{gap_key}: null`"] if gap_key in st.data and st.data.get(gap_key) is None else [])
        + [f"At step {seen.steps_done:g}, evaluation was due" + (f" every {seen.es:g} steps" if seen.es else "")],
        impact=["Can't detect overfitting", "Can't monitor generalization", "Missing key training signal"],
        evidence=[
            Evidence(f"jq '{{{key}, {gap_key}}}' {q(ws, st.path)}", jq_pick(st.data, [key, gap_key])),
            Evidence(
                f"jq '{{eval_strategy, eval_steps, validation_file, validation_split}}' {q(ws, ws.config_path)}",
                jq_pick(
                    ws.config.data if ws.config.is_object else {},
                    ["eval_strategy", "eval_steps", "validation_file", "validation_split"],
                ),
            ),
        ],
        root_cause=causes,
        recommendations=[
            "Check why val_loss is null (causes above)",
            "Ensure validation runs every N steps",
            "Verify the validation set exists and is accessible",
        ],
        fixes=[ENABLE] if has_data and seen.strategy == "no" else [],
        urgency="short-term",
        data={
            "causes": causes,
            "eval_steps": seen.eval_steps,
            "steps_done": seen.steps_done,
            "has_validation_data": has_data,
        },
    )


def _non_finite(ws: Workspace, val: Any) -> Finding:
    """validation.non-finite: evaluation runs but reports NaN or an infinite loss."""
    st = ws.status
    key, loss_key = ws.status_key("val_loss"), ws.status_key("loss")
    train_loss = number(ws.status_value("loss"))
    diverged = train_loss is not None and not math.isfinite(train_loss)
    return Finding(
        code=NON_FINITE.code,
        severity=Severity.WARNING,
        title="Validation loss is not a number",
        problem=[f"`{ws.rel(st.path)}` shows `{key}: {val}`"]
        + ([f"The training loss is {train_loss} too: the run has diverged"] if diverged else []),
        impact=["Overfitting and generalization cannot be judged", "A diverged run wastes every further step"],
        evidence=[Evidence(f"jq '{{{key}, {loss_key}}}' {q(ws, st.path)}", jq_pick(st.data, [key, loss_key]))],
        root_cause=[
            "The run diverged (NaN weights)"
            if diverged
            else "Evaluation saw no usable tokens (empty or fully padded validation batches), or the loss overflowed"
        ],
        recommendations=[
            "Lower the learning rate or enable gradient clipping, and resume from a checkpoint before the divergence"
            if diverged
            else "Check the validation data and the evaluation batch size"
        ],
        urgency="immediate" if diverged else "short-term",
        data={"val_loss": str(val), "diverged": diverged},
    )


def _from_status(ws: Workspace, seen: _Seen) -> tuple[list[Finding], list[Healthy]]:
    """The status file's verdict: a missing key, a null after evaluation was due, a NaN, or a running validation."""
    if not ws.status.is_object:
        return [], []
    val = ws.status_value("val_loss")
    key = ws.status_key("val_loss")
    if val is MISSING:
        found = _missing_key(ws, seen)
        return ([found] if found else []), []
    if val is None:
        return ([_null_in_status(ws, seen)] if seen.due and not _history_evaluated_lately(seen) else []), []
    v = number(val)
    if v is None:
        return [], []
    if not math.isfinite(v):
        return [_non_finite(ws, val)], []
    gap = number(ws.status_value("val_train_gap"))
    return [], [
        Healthy("Validation is running", [f"{key}: {v:.4g}" + (f", gap {gap:+.4g}" if gap is not None else "")])
    ]


def _missing_in_log_history(ws: Workspace, seen: _Seen) -> Finding | None:
    """validation.not-running from log_history: eval_loss due (every eval_steps) but not logged, or no longer.

    With eval_steps N the Trainer logs eval_loss at every multiple of N; a gap of two
    intervals after the last one means at least one due evaluation is missing. A fresher
    numeric validation loss in the status file overrules this (the writer validates itself).
    """
    gs, es, evals = seen.global_step, seen.es, seen.evals
    last_eval = evals[-1][0] if evals else None
    if (
        gs is None
        or not es
        or seen.strategy != "steps"
        or not seen.train
        or not (gs >= es if last_eval is None else gs >= last_eval + 2 * es)
        or _status_val_is_fresher(ws)
    ):
        return None
    causes, has_data = _likely_cause(ws, seen.eval_steps, float(gs))
    rec = ws.run
    label = rec.label if rec is not None else "the loss history"
    said = rec.said_no_evals(last_eval, lambda p: q(ws, p)) if rec is not None else None
    ev = Evidence(said.command, said.observed) if said else Evidence("# no loss history", "")
    word = rec.evals_word if rec is not None else "a validation loss"
    if last_eval is None:
        problem = [f"{label} has no {word} at global step {gs}"]
    else:
        problem = [f"{label} has no {word.split(' in ')[0]} after step {last_eval:g} (global step {gs})"]
    return Finding(
        code=NOT_RUNNING.code,
        severity=Severity.WARNING,
        title="Validation not running",
        problem=problem + [f"Evaluation was due every {es:g} steps"],
        impact=["Can't detect overfitting", "Can't monitor generalization", "Missing key training signal"],
        evidence=[ev],
        root_cause=causes,
        recommendations=["Ensure evaluation runs every eval_steps with real validation data"],
        fixes=[],
        urgency="short-term",
        data={
            "causes": causes,
            "eval_steps": seen.eval_steps,
            "steps_done": gs,
            "has_validation_data": has_data,
            "last_eval_step": last_eval,
        },
    )


def _never_in_history(ws: Workspace, seen: _Seen) -> Finding | None:
    """validation.not-running for a run whose format records no evaluation interval (Lightning, Accelerate):
    training losses logged over at least two logging points and not one validation loss."""
    rec = ws.run
    if (
        rec is None
        or rec.records_eval_interval
        or seen.evals
        or seen.es
        or len(seen.train) < 2
        or rec.missing_extra
        or _status_val_is_fresher(ws)
    ):
        return None
    said = rec.said_no_evals(None, lambda p: q(ws, p))
    last = seen.train[-1][0]
    return Finding(
        code=NOT_RUNNING.code,
        severity=Severity.WARNING,
        title="Validation not running",
        problem=[
            f"{rec.label} holds {len(seen.train)} training-loss entries up to step {last:g} and no validation loss"
        ],
        impact=["Can't detect overfitting", "Can't monitor generalization", "Missing key training signal"],
        evidence=[Evidence(said.command, said.observed)],
        root_cause=[
            "Validation is off (no validation data, or turned off: e.g. Lightning's `limit_val_batches=0`), or the "
            "validation loss is logged under a name without `val`/`eval` and `loss`"
        ],
        recommendations=["Run validation every N steps on held-out data and log it as `val_loss`"],
        fixes=[],
        urgency="short-term",
        data={
            "causes": ["no validation loss logged"],
            "eval_steps": None,
            "steps_done": last,
            "has_validation_data": None,
            "last_eval_step": None,
        },
    )


def _non_finite_in_history(ws: Workspace, seen: _Seen) -> Finding | None:
    """validation.non-finite from the loss history: the latest validation loss is NaN or infinite."""
    if not seen.evals or math.isfinite(seen.evals[-1][1]):
        return None
    first = next(
        i
        for i, (_, v) in enumerate(seen.evals)
        if not math.isfinite(v) and all(not math.isfinite(w) for _, w in seen.evals[i:])
    )
    window = seen.evals[max(0, first - 1) :]
    said = ws.run.said_evals(window, lambda p: q(ws, p))  # type: ignore[union-attr]
    train = [v for _, v in seen.train]
    diverged = bool(train) and not math.isfinite(train[-1])
    return Finding(
        code=NON_FINITE.code,
        severity=Severity.WARNING,
        title="Validation loss is not a number",
        problem=[
            f"{ws.run.label} shows the validation loss {seen.evals[-1][1]} from step {seen.evals[first][0]:g} on"  # type: ignore[union-attr]
            + (f" (it was {seen.evals[first - 1][1]:.4g} at step {seen.evals[first - 1][0]:g})" if first else "")
        ]
        + ([f"The training loss is {train[-1]} too: the run has diverged"] if diverged else []),
        impact=["Overfitting and generalization cannot be judged", "A diverged run wastes every further step"],
        evidence=[Evidence(said.command, said.observed)],
        root_cause=[
            "The run diverged (NaN weights)"
            if diverged
            else "Evaluation saw no usable tokens, the loss overflowed, or the weights turned NaN"
        ],
        recommendations=[
            "Lower the learning rate or enable gradient clipping, and resume from a checkpoint before "
            f"step {seen.evals[first][0]:g}"
        ],
        urgency="immediate" if diverged else "short-term",
        data={"val_loss": str(seen.evals[-1][1]), "diverged": diverged, "since_step": seen.evals[first][0]},
    )


CHART_POINTS = 2000  # the loss curves in the report's facts: a chart is a few hundred pixels wide


def chart_points(points: list, limit: int = CHART_POINTS) -> list:
    """``points`` ([step, value], in step order) thinned to about ``limit`` for the report's chart: the lowest and
    the highest finite value of each of limit/2 runs of points (a spike survives), the first non-finite one of a run,
    and the first and last point. A 100k-step run logs ten thousand points; the report, its pickle between the
    audit's processes and its JSON stay the same size however long the run is."""
    if len(points) <= limit:
        return points
    size = -(-len(points) // (limit // 2))
    vals = [p[1] for p in points]
    keep = {0, len(points) - 1}
    all_finite = math.isfinite(sum(vals)) or all(map(math.isfinite, vals))  # the sum is not, if one is not
    for lo in range(0, len(points), size):
        seg = vals[lo : lo + size]
        if all_finite:  # min, max and index in C: a long history's thinning costs about a millisecond
            keep.add(lo + seg.index(min(seg)))
            keep.add(lo + seg.index(max(seg)))
            continue
        finite = [i for i, v in enumerate(seg) if math.isfinite(v)]
        if finite:
            keep.add(lo + min(finite, key=seg.__getitem__))
            keep.add(lo + max(finite, key=seg.__getitem__))
        if len(finite) < len(seg):
            keep.add(lo + next(i for i, v in enumerate(seg) if not math.isfinite(v)))
    return [points[i] for i in sorted(keep)]


@check("validation", title="Validation loss", codes=[NOT_RUNNING, NO_KEY, OVERFITTING, NON_FINITE], tags=["training"])
def validation_check(ws: Workspace) -> CheckOutput:
    seen = _seen(ws)
    facts: dict[str, Any] = (
        {
            "log_history": {
                "train": chart_points(seen.train),
                "eval": chart_points(seen.evals),
                "train_points": len(seen.train),
                "eval_points": len(seen.evals),
            }
        }
        if seen.train or seen.evals
        else {}
    )
    findings, healthy = _from_status(ws, seen)
    if not any(f.code == NOT_RUNNING.code for f in findings):
        found = _missing_in_log_history(ws, seen) or _never_in_history(ws, seen)
        findings += [found] if found else []
    if not any(f.code == NON_FINITE.code for f in findings):
        found = _non_finite_in_history(ws, seen)
        findings += [found] if found else []
    rec = ws.run
    notes = list(rec.notes) if rec is not None else []
    if seen.evals and not healthy and not findings:
        e = seen.evals[-1]
        healthy.append(
            Healthy(
                "Validation is running",
                [f"{len(seen.evals)} evaluation(s) in log_history, latest eval_loss {e[1]:.4g} at step {e[0]:g}"],
            )
        )
    over = _overfitting(ws, seen.train, seen.evals) if all(math.isfinite(v) for _, v in seen.evals) else None
    findings += [over] if over else []
    if not ws.status.exists and not seen.evals and not seen.train:
        if rec is not None and rec.missing_extra:
            why = f"the loss history is in files only `{rec.missing_extra}` reads"
            return CheckOutput(
                notes=notes + [f"validation is not judged: {why}"],
                facts={**facts, "not_judged": {"Validation loss": why}},
            )
        looked = f" ({rec.label})" if rec is not None and rec.label else ""
        why = f"no status file and no loss history{looked}: nothing to judge validation by"
        return CheckOutput(notes=notes + [why], facts={**facts, "not_judged": {"Validation loss": why}})
    return CheckOutput(findings=findings, healthy=healthy, facts=facts, notes=notes)
