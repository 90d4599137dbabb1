"""Is the daemon alive, is the PID file telling the truth, and is any training running unwatched?"""

from __future__ import annotations

import os
import re
import shlex
import stat
from dataclasses import field
from pathlib import Path

from healthkit import CheckOutput, CodeDoc, Evidence, Finding, FixRef, Healthy, Severity, check
from healthkit.core.ownership import (
    RemoteLease,
    daemon_processes,
    remote_lease,
    scheduled_starts,
    stopped_on_request,
    supervisor_alive,
    training_processes,
)
from healthkit.core.workspace import Workspace
from healthkit.system.procs import ProcInfo, ancestors, argv_matches, probe, start_time_matches
from healthkit.system.records import identity_record, record
from healthkit.system.redact import redact_argv, redact_text

from ._common import ago, iso, jq_pick, parse_time, q, tail_text

START_DAEMON = FixRef("start-daemon", "Start the daemon (it adopts running training and continues the queue)", "safe")
REMOVE_PID = FixRef("remove-stale-pid-file", "Remove the stale PID file", "safe")
REMOVE_MALFORMED = FixRef("remove-malformed-pid-file", "Remove the malformed PID file", "safe")
ADOPT = FixRef("adopt-orphan", "Start the daemon so that it adopts the orphaned training", "safe")
KILL = FixRef("kill-orphan", "Stop the orphaned training by its verified PID (SIGTERM, then SIGKILL)", "unsafe")

DEAD = CodeDoc(
    "daemon.dead",
    "critical",
    "PID file names a process that does not exist",
    what="The daemon's PID file names a process that is gone (or a zombie): the daemon died without cleaning up.",
    why="Nothing drives the queue: queued files are not trained, pause/resume/stop requests go unheeded, and a crash of the "
    "current training is not restarted. A training child may still run on as an orphan.",
    fix="`healthkit fix --safe` removes the stale PID file (only once the process is proven gone) and starts the daemon, "
    "which adopts a running orphan instead of starting a second training.",
    fix_safety="Safe: nothing that runs is signalled; the PID file is removed only when its process is provably gone.",
    fixes=(REMOVE_PID, START_DAEMON),
)
PID_REUSED = CodeDoc(
    "daemon.pid-reused",
    "critical",
    "PID file names a live process that is not the daemon",
    what="The PID in the PID file now belongs to another process (its command line or start time does not match the daemon): "
    "the daemon died and the kernel reused its PID.",
    why="Tools that trust the PID file would signal an unrelated process; meanwhile nothing drives the queue.",
    fix="Remove the stale PID file and start the daemon. The process that holds the PID is never signalled.",
    fix_safety="Safe: the unrelated process is never touched.",
    fixes=(REMOVE_PID, START_DAEMON),
)
MALFORMED = CodeDoc(
    "daemon.pid-malformed",
    "warning",
    "PID file is not a PID file",
    what="The PID file is empty, holds no valid PID, is a symlink, a FIFO, a directory or far too large.",
    why="Nobody can tell from it whether the daemon runs; a daemon start may refuse to run or a script may act on garbage.",
    fix="Remove it (when no daemon of this workspace runs) and start the daemon, which writes a proper one.",
    fix_safety="Safe when no live daemon of this workspace exists.",
    fixes=(REMOVE_MALFORMED, START_DAEMON),
)
NOT_RUNNING = CodeDoc(
    "daemon.not-running",
    "warning",
    "No daemon while work is queued or training runs",
    what="There is no PID file and no daemon process, although files wait in the queue or training is running.",
    why="Queued files will never be trained and nothing supervises the running training.",
    fix="Start the daemon (`healthkit fix --safe` or `healthkit daemon start`).",
    fix_safety="Safe: the daemon adopts running training rather than starting a second one.",
    fixes=(START_DAEMON,),
)
ORPHANED = CodeDoc(
    "daemon.orphaned-training",
    "warning",
    "Training runs with no daemon over it",
    what="A training process of this workspace runs without a live daemon supervising it (its daemon died, or it was started by hand).",
    why="When it finishes, nothing takes the next queued file; if it crashes nothing restarts it; pause/stop requests are ignored.",
    fix="Safe: start the daemon so that it adopts the running training (or waits for it) and then continues the queue. "
    "Unsafe: stop it by its verified PID (SIGTERM, then SIGKILL after a grace), never by a pattern match.",
    fix_safety="The safe fix never kills the training; killing it loses the work since its last checkpoint.",
    fixes=(ADOPT, KILL),
)

STOPPED = CodeDoc(
    "daemon.stopped",
    "info",
    "The daemon was stopped on request",
    what="The daemon is not running because someone asked it to stop (`healthkit daemon stop`, or a SIGTERM); it recorded "
    "who, when and why in status/daemon_state.json before it exited.",
    why="Nothing is broken: a file it was training waits in processing/ with its checkpoint and resumes on the next start; "
    "queued files wait too.",
    fix="None: a daemon the user stopped stays stopped. Start it yourself with `healthkit daemon start` when you want it back.",
    fix_safety="No fix restarts a daemon that was stopped on request.",
)

