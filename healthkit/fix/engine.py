"""The fix engine: audit, plan, show, apply under the workspace lock, journal, audit again, say what is resolved.

Order of a run: take the lock (one run per workspace; `--dry-run` takes none and changes
nothing), finish deletions a killed run left half-done, audit, turn each finding's FixRef
into plans, choose (level, `--only`, alternatives, dedupe), print every plan, apply them
in a fixed order (edits, queue, PID files, deletions, daemon start last), audit again and
print each finding as resolved or still open. The exit code is the re-audit's (0-3).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol, TextIO, cast

from healthkit.core.api import audit
from healthkit.core.findings import Finding, FixRef
from healthkit.core.report import Report
from healthkit.core.workspace import Workspace
from healthkit.fix.fileops import Refused, finish_trash, pending_trash, stale_temp_files, unlink_file
from healthkit.fix.journal import Journal, JournalUnusable, interrupted, read_journal
from healthkit.fix.lock import FixLock, LockBusy
from healthkit.fix.plan import (
    LOAD_ERRORS,
    ApplyContext,
    FixSpec,
    Outcome,
    Plan,
    PlanContext,
    Safety,
    failed,
    load_fixes,
)
from healthkit.system.deadline import UNINTERRUPTIBLE, phase
from healthkit.system.fsutil import is_within


class FixError(Exception):
    """The run could not start (another run holds the lock, the journal lies outside the workspace, ...)."""


class RunHooks(Protocol):
    """Who runs the fix decides a little of it: a scheduled run backs off and gives up (healthkit.scheduled.backoff.ScheduledHeal),
    a person's run always applies and clears that state (healthkit.scheduled.backoff.PersonFix). Both are called under the lock."""

    # may move plans from run.chosen to run.not_applied; True when it changed what the audit reads (a re-audit follows)
    def choose(self, ws: Workspace, run: FixRun) -> bool | None: ...

    def finished(self, ws: Workspace, run: FixRun) -> None: ...  # after applying and the re-audit


@dataclass
class FixOptions:
    """``level``: SAFE for `--safe`, UNSAFE for `--unsafe` (which applies safe fixes too)."""

    level: Safety
    dry_run: bool = False
    only: tuple[str, ...] = ()
    keep: int | None = None
    to: str | None = None  # `--to checkpoint-N`: the checkpoint a rewind goes back to
    wait_s: float = 0.0
    confirm: Callable[[list[Plan]], bool] | None = None
    daemon_confirm_s: float = 3.0
    kill_grace_s: float = 10.0
    hooks: RunHooks | None = None


@dataclass
class FixRun:
    before: Report
    after: Report | None = None
    chosen: list[Plan] = field(default_factory=list)
    not_applied: list[tuple[Plan, str]] = field(default_factory=list)
    no_fix: list[Finding] = field(default_factory=list)
    outcomes: list[tuple[Plan, Outcome]] = field(default_factory=list)
    recovered: list[str] = field(default_factory=list)
    resolved: list[Finding] = field(default_factory=list)
    still_open: list[Finding] = field(default_factory=list)
    new: list[Finding] = field(default_factory=list)
    aborted: bool = False

    @property
    def exit_code(self) -> int:
        return (self.after or self.before).exit_code

    def summary_line(self) -> str:
        if self.after is None:
            n = len(self.chosen)
            return f"dry run: {n} fix{'es' if n != 1 else ''} would be applied; nothing was changed"
        applied = sum(1 for _, o in self.outcomes if o.ok)
        return (
            f"{applied} of {len(self.outcomes)} fix{'es' if len(self.outcomes) != 1 else ''} applied; "
            f"{len(self.resolved)} resolved, {len(self.still_open)} still open"
            + (f", {len(self.new)} new" if self.new else "")
        )


def _matches(tokens: set[str], finding: Finding) -> bool:
    """`--only` by finding code (`daemon.dead`), its family (`daemon`) or its check id."""
    return bool(tokens & {finding.code, finding.check, finding.code.split(".")[0]})


