"""The training daemon: `python -m healthkit.trainer.daemon --workspace ABS` works through the queue, one child per file.

It never trains itself (no torch here): each file is trained by a child process in its
own session (`trainer.train_file`, or a launcher running it), so the daemon dying never
kills training, and a new daemon *adopts* a child it finds still running (PID and start
time from status/daemon_state.json, or a process-table scan) instead of starting a
second one. A child that dies is resumed from its last complete checkpoint; after
`max_failures` attempts its file goes to failed/ with the error. A child that runs out of
disk space is no failure: the daemon waits (state `waiting`, with the reason) and resumes
the file from its last complete checkpoint once one checkpoint fits again (diskspace.py).

Control (pause/resume/stop) is files in control/ that the child honours at the next
step boundary; the daemon mirrors them in its state file and stops taking new files.
SIGTERM is a stop request. Library functions at the bottom (start_daemon, stop_daemon,
...) are what the CLI and the fix engine call.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psutil

from healthkit.contract import SUPERVISOR_MODULE
from healthkit.contract.trust import Account, make_dirs_for
from healthkit.core.ownership import supervisor_alive
from healthkit.system.procs import probe, read_pid_file, start_time_matches

from . import checkpoints as ck
from . import control as ctl
from . import diskspace as ds
from . import queue as q
from . import slurm
from .dashboard import LiveHistory, workspace_findings
from .data import DataError, file_format, read_examples
from .launch import (
    DAEMON_MODULE,
    arg_value,
    child_command,
    child_env,
    find_training,
    is_training,
    spawn_detached,
    trainings_not_ours,
)
from .layout import (
    EXIT_ALREADY_RUNNING,
    EXIT_CONFIG,
    EXIT_DATA,
    EXIT_DISK_FULL,
    EXIT_FENCED,
    EXIT_OK,
    EXIT_STOPPED,
    Layout,
    iso_now,
    log_to,
)
from .lease import GENERATION_ENV, LeaseHeld, LeaseKeeper, lease_settings
from .pidfile import DaemonLock, running_daemon
from .preflight import describe, run_preflight, template_problem
from .runevents import RunEvents
from .state import ensure_reserve, flush_pending, read_json, read_state, update_state, update_status

log = logging.getLogger("healthkit.trainer.daemon")

POLL_S = 0.25
PROGRESS_EVERY_S = 30.0
HISTORY_EVERY_S = 1.0
RETRY_DELAY_S = 1.0


class Child:
    """A training child: our own (exit code known) or adopted from a dead daemon (outcome read from files)."""

    def __init__(
        self, pid: int, started_at: float, file: Path, popen: subprocess.Popen | None = None, log_fh: Any = None
    ):
        self.pid = pid
        self.started_at = started_at
        self.file = file
        self.popen = popen
        self.log_fh = log_fh

    @property
    def adopted(self) -> bool:
        return self.popen is None

    def poll(self) -> tuple[bool, int | None]:
        """(finished, exit code or None when unknown)."""
        if self.popen is not None:
            rc = self.popen.poll()
            return rc is not None, rc
        live = probe(self.pid)
        if live.alive and live.info is not None and start_time_matches(live.info, self.started_at):
            return False, None
        return True, None

    def reap_group(self) -> None:
        """Kill whatever is left of the child's process group (ranks whose launcher died)."""
        try:
            os.killpg(self.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        if self.log_fh is not None:
            self.log_fh.close()


class _Fenced(Exception):
    """Raised in the loop when the lease is lost: the daemon leaves at once."""


class Daemon:
    def __init__(self, layout: Layout, restarts: int = 0, supervised: bool = False):
        self.layout = layout
        self.restarts = restarts
        self.supervised = supervised
        self.child: Child | None = None
        self.stopping = False
        self.paused = False
        self.idle = False
        self.heartbeat = time.monotonic()
        self.cfg: Any = None
        self.monitor: Any = None
        self.warnings: list[str] = []
        self.stop_request: dict[str, str] | None = None  # who asked for the stop, when, why (recorded at exit)
        self._last_progress = 0.0
        self.disk_wait: ds.DiskWait | None = None
        self.live = LiveHistory()  # the monitor's /history: points of the file in training, in memory only
        self._last_live = 0.0
        self.home: tuple[int, int] | None = None  # (device, inode) of the workspace folder this daemon started in
        self.lease: LeaseKeeper | None = None  # the workspace's lease (trainer/lease.py), renewed by its own thread
        self.slurm_job = slurm.this_job()  # the batch job this daemon runs as, or None
        self.slurm_requeue = False  # USR1 came (the time limit is near): save, then requeue the job
        self.events: RunEvents | None = None  # logs/events.jsonl: this daemon is its one writer (goodput)

    # lifecycle -----------------------------------------------------------------
    def run(self) -> int:
        lay = self.layout
        lock = DaemonLock(lay)
        try:
            for _ in range(5):  # a reader probing the lock holds it for microseconds
                if lock.acquire(before_pid_file=self._claim_lease):
                    break
                time.sleep(0.05)
            else:
                log.error("another daemon (PID %s) already runs for %s", running_daemon(lay), lay.base)
                return EXIT_ALREADY_RUNNING
        except LeaseHeld as exc:  # nothing was written: the workspace is another host's
            log.error("not started: %s", exc)
            sys.stderr.write(f"healthkit daemon: not started: {exc}\n")
            return EXIT_ALREADY_RUNNING
        try:
            self.lease.start()  # type: ignore[union-attr]
            rc = self._run_locked()
            return rc
        except Exception as exc:
            log.exception("daemon crashed")
            try:
                update_state(
                    lay.daemon_state, state="crashed", error=f"{type(exc).__name__}: {exc}", crashed_at=iso_now()
                )
            except OSError:
                pass
            return 1
        finally:
            if self.monitor is not None:
                self.monitor.stop()
            if self.lease is not None:
                self.lease.release()
            lock.release()
            if self.slurm_job:
                self._slurm_end()

    def _slurm_end(self) -> None:
        """Record how the job ends; on USR1 requeue it (the last act: Slurm ends this process on the requeue)."""
        from healthkit.contract.events import SLURM_END, SLURM_REQUEUE

        events = self.events or RunEvents(self.layout)  # the one writer of the event log
        if not self.slurm_requeue:
            events.append(
                SLURM_END, job_id=self.slurm_job, reason=(self.stop_request or {}).get("reason") or "daemon exited"
            )
            return
        events.append(SLURM_REQUEUE, job_id=self.slurm_job, reason="time limit near (USR1): saved, requeued")
        log.info("requeueing Slurm job %s: the requeued job resumes from the checkpoint just saved", self.slurm_job)
        try:
            slurm.requeue(self.slurm_job)  # type: ignore[arg-type]
        except slurm.SlurmError as exc:
            log.error("requeue of job %s failed: %s", self.slurm_job, exc)
            events.append(SLURM_END, job_id=self.slurm_job, reason=f"requeue failed: {exc}")

    def _claim_lease(self) -> None:
        """Claim the workspace's lease before the PID file is written; LeaseHeld while another host holds it."""
        from healthkit.contract.wsid import ensure_workspace_id

        lay = self.layout
        me = psutil.Process()
        lease_s, margin_s = lease_settings(lay.base)
        keeper = LeaseKeeper(
            lay.pid_file, ensure_workspace_id(lay.base), me.pid, me.create_time(), lease_s, margin_s, lay.status_dir
        )
        prev = keeper.acquire()
        if prev is not None and not prev.is_local(keeper.here) and prev.released_at is None:
            log.warning(
                "took over the workspace from host %s (generation %d, last renewed %s): its lease had expired",
                prev.host,
                prev.generation,
                iso_now(prev.renewed_at),
            )
        self.lease = keeper

    def _fenced(self) -> int:
        """The lease is lost (not renewable in time, or superseded): stop training now, commit nothing, write nothing."""
        why = self.lease.fenced_why if self.lease is not None else "?"
        log.error("fenced: %s. Training stops now without a checkpoint; another host may hold the workspace", why)
        sys.stderr.write(f"healthkit daemon: fenced: {why}\n")
        if self.child is not None:
            self.child.reap_group()  # it fences itself too; this makes sure, before the lease can expire
            self.child = None
        return EXIT_FENCED

    def _run_locked(self) -> int:
        lay = self.layout
        prev = read_state(lay.daemon_state)
        try:  # `daemon start` checked already; a daemon started as a module (systemd, by hand) is checked here
            refuse_beside_foreign_training(lay)
        except DaemonError as exc:
            log.error("%s", exc)
            update_state(
                lay.daemon_state, state="stopped", pid=None, error=str(exc), stopped_at=iso_now(), stop_request=None
            )
            sys.stderr.write(f"healthkit daemon: not started: {exc}\n")
            return exc.exit_code
        pf = run_preflight(lay)
        for w in pf.warnings:
            log.warning("%s", w)
        if not pf.ok:
            for e in pf.errors:
                log.error("%s", e)
            update_state(
                lay.daemon_state,
                state="stopped",
                pid=None,
                error=describe(pf),
                warnings=pf.warnings,
                stopped_at=iso_now(),
                stop_request=None,
            )
            sys.stderr.write("healthkit daemon: cannot start:\n" + describe(pf) + "\n")
            return EXIT_CONFIG
        self.cfg = pf.config
        self.warnings = pf.warnings
        lay.ensure()
        st = os.stat(lay.base)
        self.home = (st.st_dev, st.st_ino)
        ensure_reserve(lay.status_dir)
        ctl.clear(lay, "stop")  # a stop left from before this start is not a request to this daemon
        me = psutil.Process()
        self.events = events = RunEvents(lay)
        events.daemon_start(me.pid, self.restarts, bool(q.in_processing(lay) or q.pending(lay)))
        req = ctl.read(lay)
        self.paused = req.pause
        port, monitor_error = self._start_monitor()
        update_state(
            lay.daemon_state,
            state="paused" if self.paused else "running",
            pid=me.pid,
            started_at=iso_now(me.create_time()),
            host=self.lease.here.host if self.lease else None,
            lease_generation=self.lease.generation if self.lease else None,
            restarts=self.restarts,
            supervised=self.supervised,
            warnings=self.warnings,
            error=None,
            monitor_port=port,
            monitor_error=monitor_error,
            ready_at=None,
            stop_request=None,
            stopped_at=None,
            paused_at=(req.paused_at or iso_now()) if self.paused else None,
            pause_reason=req.pause_reason if self.paused else None,
            current_file=prev.get("current_file"),
            child_pid=prev.get("child_pid"),
            child_started_at=prev.get("child_started_at"),
        )
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)
        if self.slurm_job:
            signal.signal(signal.SIGUSR1, self._on_time_limit)
            from healthkit.contract.events import SLURM_JOB

            events.append(
                SLURM_JOB,
                job_id=self.slurm_job,
                restarts=slurm.restarts(),
                pid=me.pid,
                host=self.lease.here.host if self.lease else None,
            )
            update_state(lay.daemon_state, slurm_job_id=self.slurm_job, slurm_restarts=slurm.restarts())
            log.info("running as Slurm job %s (restart %d)", self.slurm_job, slurm.restarts())
        log.info("daemon started (PID %d, workspace %s, restarts %d)", me.pid, lay.base, self.restarts)
        self._adopt(prev)
        update_state(lay.daemon_state, ready_at=iso_now())  # start_daemon returns once this is written
        try:
            gone = self._loop()
        except _Fenced:
            return self._fenced()
        if gone:
            return self._leave_gone_workspace(gone)
        waiting = [p.name for p in q.in_processing(lay)]
        update_state(
            lay.daemon_state,
            state="stopped",
            pid=None,
            stopped_at=iso_now(),
            current_file=None,
            child_pid=None,
            child_started_at=None,
            stop_request={**(self.stop_request or {}), "waiting": waiting} if self.stop_request else None,
        )
        ctl.clear(lay, "stop")
        self._event("exit", reason=(self.stop_request or {}).get("reason") or "stopped")
        log.info(
            "daemon stopped%s",
            f" on request by {self.stop_request['by']} ({self.stop_request['reason']})" if self.stop_request else "",
        )
        return EXIT_OK

    def _on_signal(self, signum: int, frame: Any) -> None:
        log.info("signal %d: stopping at the next step boundary (a checkpoint is saved first)", signum)
        self.stopping = True
        if self.stop_request is None:
            name = signal.Signals(signum).name
            self.stop_request = {"at": iso_now(), "by": f"signal {name}", "reason": f"{name} received (a stop request)"}
        if self.child is not None:
            ctl.request_stop(self.layout)

    def _on_time_limit(self, signum: int, frame: Any) -> None:
        """Slurm's B:USR1 before the time limit: the child saves at its next step boundary, then the job is requeued."""
        log.info(
            "USR1: the job's time limit is near: saving at the next step boundary, then requeueing job %s",
            self.slurm_job,
        )
        self.slurm_requeue = True
        self.stopping = True
        if self.stop_request is None:
            self.stop_request = {
                "at": iso_now(),
                "by": f"slurm (job {self.slurm_job})",
                "reason": f"time limit near (USR1): saved and requeued job {self.slurm_job}",
            }
        if self.child is not None:
            ctl.request_stop(self.layout, by=self.stop_request["by"], reason=self.stop_request["reason"])

    def _start_monitor(self) -> tuple[int | None, str | None]:
        """(the port the monitor is bound to, why it is not bound): the configured port, else any free one (another
        workspace's daemon may hold it); `/health` names this workspace by its id, so an audit credits only its own."""
        port = self.cfg.monitor_port
        if port is None:
            return None, None
        from healthkit.contract.wsid import ensure_workspace_id

        from .health_server import Monitor

        try:
            wsid = ensure_workspace_id(self.layout.base)
        except OSError as exc:
            wsid = None
            log.warning("workspace id not created (%s): /health names no workspace", exc.strerror or exc)
        errors = []
        for want in dict.fromkeys([port, 0]):
            try:
                self.monitor = Monitor(
                    self.snapshot,
                    want,
                    history=self.live.to_dict,
                    findings=lambda: workspace_findings(self.layout.base),
                    workspace=wsid,
                    workspace_path=str(self.layout.base),
                ).start()
                break
            except OSError as exc:
                errors.append(f"port {want} on 127.0.0.1: {exc.strerror or exc}")
        else:
            msg = f"monitor not started: {'; '.join(errors)}"
            log.error("%s", msg)
            self.warnings.append(msg)
            return None, msg
        if errors:
            msg = f"monitor on free port {self.monitor.port}: configured {errors[0]}"
            log.warning("%s", msg)
            self.warnings.append(msg)
        log.info(
            "monitor on http://127.0.0.1:%d/ (live page; /health /status /metrics /history /findings)",
            self.monitor.port,
        )
        return self.monitor.port, None

    # the loop ------------------------------------------------------------------
    def _workspace_gone(self) -> str | None:
        """Why the workspace this daemon serves is no longer there (deleted, or replaced by another folder), or None."""
        try:
            st = os.stat(self.layout.base)
        except FileNotFoundError:
            return "deleted"
        except OSError:
            return None  # unreadable for a moment (a network disk): not proof that it is gone
        if self.home is not None and (st.st_dev, st.st_ino) != self.home:
            return "replaced by another folder"
        return None

    def _leave_gone_workspace(self, why: str) -> int:
        """Exit without writing a byte into whatever now stands at the path; the monitor port is released on the way out."""
        msg = f"healthkit daemon: workspace {self.layout.base} was {why}: exiting (nothing more to train, no state written)"
        log.error("%s", msg)
        sys.stderr.write(msg + "\n")
        if self.child is not None:  # its files are gone too: its checkpoints would land nowhere
            log.error("killing training PID %d (process group), whose workspace is gone", self.child.pid)
            self.child.reap_group()
            self.child = None
        return EXIT_OK  # not a crash: a supervisor must not restart a daemon for a workspace that is gone

    def _loop(self) -> str | None:
        """Work the queue until stopped (None) or until the workspace is gone (why)."""
        lay = self.layout
        while True:
            self.heartbeat = time.monotonic()
            if self.lease is not None:
                self.lease.check()  # its own monotonic clock: no I/O here, the renewal thread writes
                if self.lease.fenced:
                    raise _Fenced()
            gone = self._workspace_gone()
            if gone:
                return gone
            flush_pending()  # state writes a full disk refused earlier
            req = ctl.read(lay)
            if req.resume:
                ctl.clear(lay, "resume")
            self._mirror_pause(req)
            if req.stop and not self.stopping:
                self.stop_request = ctl.stop_info(lay)
                log.info(
                    "stop requested by %s (%s): the child saves a checkpoint and exits at its next step boundary",
                    self.stop_request["by"],
                    self.stop_request["reason"],
                )
                self.stopping = True
            if self.child is not None:
                finished, rc = self.child.poll()
                if not finished:
                    if self.events is not None:
                        self.events.watch()
                    self._observe()
                    self._report_progress()
                    time.sleep(POLL_S)
                    continue
                self._child_exited(rc)
                continue
            if self.stopping:
                return None
            if self.paused:
                time.sleep(POLL_S)
                continue
            if self.disk_wait is not None:
                self._check_disk()
                continue
            nxt = self._next_file()
            if nxt is None:
                self._set_idle()
                time.sleep(POLL_S * 2)
                continue
            orphan = find_training(lay)
            if orphan:  # never a second training beside one already running: adopt it, the file waits
                self._adopt_proc(orphan[0], None)
                continue
            if not self._room_for(nxt.name):
                continue
            self._start_child(nxt)

    def _mirror_pause(self, req: ctl.Requests) -> None:
        if req.pause and not self.paused:
            self.paused = True
            self._event("pause", reason=req.pause_reason)
            update_state(
                self.layout.daemon_state,
                state="paused",
                paused_at=req.paused_at or iso_now(),
                pause_reason=req.pause_reason,
            )
            log.info("paused: %s", req.pause_reason)
        elif not req.pause and self.paused:
            self.paused = False
            self._event("unpause")
            update_state(
                self.layout.daemon_state,
                state="waiting" if self.disk_wait else "running",
                paused_at=None,
                pause_reason=None,
            )  # never sticky
            log.info("resumed")

    def _set_idle(self) -> None:
        if self.idle:
            return
        self.idle = True
        self._event("idle")
        update_state(self.layout.daemon_state, state="idle", current_file=None, child_pid=None, child_started_at=None)
        if read_json(self.layout.status).get("state") != "idle":
            update_status(self.layout.status, state="idle", current_file=None, eta_seconds=None)
        log.info("queue empty: idle")

    def _next_file(self) -> Path | None:
        lay = self.layout
        while True:
            for p in q.in_processing(lay):  # an interrupted file first: resume it
                return p
            entries = q.pending(lay)
            if not entries:
                return None
            claimed = q.claim(lay, entries[0])
            if claimed is None:
                continue
            try:
                read_examples(claimed, self.cfg.data_format, self.cfg.text_field, keep=False)
                chat = file_format(claimed, self.cfg.data_format, self.cfg.text_field) == "chat"
                why = chat and template_problem(lay, self.cfg, claimed.name)
                if why:
                    raise DataError(why)
            except DataError as exc:
                dest = q.finish_failed(lay, claimed, str(exc))
                log.error("%s goes to failed/ without training (the queue continues): %s", dest.name, exc)
                continue
            log.info("claimed %s", claimed.name)
            return claimed

    def _start_child(self, file: Path) -> None:
        lay = self.layout
        self.idle = False
        resume = self._prepare_checkpoints(file.name)
        attempt = int(q.attempts(lay, file.name)["attempts"]) + 1
        cmd = child_command(lay, self.cfg, file, attempt, resume)
        log_path = lay.logs / f"train-{file.stem}.log"
        fh = open(log_path, "ab")  # noqa: SIM115 - the child writes it; Child holds it and closes it when reaped
        env = child_env()
        if self.lease is not None:
            env[GENERATION_ENV] = str(self.lease.generation)  # the child commits checkpoints only under this generation
        popen = subprocess.Popen(
            cmd,
            cwd=lay.base,
            stdin=subprocess.DEVNULL,
            stdout=fh,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env=env,
        )
        try:
            started = psutil.Process(popen.pid).create_time()
        except psutil.Error:
            started = time.time()
        self.child = Child(popen.pid, started, file, popen, fh)
        self._last_progress = time.monotonic()
        update_state(
            lay.daemon_state,
            state="paused" if self.paused else "running",
            current_file=file.name,
            child_pid=popen.pid,
            child_started_at=started,
            child_cmd=cmd,
            adopted=False,
            attempt=attempt,
        )
        if self.events is not None:
            self.events.file_start(file.name, resume, attempt, started)
        log.info(
            "spawn file=%s pid=%d attempt=%d resume=%s log=%s",
            file.name,
            popen.pid,
            attempt,
            resume.name if resume else "none",
            log_path.name,
        )

    def _prepare_checkpoints(self, name: str) -> Path | None:
        """Hand current_model/ to ``name``: log every deletion and move, record moves aside in the state."""
        resume, done = ck.prepare(self.layout, name)
        moved = [d for d in done if d.startswith("moved ")]
        for d in done:
            (log.warning if d.startswith("moved ") else log.info)("checkpoint: %s", d)
        if moved:
            aside = ck.set_aside(self.layout.checkpoints)
            update_state(
                self.layout.daemon_state,
                set_aside={
                    "folder": str(aside[-1].relative_to(self.layout.base)) if aside else None,
                    "at": iso_now(),
                    "before_training": name,
                    "moved": moved,
                },
            )
        return resume

    # adoption ------------------------------------------------------------------
    def _adopt(self, prev: dict[str, Any]) -> None:
        pid, started = prev.get("child_pid"), prev.get("child_started_at")
        if isinstance(pid, int) and pid > 0:
            live = probe(pid)
            if (
                live.alive
                and live.info is not None
                and is_training(live.info, self.layout)
                and start_time_matches(live.info, started if isinstance(started, (int, float)) else None)
            ):
                self._adopt_proc(live.info, prev.get("current_file"))
                return
        found = find_training(self.layout)
        if found:
            self._adopt_proc(found[0], None)

    def _adopt_proc(self, info: Any, file_name: str | None) -> None:
        lay = self.layout
        arg = arg_value(info.cmdline, "--file")
        name = file_name or (Path(arg).name if arg else None) or "unknown.jsonl"
        self.child = Child(info.pid, info.create_time, lay.processing / name)
        self.idle = False
        update_state(
            lay.daemon_state, current_file=name, child_pid=info.pid, child_started_at=info.create_time, adopted=True
        )
        if self.events is not None:
            self.events.adopt(name, info.pid, info.create_time)
        log.warning(
            "adopting training PID %d (%s) left running by a previous daemon: reporting its progress and waiting "
            "for it; no second training starts beside it",
            info.pid,
            name,
        )

    def _observe(self) -> None:
        """Feed the live history from the status file, at most once per HISTORY_EVERY_S, only with a monitor."""
        now = time.monotonic()
        if self.monitor is None or now - self._last_live < HISTORY_EVERY_S:
            return
        self._last_live = now
        self.live.observe(read_json(self.layout.status))

    def _report_progress(self) -> None:
        now = time.monotonic()
        if now - self._last_progress < PROGRESS_EVERY_S and self._last_progress:
            return
        self._last_progress = now
        st = read_json(self.layout.status)
        if self.child is not None:
            log.info(
                "%s PID %d on %s: step %s/%s, loss %s, val_loss %s",
                "adopted" if self.child.adopted else "child",
                self.child.pid,
                self.child.file.name,
                st.get("step"),
                st.get("total_steps"),
                st.get("loss"),
                st.get("val_loss"),
            )

    def _child_exited(self, rc: int | None) -> None:
        lay = self.layout
        child = self.child
        assert child is not None
        self.child = None
        child.reap_group()
        self._last_progress = 0.0
        name = child.file.name
        res = read_json(lay.last_result)
        fresh = res.get("file") == name and _after(res.get("at"), child.started_at)
        outcome = res.get("outcome") if fresh else None
        still_here = child.file.exists()
        if (
            rc == EXIT_OK
            or (rc is None and not still_here and (lay.done / name).exists())
            or (outcome == "completed" and not still_here)
        ):
            log.info("completed %s (PID %d%s)", name, child.pid, ", adopted" if child.adopted else "")
            self._ended(name, "done", res.get("step") if fresh else None)
            dropped = res.get("dropped_lines") if fresh else None
            if isinstance(dropped, dict) and dropped.get("count"):
                log.warning(
                    "%s trained without %s of its %s line(s), too long for max_seq_length=%s: line(s) %s%s",
                    name,
                    dropped["count"],
                    dropped.get("total"),
                    dropped.get("max_seq_length"),
                    ", ".join(str(n) for n in dropped.get("first_lines") or []),
                    " ..." if dropped["count"] > len(dropped.get("first_lines") or []) else "",
                )
        elif rc == EXIT_DATA or outcome in ("data-error", "diverged"):
            err = res.get("error") or "invalid data"
            self._ended(name, "failed", res.get("step") if fresh else None, reason=err)
            if still_here:
                q.finish_failed(lay, child.file, err, lay.logs / f"train-{child.file.stem}.log")
            log.error("%s failed: %s", name, err)
            self._write_crash_status(name, err, "failed")
        elif rc == EXIT_FENCED:
            log.error("%s: its training was fenced (lost the lease); no failure is counted", name)
        elif rc == EXIT_STOPPED or outcome == "stopped":
            log.info("%s stopped at step %s; it resumes from its checkpoint on the next start", name, res.get("step"))
            self._ended(name, "stop", res.get("step") if fresh else None)
        elif still_here and self._out_of_space(rc, outcome):
            log.warning(
                "child PID %d for %s ran out of disk space (exit code %s): no failure is counted", child.pid, name, rc
            )
            self._ended(name, "disk", res.get("step") if fresh else None)  # the event of this disk wait
            self._room_for(name, told=True)
        elif not still_here:
            log.warning("child PID %d for %s ended and the file is no longer in processing/", child.pid, name)
        else:
            if outcome == "crashed":
                err = res.get("error") or "crashed"
            elif rc is None:
                err = "the adopted training process ended without a result (killed?)"
            elif rc < 0:
                err = (
                    f"killed by signal {signal.Signals(-rc).name}"
                    if -rc in signal.Signals._value2member_map_
                    else f"signal {-rc}"
                )
            else:
                err = f"exit code {rc}"
            self._ended(name, "crash", res.get("step") if fresh else None, reason=err, exit_code=rc)
            n = q.record_failure(lay, name, err)
            log_path = lay.logs / f"train-{child.file.stem}.log"
            if n >= self.cfg.max_failures:
                q.finish_failed(lay, child.file, f"{err} (failed {n} times; last log: {log_path})", log_path)
                log.error("%s failed %d times (%s): moved to failed/", name, n, err)
                self._write_crash_status(name, err, "failed")
            else:
                resume = ck.last_complete_of(lay, name)
                log.error(
                    "training of %s died (%s), attempt %d of %d; resuming from %s",
                    name,
                    err,
                    n,
                    self.cfg.max_failures,
                    resume.name if resume else "the start",
                )
                self._write_crash_status(name, err, "crashed")
                time.sleep(RETRY_DELAY_S)
        update_state(
            lay.daemon_state,
            current_file=None,
            child_pid=None,
            child_started_at=None,
            adopted=False,
            last_exit={"file": name, "code": rc, "outcome": outcome, "at": iso_now()},
        )

    # disk full -----------------------------------------------------------------
    def _space(self) -> ds.Space:
        return ds.measure(self.layout, self.layout.resolve(self.cfg.base_model))

    def _out_of_space(self, rc: int | None, outcome: Any) -> bool:
        """The child said so (exit code, result), or it died some other way with no room left for a checkpoint."""
        if rc == EXIT_DISK_FULL or outcome == "disk-full":
            return True
        return rc != EXIT_OK and not self._space().enough

    def _room_for(self, name: str, told: bool = False) -> bool:
        """Whether a checkpoint fits; if not, wait (state `waiting`, with the reason) instead of starting ``name``."""
        space = self._space()
        if space.enough:
            return True
        self.idle = False
        self.disk_wait = ds.DiskWait(name, space, iso_now())
        log.error(
            "%s: %s waits in processing/ and resumes from its last complete checkpoint once there is room",
            space.reason(),
            name,
        )
        if not told:
            self._event("disk-wait", file=name, free_bytes=space.free, needed_bytes=space.need)
        update_state(self.layout.daemon_state, **self.disk_wait.state())
        update_status(self.layout.status, state="waiting", current_file=name, eta_seconds=None, error=space.reason())
        return False

    def _check_disk(self) -> None:
        """Look at free space when the backoff says so; resume (the loop starts the file) once a checkpoint fits."""
        wait = self.disk_wait
        assert wait is not None
        if not wait.due():
            time.sleep(POLL_S)
            return
        space = self._space()
        if not space.enough:
            wait.checked(space)
            update_state(self.layout.daemon_state, **wait.state())
            return
        log.info(
            "disk space is back: %d bytes free on %s (a checkpoint needs ~%d); resuming %s",
            space.free,
            space.mount,
            space.need,
            wait.file,
        )
        self.disk_wait = None
        self._event("disk-resumed", file=wait.file)
        ensure_reserve(self.layout.status_dir)
        update_state(self.layout.daemon_state, state="running", resumed_after_disk_full_at=iso_now(), **ds.CLEARED)
        update_status(self.layout.status, error=None)

    def _event(self, what: str, **fields: Any) -> None:
        from healthkit.contract import events as ev

        if self.events is not None:
            name = {
                "exit": ev.DAEMON_EXIT,
                "pause": ev.PAUSE,
                "unpause": ev.UNPAUSE,
                "idle": ev.IDLE,
                "disk-wait": ev.DISK_WAIT,
                "disk-resumed": ev.DISK_RESUMED,
            }[what]
            self.events.append(name, **fields)

    def _ended(self, name: str, outcome: str, step: Any, **fields: Any) -> None:
        if self.events is not None:
            self.events.child_ended(name, outcome, step, **fields)

    def _write_crash_status(self, name: str, error: str, what: str) -> None:
        update_status(
            self.layout.status, state="crashed", current_file=name, error=f"{what}: {error}", eta_seconds=None
        )

    # monitor -------------------------------------------------------------------
    def snapshot(self) -> dict[str, Any]:
        lay = self.layout
        d = read_state(lay.daemon_state)
        t = read_json(lay.status)
        listing = q.listing(lay)
        costs = read_json(lay.monitoring_costs).get("training") or {}
        reason = None
        if time.monotonic() - self.heartbeat > 30:
            reason = f"daemon loop has not run for {time.monotonic() - self.heartbeat:.0f}s"
        elif d.get("state") in ("crashed", "gave-up"):
            reason = f"daemon state is {d.get('state')}"
        elif d.get("state") == "waiting":
            reason = f"waiting: {d.get('waiting_reason')}"
        elif self.child is not None and t.get("state") == "training":
            age = time.time() - _epoch(t.get("updated_at"))
            if age > 900:
                reason = f"training status not updated for {age:.0f}s"
        return {
            "healthy": reason is None,
            "reason": reason,
            "daemon": d,
            "training": t,
            "queue": {k: len(v) for k, v in listing.items()},
            "costs": costs,
        }