RESTARTED = CodeDoc(
    "daemon.restarted",
    "info",
    "The daemon crashed and its supervisor restarted it",
    what="The daemon runs under our supervisor (`healthkit daemon start --supervise`), which recorded in "
    "status/supervisor_state.json that the daemon crashed (its PID, the signal or exit code, when) and restarted it.",
    why="Nothing is broken now (the restarted daemon adopts a training that outlived the crash), but a crash has a cause: "
    "a SIGKILL is often the kernel's OOM killer, and repeated crashes end in the supervisor giving up.",
    fix="None needed; find the cause in logs/daemon.out, logs/daemon.log and logs/supervisor.log around the crash time.",
    fix_safety="No fix: the supervisor already restarted it.",
)
SUPERVISOR_DEAD = CodeDoc(
    "daemon.supervisor-dead",
    "warning",
    "The daemon runs on, but its supervisor is gone",
    what="The daemon was started under our supervisor (`healthkit daemon start --supervise`), whose state file still says "
    "`running`, but that process is gone (killed, or it crashed): the daemon runs unsupervised.",
    why="The next crash of the daemon is not restarted: the queue stops until someone notices.",
    fix="Restart the daemon under a supervisor when convenient: `healthkit daemon stop WS` (the training saves a "
    "checkpoint first) then `healthkit daemon start WS --supervise`; it resumes from that checkpoint.",
    fix_safety="No automatic fix: restarting interrupts the running training, which is the user's call.",
)

REMOTE = CodeDoc(
    "daemon.remote",
    "info",
    "The daemon runs on another host",
    what="The workspace's lease (`.daemon.lease`, beside the PID file) was written by a daemon on another host (its host "
    "name or boot id differs from this one's) and is fresh: renewed within its lease length plus "
    "`[thresholds] clock_skew_seconds`. The daemon is judged by that lease, never by a local PID, which means "
    "nothing here.",
    why="Nothing is wrong: the workspace sits on shared storage and its daemon runs on a compute node. Its training "
    "state is read from the status files; local processes of the workspace are not called orphaned.",
    fix="None. Look at it on that host (`healthkit daemon status WS` there). No fix starts a daemon here while the "
    "lease is fresh.",
    fix_safety="No fix: starting a second daemon would train the workspace twice.",
)
LEASE_EXPIRED = CodeDoc(
    "daemon.lease-expired",
    "critical",
    "The daemon's lease on another host expired",
    what="The workspace's lease names a daemon on another host, and it was not renewed within its lease length plus "
    "`[thresholds] clock_skew_seconds`: that host is down, cut off from the storage, or its daemon died.",
    why="Nothing drives the queue. A daemon that cannot renew stops training before its lease expires (fencing), so "
    "no training of that generation commits a checkpoint any more.",
    fix="`healthkit fix --safe` starts a daemon here: it claims the next lease generation and continues the queue "
    "from the newest complete checkpoint. A dead host's PID file and its stale lock at the file server are no "
    "reason to refuse once the lease has expired.",
    fix_safety="Safe: the expired holder has fenced itself; the new daemon's generation supersedes it.",
    fixes=(START_DAEMON,),
)


@record
class _Supervision:
    """What status/supervisor_state.json recorded, and whether that supervisor is still the live process."""

    data: dict
    pid: int | None
    alive: bool

    @property
    def restarts(self) -> int:
        n = self.data.get("restarts")
        return n if isinstance(n, int) and not isinstance(n, bool) else 0

    @property
    def crash(self) -> dict:
        c = self.data.get("last_crash")
        return c if isinstance(c, dict) else {}


def _supervision(ws: Workspace) -> _Supervision | None:
    sv = ws.supervisor_state
    if not sv.is_object:
        return None
    pid = sv.data.get("pid")
    pid = pid if isinstance(pid, int) and not isinstance(pid, bool) and pid > 0 else None
    return _Supervision(sv.data, pid, supervisor_alive(sv.data))


def _crash_text(c: dict) -> str:
    how = f"killed by {c['signal']}" if c.get("signal") else f"exited with code {c.get('exit_code')}"
    after = f" after {ago(c['after_s'])}" if isinstance(c.get("after_s"), (int, float)) else ""
    return f"daemon PID {c.get('daemon_pid')} was {how} at {c.get('at')}{after}"


def _supervisor_evidence(ws: Workspace) -> list[Evidence]:
    sv = ws.supervisor_state
    keys = [k for k in ("state", "pid", "started_at", "restarts", "last_crash", "ended_at", "reason") if k in sv.data]
    out = [Evidence(f"jq '{{{', '.join(keys)}}}' {q(ws, sv.path)}", redact_text(jq_pick(sv.data, keys)))]
    log = ws.path(ws.settings.paths.logs) / "supervisor.log"
    tail = [redact_text(x) for x in tail_text(log, lines=3)]
    if tail:
        out.append(Evidence(f"tail -n 3 {q(ws, log)}", "\n".join(tail)))
    return out