def _contract_violation(spec: FixSpec | None, ref: FixRef, f: Finding) -> str | None:
    """Why a finding's FixRef cannot be planned: no such fix, or a fix that does not declare this code."""
    if spec is None:
        hint = "; ".join(LOAD_ERRORS) or "no fix is registered under that id in the `healthkit.fixes` entry points"
        return f"this healthkit has no code for fix {ref.id!r} ({hint})"
    if f.code not in spec.codes:
        return f"fix {ref.id!r} does not handle {f.code} (it declares {', '.join(spec.codes)})"
    return None


def _plans_for(ctx: PlanContext, fixes: dict[str, FixSpec], f: Finding, refs: list[FixRef]) -> list[Plan]:
    """Every plan the finding's FixRefs give; a planner that raises, or a broken contract, is a blocked plan."""
    mine: list[Plan] = []
    for ref in refs:
        spec = fixes.get(ref.id)
        why_not = _contract_violation(spec, ref, f)
        if why_not or spec is None:
            mine.append(
                Plan(
                    ref.id,
                    Safety.parse(ref.safety),
                    ref.title,
                    "",
                    [f.code],
                    key=f"{ref.id}:{f.code}",
                    order=999,
                    blocked=why_not,
                )
            )
            continue
        try:
            got = spec.planner(ctx, f, ref)
        except Exception as exc:
            got = [
                Plan(
                    ref.id,
                    Safety.parse(ref.safety),
                    ref.title,
                    "",
                    [f.code],
                    key=f"{ref.id}:{f.code}",
                    order=spec.order,
                    blocked=f"planning failed: {type(exc).__name__}: {exc}",
                )
            ]
        for p in got:
            p.finding_keys = [f.identity]
            mine.append(p)
    return mine


def _choose_alternatives(mine: list[Plan], opts: FixOptions, by_fix: set[str], run: FixRun) -> list[Plan]:
    """Alternatives for one finding (adopt or kill an orphan): the safest one that can apply wins;
    an unsafe alternative is used only when the safe one is blocked, or when named with --only."""
    groups: dict[str, list[Plan]] = {}
    for p in mine:
        if p.group:
            groups.setdefault(p.group, []).append(p)
    for members in groups.values():
        if len(members) < 2:
            continue
        ok = [p for p in members if not p.blocked and p.safety >= opts.level]
        if by_fix:
            ok = [p for p in ok if p.fix_id in by_fix] or ok
        best = max(ok, key=lambda p: p.safety) if ok else None
        for p in members:
            if best is not None and p is not best and p.safety <= best.safety and p.fix_id != best.fix_id:
                why = "unsafe: applied only with --unsafe, and " if p.safety < opts.level else ""
                run.not_applied.append(
                    (
                        p,
                        f"{why}alternative to {best.fix_id}"
                        + (f" (name it with --only {p.fix_id} to choose it)" if p.safety < best.safety else ""),
                    )
                )
                mine.remove(p)
    return mine


def _merge_and_route(plans: list[Plan], opts: FixOptions, run: FixRun) -> None:
    """Plans with one key are one action; each is then chosen, or not applied with the reason."""
    merged: dict[str, Plan] = {}
    for p in plans:
        if p.key in merged:
            first = merged[p.key]
            if first.blocked and not p.blocked:
                p.merge(first)
                merged[p.key] = p
            else:
                first.merge(p)
        else:
            merged[p.key] = p
    for p in sorted(merged.values(), key=lambda p: (p.order, p.key)):
        if p.blocked:
            run.not_applied.append((p, p.blocked))
        elif p.safety < opts.level:
            # (Never "--unsafe --keep N": a prune that needs a number is blocked with that reason instead.)
            run.not_applied.append((p, "unsafe: applied only with --unsafe"))
        else:
            run.chosen.append(p)


def build_plans(ctx: PlanContext, report: Report, opts: FixOptions, run: FixRun) -> None:
    """Fill ``run.chosen`` (to apply, in order), ``run.not_applied`` (with why) and ``run.no_fix``."""
    fixes = load_fixes()
    known_ids = set(fixes) | {r.id for f in report.findings for r in f.fixes}
    by_fix = {t for t in opts.only if t in known_ids}  # `--only kill-orphan`: by fix id
    by_code = set(opts.only) - by_fix
    plans: list[Plan] = []
    for f in report.findings:
        whole = not opts.only or _matches(by_code, f)
        refs = [r for r in f.fixes if whole or r.id in by_fix]
        if not refs:
            if whole and not f.fixes:
                run.no_fix.append(f)
            continue
        plans.extend(_choose_alternatives(_plans_for(ctx, fixes, f, refs), opts, by_fix, run))
    _merge_and_route(plans, opts, run)


