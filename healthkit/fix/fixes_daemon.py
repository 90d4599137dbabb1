"""Daemon fixes: remove a stale or malformed PID file (safe), start the daemon so that it adopts a running
orphan (safe), and stop an orphan by its verified PID (unsafe; SIGTERM, then SIGKILL after a grace).

Nothing is ever signalled by pattern: the kill targets the PID the audit saw, and only
while that PID still has the start time and command line it had then. A PID file is
removed only once its process is proven gone (or proven to be another program) and no
live process holds a lock on it.
"""

from __future__ import annotations

import errno
import fcntl
import os
import shlex
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import cast

import psutil

from healthkit.contract.trust import Account, NoAccount, make_dirs_for, run_as_for, user_name
from healthkit.core.findings import Finding, FixRef
from healthkit.core.ownership import daemon_processes, remote_lease, stopped_on_request
from healthkit.core.ownership import scheduled_starts as _watchers
from healthkit.core.workspace import Workspace
from healthkit.fix.daemon_adapters import load_adapter
from healthkit.fix.fileops import ChangedSincePlan, FileFingerprint, Refused, file_fingerprint, unlink_file
from healthkit.fix.kill_points import crash_point
from healthkit.fix.plan import ApplyContext, Outcome, Plan, PlanContext, Safety, applied, failed, fixer, skipped
from healthkit.system.fsutil import is_within
from healthkit.system.procs import ProcInfo, argv_matches, probe, read_pid_file, start_time_matches
from healthkit.system.redact import redact_argv

START_LOG = "healthkit-daemon-start.log"
# Runs as the user the daemon runs as (healthkit.contract.trust.run_as_for), so its log is that user's file too.
SPAWNER = r"""
import os, subprocess, sys
log, cwd, header, argv = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW, 0o644)
os.write(fd, header.encode("utf-8"))
p = subprocess.Popen(argv, cwd=cwd, stdin=subprocess.DEVNULL, stdout=fd, stderr=fd, start_new_session=True, close_fds=True)
print(p.pid, flush=True)
"""


# identities ---------------------------------------------------------------------------


def live_daemons(ws: Workspace) -> list[ProcInfo]:
    """The daemons of this workspace now (the audit's own rule, on a fresh process scan)."""
    return daemon_processes(ws, fresh=True)