def _supervision_line(ws: Workspace, sup: _Supervision | None) -> str:
    """Root cause: what supervised the daemon, said as what it is (a dead supervisor is not "nothing supervises")."""
    if sup is None:
        return "Nothing supervises the daemon itself (no systemd unit or `healthkit daemon start --supervise`)"
    d, who = sup.data, f"supervisor (PID {sup.pid}, started {sup.data.get('started_at')})"
    history = (
        f"; it had restarted the daemon {sup.restarts} time(s), last when {_crash_text(sup.crash)}"
        if sup.restarts and sup.crash
        else ""
    )
    if sup.alive:
        return f"The daemon's {who} is alive and restarts it ({sup.restarts} restart(s) so far)"
    if d.get("state") == "running":
        return (
            f"The daemon ran under a {who}, which is gone too: it ended without recording why (killed, or the "
            f"machine restarted), so nothing restarted the daemon{history}"
        )
    return f"The daemon's {who} ended at {d.get('ended_at')}: {d.get('reason')}{history}"


def _rule_restarted(ws: Workspace, seen: _Seen) -> None:
    """`daemon.restarted` (info): the live supervisor recorded a crash of the daemon and restarted it."""
    sup = seen.supervision
    if sup is None:
        return
    seen.facts["supervisor"] = {
        "pid": sup.pid,
        "alive": sup.alive,
        "state": sup.data.get("state"),
        "restarts": sup.restarts,
        "last_crash": sup.crash or None,
    }
    if (
        not sup.alive
        and sup.data.get("state") == "running"
        and seen.verified is not None
        and ws.daemon_state.is_object
        and ws.daemon_state.data.get("supervised") is True
    ):
        seen.findings.append(_supervisor_dead_finding(ws, sup, seen.verified))
    if not (sup.alive and sup.restarts and sup.crash):
        return
    seen.findings.append(
        Finding(
            code=RESTARTED.code,
            severity=Severity.INFO,
            title="Daemon crashed and was restarted by its supervisor",
            problem=[
                f"The {_crash_text(sup.crash)}",
                f"Its supervisor (PID {sup.pid}) restarted it: {sup.restarts} restart(s) since {sup.data.get('started_at')}",
            ],
            impact=[
                "The restarted daemon adopts a training that outlived the crash; a crash has a cause, and repeated ones "
                "end with the supervisor giving up"
            ],
            evidence=_supervisor_evidence(ws),
            recommendations=[
                "Find the cause in logs/daemon.out and logs/daemon.log around the crash time (a SIGKILL is often "
                "the kernel's OOM killer: `journalctl -k | grep -i oom`)"
            ],
            fixes=[],
            urgency="long-term",
            data={"supervisor_pid": sup.pid, "restarts": sup.restarts, "last_crash": sup.crash},
        )
    )


def _supervisor_dead_finding(ws: Workspace, sup: _Supervision, daemon: ProcInfo) -> Finding:
    base = shlex.quote(str(ws.base))
    return Finding(
        code=SUPERVISOR_DEAD.code,
        severity=Severity.WARNING,
        title="Daemon runs unsupervised: its supervisor is gone",
        problem=[
            f"The daemon (PID {daemon.pid}) was started under a supervisor (PID {sup.pid}, started "
            f"{sup.data.get('started_at')}), which is gone: it ended without recording why (killed?)",
            f"The daemon's parent is now PID {daemon.ppid}",
        ],
        impact=["The next crash of the daemon is not restarted; the queue stops until someone notices"],
        evidence=[
            *_supervisor_evidence(ws),
            _ps_evidence(sup.pid or 0, None, "dead"),
            Evidence(f"ps -o pid,ppid,args -p {daemon.pid}", f"{daemon.pid} {daemon.ppid} {daemon.display_cmd()}"),
        ],
        root_cause=["The supervisor process was killed (kill -9, the OOM killer) while the daemon it started ran on"],
        recommendations=[
            f"When convenient: `healthkit daemon stop {base}` (training saves a checkpoint first), then "
            f"`healthkit daemon start {base} --supervise`"
        ],
        fixes=[],
        urgency="short-term",
        data={"supervisor_pid": sup.pid, "daemon_pid": daemon.pid, "restarts": sup.restarts},
    )


def _descends_from(p: ProcInfo, ancestor: int) -> bool:
    return ancestor in ancestors(p.pid)


def _adopted_child(ws: Workspace) -> tuple[int | None, float | None]:
    st = ws.daemon_state
    if not st.is_object:
        return None, None
    pid = st.data.get("child_pid")
    started = parse_time(st.data.get("child_started_at"))
    return (pid if isinstance(pid, int) and not isinstance(pid, bool) else None), started