def _indent(text: str, pad: str = "    ") -> str:
    return "\n".join(pad + line if line else line for line in text.splitlines())


def print_plans(run: FixRun, opts: FixOptions, out: TextIO, base: Path) -> None:
    level = "--unsafe" if opts.level is Safety.UNSAFE else "--safe"
    n = len(run.chosen)
    out.write(
        f"healthkit fix {base} ({level}{', dry run' if opts.dry_run else ''}): "
        f"{len(run.before.findings)} finding(s), {n} fix{'es' if n != 1 else ''} to apply\n"
    )
    for line in run.recovered:
        out.write(f"  {line}\n")
    for i, p in enumerate(run.chosen, 1):
        out.write(f"\n[{i}] {p.fix_id} ({p.safety.label}) for {', '.join(p.codes)}: {p.title}\n")
        if p.preview:
            out.write(_indent(p.preview.strip("\n"), "    ") + "\n")
    if run.not_applied:
        out.write("\nNot applied:\n")
        for p, why in run.not_applied:
            out.write(f"  - {p.fix_id} ({p.safety.label}) for {', '.join(p.codes)}: {why}\n")
            if p.blocked and p.preview:  # a blocked plan still says why each thing is kept
                out.write(_indent(p.preview.strip("\n"), "      ") + "\n")
    if run.no_fix:
        out.write("\nNo automatic fix (see the report's recommendations):\n")
        for f in run.no_fix:
            out.write(f"  - {f.code}: {f.title}\n")


def _recover(ws: Workspace, journal: Journal, run_id: str, dry_run: bool) -> list[str]:
    """Finish what a run killed mid-action left: trash folders are removed, edit temp files deleted."""
    lines: list[str] = []
    for e in interrupted(read_journal(journal.path))[-20:]:
        lines.append(
            f"a previous run ({e.get('run')}) was interrupted during: {e.get('action')} {e.get('target')} [{e.get('fix')}]"
        )
        if not dry_run:  # close it in the journal so that later runs do not report it again
            journal.append(
                run=e.get("run"),
                fix=e.get("fix"),
                codes=e.get("codes", []),
                action=e.get("action"),
                target=e.get("target"),
                result="interrupted",
                message=f"noted by run {run_id}",
            )
    folders = [ws.checkpoint_dir]
    # A checkpoint folder the user declared on another disk is a root of its own (never any other outside path).
    root = ws.base if is_within(ws.checkpoint_dir, ws.base) else (ws.declared_checkpoint_root or ws.base)
    for path in pending_trash(root, folders):
        rel = ws.rel(path)
        if dry_run:
            lines.append(f"would finish the interrupted deletion of {rel}")
            continue
        try:
            what = finish_trash(root, path)
            journal.append(
                run=run_id,
                fix="recover",
                codes=[],
                action="delete",
                target=rel,
                result="applied",
                message=f"finished an interrupted deletion ({what})",
            )
            lines.append(f"finished the interrupted deletion of {rel}")
        except (Refused, OSError) as exc:
            journal.append(
                run=run_id, fix="recover", codes=[], action="delete", target=rel, result="failed", message=str(exc)
            )
            lines.append(f"could not finish the interrupted deletion of {rel}: {exc}")
    temp_dirs = {ws.base, ws.config_path.parent} | {ws.path(d).parent for d in ws.settings.paths.docs}
    for path in stale_temp_files(ws.base, sorted(temp_dirs)):
        rel = ws.rel(path)
        if dry_run:
            lines.append(f"would remove {rel} (temp file of an interrupted edit)")
            continue
        try:
            unlink_file(ws.base, path, None)
            journal.append(
                run=run_id,
                fix="recover",
                codes=[],
                action="delete",
                target=rel,
                result="applied",
                message="removed the temp file of an interrupted edit (the original was never replaced)",
            )
            lines.append(f"removed {rel} (temp file of an interrupted edit)")
        except (Refused, OSError) as exc:
            lines.append(f"could not remove {rel}: {exc}")
    return lines


