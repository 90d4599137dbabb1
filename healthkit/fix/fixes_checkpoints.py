"""Checkpoint deletions: `prune-checkpoints` (safe under a declared save_total_limit, unsafe with --keep N)
and `delete-incomplete-checkpoint` (unsafe).

Checkpoints are what the run's format (healthkit.formats) lists: folders or single files
(a Lightning `.ckpt`), each deleted whole. Never deleted: the newest N complete checkpoints,
the run's best (HF `best_model_checkpoint`, Lightning's best-k; matched by name: it is often
an absolute path from before the workspace moved), one whose layout the format cannot judge,
a save in progress, a checkpoint modified in the last two minutes (it
may be being written), one a running training resumes from (named in daemon_state,
the status file or a live process's argv), anything that is a symlink. Protections
are computed again at apply time from a fresh look at the workspace.
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path
from typing import Any

from healthkit.core.findings import Finding, FixRef
from healthkit.core.workspace import Checkpoint, Workspace
from healthkit.fix.fileops import ChangedSincePlan, Refused, TreeFingerprint, delete_dir, tree_fingerprint
from healthkit.fix.plan import ApplyContext, Outcome, Plan, PlanContext, Safety, applied, failed, fixer, skipped
from healthkit.system.fsutil import human_bytes, is_within
from healthkit.system.procs import scan_mentioning

RECENT_S = 120.0
_TOKENS = re.compile(r"[\s/\\'\"=,:;()\[\]{}]+")


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for v in value.values() for s in _strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    return []


def _best_names(ws: Workspace, extra: str | None) -> set[str]:
    """The run's best checkpoint(s) as its format records them, and the one the finding named."""
    names = {extra} if extra else set()
    names.update(ws.run.best if ws.run is not None else ())
    return names


def _in_use(ws: Workspace) -> dict[str, str]:
    """Checkpoints a running or resuming training refers to: name -> where."""
    out: dict[str, str] = {}
    names = {c.name for c in ws.checkpoints}
    for label, jf in (("daemon_state", ws.daemon_state), ("status file", ws.status)):
        if jf.is_object:
            for s in _strings(jf.data):
                for tok in _TOKENS.split(s):
                    if tok in names:
                        out.setdefault(tok, f"named in the {label} (resumed from or being written)")
    root = os.path.realpath(ws.checkpoint_dir)
    for p in scan_mentioning(names):  # only processes whose argv may name a checkpoint: details for those alone
        for tok in p.cmdline[1:]:
            val = tok.split("=", 1)[1] if tok.startswith("-") and "=" in tok else tok
            if os.path.basename(val.rstrip("/")) not in names:
                continue
            real = os.path.realpath(os.path.join(p.cwd or "/", val))
            if os.path.dirname(real) == root:
                out.setdefault(os.path.basename(real), f"in the command line of running PID {p.pid}")
    return out


def _newest_mtime(path: Path) -> float:
    newest = 0.0
    try:
        newest = os.lstat(path).st_mtime
        if not os.path.isdir(path):
            return max(newest, os.stat(path).st_mtime)
        with os.scandir(path) as it:
            for e in it:
                newest = max(newest, e.stat(follow_symlinks=False).st_mtime)
    except OSError:
        pass
    return newest


def _complete(ws: Workspace, c: Checkpoint, incomplete: set[str]) -> bool:
    return c.name not in incomplete and ws.completeness_of(c).complete


def protections(
    ws: Workspace,
    keep_n: int,
    best: str | None,
    incomplete: set[str],
    ranked: bool = True,
) -> tuple[dict[str, str], list[Checkpoint]]:
    """(protected name -> why, deletion candidates oldest first) for keeping the newest ``keep_n`` complete checkpoints.

    ``ranked``: the limit is the run's own; where it keeps its best k by a metric (Lightning's top-k), those k stay too.
    """
    ckpts = ws.checkpoints
    protected: dict[str, str] = {}
    complete = [c for c in ckpts if not c.is_symlink and _complete(ws, c, incomplete)]
    newest = complete[-keep_n:] if keep_n else []
    floor = newest[0].step if newest else float("inf")  # ("INF": an equivalent mutant, float() ignores case)
    for c in ckpts:
        if c.step >= floor:
            protected[c.name] = f"one of the newest {keep_n}" if c in newest else "newer than the kept ones"
    if ckpts:
        protected.setdefault(ckpts[-1].name, "the newest checkpoint")
    for name in _best_names(ws, best):
        protected.setdefault(name, "best_model_checkpoint")
    declared = ws.run.declared_retention() if ws.run is not None else None
    if ranked and declared is not None and declared.by_metric:
        for name in declared.kept:
            protected.setdefault(name, "one of the run's best k by its monitored metric")
    for name, why in _in_use(ws).items():
        protected.setdefault(name, why)
    now = time.time()
    for c in ckpts:
        if c.is_symlink:
            protected.setdefault(c.name, "a symlink: its target is never deleted")
        elif ws.completeness_of(c).unknown:
            protected.setdefault(c.name, f"not judged ({ws.completeness_of(c).unknown}): never deleted")
        elif not _complete(ws, c, incomplete):
            protected.setdefault(c.name, "incomplete (see checkpoints.incomplete)")
        elif now - _newest_mtime(c.path) < RECENT_S:  # (`<=` is an equivalent mutant: float time never ties)
            protected.setdefault(c.name, "modified in the last 2 minutes (may be being written)")
    return protected, [c for c in ckpts if c.name not in protected]