def _is_our_daemon(ws: Workspace, info: ProcInfo) -> tuple[bool, str]:
    """Command line *and* start time must match; either alone is how PID reuse fools people."""
    if not argv_matches(info.cmdline, ws.settings.processes.daemon):
        return False, f"its command line is `{info.display_cmd()}`, not the daemon's"
    pf = ws.pid_file
    if pf.start_time is not None and not start_time_matches(info, pf.start_time):
        return False, f"it started at {iso(info.create_time)}, but the PID file records {iso(pf.start_time)}"
    if pf.start_time is None and pf.mtime is not None and info.create_time > pf.mtime + 2.0:
        return False, f"it started at {iso(info.create_time)}, after the PID file was written ({iso(pf.mtime)})"
    return True, ""


def _pid_evidence(ws: Workspace) -> Evidence:
    pf = ws.pid_file
    shown = pf.preview if pf.preview else (f"({pf.reason})" if pf.reason else "")
    return Evidence(f"cat {q(ws, pf.path)}", shown)


_FILE_TYPES = {
    stat.S_IFREG: "regular file",
    stat.S_IFDIR: "directory",
    stat.S_IFLNK: "symbolic link",
    stat.S_IFIFO: "fifo",
    stat.S_IFSOCK: "socket",
    stat.S_IFCHR: "character special file",
    stat.S_IFBLK: "block special file",
}


def _stat_evidence(ws: Workspace, path: Path) -> Evidence:
    """What `stat -c '%F %s bytes'` prints for the PID file (the conclusion drawn from it belongs in the problem)."""
    rel = ws.rel(path)
    try:
        st = os.lstat(path)
    except OSError as exc:
        return Evidence(f"stat -c '%F %s bytes' {q(ws, path)}", f"stat: cannot statx '{rel}': {exc.strerror}")
    kind = _FILE_TYPES.get(stat.S_IFMT(st.st_mode), "weird file")
    if kind == "regular file" and st.st_size == 0:
        kind = "regular empty file"
    return Evidence(f"stat -c '%F %s bytes' {q(ws, path)}", f"{kind} {st.st_size} bytes")


def _ps_evidence(pid: int, info: ProcInfo | None, state: str) -> Evidence:
    cmd = f"ps -o pid,ppid,stat,lstart,args -p {pid}"
    if info is None:
        return Evidence(cmd, f"Process {pid} does not exist")
    if state == "zombie":
        return Evidence(cmd, f"{pid} {info.ppid} Z  (zombie: exited, not yet reaped) {info.display_cmd()}")
    return Evidence(cmd, f"{pid} {info.ppid} {info.status} started {iso(info.create_time)}  {info.display_cmd()}")


def _impact(ws: Workspace, orphans: list[ProcInfo]) -> list[str]:
    queue = ws.queue
    out = []
    n = len(queue.pending)
    if n:
        out.append(
            f"{n} queued file{'s' if n != 1 else ''} in {', '.join(ws.settings.paths.queue_pending)} will not be trained"
        )
    else:
        out.append("No queue management: files added to the queue will not be picked up")
    ctrl = ws.path(ws.settings.paths.control)
    try:
        pending_ctrl = sorted(e.name for e in os.scandir(ctrl) if e.is_file() and not e.name.endswith(".json"))
    except OSError:
        pending_ctrl = []
    if pending_ctrl:
        out.append(f"Control requests waiting unheeded in {ws.rel(ctrl)}/: {', '.join(pending_ctrl)}")
    else:
        out.append("Pause/resume/stop requests will go unheeded")
    out.append("No auto-restart: if training crashes, nothing resumes it")
    if orphans:
        out.append("The running training will finish its current file, then nothing happens after it")
    return out


def _refusal(ws: Workspace) -> list[str]:
    """Why the last start was refused, as the daemon recorded it (its start-up checks, exit 78)."""
    st = ws.daemon_state
    err = st.data.get("error") if st.is_object and st.data.get("state") in ("stopped", "gave-up") else None
    if not isinstance(err, str) or not err.strip():
        return []
    when = st.data.get("stopped_at") or st.data.get("gave_up_at")
    return [
        f"The last start was refused{f' ({when})' if when else ''}: "
        + redact_text(" | ".join(err.strip().splitlines()))[:600]
    ]


def _root_cause(ws: Workspace, sup: _Supervision | None = None) -> tuple[list[str], list[Evidence]]:
    lines: list[str] = []
    evidence: list[Evidence] = []
    st = ws.daemon_state
    if st.is_object:
        keys = [k for k in ("state", "paused_at", "pause_reason", "updated_at", "restarts") if k in st.data]
        if keys:
            evidence.append(
                Evidence(f"jq '{{{', '.join(keys)}}}' {q(ws, st.path)}", redact_text(jq_pick(st.data, keys)))
            )
        state = st.data.get("state")
        reason = st.data.get("pause_reason") or st.data.get("reason")
        if state:
            lines.append(
                f"The daemon's last recorded state was `{state}`" + (f" (reason: {reason!r})" if reason else "")
            )
    if st.mtime:
        lines.append(f"The daemon last wrote its state {ago(ws.now - st.mtime)} ago ({iso(st.mtime)})")
    logs = ws.path(ws.settings.paths.logs)
    try:
        newest = max(
            (Path(e.path) for e in os.scandir(logs) if e.is_file() and "daemon" in e.name),
            key=lambda p: p.stat().st_mtime,
        )
    except (OSError, ValueError):
        newest = None
    if newest is not None:
        tail = [redact_text(x) for x in tail_text(newest, lines=6)]
        if tail:
            evidence.append(Evidence(f"tail -n 6 {q(ws, newest)}", "\n".join(tail)))
            if any(re.search(r"Traceback|Error|Killed|MemoryError|SIGKILL", x) for x in tail):
                lines.append(f"The daemon log ends with an error: {tail[-1].strip()[:200]}")
    lines.append(_supervision_line(ws, sup))
    if sup is not None:
        evidence += _supervisor_evidence(ws)
    return lines, evidence