def _journal_path(ws: Workspace) -> Path:
    path = ws.path(ws.settings.paths.journal)
    if not is_within(path.parent if path.parent.exists() else ws.base, ws.base) or not is_within(path, ws.base):
        raise FixError(
            f"the journal {ws.settings.paths.journal} lies outside the workspace; set [paths] journal to a path inside it"
        )
    return path


def _require_known_only(ws: Workspace, only: tuple[str, ...]) -> None:
    """`--only bogus` is a usage error (SelectorError) before anything is locked or written, not a green "nothing to do"."""
    if not only:
        return
    from healthkit.core.registry import default_registry
    from healthkit.core.selectors import fix_names, require_known

    plugins = ws.settings.checks.plugins if ws.trust.trusted else ()
    require_known("--only", only, fix_names(default_registry(plugins, ws.base), load_fixes()))


def run_fix(path: str | Path | Workspace, opts: FixOptions, out: TextIO | None = None) -> FixRun:
    """Plan and (unless ``opts.dry_run``) apply fixes to the workspace at ``path`` (or to an opened Workspace).

    Raises WorkspaceError or FixError, and SelectorError when an ``opts.only`` name matches nothing.
    """
    from healthkit.system.safetext import SafeWriter

    # plans name files: no control character of a name reaches the terminal
    out = cast(TextIO, SafeWriter(out or sys.stdout))
    ws = path if isinstance(path, Workspace) else Workspace.open(path)
    _require_known_only(ws, opts.only)
    run_id = f"{datetime.now(UTC).strftime('%Y%m%dT%H%M%SZ')}-{os.getpid()}"
    journal = Journal(_journal_path(ws), dry_run=opts.dry_run, base=ws.base)
    lock = FixLock(ws.base, opts.wait_s)
    if not opts.dry_run:
        try:
            lock.acquire()
        except LockBusy as exc:
            raise FixError(str(exc)) from None
    try:
        ws, run, hooks_changed = _plan_run(ws, journal, run_id, opts)
        print_plans(run, opts, out, ws.base)
        if opts.dry_run:
            out.write("\nDry run: nothing was changed.\n")
        elif not run.chosen:
            out.write("\nNothing to apply.\n")
            _unchanged(run, ws, opts, reaudit=hooks_changed, out=out)
        elif not _confirmed(run, opts):
            out.write("\nAborted: nothing was changed.\n")
            run.aborted = True
            _unchanged(run, ws, opts, finished=False)
        else:
            _apply_chosen(ws, run, journal, lock, run_id, opts, out)
        return run
    finally:
        _close_journal(journal, out)
        lock.release()


def _plan_run(ws: Workspace, journal: Journal, run_id: str, opts: FixOptions) -> tuple[Workspace, FixRun, bool]:
    """Finish what a killed run left half-done, audit the tree as it is now, and plan from that audit.

    The third value: the run's hooks changed what the audit reads (a person's run cleared the heal state)."""
    try:
        recovered = _recover(ws, journal, run_id, opts.dry_run)
    except JournalUnusable as exc:
        journal.dry_run = True  # nothing is written to it at the end either
        raise FixError(str(exc)) from None
    if not opts.dry_run:  # after the lock and the recovery: read the tree as it is now (a dry run changed nothing,
        ws = Workspace.open(ws.base)  # so it keeps the workspace the console entry began reading early)
    before = audit(ws, record_costs=False)
    run = FixRun(before=before, recovered=recovered)
    ctx = PlanContext(
        ws,
        before,
        keep=opts.keep,
        to=opts.to,
        daemon_confirm_s=opts.daemon_confirm_s,
        kill_grace_s=opts.kill_grace_s,
        run_id=run_id,
        level=opts.level,
    )
    build_plans(ctx, before, opts, run)
    hooks_changed = bool(opts.hooks.choose(ws, run)) if opts.hooks is not None and not opts.dry_run else False
    return ws, run, hooks_changed


def _confirmed(run: FixRun, opts: FixOptions) -> bool:
    """Unsafe plans apply only when the person confirmed them (or no confirmation is asked for)."""
    unsafe = [p for p in run.chosen if p.safety is Safety.UNSAFE]
    return not unsafe or opts.confirm is None or opts.confirm(unsafe)


