"""One home for "which processes are this workspace's daemon and training", and "did the user stop it".

The audit (checks/daemon.py, checks/queue.py) and the fix engine (fix/fixes_daemon.py)
must agree on both questions, or a fix acts on what the audit did not report. The audit
asks with ``fresh=False`` (the workspace's cached scan, one per audit); a fix about to act
asks with ``fresh=True`` (the process table now, not as it was when the plan was made).
A process counts only when its argv runs a configured pattern *and* it works on this
workspace (``Workspace.owns``: its cwd or an argv path lies inside it).
"""

from __future__ import annotations

import os
from typing import Any

from healthkit.core.workspace import Workspace
from healthkit.system.procs import ProcInfo
from healthkit.system.records import record


def _matching(ws: Workspace, patterns: list[str], fresh: bool) -> list[ProcInfo]:
    if not fresh:
        return ws.processes_matching(patterns)
    from healthkit.system.procs import scan_matching

    return scan_matching(list(patterns))


def daemon_processes(ws: Workspace, fresh: bool = False) -> list[ProcInfo]:
    """Live daemons of this workspace (never this process itself)."""
    me = os.getpid()
    return [p for p in _matching(ws, ws.settings.processes.daemon, fresh) if p.alive and p.pid != me and ws.owns(p)]


def training_processes(ws: Workspace, fresh: bool = False) -> list[ProcInfo]:
    """Training processes of this workspace; a launcher and its workers count once (the top-most)."""
    me = os.getpid()
    found = [p for p in _matching(ws, ws.settings.processes.training, fresh) if p.alive and p.pid != me and ws.owns(p)]
    pids = {p.pid for p in found}
    return [p for p in found if p.ppid not in pids]


@record
class StopRequest:
    """A stop the user asked for, as the daemon recorded it when it stopped (status/daemon_state.json)."""

    at: str
    by: str
    reason: str


def stopped_on_request(ws: Workspace) -> StopRequest | None:
    """The recorded stop on request, when the daemon's last state is `stopped` because someone asked.

    Only the state file says so: a daemon that died leaves `running`, `crashed` or the like,
    and a daemon started again clears the record.
    """
    st = ws.daemon_state
    if not st.is_object or st.data.get("state") != "stopped":
        return None
    req: Any = st.data.get("stop_request")
    if not isinstance(req, dict):
        return None
    return StopRequest(
        str(req.get("at") or st.data.get("stopped_at") or "?"),
        str(req.get("by") or "unknown"),
        str(req.get("reason") or "no reason given"),
    )


@record
class RemoteLease:
    """The workspace's lease when another host wrote it: judged by its content only (healthkit.contract.lease)."""

    lease: Any  # healthkit.contract.lease.Lease
    fresh: bool
    age_s: float  # since its last renewal, on our clock (negative: the writer's clock is ahead)
    margin_s: float

    @property
    def expired_for_s(self) -> float:
        return max(0.0, self.age_s - self.lease.lease_seconds - self.margin_s)


def remote_lease(ws: Workspace, fresh: bool = False, now: float | None = None) -> RemoteLease | None:
    """The lease when another host holds (or held) the workspace and has not released it, else None.

    The audit and the fixes ask the same question: a remote daemon is judged by its lease, never by a local PID.
    ``fresh``: read the file now (a fix about to act), not the audit's cached view."""
    import time

    from healthkit.contract.lease import lease_path, read_lease

    found = read_lease(lease_path(ws.pid_path), ws.reader) if fresh else ws.lease
    lease = found.lease
    if lease is None or lease.released_at is not None or lease.is_local():
        return None
    t = time.time() if now is None else now
    margin = ws.settings.thresholds.clock_skew_seconds
    return RemoteLease(lease, lease.fresh(t, margin), t - lease.renewed_at, margin)


WATCHER_MODULE = "healthkit.fix.start_after"  # the detached "start the daemon once the training ends" watcher


def scheduled_starts(ws: Workspace, fresh: bool = False) -> list[ProcInfo]:
    """Watchers of this workspace waiting to start its daemon once a training has ended."""
    return [p for p in _matching(ws, [WATCHER_MODULE], fresh) if p.alive and ws.owns(p)]


def supervisor_alive(state: dict[str, Any]) -> bool:
    """Whether the supervisor that status/supervisor_state.json names is still that process (its PID, our supervisor's
    argv, the start time it recorded): `daemon status` and the audit ask the same question (a dead supervisor's state
    file still says `running`)."""
    from healthkit.contract.states import SUPERVISOR_MODULE
    from healthkit.system.procs import argv_matches, probe, start_time_matches

    pid, started = state.get("pid"), state.get("create_time")
    if not isinstance(pid, int) or isinstance(pid, bool) or pid <= 0:
        return False
    live = probe(pid)
    return (
        live.alive
        and live.info is not None
        and argv_matches(live.info.cmdline, [SUPERVISOR_MODULE]) is not None
        and start_time_matches(live.info, started if isinstance(started, (int, float)) else None)
    )
