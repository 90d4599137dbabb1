"""One workspace's audit in a forked child under a whole-run deadline, so that a hung mount cannot hang `audit PATH`.

Opening the workspace (healthkit.toml), detection and the checks all run in the child; this process only
waits, and past the deadline writes an UNKNOWN report naming what the child was blocked on.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from healthkit.system.deadline import EARLY_CHILDREN, EarlyChild, phase, run_children


def open_early(path: Path | str) -> Any:
    """In the child: the workspace opened and its slow reads started (or the WorkspaceError that stopped it)."""
    from healthkit.core.workspace import Workspace, WorkspaceError

    try:
        with phase("opening the workspace"):
            ws = Workspace.open(path)
        ws.prefetch()
        return ws
    except WorkspaceError as exc:
        return exc


def finish(ws: Any, options: dict[str, Any]) -> tuple[str, Any]:
    """In the child: the audit of the opened workspace, as ("report", Report), ("selector" | "workspace", message)."""
    from healthkit.core.api import audit
    from healthkit.core.selectors import SelectorError
    from healthkit.core.workspace import WorkspaceError

    if isinstance(ws, WorkspaceError):
        return "workspace", str(ws)
    try:
        return "report", audit(ws, select=options["select"], ignore=options["ignore"], timeout_s=options["timeout_s"])
    except SelectorError as exc:
        return "selector", str(exc)
    except WorkspaceError as exc:
        return "workspace", str(exc)


def start_early_audit(path: str) -> None:
    """Fork the audit's child now (healthkit.console, before the CLI is imported): it opens the workspace at once."""
    # What both processes need (the report crosses the pipe; the CLI names the workspace's errors): imported once, here.
    from healthkit.core import registry, report, selectors, workspace  # noqa: F401
    from healthkit.system.fsutil import early_du_fds

    EARLY_CHILDREN[os.path.abspath(path)] = EarlyChild(path, lambda: open_early(path), finish, keep_fds=early_du_fds())


def audit_one_in_child(
    path: Path,
    *,
    select: list[str],
    ignore: list[str],
    timeout_s: float | None,
    deadline_s: float,
    meanwhile: Callable[[], Any] | None = None,
) -> Any:
    """The Report of ``path`` audited in a child; raises SelectorError and WorkspaceError as `api.audit` does.

    ``meanwhile`` runs in this process once the child has its options (the renderer's import, say)."""
    from healthkit.core.selectors import SelectorError
    from healthkit.core.workspace import WorkspaceError
    from healthkit.system.fsutil import early_du_fds

    def job() -> tuple[str, Any]:
        return finish(open_early(path), {"select": select, "ignore": ignore, "timeout_s": timeout_s})

    early = EARLY_CHILDREN.pop(os.path.abspath(path), None)
    if early is not None:  # forked by healthkit.console before the CLI loaded: it has been reading the workspace since
        early.send({"select": select, "ignore": ignore, "timeout_s": timeout_s})
        if meanwhile is not None:
            meanwhile()
        o = early.wait(deadline_s)
    else:
        if meanwhile is not None:
            meanwhile()
        [o] = run_children([(path, job)], deadline_s, keep_fds=early_du_fds())
    if o.timed_out:
        reason = f"the audit did not finish within its {deadline_s:g}s deadline: blocked {o.blocked_words()}"
        if not o.exited:
            reason += f" (PID {o.pid} is still waiting on it)"
        return _unknown(path, reason, o.elapsed_s)
    if o.error is not None or o.result is None:
        return _unknown(path, f"the audit failed: {o.error or 'no report'}", o.elapsed_s)
    kind, value = o.result
    if kind == "selector":
        raise SelectorError(value)
    if kind == "workspace":
        raise WorkspaceError(value)
    return value


def _unknown(path: Path, reason: str, elapsed_s: float) -> Any:
    from healthkit.scheduled.fleet import (
        unreadable_report,  # (and hashlib): only when this process must make the report itself
    )

    return dataclasses.replace(unreadable_report(Path(path).absolute(), reason), duration_s=elapsed_s)


def fix_in_child(path: Path, opts: Any, deadline_s: float, out: Any) -> tuple[str, int]:
    """`healthkit fix` (safe, or any dry run: nothing to ask) in a child under ``deadline_s``: (summary line, exit code).

    Its audit (read-only) is cut at the deadline, naming what blocked it; a fix being applied is never cut: it
    finishes in the child under the fix lock, which the next run sees. Raises what run_fix raises.
    """
    import io

    from healthkit.core.selectors import SelectorError
    from healthkit.core.workspace import WorkspaceError
    from healthkit.fix import FixError, run_fix

    def job() -> tuple[str, Any]:
        text = io.StringIO()
        try:
            run = run_fix(path, opts, text)
            return text.getvalue(), ("done", run.summary_line(), run.exit_code)
        except SelectorError as exc:
            return text.getvalue(), ("selector", str(exc))
        except (WorkspaceError, FixError) as exc:
            return text.getvalue(), ("error", str(exc))

    from healthkit.system.fsutil import early_du_fds

    [o] = run_children([(path, job)], deadline_s, keep_fds=early_du_fds())
    if o.timed_out:
        if o.left_running:
            raise FixError(
                f"the fix passed its {deadline_s:g}s deadline while applying a change: it finishes in PID "
                f"{o.pid} under the fix lock ({o.blocked_words()}); the next run sees the lock"
            )
        raise FixError(
            f"the fix's audit did not finish within its {deadline_s:g}s deadline: blocked {o.blocked_words()}"
            + (f" (PID {o.pid} is still waiting on it)" if not o.exited else "")
            + "; nothing was changed"
        )
    if o.signal is not None and not o.done_result():
        import signal

        try:
            signal.signal(o.signal, signal.SIG_DFL)
        except (OSError, ValueError):
            pass  # SIGKILL and SIGSTOP have no handler to reset
        os.kill(
            os.getpid(), o.signal
        )  # the fix was killed half-way: this process ends the same way, as the fix would have
    if o.error is not None or o.result is None:
        raise FixError(f"the fix failed: {o.error or 'no result'}")
    text, result = o.result
    out.write(text)
    if result[0] == "selector":
        raise SelectorError(result[1])
    if result[0] == "error":
        raise FixError(result[1])
    return result[1], result[2]