def _orphan_finding(ws: Workspace, orphans: list[ProcInfo], why_unwatched: str) -> Finding:
    oldest = min(orphans, key=lambda p: p.create_time)
    problem = [
        f"{len(orphans)} training process{'es' if len(orphans) > 1 else ''} of this workspace run{'s' if len(orphans) == 1 else ''} with no daemon over {'them' if len(orphans) > 1 else 'it'} ({why_unwatched})"
    ]
    for p in orphans:
        problem.append(f"PID {p.pid}, running for {ago(p.age_s(ws.now))}: `{p.display_cmd(120)}`")
    evidence = [
        Evidence(f"ps -o pid,ppid,etime,args -p {p.pid}", f"{p.pid} {p.ppid} {ago(p.age_s(ws.now))} {p.display_cmd()}")
        for p in orphans
    ]
    watchers = scheduled_starts(ws)
    if watchers:
        problem.append(
            f"A daemon start is scheduled for when it ends (watcher PID {watchers[0].pid}, set up by `healthkit fix`)"
        )
    started = parse_time(ws.status_value("started_at"))
    if started and started < oldest.create_time:
        problem.append(f"The training run itself started {ago(ws.now - started)} ago (status file `started_at`)")
    # Unwatched since the later of its own start and the daemon's last sign of life.
    unwatched_since = max(oldest.create_time, ws.daemon_state.mtime or 0.0)
    return Finding(
        code=ORPHANED.code,
        severity=Severity.WARNING,
        title="Training is running unsupervised",
        problem=problem,
        impact=[
            f"{ago(ws.now - unwatched_since)} of training without daemon oversight so far",
            "When it finishes, nothing takes the next queued file; if it crashes, nothing resumes it",
        ],
        evidence=evidence,
        root_cause=["The daemon that started it died (or it was started by hand) and the process was re-parented"],
        recommendations=[
            "Do not kill it: let it finish. Start the daemon so that it adopts the running training and continues the queue afterwards"
        ],
        fixes=[ADOPT, KILL],
        urgency="immediate",
        data={
            "orphans": [
                {"pid": p.pid, "create_time": p.create_time, "cmdline": redact_argv(p.cmdline)} for p in orphans
            ],
            "scheduled_start": watchers[0].pid if watchers else None,
        },
    )


@identity_record
class _Seen:
    """What the daemon rules share: one process scan, the verified daemon, and what they found."""

    trainings: list[ProcInfo]
    daemons: list[ProcInfo]
    verified: ProcInfo | None = None
    supervision: _Supervision | None = None
    remote: RemoteLease | None = None
    findings: list[Finding] = field(default_factory=list)
    healthy: list[Healthy] = field(default_factory=list)
    facts: dict = field(default_factory=dict)


def _dead_finding(ws: Workspace, seen: _Seen, state: str, info: ProcInfo | None) -> Finding:
    pf = ws.pid_file
    died = f"; the PID file was written {ago(ws.now - pf.mtime)} ago" if pf.mtime else ""
    problem = [
        f"`{q(ws, pf.path)}` contains PID {pf.pid}",
        f"Process {pf.pid} does not exist"
        if state == "dead"
        else f"Process {pf.pid} is a zombie: it exited and was never reaped",
        f"The daemon died and was never restarted{died}",
    ]
    if seen.trainings:
        problem.append(
            f"Training IS running, but as an orphaned process (PID {', '.join(str(p.pid) for p in seen.trainings)})"
        )
    rc, rc_ev = _root_cause(ws, seen.supervision)
    supervise = (
        "Start it under its supervisor again (`healthkit fix --safe` does: the daemon ran supervised)"
        if seen.supervision is not None
        else "Run it under a supervisor (`healthkit daemon start --supervise`, or the systemd unit from `healthkit daemon systemd-unit`)"
    )
    return Finding(
        code=DEAD.code,
        severity=Severity.CRITICAL,
        title="Daemon is dead",
        problem=problem,
        impact=_impact(ws, seen.trainings),
        evidence=[_pid_evidence(ws), _ps_evidence(pf.pid, info, state), *rc_ev],
        root_cause=rc,
        recommendations=["Start the daemon again: it adopts the running training and continues the queue", supervise],
        fixes=[REMOVE_PID, START_DAEMON],
        urgency="immediate",
        data={"pid": pf.pid, "pid_file": str(pf.path), "state": state},
    )


