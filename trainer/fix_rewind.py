"""`rewind-to-checkpoint` (unsafe): PaLM's recipe for a loss spike, for our trainer's workspaces.

Carried by `training.loss-spike` and `training.loss-non-finite`. It stops the daemon when it is
training the file, moves the file's checkpoints after the chosen one aside (the newest complete
one before the fault, or `healthkit fix --unsafe --to checkpoint-N`), records the window of
steps whose batches the file skips (from the last sound log to the fault: the batch that did it
is in there), queues the file again when the guard had failed it, and starts the daemon again,
which resumes the file from that checkpoint. Unsafe: the steps after the checkpoint are trained
again (their checkpoints are kept, moved aside), and the skipped examples are not trained on in
that epoch. Registered as a `healthkit.fixes` entry point; the daemon is imported only to apply.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from healthkit.core.findings import Finding, FixRef
from healthkit.fix.plan import ApplyContext, Outcome, Plan, PlanContext, Safety, applied, failed, fixer

if TYPE_CHECKING:
    from . import rewind as rewind_mod
    from .data_order import Window
    from .layout import Layout

FIX_ID = "rewind-to-checkpoint"
CODES = ("training.loss-spike", "training.loss-non-finite")
CHECKPOINT = re.compile(r"checkpoint-[0-9]+")
STOP_WAIT_S = 300.0  # the child saves a checkpoint before it exits; a large model's save takes minutes


def _last_sound_step(finding: Finding) -> float | None:
    d = finding.data
    got = d.get("last_normal_step") if finding.code == "training.loss-spike" else d.get("last_finite_step")
    return float(got) if isinstance(got, (int, float)) and math.isfinite(got) else None


def skip_window(finding: Finding) -> Window | None:
    """The steps after the last sound log up to the fault's step: one of their batches did it."""
    from .data_order import Window

    step = finding.data.get("step")
    if not isinstance(step, (int, float)) or not math.isfinite(step) or step < 1:
        return None
    last = int(step)
    sound = _last_sound_step(finding)
    first = int(sound) + 1 if sound is not None and sound < last else last
    return Window(first, last)


def _window_for(finding: Finding, target: Path) -> Window | None:
    """The fault's window, where the file trained in the trainer's own order (its checkpoint's marker says so); none
    for a file that trained in HF's order, whose batches cannot be named."""
    from .data_order import SEEDED, order_of

    return skip_window(finding) if order_of(target) == SEEDED else None


def _file_of(lay: Layout, target: str, hint: Any) -> tuple[str, Path] | None:
    """(the queue file whose checkpoints hold ``target``, that checkpoint): the file training now first, else any
    file in processing/ or failed/ that owns one."""
    from . import queue as q
    from . import rewind

    names = [n for n in (hint,) if isinstance(n, str)]
    names += [p.name for p in q.in_processing(lay)] + q.listing(lay).get("failed", [])
    for name in names:
        found = rewind.find_checkpoint(lay, name, target)
        if found is not None:
            return name, found
    return None


def _where(lay: Layout, name: str) -> str | None:
    if (lay.processing / name).is_file():
        return "processing"
    return "failed" if (lay.failed / name).is_file() else None


def _examples_line(ws: Any, window: Window) -> str:
    from healthkit.contract.config_model import TrainingConfig

    fields = TrainingConfig.model_fields
    batch = ws.config_value("per_device_train_batch_size", fields["per_device_train_batch_size"].default)
    accum = ws.config_value("gradient_accumulation_steps", fields["gradient_accumulation_steps"].default)
    ok = all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in (batch, accum))
    per = f": {window.steps * accum} micro-batch(es) of {batch} example(s) per device" if ok else ""
    return f"skip the batches of step(s) {window.first}-{window.last} ({window.steps} step(s){per}) when it gets there"


def _reached(ws: Any, name: str, later: list[Path], fault: Any) -> int | None:
    from . import rewind

    steps = [rewind.step_of(p) for p in later]
    status_step = ws.status_value("step")
    if ws.status_value("current_file") == name and isinstance(status_step, int) and not isinstance(status_step, bool):
        steps.append(status_step)
    if isinstance(fault, (int, float)) and math.isfinite(fault):
        steps.append(int(fault))
    return max(steps) if steps else None