def pid_file_locked(path: Path) -> bool:
    """Whether a live process holds an flock on the PID file (our daemon does, for as long as it lives)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        return False
    except OSError as exc:
        return exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN)
    finally:
        os.close(fd)


# PID files ----------------------------------------------------------------------------


@fixer("remove-stale-pid-file", order=40, codes=("daemon.dead", "daemon.pid-reused"), safety=Safety.SAFE)
def plan_remove_pid(ctx: PlanContext, finding: Finding, ref: FixRef) -> list[Plan]:
    ws = ctx.ws
    path = ws.pid_path
    rel = ws.rel(path)
    pid = finding.data.get("pid")
    reused_ct = finding.data.get("create_time") if finding.code == "daemon.pid-reused" else None
    plan = Plan(
        "remove-stale-pid-file",
        Safety.parse(ref.safety),
        f"Remove the stale PID file {rel}",
        "",
        [finding.code],
        key="remove-pid-file",
        order=40,
    )
    pf = read_pid_file(path)
    if pf.state != "ok" or pf.pid != pid:
        plan.blocked = f"{rel} no longer names PID {pid}"
        return [plan]
    try:
        fp = file_fingerprint(path)
    except (OSError, Refused) as exc:
        plan.blocked = f"{rel}: {exc}"
        return [plan]

    def proof() -> str | None:
        """Why the PID file is stale now, or None when that cannot be proven."""
        live = probe(cast(int, pid))  # the PID file names it: an int (checked above)
        if live.state in ("dead", "zombie"):
            return f"process {pid} does not exist" if live.state == "dead" else f"process {pid} is a zombie"
        if (
            reused_ct is not None
            and live.info is not None
            and abs(live.info.create_time - reused_ct) < 0.01
            and not argv_matches(live.info.cmdline, ws.settings.processes.daemon)
        ):
            return f"PID {pid} belongs to another program (`{live.info.display_cmd(80)}`), which is never signalled"
        return None

    why = proof()
    if why is None:
        plan.blocked = f"PID {pid} is alive and may be the daemon; the PID file is kept"
        return [plan]
    plan.preview = f"delete {rel}  ({fp.size} bytes: {pf.preview!r}): {why}"

    def apply(actx: ApplyContext) -> Outcome:
        now = proof()
        if now is None:
            actx.record("delete", rel, "skipped", f"PID {pid} is alive now; not proven gone")
            return skipped(f"PID {pid} is alive now; {rel} kept")
        return _unlink_pid_file(actx, ws, path, fp, now)

    plan.apply = apply
    return [plan]


def _unlink_pid_file(actx: ApplyContext, ws: Workspace, path: Path, fp: FileFingerprint, why: str) -> Outcome:
    """Remove a PID file that is proven stale, unless someone locked it or it changed since the plan."""
    rel = ws.rel(path)
    if pid_file_locked(path):
        actx.record("delete", rel, "skipped", "a live process holds a lock on it")
        return skipped(f"a live process holds a lock on {rel}; kept")
    actx.record("delete", rel, "started", why)
    crash_point("pidfile:before-unlink")
    try:
        unlink_file(ws.base, path, fp)
    except FileNotFoundError:
        actx.record("delete", rel, "skipped", "already gone")
        return skipped(f"{rel} is already gone")
    except ChangedSincePlan:
        actx.record("delete", rel, "skipped", "changed since plan")
        return skipped(f"{rel} changed since plan (a daemon may have started); kept")
    except (Refused, OSError) as exc:
        actx.record("delete", rel, "failed", str(exc))
        return failed(f"{rel}: {exc}")
    actx.record("delete", rel, "applied", f"removed ({why})")
    return applied(f"removed {rel} ({why})")


@fixer("remove-malformed-pid-file", order=41, codes=("daemon.pid-malformed",), safety=Safety.SAFE)
def plan_remove_malformed(ctx: PlanContext, finding: Finding, ref: FixRef) -> list[Plan]:
    ws = ctx.ws
    path = ws.pid_path
    rel = ws.rel(path)
    plan = Plan(
        "remove-malformed-pid-file",
        Safety.parse(ref.safety),
        f"Remove the malformed PID file {rel}",
        "",
        [finding.code],
        key="remove-pid-file",
        order=41,
    )
    try:
        st = os.lstat(path)
    except OSError as exc:
        plan.blocked = f"{rel}: {exc.strerror}"
        return [plan]
    if os.path.isdir(path) and not os.path.islink(path):
        plan.blocked = f"{rel} is a directory; remove it by hand after looking at it"
        return [plan]
    daemons = live_daemons(ws)
    if daemons:
        plan.blocked = f"a daemon of this workspace runs (PID {daemons[0].pid}); the PID file is kept"
        return [plan]
    try:
        fp = (
            file_fingerprint(path)
            if os.path.isfile(path) and not os.path.islink(path)
            else FileFingerprint(st.st_ino, st.st_size, st.st_mtime_ns, "")
        )
    except (OSError, Refused) as exc:
        plan.blocked = f"{rel}: {exc}"
        return [plan]
    plan.preview = f"delete {rel}  ({st.st_size} bytes; {finding.data.get('reason', 'malformed')})" + (
        " (a symlink: the link only, never its target)" if os.path.islink(path) else ""
    )

    def apply(actx: ApplyContext) -> Outcome:
        if live_daemons(ws):
            actx.record("delete", rel, "skipped", "a daemon is running now")
            return skipped(f"a daemon is running now; {rel} kept")
        return _unlink_pid_file(actx, ws, path, fp, finding.data.get("reason", "malformed"))

    plan.apply = apply
    return [plan]


# starting the daemon --------------------------------------------------------------------


def daemon_command(ws: Workspace) -> tuple[str, list[str] | None, str | None]:
    """(mode, argv, why not): mode ``command`` (healthkit.toml) or ``trainer`` (ours)."""
    cmd = ws.settings.processes.daemon_command
    if cmd:
        return "command", [a.replace("{base}", str(ws.base)) for a in cmd], None
    adapter, why_not = load_adapter("trainer")
    if adapter is None:
        ours = any(p.endswith("healthkit.trainer.daemon") for p in ws.settings.processes.daemon)  # the default patterns
        return (
            ("trainer", None, f"cannot start: {why_not}")
            if ours
            else (
                "command",
                None,
                "cannot start: no daemon_command in healthkit.toml ([processes] daemon_command = [...])",
            )
        )
    if adapter.module in ws.settings.processes.daemon:
        return "trainer", adapter.argv(ws.base), None
    return "command", None, "cannot start: no daemon_command in healthkit.toml ([processes] daemon_command = [...])"


def _spawn(
    ws: Workspace, argv: list[str], log: Path, run_id: str, trainer_env: bool = False, run_as: Account | None = None
) -> int:
    """Start ``argv`` detached; ``trainer_env``: with the environment our trainer's daemon runs in (offline, importable).

    ``run_as``: the launcher drops to that user before it runs (setgroups, setgid, setuid, as
    systemd's User=), so nothing it starts runs as root.
    """
    make_dirs_for(log.parent, ws.base)
    header = (
        f"--- {datetime.now(UTC).isoformat(timespec='seconds')} healthkit fix (run {run_id}) starts"
        + (f" as {run_as.name}" if run_as else "")
        + f": {shlex.join(redact_argv(argv))}\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "HEALTHKIT_FIX_CRASH_AT"}
    adapter = load_adapter("trainer")[0] if trainer_env else None
    if adapter is not None:
        env = {k: v for k, v in adapter.env().items() if k != "HEALTHKIT_FIX_CRASH_AT"}
    drop = run_as.popen_kwargs() if run_as else {}
    env = run_as.env(env) if run_as else env
    out = subprocess.run(
        [sys.executable, "-c", SPAWNER, str(log), str(ws.base), header, *argv],
        capture_output=True,
        text=True,
        env=env,
        timeout=30,
        stdin=subprocess.DEVNULL,
        **drop,
    )
    if out.returncode != 0:
        raise RuntimeError((out.stderr.strip().splitlines() or ["the launcher failed"])[-1])
    return int(out.stdout.strip().splitlines()[-1])


def confirm_alive(ws: Workspace, pid: int, confirm_s: float) -> tuple[bool, str, int | None]:
    """Wait until the PID file names a live daemon for 0.5 s, or ``pid`` has lived ``confirm_s``; else say it died."""
    pats = ws.settings.processes.daemon
    t0 = time.monotonic()
    named_since: float | None = None
    dead_since: float | None = None
    while True:
        el = time.monotonic() - t0
        pf = read_pid_file(ws.pid_path)
        named = None
        if pf.state == "ok" and pf.pid:
            lv = probe(pf.pid)
            if (
                lv.alive
                and lv.info is not None
                and argv_matches(lv.info.cmdline, pats)
                and start_time_matches(lv.info, pf.start_time)
            ):
                named = pf.pid
        alive = probe(pid).alive
        if named:
            named_since = el if named_since is None else named_since
            if el - named_since >= 0.5:
                return True, f"daemon PID {named} is alive and its PID file names it", named
        else:
            named_since = None
        if not alive and not named:
            dead_since = el if dead_since is None else dead_since
            if el - dead_since >= min(0.5, confirm_s):
                return False, f"the daemon (PID {pid}) exited within {dead_since:.1f}s of starting", None
        if el >= confirm_s:
            if alive:
                return True, f"PID {pid} is alive after {confirm_s:g}s (no PID file names it yet)", pid
            return False, f"the daemon (PID {pid}) did not stay alive for {confirm_s:g}s", None
        time.sleep(0.1)


def _tail(path: Path, n: int = 5) -> str:
    from healthkit.system.fsutil import ReadProblem, open_regular

    try:
        with open_regular(path) as fh:
            fh.seek(max(0, os.fstat(fh.fileno()).st_size - 4000))
            lines = fh.read(8000).decode("utf-8", "replace").splitlines()
    except (OSError, ReadProblem):
        return ""
    return "\n".join(lines[-n:])


def _orphans(ctx: PlanContext) -> list[dict]:
    """The orphaned trainings the audit reported (pid, create_time, cmdline)."""
    return [
        o
        for f in ctx.report.findings
        if f.code == "daemon.orphaned-training"
        for o in f.data.get("orphans", [])
        if isinstance(o.get("pid"), int)
    ]


def can_adopt(ws: Workspace, mode: str, orphan: dict) -> bool:
    """Whether the daemon about to start adopts this very process (else it would train beside it).

    Our trainer adopts only its own `trainer.train_file` children of this workspace (the
    trainer's own rule, ``trainer.launch.is_training``); a setup's own daemon only when
    healthkit.toml declares `daemon_adopts = true`.
    """
    if mode != "trainer":
        return ws.settings.processes.daemon_adopts
    adapter, _ = load_adapter("trainer")
    if adapter is None:
        return False
    info = probe(orphan["pid"]).info
    if info is None or not orphan.get("create_time") or not start_time_matches(info, orphan["create_time"]):
        return False
    return adapter.adopts(info, ws.base)


def untrusted_block(ws: Workspace) -> str | None:
    """Why no process may be started or signalled for this workspace: it is not trusted (healthkit.contract.trust)."""
    if ws.trust.trusted:
        return None
    return (
        f"the workspace is not trusted (trust.untrusted): nothing is started or signalled for it. "
        f"Once its files are sound, run as root: {ws.trust.trust_command()}"
    )


def _start_blocker(ctx: PlanContext, argv: list[str] | None, why_not: str | None) -> str | None:
    """Why no daemon may be started now, or None."""
    ws = ctx.ws
    untrusted = untrusted_block(ws)
    if untrusted:
        return untrusted
    held = _remote_held(ws)
    if held:
        return held
    if ws.settings.daemon.scheduler == "slurm":
        return (
            f'the daemon runs as a Slurm job here ([daemon] scheduler = "slurm"); no daemon is started outside it. '
            f"Submit it: healthkit daemon start {shlex.quote(str(ws.base))}"
        )
    daemon_fact = ctx.report.facts.get("daemon") or {}
    if daemon_fact.get("state") == "running":
        return (
            f"a daemon already runs (PID {daemon_fact.get('pid')}) and did not adopt it: "
            "restart that daemon, or stop the training with kill-orphan (unsafe)"
        )
    stop = stopped_on_request(ws)
    if stop is not None:
        return (
            f"the daemon was stopped on request ({stop.at}, by {stop.by}: {stop.reason}); no fix restarts it. "
            f"Start it yourself: healthkit daemon start {shlex.quote(str(ws.base))}"
        )
    if why_not or not argv:
        return why_not or "cannot start: no daemon command"
    if not is_within(ws.path(ws.settings.paths.logs), ws.base):
        return f"the logs folder {ws.settings.paths.logs} is outside the workspace"
    return None


def start_notes(ws: Workspace, mode: str) -> list[str]:
    """How the adapter will start it (an optional adapter method): e.g. under the supervisor it ran under."""
    if mode != "trainer":
        return []
    adapter, _ = load_adapter("trainer")
    notes = getattr(adapter, "start_notes", None)
    return list(notes(ws.base)) if callable(notes) else []


def consequences(ws: Workspace, mode: str) -> list[str]:
    """What the started daemon changes on disk before it trains (moves, deletions): a safe plan shows all of it."""
    if mode != "trainer":
        return []
    adapter, _ = load_adapter("trainer")
    return adapter.start_consequences(ws.base) if adapter is not None else []


def _plan_start(ctx: PlanContext, finding: Finding, ref: FixRef, fix_id: str) -> Plan:
    ws = ctx.ws
    mode, argv, why_not = daemon_command(ws)
    orphans = _orphans(ctx)
    pids = ", ".join(str(o["pid"]) for o in orphans)
    plan = Plan(
        fix_id,
        Safety.SAFE if ref.safety == "safe" else Safety.UNSAFE,
        "Start the daemon" + (f" so that it adopts the running training (PID {pids})" if orphans else ""),
        "",
        [finding.code],
        key="start-daemon",
        order=90,
        group="orphan" if fix_id == "adopt-orphan" else None,
    )
    plan.blocked = _start_blocker(ctx, argv, why_not)
    if plan.blocked:
        return plan
    assert argv is not None
    try:
        run_as = run_as_for(ws.base)
    except (NoAccount, OSError) as exc:
        plan.blocked = str(exc)
        return plan
    log = ws.path(ws.settings.paths.logs) / START_LOG
    foreign = [(o["pid"], o["create_time"]) for o in orphans if not can_adopt(ws, mode, o)]
    if foreign:
        return _plan_start_after(ctx, plan, mode, argv, foreign, log, run_as)
    shown = shlex.join(redact_argv(argv))
    if mode == "trainer":
        how = f"trainer.daemon.start_daemon({str(ws.base)!r}) runs, detached:\n  {shown}\n(output in logs/daemon.out)"
        adopt = (
            "the daemon adopts it (a trainer.train_file child of this workspace) instead of starting a second training"
        )
    else:
        how = f"run detached (new session, cwd {ws.base}, output appended to {ws.rel(log)}):\n  {shown}"
        adopt = "the setup's own daemon adopts it (healthkit.toml declares daemon_adopts = true)"
    lines = [
        how,
        runs_as_line(run_as),
        *start_notes(ws, mode),
        f"then confirm it is alive (up to {ctx.daemon_confirm_s:g}s)",
    ]
    if orphans:
        lines.append(f"running training PID {pids} is never signalled: {adopt}")
    lines += consequences(ws, mode)
    plan.preview = "\n".join(lines)
    plan.apply = _start_apply(ws, mode, argv, log, run_as)
    return plan


def runs_as_line(run_as: Account | None) -> str:
    """The plan's line that says whom the started process runs as."""
    if run_as is None:
        return f"as {user_name(os.geteuid())} (who runs this fix)"
    return (
        f"as {run_as.name} (uid {run_as.uid}, gid {run_as.gid}): the workspace's owner; root starts nothing as root "
        "for a user"
    )


def _remote_held(ws: Workspace) -> str | None:
    """Why no daemon may start here: another host holds a fresh lease (read now, never the plan's copy)."""
    r = remote_lease(ws, fresh=True)
    if r is None or not r.fresh:
        return None
    return (
        f"host {r.lease.host} holds the workspace's lease (daemon PID {r.lease.pid} there, generation "
        f"{r.lease.generation}), renewed {max(0.0, r.age_s):.0f} s ago: a daemon started here would train it twice"
    )


def _expired_holder(ws: Workspace, pid: int | None) -> bool:
    """Whether the PID file names the daemon of another host whose lease expired (that PID means nothing here)."""
    r = remote_lease(ws, fresh=True)
    return r is not None and not r.fresh and pid == r.lease.pid


def _start_refusal(ws: Workspace) -> str | None:
    """Re-checked at apply time: a daemon (or something holding its PID file) appeared since the plan."""
    held = _remote_held(ws)
    if held:
        return held
    pf = read_pid_file(ws.pid_path)
    if pf.state == "ok" and _expired_holder(ws, pf.pid):
        pass  # the dead host's PID file: the new daemon's lease generation supersedes it and it writes its own
    elif pf.state == "ok":
        lv = probe(pf.pid)  # type: ignore[arg-type]
        if lv.alive:
            ours = lv.info is not None and argv_matches(lv.info.cmdline, ws.settings.processes.daemon)
            return (
                f"a daemon is already running (PID {pf.pid})"
                if ours
                else f"{ws.rel(ws.pid_path)} still names live PID {pf.pid} (not the daemon); remove it first"
            )
    elif pf.state == "malformed":
        return f"{ws.rel(ws.pid_path)} is malformed; remove it first"
    running = live_daemons(ws)
    if running:
        return f"a daemon of this workspace is already running (PID {running[0].pid})"
    return None


def _start_apply(ws: Workspace, mode: str, argv: list[str], log: Path, run_as: Account | None):
    shown = shlex.join(redact_argv(argv))

    def apply(actx: ApplyContext) -> Outcome:
        refusal = _start_refusal(ws)
        if refusal:
            actx.record("start", "daemon", "skipped", refusal)
            return skipped(refusal)
        actx.record("start", "daemon", "started", shown, argv=redact_argv(argv), user=run_as.name if run_as else None)
        try:
            adapter = load_adapter("trainer")[0] if mode == "trainer" else None
            if adapter is not None:
                # (an adapter that cannot drop privileges fails here with TypeError: nothing starts as root for a user)
                pid = adapter.start(ws.base, run_as=run_as) if run_as else adapter.start(ws.base)
                where = "logs/daemon.out"
            else:
                pid = _spawn(ws, argv, log, actx.run_id, run_as=run_as)
                where = ws.rel(log)
        except Exception as exc:
            actx.record("start", "daemon", "failed", str(exc))
            return failed(f"could not start the daemon: {str(exc).strip()}")
        ok, msg, daemon_pid = confirm_alive(ws, pid, actx.daemon_confirm_s if mode != "trainer" else 0.5)
        if not ok:
            tail = _tail(log) if mode != "trainer" else ""
            actx.record("start", "daemon", "failed", msg, pid=pid, log=where)
            return failed(f"started, but not verified: {msg} (see {where})" + (f"\n{tail}" if tail else ""), pid=pid)
        actx.record("start", "daemon", "applied", msg, pid=daemon_pid, log=where)
        return applied(f"started the daemon: {msg} (output in {where})", pid=daemon_pid)

    return apply


def scheduled_starts(ws: Workspace) -> list[ProcInfo]:
    """Watchers of this workspace waiting to start its daemon (see healthkit.fix.start_after)."""
    return _watchers(ws, fresh=True)


def _plan_start_after(
    ctx: PlanContext,
    plan: Plan,
    mode: str,
    argv: list[str],
    orphans: list[tuple[int, float]],
    log: Path,
    run_as: Account | None,
) -> Plan:
    """A daemon that cannot adopt a running training is started only once it has ended (never beside it)."""
    ws = ctx.ws
    from healthkit.fix.start_after import MODULE

    waiting = scheduled_starts(ws)
    if waiting:
        plan.blocked = f"a start is already scheduled (watcher PID {waiting[0].pid}) for when the training ends"
        return plan
    pids = ", ".join(str(p) for p, _ in orphans)
    plan.title = f"Start the daemon once training PID {pids} has ended"
    watcher = [
        sys.executable,
        "-m",
        MODULE,
        "--workspace",
        str(ws.base),
        *[a for p, t in orphans for a in ("--wait", f"{p}:{t:.3f}")],
        "--",
        *argv,
    ]
    why = (
        "our daemon adopts only its own trainer.train_file children, and PID " + pids + " is not one"
        if mode == "trainer"
        else "the setup's daemon is not known to adopt a running training (healthkit.toml [processes] daemon_adopts)"
    )
    plan.preview = "\n".join(
        [
            f"{why},",
            f"so starting it now would start a second training beside PID {pids}. Instead run, detached (new session,",
            f"output appended to {ws.rel(log)}):",
            f"  {shlex.join(redact_argv(watcher))}",
            "which waits for the training to end (never signalling it), then starts:",
            f"  {shlex.join(redact_argv(argv))}",
            "both " + runs_as_line(run_as),
            *consequences(ws, mode),
        ]
    )
    plan.apply = _start_after_apply(ws, mode, watcher, orphans, log, run_as)
    return plan


def _start_after_apply(
    ws: Workspace, mode: str, watcher: list[str], orphans: list[tuple[int, float]], log: Path, run_as: Account | None
):
    pids = ", ".join(str(p) for p, _ in orphans)

    def apply(actx: ApplyContext) -> Outcome:
        gone = [p for p, t in orphans if not probe(p).alive]
        if len(gone) == len(orphans):
            msg = "the training has ended since the plan; run the fix again to start the daemon now"
            actx.record("schedule-start", "daemon", "skipped", msg)
            return skipped(msg)
        actx.record("schedule-start", "daemon", "started", shlex.join(redact_argv(watcher)))
        try:
            pid = _spawn(ws, watcher, log, actx.run_id, trainer_env=mode == "trainer", run_as=run_as)
        except Exception as exc:
            actx.record("schedule-start", "daemon", "failed", str(exc))
            return failed(f"could not start the watcher: {exc}")
        time.sleep(0.3)
        if not probe(pid).alive:
            actx.record("schedule-start", "daemon", "failed", f"watcher PID {pid} exited", log=ws.rel(log))
            return failed(f"the watcher (PID {pid}) exited at once (see {ws.rel(log)})\n{_tail(log)}")
        msg = f"watcher PID {pid} starts the daemon when training PID {pids} ends"
        actx.record("schedule-start", "daemon", "applied", msg, pid=pid, log=ws.rel(log))
        return applied(msg, pid=pid)

    return apply


@fixer(
    "start-daemon",
    order=90,
    codes=("daemon.dead", "daemon.not-running", "daemon.pid-reused", "daemon.pid-malformed", "daemon.lease-expired"),
    safety=Safety.SAFE,
)
def plan_start(ctx: PlanContext, finding: Finding, ref: FixRef) -> list[Plan]:
    return [_plan_start(ctx, finding, ref, "start-daemon")]


@fixer("adopt-orphan", order=90, codes=("daemon.orphaned-training",), safety=Safety.SAFE)
def plan_adopt(ctx: PlanContext, finding: Finding, ref: FixRef) -> list[Plan]:
    return [_plan_start(ctx, finding, ref, "adopt-orphan")]


# stopping an orphan -----------------------------------------------------------------------


def _gone(p: psutil.Process, timeout: float) -> bool:
    """Whether ``p`` exits within ``timeout`` (a zombie has exited: it only waits for its reaper)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if not p.is_running() or p.status() == psutil.STATUS_ZOMBIE:
                return True
        except psutil.NoSuchProcess:
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)


@fixer("kill-orphan", order=35, codes=("daemon.orphaned-training",), safety=Safety.UNSAFE)
def plan_kill(ctx: PlanContext, finding: Finding, ref: FixRef) -> list[Plan]:
    ws = ctx.ws
    plans = []
    untrusted = untrusted_block(ws)
    for o in finding.data.get("orphans", []):
        pid, ct, cmd = o.get("pid"), o.get("create_time"), list(o.get("cmdline") or [])
        plan = Plan(
            "kill-orphan",
            Safety.UNSAFE,
            f"Stop the orphaned training PID {pid} (loses work since its last checkpoint)",
            f"kill -TERM {pid}   # {shlex.join(cmd)[:160]}\n"
            f"then, if PID {pid} (started {ct}) still runs after {ctx.kill_grace_s:g}s: kill -KILL {pid}",
            [finding.code],
            key=f"kill-orphan:{pid}",
            order=35,
            group="orphan",
        )
        if untrusted:
            plan.blocked = untrusted
            plans.append(plan)
            continue

        def apply(actx: ApplyContext, pid: int = pid, ct: float = ct, cmd: list[str] = cmd) -> Outcome:
            target = f"PID {pid}"
            try:
                p = psutil.Process(pid)
                same = abs(p.create_time() - ct) < 0.01 and redact_argv(p.cmdline()) == cmd
                ours = argv_matches(tuple(p.cmdline()), ws.settings.processes.training) is not None
            except psutil.NoSuchProcess:
                actx.record("signal", target, "skipped", "already gone")
                return skipped(f"PID {pid} has already exited")
            except psutil.AccessDenied:
                actx.record("signal", target, "skipped", "permission denied reading its identity")
                return skipped(f"PID {pid}: cannot verify its identity (permission denied); not signalled")
            if not same or not ours:
                actx.record("signal", target, "skipped", "changed since plan (not the same process)")
                return skipped(f"PID {pid} is no longer the orphaned training; not signalled")
            actx.record("signal", target, "started", "SIGTERM", create_time=ct)
            try:
                p.terminate()  # psutil refuses if the PID was reused since Process() was made
                if _gone(p, actx.kill_grace_s):
                    actx.record("signal", target, "applied", "exited after SIGTERM")
                    return applied(f"PID {pid} exited after SIGTERM")
                actx.record("signal", target, "started", f"SIGKILL after {actx.kill_grace_s:g}s grace")
                p.kill()
                if not _gone(p, 10):
                    actx.record("signal", target, "failed", "still alive after SIGKILL")
                    return failed(f"PID {pid} is still alive after SIGKILL")
                actx.record("signal", target, "applied", "killed with SIGKILL after the grace")
                return applied(f"PID {pid} did not stop within {actx.kill_grace_s:g}s; killed with SIGKILL")
            except psutil.NoSuchProcess:
                actx.record("signal", target, "applied", "exited")
                return applied(f"PID {pid} exited")
            except (psutil.Error, OSError) as exc:
                actx.record("signal", target, "failed", str(exc))
                return failed(f"PID {pid}: {exc}")

        plan.apply = apply
        plans.append(plan)
    return plans
