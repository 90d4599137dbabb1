"""`requeue-stuck-file` (safe): move a file stuck in processing/ back to the first pending folder; never delete or edit it."""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

from healthkit.contract.retry_checkpoints import FAILED_PREFIX
from healthkit.core.findings import Finding, FixRef
from healthkit.fix.fileops import fsync_dir
from healthkit.fix.kill_points import crash_point
from healthkit.fix.plan import ApplyContext, Outcome, Plan, PlanContext, Safety, applied, failed, fixer, skipped
from healthkit.system.fsutil import is_within


@fixer("requeue-stuck-file", order=30, codes=("queue.stuck",), safety=Safety.SAFE)
def plan_requeue(ctx: PlanContext, finding: Finding, ref: FixRef) -> list[Plan]:
    ws = ctx.ws
    src = Path(finding.data["path"])
    dest_dir = ws.path(ws.settings.paths.queue_pending[0])
    dst = dest_dir / src.name
    plan = Plan(
        "requeue-stuck-file",
        Safety.parse(ref.safety),
        f"Move {src.name} back to {ws.rel(dest_dir)}/",
        f"mv {ws.rel(src)} {ws.rel(dst)}",
        [finding.code],
        key=f"requeue:{src}",
        order=30,
    )
    try:
        st = os.lstat(src)
    except OSError as exc:
        plan.blocked = f"{ws.rel(src)}: {exc.strerror}"
        return [plan]
    if not stat.S_ISREG(st.st_mode) or not is_within(src.parent, ws.base) or not is_within(dest_dir, ws.base):
        plan.blocked = f"{ws.rel(src)} is not a regular file inside the workspace"
        return [plan]
    ident = (st.st_ino, st.st_size, st.st_mtime_ns)

    def apply(actx: ApplyContext) -> Outcome:
        r = ws.rel(src)
        try:
            now = os.lstat(src)
        except FileNotFoundError:
            actx.record("move", r, "skipped", "it is no longer in processing/")
            return skipped(f"{r} is no longer in processing/")
        if (now.st_ino, now.st_size, now.st_mtime_ns) != ident:
            actx.record("move", r, "skipped", "changed since plan")
            return skipped(f"{r} changed since plan; not moved")
        dest_dir.mkdir(parents=True, exist_ok=True)
        actx.record("move", r, "started", f"to {ws.rel(dst)}")
        try:
            try:
                os.link(src, dst)  # never overwrites; a kill after it leaves two names for one file
            except FileExistsError:
                if os.lstat(dst).st_ino != now.st_ino:
                    actx.record("move", r, "skipped", f"{ws.rel(dst)} already exists")
                    return skipped(f"{ws.rel(dst)} already exists; {r} not moved")
            except OSError as exc:
                if exc.errno not in (errno.EXDEV, errno.EPERM, errno.EOPNOTSUPP):
                    raise
                if os.path.lexists(dst):
                    return skipped(f"{ws.rel(dst)} already exists; {r} not moved")
                os.rename(src, dst)
            crash_point("queue:after-link")
            if os.path.lexists(src):
                os.unlink(src)
            fsync_dir(dest_dir)
            fsync_dir(src.parent)
        except OSError as exc:
            actx.record("move", r, "failed", exc.strerror or str(exc))
            return failed(f"{r}: {exc.strerror or exc}")
        actx.record("move", r, "applied", f"moved to {ws.rel(dst)}")
        return applied(f"moved {r} to {ws.rel(dst)}")

    plan.apply = apply
    return [plan]


@fixer("delete-failed-checkpoints", order=56, codes=("queue.failed",), safety=Safety.UNSAFE)
def plan_delete_failed_checkpoints(ctx: PlanContext, finding: Finding, ref: FixRef) -> list[Plan]:
    """Unsafe: delete the checkpoints kept for a failed file's retry; the plan says how many trained steps that throws away."""
    from healthkit.fix.fileops import Refused, tree_fingerprint
    from healthkit.fix.fixes_checkpoints import _delete_many
    from healthkit.system.fsutil import human_bytes

    ws = ctx.ws
    name = finding.data.get("queued_as") or Path(finding.data["path"]).name
    failed_file = Path(finding.data["path"])
    steps = int(finding.data.get("retry_step") or 0)
    plan = Plan(
        "delete-failed-checkpoints",
        Safety.UNSAFE,
        f"Delete the checkpoints kept for a retry of {name}",
        "",
        [finding.code],
        key=f"delete-failed-checkpoints:{failed_file}",
        order=56,
    )

    def why_not(path: Path) -> str | None:
        if not failed_file.exists():
            return f"{failed_file.name} is no longer in failed/ (retried or removed): its checkpoints are in use"
        if os.path.islink(path) or not is_within(path, ws.checkpoint_dir):
            return "not a folder inside the checkpoint folder"
        return None

    victims, lines = [], []
    for raw in finding.data.get("kept_checkpoints") or []:
        path = Path(raw)
        try:
            if why_not(path):
                raise Refused(why_not(path) or "")
            fp = tree_fingerprint(path)
        except (Refused, OSError) as exc:
            plan.blocked = f"{ws.rel(path)}: {exc}"
            return [plan]
        victims.append((path, fp))
        lines.append(f"delete {ws.rel(path)}/  ({human_bytes(fp.bytes)}, {fp.files} files)")
    if not victims:
        plan.blocked = f"no checkpoint of {name} is kept"
        return [plan]
    plan.preview = "\n".join(
        [f"throws away {steps} trained step(s) of {name}: `healthkit queue retry` would then start it from step 0"]
        + lines
    )

    def apply(actx: ApplyContext) -> Outcome:
        out = _delete_many(actx, ws, victims, why_not)
        folder = victims[0][0].parent
        if folder.name.startswith(FAILED_PREFIX):
            try:
                folder.rmdir()
            except OSError:
                pass
        return out

    plan.apply = apply
    return [plan]