def _epoch(iso: Any) -> float:
    from datetime import datetime

    try:
        return datetime.fromisoformat(str(iso)).timestamp()
    except ValueError:
        return 0.0


def _after(iso: Any, ts: float) -> bool:
    return _epoch(iso) >= ts - 2.0


# library functions for the CLI and the fix engine ----------------------------------


class DaemonError(Exception):
    """The daemon could not be started or reached; the message says why, ``exit_code`` how the CLI exits."""

    def __init__(self, message: str, exit_code: int = 1):
        super().__init__(message)
        self.exit_code = exit_code


def daemon_argv(layout: Layout, extra: list[str] | None = None) -> list[str]:
    return [sys.executable, "-m", DAEMON_MODULE, "--workspace", str(layout.base), *(extra or [])]


def supervisor_argv(layout: Layout) -> list[str]:
    return [sys.executable, "-m", SUPERVISOR_MODULE, "--workspace", str(layout.base)]


def ran_supervised(layout: Layout) -> bool:
    """Whether the last daemon ran under our supervisor (it records `supervised` at its start): a restart by
    `healthkit fix` keeps it so, instead of silently dropping supervision."""
    return read_state(layout.daemon_state).get("supervised") is True


def refuse_beside_foreign_training(lay: Layout) -> None:
    """Raise DaemonError (exit 73) when a training this daemon would not adopt works in the workspace.

    Started beside it, the daemon would begin a second training: two processes on one GPU, and HF's
    checkpoint rotation deleting the other's saves. `healthkit fix --safe` instead schedules the start
    for when that training has ended.
    """
    from healthkit.system.shellcmd import command

    foreign = trainings_not_ours(lay)
    if not foreign:
        return
    shown = "; ".join(f"PID {p.pid} ({p.display_cmd(100)}, started {iso_now(p.create_time)})" for p in foreign)
    raise DaemonError(
        f"a training this daemon did not start works in {lay.base}: {shown}. A daemon started now would train beside "
        f"it. Let it finish or stop it yourself; `{command('healthkit', 'fix', '--safe', lay.base)}` starts the daemon "
        "once it has ended. "
        "Nothing was started.",
        EXIT_ALREADY_RUNNING,
    )