def _shown(ws: Workspace, path: Path) -> str:
    """A checkpoint as `ls` would name it: a folder with its trailing slash, a file without."""
    return ws.rel(path) + ("/" if os.path.isdir(path) and not os.path.islink(path) else "")


def _incomplete_names(ctx: PlanContext) -> set[str]:
    return {f.data.get("checkpoint") for f in ctx.report.findings if f.code == "checkpoints.incomplete"} - {None}  # type: ignore[return-value]


def fix_root(ws: Workspace, path: Path) -> Path | None:
    """The root a deletion of ``path`` is contained in: the workspace, or the checkpoint folder the user declared.

    A checkpoint folder on another disk, named in healthkit.toml or by the config.json key,
    is the user's to manage; nothing else outside the workspace is ever touched.
    """
    if is_within(path.parent, ws.base):
        return ws.base
    declared = ws.declared_checkpoint_root
    if declared is not None and is_within(path.parent, declared):
        return declared
    return None


def _delete_many(actx: ApplyContext, ws: Workspace, victims: list[tuple[Path, TreeFingerprint]], recheck) -> Outcome:
    deleted, freed, notes, errors = [], 0, [], []
    for path, fp in victims:
        rel = ws.rel(path)
        why = recheck(path)
        if why:
            actx.record("delete", rel, "skipped", f"now protected: {why}")
            notes.append(f"{path.name} kept ({why})")
            continue
        actx.record("delete", rel, "started", f"{fp.files} files, {fp.bytes} bytes")
        try:
            root = fix_root(ws, path)
            if root is None:
                raise Refused("outside the workspace and the declared checkpoint folder")
            n = delete_dir(root, path, fp, actx.run_id, allow_file=fp.is_file)
        except ChangedSincePlan as exc:
            actx.record("delete", rel, "skipped", f"changed since plan: {exc}")
            notes.append(f"{path.name} changed since plan; not touched")
            continue
        except Refused as exc:
            actx.record("delete", rel, "skipped", str(exc))
            notes.append(f"{path.name}: {exc}")
            continue
        except OSError as exc:
            actx.record("delete", rel, "failed", exc.strerror or str(exc))
            errors.append(f"{path.name}: {exc.strerror or exc}")
            continue
        actx.record("delete", rel, "applied", f"deleted ({human_bytes(n)})", bytes=n, files=fp.files)
        deleted.append(path.name)
        freed += n
    msg = f"deleted {len(deleted)} of {len(victims)} checkpoint(s), {human_bytes(freed)} freed"
    if notes or errors:
        msg += "; " + "; ".join(notes + errors)
    if errors:
        return failed(msg, deleted=deleted)
    return applied(msg, deleted=deleted, bytes=freed) if deleted else skipped(msg)


def _keep_rule(ctx: PlanContext, finding: Finding, ref: FixRef) -> tuple[int, Safety, str]:
    """(how many to keep, safety, why): ``--keep N`` is the user's explicit choice and always wins (unsafe);
    otherwise a limit the user declared (safe), or the trainer's default (unsafe); else 0 (blocked)."""
    limit = finding.data.get("limit")
    declared = finding.data.get("declared_by") or "declared"
    if ctx.keep:
        if isinstance(limit, int) and ctx.keep == limit and ref.safety == "safe":
            return limit, Safety.SAFE, f"save_total_limit {limit} ({declared})"
        shown = f"; the limit is {limit}, {declared}" if isinstance(limit, int) else "; no limit is declared"
        return ctx.keep, Safety.UNSAFE, f"--keep {ctx.keep} (your choice{shown})"
    if isinstance(limit, int) and limit >= 1:
        return limit, min(Safety.SAFE, Safety.parse(ref.safety)), f"save_total_limit {limit} ({declared})"
    return 0, Safety.UNSAFE, ""