@fixer(FIX_ID, order=48, codes=CODES, safety=Safety.UNSAFE)
def plan_rewind(ctx: PlanContext, finding: Finding, ref: FixRef) -> list[Plan]:
    from healthkit.contract.retry_checkpoints import is_complete

    from . import rewind
    from .layout import Layout

    ws = ctx.ws
    lay = Layout.of(ws.base)
    target_name = ctx.to or finding.data.get("rewind_to")
    plan = Plan(
        FIX_ID,
        Safety.UNSAFE,
        f"Rewind to {target_name or 'an earlier checkpoint'} and skip the fault's batches",
        "",
        [finding.code],
        key=f"rewind:{ws.base}",
        order=48,
    )
    fault = finding.data.get("step")
    if not target_name:
        plan.blocked = (
            f"no complete checkpoint from before step {fault:g} remains: nothing to rewind to"
            if isinstance(fault, (int, float))
            else "the finding names no checkpoint to rewind to"
        )
        return [plan]
    if not isinstance(target_name, str) or not CHECKPOINT.fullmatch(target_name):
        plan.blocked = f"--to takes a checkpoint's folder name, checkpoint-N, not {target_name!r}"
        return [plan]
    if ws.checkpoint_dir.resolve() != lay.checkpoints.resolve():
        plan.blocked = "applies to the healthkit trainer's workspaces: resume this run with its own tool"
        return [plan]
    owned = _file_of(lay, target_name, ws.status_value("current_file"))
    if owned is None:
        plan.blocked = f"{target_name} is not a checkpoint of a file in processing/ or failed/ of {ws.rel(lay.queue)}/"
        return [plan]
    name, target = owned
    where = _where(lay, name)
    if where is None:
        plan.blocked = f"{name} is neither in processing/ nor in failed/: nothing trains it again"
        return [plan]
    if isinstance(fault, (int, float)) and rewind.step_of(target) >= fault:
        plan.blocked = f"{target_name} is not before the fault at step {fault:g}: it may hold the damaged weights"
        return [plan]
    if not is_complete(target):
        plan.blocked = f"{ws.rel(target)} is incomplete: a resume cannot load it"
        return [plan]
    why_not = _daemon_problem(lay)
    if why_not:
        plan.blocked = why_not
        return [plan]
    rw = rewind.plan(lay, name, target, _window_for(finding, target))
    running, _ = _daemon(lay, name)
    reached = _reached(ws, name, rw.later, fault)
    plan.title = f"Rewind {name} to {target_name} (step {rw.to_step}) and skip the batches of the fault"
    plan.preview = "\n".join(_preview(ws, lay, rw, where, running, reached))
    reason = f"{finding.code} at step {fault:g}" if isinstance(fault, (int, float)) else finding.code

    def apply(actx: ApplyContext) -> Outcome:
        return _apply(actx, lay, name, target, finding, reason, reached)

    plan.apply = apply
    return [plan]


def _daemon_problem(lay: Layout) -> str | None:
    """Why the rewind cannot be done from here: the daemon holds the workspace from another host."""
    from healthkit.contract.lease import lease_path, read_lease

    le = read_lease(lease_path(lay.pid_file)).lease
    if le is not None and le.released_at is None and not le.is_local():
        return f"the daemon holds this workspace from host {le.host}: run the fix there"
    return None


def _daemon(lay: Layout, name: str) -> tuple[int | None, bool]:
    """(PID of the live daemon when it is training ``name`` now, whether it runs under the supervisor)."""
    from .daemon import ran_supervised
    from .pidfile import running_daemon
    from .state import read_state

    pid = running_daemon(lay)
    training = read_state(lay.daemon_state).get("current_file") == name and (lay.processing / name).is_file()
    return (pid if pid and training else None), ran_supervised(lay)