def start_daemon(base: Path, supervise: bool = False, timeout_s: float = 60.0, run_as: Account | None = None) -> int:
    """Start a detached daemon (under the supervisor with ``supervise``); returns its PID once it holds its PID file.

    An orphaned training is adopted by the new daemon, never killed. Raises DaemonError
    when one is already running or it exits at once (its error, e.g. an invalid config).
    ``run_as``: the daemon (and so each training child) runs as that user (healthkit.contract.trust.run_as_for).
    """
    lay = Layout.of(base)
    running = running_daemon(lay)
    if running:
        raise DaemonError(f"a daemon already runs for {lay.base} (PID {running})")
    refuse_beside_foreign_training(lay)
    make_dirs_for(lay.logs, lay.base)
    if supervise:
        argv = supervisor_argv(lay)
        out = lay.logs / "supervisor.out"
    else:
        argv = daemon_argv(lay)
        out = lay.logs / "daemon.out"
    offset = out.stat().st_size if out.exists() else 0
    try:
        spawned = spawn_detached(argv, lay.base, out, run_as=run_as)
    except (OSError, subprocess.CalledProcessError) as exc:
        who = f" as {run_as.name}" if run_as else ""
        detail = getattr(exc, "stderr", None) or str(exc)
        raise DaemonError(
            f"the daemon could not be started{who}: {detail.strip().splitlines()[-1] if detail.strip() else exc}"
            + (f" ({run_as.name} must be able to run {sys.executable} and read the workspace)" if run_as else "")
        ) from None
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        pf = read_pid_file(lay.pid_file)
        if pf.state == "ok" and pf.pid and (pf.pid == spawned or supervise) and running_daemon(lay) == pf.pid:
            st = read_state(lay.daemon_state)
            if st.get("pid") == pf.pid and st.get("ready_at"):
                return pf.pid
        if not probe(spawned).alive:
            tail = _tail(out, offset)
            raise _exited_at_once(lay, tail)
        time.sleep(0.1)
    raise DaemonError(f"the daemon did not come up within {timeout_s:.0f}s (see {out})")


