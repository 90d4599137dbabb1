"""Several workspaces, each audited in a forked child under a deadline; a child stuck on a mount is remembered.

One workspace on a mount that stopped answering must not silence the others: its child misses the
deadline and that workspace's report is UNKNOWN, naming what it was blocked on, while every other
report and the textfile are written. A child the kernel will not let die (a process waiting on a dead
mount) is remembered in the job's own state folder, never on the hung mount: the next run reports
"still blocked since T" and forks no second child for that workspace.
"""

from __future__ import annotations

import dataclasses
import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from .deadline import alive, phase, run_children
from .fleet import Audited, folder_name, unreadable_report

STUCK_FOLDER = ".healthkit-stuck"


def audit_in_children(paths: list[Path], *, select: list[str], ignore: list[str], timeout_s: float | None,
                      deadline_s: float, state_dir: Path | None) -> list[Audited]:
    from .registry import default_registry
    from .selectors import audit_names, require_known

    shared = default_registry()  # built before the fork: every child that loads no plugin of its own shares it
    require_known("--select", select, audit_names(shared))  # a usage error, before anything is audited
    require_known("--ignore", ignore, audit_names(shared))
    reports: dict[Path, Any] = {}
    jobs = []
    for path in paths:
        stuck = still_stuck(state_dir, path)
        if stuck is not None:
            reports[path] = unreadable_report(path, stuck)
        else:
            jobs.append((path, _job(path, select, ignore, timeout_s, shared)))
    for o in run_children(jobs, deadline_s):
        path = o.key
        if o.timed_out:
            what = o.blocked_words()
            reason = f"the audit did not finish within its {deadline_s:g}s deadline: blocked {what}"
            if not o.exited:
                remember_stuck(state_dir, path, o.pid, what)
                reason += f" (PID {o.pid} is still waiting on it)"
            report = unreadable_report(path, reason)
        elif o.error is not None or o.result is None:
            report = unreadable_report(path, f"the audit failed: {o.error or 'no report'}")
        else:
            report = o.result
            forget_stuck(state_dir, path)
        reports[path] = report if report.duration_s else dataclasses.replace(report, duration_s=o.elapsed_s)
    return [Audited(p, reports[p]) for p in paths]


def _job(path: Path, select: list[str], ignore: list[str], timeout_s: float | None, shared: Any) -> Any:
    def run() -> Any:
        from .api import audit
        from .workspace import Workspace, WorkspaceError

        try:
            with phase("opening the workspace"):
                ws = Workspace.open(path)
            registry = shared if not ws.settings.checks.plugins else None
            return audit(ws, select=select, ignore=ignore, registry=registry, timeout_s=timeout_s)
        except WorkspaceError as exc:
            return unreadable_report(path, str(exc))

    return run


def _marker(state_dir: Path | None, path: Path) -> Path | None:
    return None if state_dir is None else state_dir / STUCK_FOLDER / f"{folder_name(path)}.json"


def _start_time(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (/proc/PID/stat field 22): a PID reused later differs."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            return fh.read().rsplit(b")", 1)[1].split()[19].decode()
    except (OSError, IndexError):
        return None


def remember_stuck(state_dir: Path | None, path: Path, pid: int, what: str) -> None:
    marker = _marker(state_dir, path)
    if marker is None:
        return
    from .fsutil import atomic_write
    from .jsonio import dumps

    try:
        marker.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(marker, dumps({"workspace": os.fsdecode(path), "pid": pid, "start": _start_time(pid), "what": what,
                                    "since": datetime.now(timezone.utc).isoformat(timespec="seconds")}), durable=False)
    except OSError:
        pass


def still_stuck(state_dir: Path | None, path: Path) -> str | None:
    """Why this workspace is not audited this run: a child of an earlier run is still blocked on it (None: go ahead)."""
    marker = _marker(state_dir, path)
    if marker is None:
        return None
    from .fsutil import CAP_TINY, ReadProblem, read_json

    try:
        data = read_json(marker, CAP_TINY)
    except ReadProblem:
        return None
    pid = data.get("pid") if isinstance(data, dict) else None
    if not isinstance(pid, int) or not alive(pid) or _start_time(pid) != data.get("start"):
        forget_stuck(state_dir, path)
        return None
    return (f"still blocked since {data.get('since')}: the audit of an earlier run (PID {pid}) is waiting on "
            f"{data.get('what')}; no second audit is started while it waits")


def forget_stuck(state_dir: Path | None, path: Path) -> None:
    marker = _marker(state_dir, path)
    if marker is not None:
        try:
            marker.unlink()
        except OSError:
            pass