def _preview(
    ws: Any, lay: Layout, rw: rewind_mod.Rewind, where: str, running: int | None, reached: int | None
) -> list[str]:
    from healthkit.system.shellcmd import command

    out = []
    if running:
        out.append(f"stop the daemon (PID {running}); its training of {rw.file} saves a checkpoint and exits")
    moved = ", ".join(p.name for p in rw.later)
    out.append(
        f"move aside to {ws.rel(lay.checkpoints)}/.foreign-<time>/ (kept, not deleted): {moved}"
        + " and any checkpoint saved by the stop"
        if rw.later
        else f"move aside any checkpoint of {rw.file} after {rw.target.name} (none now)"
    )
    if reached is not None and reached > rw.to_step:
        out.append(
            f"steps thrown away: {rw.to_step + 1}-{reached} ({reached - rw.to_step} step(s), trained again from "
            f"{rw.target.name})"
        )
    if rw.window:
        out.append(_examples_line(ws, rw.window))
    else:
        from .data_order import SEEDED, order_of

        out.append(
            "skip no batch (the fault is right after the checkpoint)"
            if order_of(rw.target) == SEEDED
            else f"skip no batch: {rw.file} trained in HF's own example order (saved before healthkit ordered them), "
            "so its batches cannot be named; it resumes from the checkpoint only"
        )
    if where == "failed":
        out.append(f"queue {rw.file} again (as {command('healthkit', 'queue', 'retry', ws.base, rw.file)} does)")
    if running:
        out.append(f"start the daemon again: it resumes {rw.file} from {rw.target.name}")
    elif where == "processing":
        out.append(f"the daemon is not running: {rw.file} resumes from {rw.target.name} when it starts")
    return out


def _apply(
    actx: ApplyContext, lay: Layout, name: str, target: Path, finding: Finding, reason: str, reached: int | None
) -> Outcome:
    from healthkit.contract.retry_checkpoints import is_complete

    from . import queue as q
    from . import rewind
    from .daemon import DaemonError, start_daemon, stop_daemon

    ws = actx.ws
    running, supervised = _daemon(lay, name)
    if running:
        actx.record("stop-daemon", str(running), "started", f"to rewind {name}")
        if not stop_daemon(ws.base, wait_s=STOP_WAIT_S, by="healthkit fix", reason=f"{FIX_ID}: {reason}"):
            actx.record("stop-daemon", str(running), "failed", f"still running after {STOP_WAIT_S:g}s")
            return failed(f"the daemon (PID {running}) did not stop within {STOP_WAIT_S:g}s; nothing was moved")
        actx.record("stop-daemon", str(running), "applied", "stopped")
    target_now = rewind.find_checkpoint(lay, name, target.name)
    if target_now is None or not is_complete(target_now):
        return failed(f"{target.name} is gone or incomplete since the plan; nothing was moved")
    rw = rewind.plan(lay, name, target_now, _window_for(finding, target_now))  # again: the stop saved one more
    reached = max([reached or 0, *(rewind.step_of(p) for p in rw.later)]) or None
    try:
        aside = rewind.apply(lay, rw, reason, f"healthkit fix {FIX_ID}", reached)
    except (OSError, ValueError) as exc:
        actx.record("move-aside", ws.rel(lay.checkpoints), "failed", str(exc))
        return failed(f"rewinding {name}: {exc}")
    actx.record(
        "move-aside",
        ws.rel(aside) if aside else ws.rel(lay.checkpoints),
        "applied",
        f"moved {', '.join(p.name for p in rw.later) or 'nothing'}",
        skip=[rw.window.first, rw.window.last] if rw.window else None,
    )
    said = [f"rewound {name} to {target.name}"]
    if aside:
        said.append(f"moved {len(rw.later)} checkpoint(s) to {ws.rel(aside)}/")
    if rw.window:
        said.append(f"steps {rw.window.first}-{rw.window.last} skip their batches")
    if _where(lay, name) == "failed":
        try:
            q.retry(lay, name)
        except (q.RetryError, OSError) as exc:
            return failed("; ".join(said) + f"; but {name} could not be queued again: {exc}")
        actx.record("retry", name, "applied", "queued again")
        said.append(f"{name} queued again")
    if running:
        try:
            pid = start_daemon(ws.base, supervise=supervised)
        except DaemonError as exc:
            actx.record("start-daemon", ws.rel(lay.base), "failed", str(exc))
            return failed("; ".join(said) + f"; but the daemon did not start again: {exc}")
        actx.record("start-daemon", str(pid), "applied", f"resumes {name} from {target.name}")
        said.append(f"daemon started again (PID {pid})")
    return applied("; ".join(said))