def _exited_at_once(lay: Layout, tail: str) -> DaemonError:
    """Why a fresh daemon is gone; exit 78 when its start-up checks refused the configuration (said by it or its supervisor)."""
    refused = "healthkit daemon: cannot start" in tail or "refused its configuration" in tail
    error = read_state(lay.daemon_state).get("error") if refused else None
    if error and error not in tail:
        tail = f"{tail}\n{error}".strip()
    beside = "healthkit daemon: not started:" in tail  # a training it would not adopt began after our own check
    return DaemonError(
        f"the daemon exited at once:\n{tail}" if tail else "the daemon exited at once (see logs/daemon.log)",
        EXIT_CONFIG if refused else EXIT_ALREADY_RUNNING if beside else 1,
    )


def start_consequences(base: Path) -> list[str]:
    """What a daemon started now would change on disk before training (for the fix plan; changes nothing).

    The first file it takes is the one in processing/ (an interrupted run), else the inbox's
    head; before training it, ``checkpoints.prepare`` moves aside or deletes what is not that
    file's. (A bad file is failed first and the next one taken: same checkpoints, same fate.)
    """
    lay = Layout.of(base)
    nxt = next(iter(q.in_processing(lay)), None)
    if nxt is None:
        head = q.pending(lay)
        nxt = head[0].path if head else None
    if nxt is None:
        return []
    lines = ck.plan_prepare(lay, nxt.name).lines()
    return [f"before training {nxt.name} the daemon will {line}" for line in lines]


