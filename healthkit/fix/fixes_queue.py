"""`requeue-stuck-file` (safe): move a file stuck in processing/ back to the first pending folder; never delete or edit it."""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

from ..fsutil import is_within
from ..models import Finding, FixRef
from .crash import crash_point
from .fileops import fsync_dir
from .plan import ApplyContext, Outcome, Plan, PlanContext, Safety, applied, failed, fixer, skipped


@fixer("requeue-stuck-file", order=30, codes=("queue.stuck",), safety=Safety.SAFE)
def plan_requeue(ctx: PlanContext, finding: Finding, ref: FixRef) -> list[Plan]:
    ws = ctx.ws
    src = Path(finding.data["path"])
    dest_dir = ws.path(ws.settings.paths.queue_pending[0])
    dst = dest_dir / src.name
    plan = Plan("requeue-stuck-file", Safety.parse(ref.safety), f"Move {src.name} back to {ws.rel(dest_dir)}/",
                f"mv {ws.rel(src)} {ws.rel(dst)}", [finding.code], key=f"requeue:{src}", order=30)
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