def _reused_finding(ws: Workspace, seen: _Seen, info: ProcInfo, why: str) -> Finding:
    pf = ws.pid_file
    return Finding(
        code=PID_REUSED.code,
        severity=Severity.CRITICAL,
        title="PID file points at another process",
        problem=[
            f"`{q(ws, pf.path)}` contains PID {pf.pid}",
            f"Process {pf.pid} is alive, but is not this workspace's daemon: {why}",
            "The daemon died and its PID was reused",
        ],
        impact=_impact(ws, seen.trainings)
        + [f"Anything that trusts the PID file would signal an unrelated process (PID {pf.pid})"],
        evidence=[_pid_evidence(ws), _ps_evidence(pf.pid, info, "alive")],
        root_cause=_root_cause(ws, seen.supervision)[0],
        recommendations=["Remove the stale PID file and start the daemon; never signal PID " + str(pf.pid)],
        fixes=[REMOVE_PID, START_DAEMON],
        urgency="immediate",
        data={
            "pid": pf.pid,
            "pid_file": str(pf.path),
            "create_time": info.create_time,
            "cmdline": redact_argv(info.cmdline),
        },
    )


def _lease_evidence(ws: Workspace, r: RemoteLease) -> list[Evidence]:
    le = r.lease
    path = q(ws, ws.lease.path)
    keys = ["host", "pid", "generation", "lease_seconds", "renewed_at", "renewed_by"]
    shown = jq_pick({**le.to_json(), "renewed_at": iso(le.renewed_at)}, keys)
    return [
        Evidence(f"jq '{{{', '.join(keys)}}} | .renewed_at |= todate' {path}", redact_text(shown)),
        Evidence("date -u +%Y-%m-%dT%H:%M:%SZ", iso(ws.now)),
    ]


def _training_line(ws: Workspace) -> str | None:
    """What the status files say the remote training does (its state, step)."""
    if not ws.status.is_object:
        return None
    d = ws.status.data
    state, step, total = (
        d.get(ws.status_key("state")),
        d.get(ws.status_key("step")),
        d.get(ws.status_key("total_steps")),
    )
    if state is None and step is None:
        return None
    upd = d.get(ws.status_key("updated_at"))
    return (
        f"Its training status says `{state}`"
        + (f", step {step}" + (f"/{total}" if total else "") if step is not None else "")
        + (f" (updated {upd})" if upd else "")
    )


def _rule_lease(ws: Workspace, seen: _Seen) -> None:
    """`daemon.remote` (info) / `daemon.lease-expired` (critical): a daemon on another host, judged by its lease alone."""
    r = remote_lease(ws, now=ws.now)
    if r is None:
        return
    seen.remote = r
    le = r.lease
    renewed = (
        f"{max(0.0, r.age_s):.0f} s ago" if r.age_s >= 0 else f"{-r.age_s:.0f} s in the future (its clock is ahead)"
    )
    seen.facts["daemon"] = {
        "state": "remote" if r.fresh else "lease-expired",
        "pid": le.pid,
        "host": le.host,
        "generation": le.generation,
        "renewed_at": iso(le.renewed_at),
    }
    data = {
        "host": le.host,
        "boot_id": le.boot_id,
        "pid": le.pid,
        "generation": le.generation,
        "renewed_at": le.renewed_at,
        "lease_seconds": le.lease_seconds,
        "margin_seconds": r.margin_s,
        "workspace_id": le.workspace_id,
    }
    if r.fresh:
        problem = [
            f"The daemon runs on {le.host}, renewed {renewed} (PID {le.pid} there, lease generation {le.generation})"
        ]
        if le.renewed_by not in (None, le.pid):
            problem.append(
                f"The last renewal came from its training (PID {le.renewed_by} on {le.host}): the daemon "
                "there has died and its training runs on"
            )
        line = _training_line(ws)
        if line:
            problem.append(line)
        seen.findings.append(
            Finding(
                code=REMOTE.code,
                severity=Severity.INFO,
                title=f"Daemon runs on {le.host}",
                problem=problem,
                impact=["None: its liveness is its lease; a local PID says nothing about a process on another host"],
                evidence=_lease_evidence(ws, r),
                recommendations=[f"Look at it on {le.host}: `healthkit daemon status {shlex.quote(str(ws.base))}`"],
                fixes=[],
                urgency="long-term",
                data=data,
            )
        )
        return
    seen.findings.append(
        Finding(
            code=LEASE_EXPIRED.code,
            severity=Severity.CRITICAL,
            title=f"Daemon on {le.host} lost its lease",
            problem=[
                f"The lease of the daemon on {le.host} (PID {le.pid} there, generation {le.generation}) expired: last "
                f"renewed {iso(le.renewed_at)} ({renewed}); lease {le.lease_seconds:.0f} s plus a clock-skew margin of "
                f"{r.margin_s:.0f} s",
                f"{le.host} is down, cut off from the storage, or its daemon died there",
            ],
            impact=_impact(ws, seen.trainings)
            + [
                "A daemon that cannot renew stops training before its lease expires: no "
                "training of that generation commits a checkpoint any more"
            ],
            evidence=_lease_evidence(ws, r),
            root_cause=[f"No renewal from {le.host} for {ago(max(0.0, r.age_s))}"],
            recommendations=[
                "Start the daemon here (`healthkit fix --safe`): it takes the next lease generation and continues "
                "the queue from the newest complete checkpoint",
                f"Find out what happened to {le.host}",
            ],
            fixes=[START_DAEMON],
            urgency="immediate",
            data=data,
        )
    )