def _tail(path: Path, offset: int, limit: int = 4000) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            return f.read()[-limit:].decode("utf-8", "replace").strip()
    except OSError:
        return ""


def stop_daemon(base: Path, wait_s: float = 120.0, by: str | None = None, reason: str | None = None) -> bool:
    """Ask the daemon (and its child) to stop after a checkpoint; True once it is gone within ``wait_s``.

    ``by`` and ``reason`` are recorded in the daemon state as a stop on request, which the
    audit reports as `daemon.stopped` (info) and which no fix undoes.
    """
    lay = Layout.of(base)
    pid = running_daemon(lay)
    if not pid:
        return True
    proc = _process(pid)
    ctl.request_stop(lay, by=by, reason=reason)
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        # The lock is released a moment before the process exits (atexit, interpreter teardown):
        # "stopped" means the PID is gone (or a zombie its parent has yet to reap), not only the lock.
        holder = running_daemon(lay)
        if proc is None and holder and holder > 0:
            proc = _process(holder)  # the PID file is written just after the lock is taken
        if not holder and _exited(proc):
            return True
        time.sleep(0.1)
    return False


def _process(pid: int) -> psutil.Process | None:
    """The daemon's process handle (pins its identity against PID reuse); None when unknown or gone."""
    if pid <= 0:
        return None
    try:
        return psutil.Process(pid)
    except psutil.Error:
        return None


