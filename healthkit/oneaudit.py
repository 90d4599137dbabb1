"""One workspace's audit in a forked child under a whole-run deadline, so that a hung mount cannot hang `audit PATH`.

Opening the workspace (healthkit.toml), detection and the checks all run in the child; this process only
waits, and past the deadline writes an UNKNOWN report naming what the child was blocked on.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from .deadline import phase, run_children


def audit_one_in_child(path: Path, *, select: list[str], ignore: list[str], timeout_s: float | None,
                       deadline_s: float) -> Any:
    """The Report of ``path`` audited in a child; raises SelectorError and WorkspaceError as `api.audit` does."""
    from .fleet import unreadable_report
    from .fsutil import early_du_fds
    from .selectors import SelectorError
    from .workspace import WorkspaceError

    def job() -> tuple[str, Any]:
        from .api import audit
        from .workspace import Workspace

        try:
            with phase("opening the workspace"):
                ws = Workspace.open(path)
            return "report", audit(ws, select=select, ignore=ignore, timeout_s=timeout_s)
        except SelectorError as exc:
            return "selector", str(exc)
        except WorkspaceError as exc:
            return "workspace", str(exc)

    [o] = run_children([(path, job)], deadline_s, keep_fds=early_du_fds())
    if o.timed_out:
        reason = f"the audit did not finish within its {deadline_s:g}s deadline: blocked {o.blocked_words()}"
        if not o.exited:
            reason += f" (PID {o.pid} is still waiting on it)"
        return dataclasses.replace(unreadable_report(Path(path).absolute(), reason), duration_s=o.elapsed_s)
    if o.error is not None or o.result is None:
        return dataclasses.replace(unreadable_report(Path(path).absolute(), f"the audit failed: {o.error or 'no report'}"),
                                   duration_s=o.elapsed_s)
    kind, value = o.result
    if kind == "selector":
        raise SelectorError(value)
    if kind == "workspace":
        raise WorkspaceError(value)
    return value