def _rule_pid_file(ws: Workspace, seen: _Seen) -> None:
    """`daemon.dead` / `daemon.pid-reused` from a well-formed PID file, or the verified running daemon."""
    pf = ws.pid_file
    if pf.state != "ok" or seen.remote is not None:  # another host's PID: its lease says whether it lives
        return
    live = probe(pf.pid)
    if live.state in ("dead", "zombie"):
        seen.facts["daemon"] = {"state": "dead", "pid": pf.pid}
        seen.findings.append(_dead_finding(ws, seen, live.state, live.info))
    elif live.state == "alive-eperm":
        seen.facts["daemon"] = {"state": "running", "pid": pf.pid}
        seen.healthy.append(
            Healthy(
                "Daemon PID is alive",
                [f"PID {pf.pid} is alive but owned by another user; its identity could not be verified"],
            )
        )
    else:
        ok, why = _is_our_daemon(ws, live.info)  # type: ignore[arg-type]
        if ok:
            seen.verified = live.info
            seen.facts["daemon"] = {"state": "running", "pid": pf.pid}
            seen.healthy.append(
                Healthy(
                    "Daemon is running",
                    [f"PID {pf.pid}, up {ago(live.info.age_s(ws.now))}", f"`{live.info.display_cmd(100)}`"],  # type: ignore[union-attr]
                )
            )
        else:
            seen.facts["daemon"] = {"state": "pid-reused", "pid": pf.pid}
            seen.findings.append(_reused_finding(ws, seen, live.info, why))  # type: ignore[arg-type]


def _rule_malformed(ws: Workspace, seen: _Seen) -> None:
    """`daemon.pid-malformed`; a daemon found by its command line still counts as running."""
    pf = ws.pid_file
    pid_rel = q(ws, pf.path)
    if seen.remote is not None:
        return
    if pf.state == "malformed":
        seen.facts["daemon"] = {"state": "malformed", "pid": None}
        seen.findings.append(
            Finding(
                code=MALFORMED.code,
                severity=Severity.WARNING,
                title="PID file is malformed",
                problem=[f"`{pid_rel}` cannot be used: {pf.reason}"],
                impact=["Whether the daemon runs cannot be told from its PID file; a daemon start may refuse to run"],
                evidence=[_stat_evidence(ws, pf.path), _pid_evidence(ws)],
                recommendations=["Remove it and start the daemon, which writes a valid one"],
                fixes=[REMOVE_MALFORMED, START_DAEMON] if not seen.daemons else [],
                urgency="immediate",
                data={"pid_file": str(pf.path), "reason": pf.reason},
            )
        )
    if seen.verified is None and pf.state != "ok" and seen.daemons:
        # Running without (a valid) PID file: it is still a daemon over the training.
        seen.verified = seen.daemons[0]
        seen.healthy.append(
            Healthy(
                "Daemon process is running",
                [f"PID {seen.verified.pid} (found by its command line; the PID file does not name it)"],
            )
        )
        seen.facts.setdefault("daemon", {"state": "running", "pid": seen.verified.pid})


def _work(ws: Workspace, seen: _Seen) -> list[str]:
    n = len(ws.queue.pending)
    why = []
    if n:
        why.append(f"{n} file{'s' if n != 1 else ''} queued")
    if ws.queue.processing:
        why.append(f"{len(ws.queue.processing)} in processing/")
    if seen.trainings:
        why.append(f"training running (PID {', '.join(str(p.pid) for p in seen.trainings)})")
    return why