def _exited(proc: psutil.Process | None) -> bool:
    if proc is None:
        return True
    try:
        return not proc.is_running() or proc.status() == psutil.STATUS_ZOMBIE
    except psutil.Error:
        return True


def status(base: Path) -> dict[str, Any]:
    """What `healthkit daemon status` says, from the files and the live processes: the state file's child is checked
    (same PID, start time, our training argv and workspace), and each failed file comes with its reason."""
    lay = Layout.of(base)
    pid = running_daemon(lay)
    st = read_state(lay.daemon_state) if lay.daemon_state.exists() else {}  # no defaults for a daemon that never ran
    listing = q.listing(lay)
    return {
        "running": bool(pid),
        "pid": pid,
        "state": st,
        "training": read_json(lay.status),
        "queue": listing,
        "control": {k: (lay.control / k).exists() for k in ("pause", "resume", "stop")},
        "child_alive": _child_alive(lay, st),
        "failed": _failed_reasons(lay, listing["failed"]),
        "supervisor": (sup := read_json(lay.supervisor_state)),
        "supervisor_alive": bool(sup) and supervisor_alive(sup),
        "slurm": _slurm_status(lay),
        "lease": _lease_status(lay),
    }


def _lease_status(lay: Layout) -> dict[str, Any] | None:
    """The workspace's lease as `daemon status` shows it (host, generation, seconds since the last renewal)."""
    from healthkit.contract.lease import lease_path, read_lease

    le = read_lease(lease_path(lay.pid_file)).lease
    if le is None:
        return None
    return {
        "host": le.host,
        "pid": le.pid,
        "generation": le.generation,
        "renewed_s_ago": round(time.time() - le.renewed_at, 1),
        "lease_seconds": le.lease_seconds,
        "released": le.released_at is not None,
        "local": le.is_local(),
    }