def _unchanged(
    run: FixRun,
    ws: Workspace,
    opts: FixOptions,
    finished: bool = True,
    reaudit: bool = False,
    out: TextIO | None = None,
) -> None:
    """Nothing was applied: the audit before is also the audit after, unless the hooks changed what it reads."""
    run.after = audit(Workspace.open(ws.base), record_costs=False) if reaudit else run.before
    _compare(run, run.before, run.after)
    if reaudit and out is not None:
        _print_results(run, out)
    if finished and opts.hooks is not None:
        opts.hooks.finished(ws, run)


def _apply_chosen(
    ws: Workspace, run: FixRun, journal: Journal, lock: FixLock, run_id: str, opts: FixOptions, out: TextIO
) -> None:
    """Apply each chosen plan in order (one failing never stops the rest), then audit again and compare."""
    out.write("\nApplying:\n")
    for i, p in enumerate(run.chosen, 1):
        actx = ApplyContext(
            ws, journal, p, daemon_confirm_s=opts.daemon_confirm_s, kill_grace_s=opts.kill_grace_s, run_id=run_id
        )
        with phase(f"{UNINTERRUPTIBLE}applying {p.fix_id} under the fix lock"):  # never killed half-way (deadline)
            outcome = _apply_one(p, actx)
        run.outcomes.append((p, outcome))
        _catch_up(journal, lock)
        lines = outcome.message.splitlines()
        out.write(f"[{i}] {outcome.status:<8} {p.fix_id}: {lines[0] if lines else ''}\n")
        for extra in lines[1:]:
            out.write(f"             {extra}\n")
    run.after = audit(Workspace.open(ws.base), record_costs=False)
    _compare(run, run.before, run.after)
    _print_results(run, out)
    if opts.hooks is not None:
        opts.hooks.finished(ws, run)


def _apply_one(p: Plan, actx: ApplyContext) -> Outcome:
    """Apply one plan; a fix that raises is a failed outcome (journalled), and the other fixes still run."""
    try:
        return p.apply(actx) if p.apply else failed("no apply step")
    except Exception as exc:
        outcome = failed(f"{type(exc).__name__}: {exc}")
        try:
            actx.record("fix", p.key, "failed", outcome.message)
        except OSError as jexc:
            outcome = failed(f"{outcome.message}; and the journal could not be written: {jexc}")
        return outcome


def _catch_up(journal: Journal, lock: FixLock) -> None:
    """After an action (which may have freed space): write the journal lines and the lock's PID a full disk held back."""
    journal.flush()
    lock.write_pid()


def _close_journal(journal: Journal, out: TextIO) -> None:
    """The journal is complete when a run ends; room is preallocated for the next run, which may find the disk full."""
    if journal.dry_run or not journal.entries:
        return  # a run that journalled nothing leaves the workspace untouched
    try:
        if not journal.flush():
            out.write(
                f"\nThe disk is full: {len(journal.unwritten)} journal line(s) could not be written to "
                f"{journal.path}; here they are:\n"
            )
            for line in journal.unwritten:
                out.write(line.decode("utf-8", "replace"))
        journal.preallocate()
    except OSError as exc:
        out.write(f"\nThe journal {journal.path} could not be written: {exc.strerror or exc}\n")


def _compare(run: FixRun, before: Report, after: Report) -> None:
    after_keys = {f.identity for f in after.findings}
    before_keys = {f.identity for f in before.findings}
    for f in before.findings:
        (run.still_open if f.identity in after_keys else run.resolved).append(f)
    run.new = [f for f in after.findings if f.identity not in before_keys]


def _print_results(run: FixRun, out: TextIO) -> None:
    attempted = {k for p, _ in run.outcomes for k in p.finding_keys}
    out.write("\nRe-audit:\n")
    for f in run.resolved:
        out.write(f"  resolved    {f.code}: {f.title}\n")
    for f in run.still_open:
        hint = ""
        if f.identity in attempted:
            hint = " (a fix was attempted; see above)"
        elif any(r.safety == "unsafe" for r in f.fixes) and not any(r.safety == "safe" for r in f.fixes):
            hint = " (fixable with --unsafe)"
        elif not f.fixes:
            hint = " (no automatic fix)"
        out.write(f"  still open  {f.code}: {f.title}{hint}\n")
    for f in run.new:
        out.write(f"  new         {f.code}: {f.title}\n")