@fixer(
    "prune-checkpoints",
    order=50,
    codes=("checkpoints.bloat", "checkpoints.no-retention", "disk.low-space"),
    safety=(Safety.SAFE, Safety.UNSAFE),
)
def plan_prune(ctx: PlanContext, finding: Finding, ref: FixRef) -> list[Plan]:
    ws = ctx.ws
    best = finding.data.get("best")
    keep_n, safety, why = _keep_rule(ctx, finding, ref)
    plan = Plan("prune-checkpoints", safety, "", "", [finding.code], key="prune-checkpoints", order=50)
    if not keep_n:
        plan.title = "Delete the oldest checkpoints, keeping the newest N"
        plan.blocked = "no save_total_limit is declared: pass --unsafe --keep N to choose how many to keep"
        return [plan]
    plan.title = f"Delete the oldest checkpoints beyond {why}"
    incomplete = _incomplete_names(ctx)
    protected, candidates = protections(ws, keep_n, best, incomplete, ranked=not ctx.keep)
    victims: list[tuple[Path, TreeFingerprint]] = []
    lines = []
    for c in candidates:
        try:
            if fix_root(ws, c.path) is None:
                raise Refused("outside the workspace and the declared checkpoint folder")
            fp = tree_fingerprint(c.path, allow_file=c.is_file)
        except (Refused, OSError) as exc:
            protected[c.name] = f"not deleted: {exc}"
            continue
        victims.append((c.path, fp))
        lines.append(f"delete {_shown(ws, c.path)}  ({human_bytes(fp.bytes)}, {fp.files} files)")
    keep_lines = [f"keep   {_shown(ws, c.path)}  ({protected[c.name]})" for c in ws.checkpoints if c.name in protected]
    total = sum(fp.bytes for _, fp in victims)
    if not victims:
        plan.blocked = "nothing can be deleted: every checkpoint beyond the limit is protected"
    plan.preview = "\n".join(
        [f"{len(victims)} checkpoint(s) to delete, {human_bytes(total)}; {len(keep_lines)} kept:"] + lines + keep_lines
    )

    def apply(actx: ApplyContext) -> Outcome:
        fresh = Workspace(ws.base, ws.settings, ws.settings_path)
        now_protected, _ = protections(fresh, keep_n, best, incomplete, ranked=not ctx.keep)
        out = _delete_many(actx, ws, victims, lambda p: now_protected.get(p.name))
        order = {c.name: i for i, c in enumerate(fresh.checkpoints)}
        kept = sorted(now_protected, key=lambda n: (order.get(n, -1), n))
        return Outcome(out.status, f"{out.message}; kept {', '.join(kept) or 'none'}", out.details)

    plan.apply = apply
    return [plan]


@fixer("delete-incomplete-checkpoint", order=55, codes=("checkpoints.incomplete",), safety=Safety.UNSAFE)
def plan_delete_incomplete(ctx: PlanContext, finding: Finding, ref: FixRef) -> list[Plan]:
    ws = ctx.ws
    path = Path(finding.data["path"])
    name = path.name
    plan = Plan(
        "delete-incomplete-checkpoint",
        Safety.UNSAFE,
        f"Delete the incomplete checkpoint {name}",
        "",
        [finding.code],
        key=f"delete-incomplete:{path}",
        order=55,
    )

    def why_not(ws_: Workspace) -> str | None:
        if os.path.islink(path):
            return "it is a symlink: its target is never deleted"
        if fix_root(ws_, path) is None:
            return "it is outside the workspace and the declared checkpoint folder"
        mine = next((c for c in ws_.checkpoints if c.path == path), None)
        if mine is None:
            return f"it is not a checkpoint of this {ws_.format.title} run"
        if not ws_.completeness_of(mine).incomplete:
            return "its format does not judge it incomplete (complete, or a layout it cannot read)"
        use = _in_use(ws_).get(name)
        if use:
            return use
        if time.time() - _newest_mtime(path) < RECENT_S:
            return "modified in the last 2 minutes (may be being written)"
        return None

    reason = why_not(ws)
    if reason:
        plan.blocked = f"{name} is not deleted: {reason}"
        return [plan]
    try:
        fp = tree_fingerprint(path, allow_file=True)
    except (Refused, OSError) as exc:
        plan.blocked = f"{name}: {exc}"
        return [plan]
    missing = "; ".join(finding.data.get("missing") or [])
    plan.preview = f"delete {_shown(ws, path)}  ({human_bytes(fp.bytes)}, {fp.files} files: {missing or 'incomplete'})"

    def apply(actx: ApplyContext) -> Outcome:
        fresh = Workspace(ws.base, ws.settings, ws.settings_path)
        return _delete_many(actx, ws, [(path, fp)], lambda p: why_not(fresh))

    plan.apply = apply
    return [plan]
