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
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from healthkit.scheduled.fleet import Audited, folder_name, unreadable_report
from healthkit.system.deadline import alive, phase, run_children

STUCK_FOLDER = ".healthkit-stuck"


def audit_in_children(
    paths: list[Path],
    *,
    select: list[str],
    ignore: list[str],
    timeout_s: float | None,
    deadline_s: float,
    state_dir: Path | None,
) -> list[Audited]:
    from healthkit.core.registry import default_registry
    from healthkit.core.selectors import audit_names, require_known

    shared = default_registry()  # built before the fork: every child that loads no plugin of its own shares it
    prewarm()
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


def prewarm(fixes: bool = False) -> None:
    """Import, once and before the fork, what every child's audit imports lazily (and load the run formats):
    sixteen children must not each pay for it (no thread is started here)."""
    import tempfile

    import healthkit.contract.monitoring_costs
    import healthkit.core.api
    import healthkit.core.detect
    import healthkit.core.runner
    import healthkit.core.selectors
    import healthkit.formats.hf_checkpoints
    import healthkit.system.gpu
    import healthkit.system.procs
    from healthkit.core.workspace import Workspace
    from healthkit.formats.registry import formats

    formats()
    import psutil

    for _ in psutil.process_iter():  # psutil keeps its Process objects: children scan the table from a warm cache
        pass
    with tempfile.TemporaryDirectory(prefix="healthkit-warm-") as empty:  # settings built and detection run once, on
        Workspace.open(empty).settings  # noqa: B018 - an empty folder: no workspace file is read, no thread started
    if fixes:
        import healthkit.fix.engine
        import healthkit.scheduled.notify  # noqa: F401
        from healthkit.fix.plan import load_fixes

        load_fixes()


def _job(path: Path, select: list[str], ignore: list[str], timeout_s: float | None, shared: Any) -> Any:
    def run() -> Any:
        from healthkit.core.api import audit
        from healthkit.core.workspace import Workspace, WorkspaceError

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
    from healthkit.system.fsutil import atomic_write
    from healthkit.system.jsonio import dumps

    try:
        marker.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(
            marker,
            dumps(
                {
                    "workspace": os.fsdecode(path),
                    "pid": pid,
                    "start": _start_time(pid),
                    "what": what,
                    "since": datetime.now(UTC).isoformat(timespec="seconds"),
                }
            ),
            durable=False,
        )
    except OSError:
        pass


def still_stuck(state_dir: Path | None, path: Path) -> str | None:
    """Why this workspace is not audited this run: a child of an earlier run is still blocked on it (None: go ahead)."""
    marker = _marker(state_dir, path)
    if marker is None:
        return None
    from healthkit.system.fsutil import CAP_TINY, ReadProblem, read_json

    try:
        data = read_json(marker, CAP_TINY)
    except ReadProblem:
        return None
    pid = data.get("pid") if isinstance(data, dict) else None
    if not isinstance(pid, int) or not alive(pid) or _start_time(pid) != data.get("start"):
        forget_stuck(state_dir, path)
        return None
    return (
        f"still blocked since {data.get('since')}: the audit of an earlier run (PID {pid}) is waiting on "
        f"{data.get('what')}; no second audit is started while it waits"
    )


def forget_stuck(state_dir: Path | None, path: Path) -> None:
    marker = _marker(state_dir, path)
    if marker is not None:
        try:
            marker.unlink()
        except OSError:
            pass


class _Said:
    """What the CLI prints of a heal done in a child: its summary line and the channels notified (healthkit.cli)."""

    def __init__(self, line: str, channels: list[dict[str, Any]] | None):
        self._line = line
        self.channels = channels or []

    def summary_line(self) -> str:
        return self._line


def heal_in_children(
    paths: list[Path], heal_one: Any, *, stream: Any, deadline_s: float
) -> list[tuple[Path, Any, str | None]]:
    """Heal each workspace with ``heal_one(path, out) -> (ScheduledRun or None, why not)``, each in a child under
    ``deadline_s``.

    Returns (path, ScheduledRun-like summary or None, why not) per workspace. A child past its deadline while
    it applies a fix is not killed: the change finishes in the child, under the fix lock, which the next run
    sees; a child past its deadline anywhere else (its audit, on a hung mount) is killed and walked away from.
    """
    import io
    from types import SimpleNamespace

    prewarm(fixes=True)

    def job(path: Path) -> Any:
        def run() -> Any:
            text = io.StringIO()
            done, why = heal_one(path, text)
            if done is None:
                return text.getvalue(), None, why
            sent = done.sent.channels if done.sent is not None else None
            return text.getvalue(), (done.report, done.written, done.fix.summary_line(), sent), None

        return run

    out: list[tuple[Path, Any, str | None]] = []
    for o in run_children([(p, job(p)) for p in paths], deadline_s):
        path = o.key
        stream.write(f"== {path}\n")
        if o.timed_out:
            what = o.blocked_words()
            if o.left_running:
                why = (
                    f"the heal passed its {deadline_s:g}s deadline while applying a fix: it finishes in PID {o.pid} "
                    f"under the fix lock ({what}); the next run sees the lock"
                )
            else:
                why = f"the heal's audit did not finish within its {deadline_s:g}s deadline: blocked {what}"
            out.append((path, None, why))
            continue
        if o.error is not None or o.result is None:
            out.append((path, None, f"not healed: {o.error or 'no result'}"))
            continue
        text, summary, why = o.result
        stream.write(text)
        if summary is None:
            out.append((path, None, why))
            continue
        report, written, line, channels = summary
        said = SimpleNamespace(
            report=report,
            written=written,
            fix=_Said(line, None),
            sent=_Said(line, channels) if channels is not None else None,
        )
        out.append((path, said, None))
    return out