def _stopped_finding(ws: Workspace, seen: _Seen) -> Finding:
    req = stopped_on_request(ws)
    assert req is not None
    waiting = len(ws.queue.processing)
    problem = [f"The daemon was stopped on request at {req.at} by {req.by} (reason: {req.reason})"]
    if waiting:
        problem.append(
            f"{waiting} file{'s' if waiting != 1 else ''} wait{'s' if waiting == 1 else ''} in processing/ and "
            "resume{} on `healthkit daemon start`".format("s" if waiting == 1 else "")
        )
    if ws.queue.pending:
        problem.append(f"{len(ws.queue.pending)} queued file(s) wait for the next start")
    return Finding(
        code=STOPPED.code,
        severity=Severity.INFO,
        title="Daemon stopped on request",
        problem=problem,
        impact=["No training runs until someone starts the daemon again; nothing is lost"],
        evidence=[
            Evidence(
                f"jq '{{state, stopped_at, stop_request}}' {q(ws, ws.daemon_state.path)}",
                redact_text(jq_pick(ws.daemon_state.data, ["state", "stopped_at", "stop_request"])),
            )
        ],
        recommendations=[f"Start it when you want training back: `healthkit daemon start {shlex.quote(str(ws.base))}`"],
        fixes=[],
        urgency="long-term",
        data={"at": req.at, "by": req.by, "reason": req.reason, "waiting": waiting},
    )


def _rule_not_running(ws: Workspace, seen: _Seen) -> None:
    """`daemon.not-running` while there is work, or `daemon.stopped` (info) when the user stopped it."""
    pf = ws.pid_file
    if pf.state != "missing" or seen.verified is not None or seen.remote is not None:
        return
    seen.facts["daemon"] = {"state": "not-running", "pid": None}
    why = _work(ws, seen)
    stop = stopped_on_request(ws)
    if stop is not None:
        seen.facts["daemon"]["stopped_on_request"] = True  # liveness stays "not-running" (contract.DAEMON_LIVENESS)
        if why:  # work waits for the next start: say so, as info
            seen.findings.append(_stopped_finding(ws, seen))
        else:
            seen.healthy.append(
                Healthy("Daemon stopped on request, nothing waits", [f"at {stop.at} by {stop.by} ({stop.reason})"])
            )
        return
    if why:
        pid_rel, n = q(ws, pf.path), len(ws.queue.pending)
        seen.findings.append(
            Finding(
                code=NOT_RUNNING.code,
                severity=Severity.WARNING,
                title="Daemon is not running",
                problem=[f"No `{pid_rel}` and no daemon process, while there is work: {', '.join(why)}", *_refusal(ws)],
                impact=_impact(ws, seen.trainings),
                evidence=[
                    Evidence(f"ls {pid_rel}", f"ls: cannot access '{ws.rel(pf.path)}': No such file or directory"),
                    Evidence(f"ls {' '.join(shlex.quote(x) for x in ws.settings.paths.queue_pending)} | wc -l", str(n)),
                ],
                recommendations=["Start the daemon"],
                fixes=[START_DAEMON],
                urgency="immediate",
                data={"queued": n},
            )
        )
    elif (ws.status.data.get(ws.status_key("state")) if ws.status.is_object else None) == "training":
        seen.healthy.append(
            Healthy("No daemon and nothing queued", ["The status file still says `training`; see the training check"])
        )


def _rule_orphans(ws: Workspace, seen: _Seen) -> None:
    """`daemon.orphaned-training`: training processes no live daemon started or adopted."""
    verified = seen.verified
    if seen.remote is not None and seen.remote.fresh:
        if seen.trainings:  # its daemon is on another host and alive by its lease: these are not orphans
            seen.healthy.append(
                Healthy(
                    "Training here belongs to the daemon on " + seen.remote.lease.host,
                    [f"PID {', '.join(str(p.pid) for p in seen.trainings)}; that daemon's lease is fresh"],
                )
            )
        return
    if verified is None:
        orphans, why = seen.trainings, "no live daemon"
    else:
        child_pid, child_started = _adopted_child(ws)
        orphans = []
        for p in seen.trainings:
            if p.pid == verified.pid and ws.settings.processes.training_in_daemon:
                continue
            if _descends_from(p, verified.pid):
                continue
            if child_pid == p.pid and (child_started is None or abs(child_started - p.create_time) <= 2.0):
                continue  # adopted by the running daemon
            orphans.append(p)
        why = f"not started or adopted by the daemon (PID {verified.pid})"
    if orphans:
        seen.findings.append(_orphan_finding(ws, orphans, why))
    elif seen.trainings and verified is not None:
        seen.healthy.append(
            Healthy(
                "Training is supervised",
                [f"PID {', '.join(str(p.pid) for p in seen.trainings)} under daemon PID {verified.pid}"],
            )
        )


@check(
    "daemon",
    title="Daemon and orphaned training",
    codes=[
        DEAD,
        PID_REUSED,
        MALFORMED,
        NOT_RUNNING,
        ORPHANED,
        STOPPED,
        RESTARTED,
        SUPERVISOR_DEAD,
        REMOTE,
        LEASE_EXPIRED,
    ],
    tags=["process"],
)
def daemon_check(ws: Workspace) -> CheckOutput:
    seen = _Seen(trainings=training_processes(ws), daemons=daemon_processes(ws), supervision=_supervision(ws))
    for rule in (_rule_lease, _rule_pid_file, _rule_malformed, _rule_not_running, _rule_orphans, _rule_restarted):
        rule(ws, seen)
    return CheckOutput(findings=seen.findings, healthy=seen.healthy, facts=seen.facts)
