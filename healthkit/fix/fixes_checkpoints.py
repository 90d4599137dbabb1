"""Checkpoint deletions: `prune-checkpoints` (safe under a declared save_total_limit, unsafe with --keep N)
and `delete-incomplete-checkpoint` (unsafe).

Never deleted: the newest N complete checkpoints, `best_model_checkpoint` (matched by
folder name: it is often an absolute path from before the workspace moved), a
`tmp-checkpoint-*` save in progress, a checkpoint modified in the last two minutes (it
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

from ..fsutil import human_bytes, is_within
from ..models import Finding, FixRef
from ..procs import scan_processes
from ..workspace import Checkpoint, Workspace
from .fileops import ChangedSincePlan, Refused, TreeFingerprint, delete_dir, tree_fingerprint
from .plan import ApplyContext, Outcome, Plan, PlanContext, Safety, applied, failed, fixer, skipped

RECENT_S = 120.0
_CKPT_NAME = re.compile(r"checkpoint-\d+")


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for v in value.values() for s in _strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    return []


def _best_names(ws: Workspace, extra: str | None) -> set[str]:
    names = {extra} if extra else set()
    _, ts = ws.latest_trainer_state
    # (Mutation testing: reading more checkpoints' states than the newest can only protect more: equivalent.)
    for state in [ts] + [ws.trainer_state_of(c) for c in ws.checkpoints[-1:]]:
        if state is not None and state.is_object:
            best = state.data.get("best_model_checkpoint")
            if isinstance(best, str) and best:
                names.add(Path(best).name)  # Path drops a trailing slash itself
    return names


def _in_use(ws: Workspace) -> dict[str, str]:
    """Checkpoints a running or resuming training refers to: name -> where."""
    out: dict[str, str] = {}
    for label, jf in (("daemon_state", ws.daemon_state), ("status file", ws.status)):
        if jf.is_object:
            for s in _strings(jf.data):
                for m in _CKPT_NAME.finditer(s):
                    out.setdefault(m.group(0), f"named in the {label} (resumed from or being written)")
    root = os.path.realpath(ws.checkpoint_dir)
    for p in scan_processes():
        for tok in p.cmdline[1:]:
            val = tok.split("=", 1)[1] if tok.startswith("-") and "=" in tok else tok
            if "checkpoint-" not in val:
                continue
            real = os.path.realpath(os.path.join(p.cwd or "/", val))
            if os.path.dirname(real) == root:
                out.setdefault(os.path.basename(real), f"in the command line of running PID {p.pid}")
    return out


def _newest_mtime(path: Path) -> float:
    newest = 0.0
    try:
        newest = os.lstat(path).st_mtime
        with os.scandir(path) as it:
            for e in it:
                newest = max(newest, e.stat(follow_symlinks=False).st_mtime)
    except OSError:
        pass
    return newest


def _complete(ws: Workspace, c: Checkpoint, incomplete: set[str]) -> bool:
    return c.name not in incomplete and ws.completeness_of(c).complete


def protections(ws: Workspace, keep_n: int, best: str | None, incomplete: set[str]) -> tuple[dict[str, str], list[Checkpoint]]:
    """(protected name -> why, deletion candidates oldest first) for keeping the newest ``keep_n`` complete checkpoints."""
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
    for name, why in _in_use(ws).items():
        protected.setdefault(name, why)
    now = time.time()
    for c in ckpts:
        if c.is_symlink:
            protected.setdefault(c.name, "a symlink: its target is never deleted")
        elif not _complete(ws, c, incomplete):
            protected.setdefault(c.name, "incomplete (see checkpoints.incomplete)")
        elif now - _newest_mtime(c.path) < RECENT_S:  # (`<=` is an equivalent mutant: float time never ties)
            protected.setdefault(c.name, "modified in the last 2 minutes (may be being written)")
    return protected, [c for c in ckpts if c.name not in protected]


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
            n = delete_dir(root, path, fp, actx.run_id)
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


@fixer("prune-checkpoints", order=50, codes=("checkpoints.bloat", "checkpoints.no-retention", "disk.low-space"),
       safety=(Safety.SAFE, Safety.UNSAFE))
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
    protected, candidates = protections(ws, keep_n, best, incomplete)
    victims: list[tuple[Path, TreeFingerprint]] = []
    lines = []
    for c in candidates:
        try:
            if fix_root(ws, c.path) is None:
                raise Refused("outside the workspace and the declared checkpoint folder")
            fp = tree_fingerprint(c.path)
        except (Refused, OSError) as exc:
            protected[c.name] = f"not deleted: {exc}"
            continue
        victims.append((c.path, fp))
        lines.append(f"delete {ws.rel(c.path)}/  ({human_bytes(fp.bytes)}, {fp.files} files)")
    keep_lines = [f"keep   {ws.rel(c.path)}/  ({protected[c.name]})" for c in ws.checkpoints if c.name in protected]
    total = sum(fp.bytes for _, fp in victims)
    if not victims:
        plan.blocked = "nothing can be deleted: every checkpoint beyond the limit is protected"
    plan.preview = "\n".join([f"{len(victims)} checkpoint(s) to delete, {human_bytes(total)}; "
                              f"{len(keep_lines)} kept:"] + lines + keep_lines)

    def apply(actx: ApplyContext) -> Outcome:
        fresh = Workspace(ws.base, ws.settings, ws.settings_path)
        now_protected, _ = protections(fresh, keep_n, best, incomplete)
        out = _delete_many(actx, ws, victims, lambda p: now_protected.get(p.name))
        kept = sorted(now_protected, key=lambda n: int(n.rsplit("-", 1)[-1]) if n.rsplit("-", 1)[-1].isdigit() else 0)
        return Outcome(out.status, f"{out.message}; kept {', '.join(kept) or 'none'}", out.details)

    plan.apply = apply
    return [plan]


@fixer("delete-incomplete-checkpoint", order=55, codes=("checkpoints.incomplete",), safety=Safety.UNSAFE)
def plan_delete_incomplete(ctx: PlanContext, finding: Finding, ref: FixRef) -> list[Plan]:
    ws = ctx.ws
    path = Path(finding.data["path"])
    name = path.name
    plan = Plan("delete-incomplete-checkpoint", Safety.UNSAFE, f"Delete the incomplete checkpoint {name}", "",
                [finding.code], key=f"delete-incomplete:{path}", order=55)

    def why_not(ws_: Workspace) -> str | None:
        if os.path.islink(path):
            return "it is a symlink: its target is never deleted"
        if fix_root(ws_, path) is None:
            return "it is outside the workspace and the declared checkpoint folder"
        if _CKPT_NAME.fullmatch(name) is None:
            return "it is not a checkpoint-N folder"
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
        fp = tree_fingerprint(path)
    except (Refused, OSError) as exc:
        plan.blocked = f"{name}: {exc}"
        return [plan]
    missing = "; ".join(finding.data.get("missing") or [])
    plan.preview = f"delete {ws.rel(path)}/  ({human_bytes(fp.bytes)}, {fp.files} files: {missing or 'incomplete'})"

    def apply(actx: ApplyContext) -> Outcome:
        fresh = Workspace(ws.base, ws.settings, ws.settings_path)
        return _delete_many(actx, ws, [(path, fp)], lambda p: why_not(fresh))

    plan.apply = apply
    return [plan]