def _slurm_status(lay: Layout) -> dict[str, Any] | None:
    """The workspace's Slurm jobs (id, state, reason, time left) when `[daemon] scheduler = "slurm"`, else None."""
    from healthkit.contract.settings import SettingsError, load_settings
    from healthkit.contract.wsid import read_workspace_id
    from healthkit.system.slurmq import job_name, jobs_named

    try:
        if load_settings(lay.base)[0].daemon.scheduler != "slurm":
            return None
    except SettingsError:
        return None
    wsid = read_workspace_id(lay.base)
    if wsid is None:
        return {"jobs": [], "why": "no workspace id yet: no job was submitted"}
    jobs, ans = jobs_named(job_name(wsid))
    return {"jobs": jobs or [], "why": ans.why or None, "name": job_name(wsid)}


def _child_alive(lay: Layout, st: dict[str, Any]) -> bool:
    """Whether the state file's child_pid is still that very training process (not a reused PID, not gone)."""
    pid = st.get("child_pid")
    if not isinstance(pid, int) or isinstance(pid, bool):
        return False
    live = probe(pid)
    return (
        live.alive
        and live.info is not None
        and start_time_matches(live.info, st.get("child_started_at"))
        and is_training(live.info, lay)
    )


def _failed_reasons(lay: Layout, names: list[str]) -> list[dict[str, Any]]:
    """Each failed file's `<name>.error.json` (error, failed_at), newest first."""
    out = []
    for name in names:
        data = read_json(lay.failed / f"{name}.error.json")
        out.append(
            {"file": name, "error": data.get("error") or "no error file says why", "failed_at": data.get("failed_at")}
        )
    return sorted(out, key=lambda f: str(f["failed_at"] or ""), reverse=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m healthkit.trainer.daemon", description="the healthkit training daemon")
    ap.add_argument("--workspace", required=True, type=Path)
    ap.add_argument("--restarts", type=int, default=0)
    ap.add_argument("--supervised", action="store_true")
    a = ap.parse_args(argv)
    lay = Layout.of(a.workspace)
    log_to(lay, "daemon.log", "daemon")
    os.chdir(lay.base)
    return Daemon(lay, restarts=a.restarts, supervised=a.supervised).run()


if __name__ == "__main__":
    sys.exit(main())
