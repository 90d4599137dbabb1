"""Keep the daemon alive: `python -m healthkit.trainer.supervise --workspace ABS` (what `healthkit daemon start --supervise` runs).

The supervisor restarts a daemon that crashes, after a backoff that doubles (1 s, 2 s,
4 s ... up to 60 s), logs every restart to logs/supervisor.log and counts them in the
daemon state (`restarts`). Its own state is status/supervisor_state.json (its PID and start
time, the daemon it runs, its restarts, the last crash with its signal and time, and how it
ended), so that the audit can tell a supervised crash and a dead supervisor from an
unsupervised daemon. It gives up, with state `gave-up` and the reason, after
`max_fast_failures` crashes in a row that each came sooner than `fast_s` after the
start, or at once when the daemon refuses its config (exit 78: a restart cannot fix
that). A daemon that stops on request (exit 0) ends the supervisor too. A restarted
daemon adopts the training child that outlived its predecessor.

For the system's supervisor instead, `healthkit daemon systemd-unit` prints a unit.
"""

from __future__ import annotations

import argparse
import fcntl
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psutil

from .launch import DAEMON_MODULE, child_env
from .layout import EXIT_ALREADY_RUNNING, EXIT_CONFIG, EXIT_OK, Layout, iso_now, log_to
from .state import flush_pending, update_state, write_json

log = logging.getLogger("healthkit.trainer.supervise")
RECORD_WAIT_S = 60.0


class Supervisor:
    def __init__(
        self,
        layout: Layout,
        backoff_s: float = 1.0,
        max_backoff_s: float = 60.0,
        max_fast_failures: int = 5,
        fast_s: float = 60.0,
    ):
        self.layout = layout
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self.max_fast_failures = max_fast_failures
        self.fast_s = fast_s
        self.proc: subprocess.Popen | None = None
        self.stopping = False
        self.state: dict[str, Any] = {}

    def record(self, **changes: Any) -> None:
        """status/supervisor_state.json, rewritten whole (the supervisor is its only writer); a full disk only logs."""
        self.state.update(changes)
        try:
            write_json(self.layout.supervisor_state, self.state)
        except OSError as exc:
            log.warning("could not write %s: %s", self.layout.supervisor_state, exc)

    def _on_signal(self, signum: int, frame: Any) -> None:
        self.stopping = True
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)  # the daemon stops its child after a checkpoint

    def run(self) -> int:
        lay = self.layout
        fd = os.open(lay.supervisor_lock, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log.error("another supervisor already runs for %s", lay.base)
            return EXIT_ALREADY_RUNNING
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)
        restarts = fast = 0
        log.info("supervisor started (PID %d)", os.getpid())
        created = psutil.Process().create_time()  # the clock the daemon's started_at is read by: "since" times compare
        self.record(
            state="running",
            pid=os.getpid(),
            create_time=created,
            started_at=iso_now(created),
            daemon_pid=None,
            restarts=0,
            last_crash=None,
            ended_at=None,
            reason=None,
        )
        while True:
            argv = [
                sys.executable,
                "-m",
                DAEMON_MODULE,
                "--workspace",
                str(lay.base),
                "--restarts",
                str(restarts),
                "--supervised",
            ]
            t0 = time.monotonic()
            with _daemon_out(lay) as out:
                self.proc = subprocess.Popen(
                    argv, cwd=lay.base, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, env=child_env()
                )
            log.info("daemon started: PID %d (restart %d)", self.proc.pid, restarts)
            self.record(daemon_pid=self.proc.pid)
            rc = self.proc.wait()
            lived = time.monotonic() - t0
            if rc == EXIT_OK or self.stopping:
                log.info("daemon PID %d exited (code %s) on request: supervisor ends", self.proc.pid, rc)
                self.record(state="stopped", ended_at=iso_now(), reason=f"the daemon exited on request (code {rc})")
                return EXIT_OK
            if rc == EXIT_ALREADY_RUNNING:
                log.error("another daemon holds the workspace: supervisor ends")
                self.record(state="stopped", ended_at=iso_now(), reason="another daemon holds the workspace")
                return EXIT_ALREADY_RUNNING
            if rc == EXIT_CONFIG:
                reason = "the daemon refused its configuration (see logs/daemon.log); restarting cannot fix that"
                self._give_up(reason)
                return EXIT_CONFIG
            how = f"signal {-rc}" if rc < 0 else f"exit code {rc}"
            fast = fast + 1 if lived < self.fast_s else 1
            if fast >= self.max_fast_failures:
                reason = (
                    f"the daemon crashed {fast} times in a row, each within {self.fast_s:g}s of its start (last: {how})"
                )
                self._give_up(reason, restarts=restarts)
                return 1
            delay = min(self.max_backoff_s, self.backoff_s * 2 ** (fast - 1))
            restarts += 1
            log.warning(
                "daemon PID %d crashed (%s) after %.1fs; restart %d in %.1fs",
                self.proc.pid,
                how,
                lived,
                restarts,
                delay,
            )
            at = iso_now()
            update_state(
                lay.daemon_state, state="crashed", pid=None, restarts=restarts, last_crash_at=at, last_crash=how
            )
            self.record(
                restarts=restarts,
                last_crash={
                    "daemon_pid": self.proc.pid,
                    "signal": _signal_name(rc),
                    "exit_code": rc if rc >= 0 else None,
                    "at": at,
                    "after_s": round(lived, 1),
                    "restart_in_s": delay,
                },
            )
            end = time.monotonic() + delay
            while time.monotonic() < end and not self.stopping:
                time.sleep(0.1)
            if self.stopping:
                self.record(state="stopped", ended_at=iso_now(), reason="stopped on request while waiting to restart")
                return EXIT_OK

    def _give_up(self, reason: str, **extra: object) -> None:
        """Record why in the state file; on a full disk keep trying (up to RECORD_WAIT_S) rather than end unrecorded."""
        log.error("giving up: %s", reason)
        self.record(state="gave-up", ended_at=iso_now(), reason=reason)
        update_state(
            self.layout.daemon_state, state="gave-up", pid=None, gave_up_at=iso_now(), gave_up_reason=reason, **extra
        )
        deadline = time.monotonic() + RECORD_WAIT_S
        while not flush_pending() and time.monotonic() < deadline and not self.stopping:
            time.sleep(1.0)
        if not flush_pending():
            sys.stderr.write(f"healthkit supervisor: gave up ({reason}); the state file could not be written\n")


def _signal_name(rc: int) -> str | None:
    """`SIGKILL` for a daemon killed by signal 9 (returncode -9); None for an exit code."""
    if rc >= 0:
        return None
    try:
        return signal.Signals(-rc).name
    except ValueError:
        return f"signal {-rc}"


def _daemon_out(lay: Layout) -> Any:
    """logs/daemon.out for the daemon's stdout and stderr; /dev/null when it cannot be opened (a full disk)."""
    try:
        return open(lay.logs / "daemon.out", "ab")
    except OSError:
        return open(os.devnull, "ab")


def systemd_unit(base: Path, user: str | None = None) -> str:
    """A systemd service that restarts the daemon on failure (KillMode=process: a restart never kills training)."""
    base = Path(base).absolute()
    root = Path(__file__).resolve().parent.parent
    lines = [
        "[Unit]",
        f"Description=healthkit training daemon for {base}",
        "After=network.target",
        "StartLimitIntervalSec=600",
        "StartLimitBurst=5",
        "",
        "[Service]",
        "Type=simple",
        f"WorkingDirectory={base}",
        f"Environment=PYTHONPATH={root}",
        "Environment=PYTHONUNBUFFERED=1",
        f"ExecStart={sys.executable} -m healthkit.trainer.daemon --workspace {base}",
        "Restart=on-failure",
        "RestartSec=5",
        "# 78: the config is refused; restarting cannot fix it",
        "RestartPreventExitStatus=78 73",
        "# Only the daemon is signalled: a training child outlives a restart and is adopted, never killed.",
        "KillMode=process",
        "KillSignal=SIGTERM",
        "# On stop the daemon has its child save a checkpoint first.",
        "TimeoutStopSec=600",
    ]
    if user:
        lines.append(f"User={user}")
    lines += ["", "[Install]", "WantedBy=multi-user.target", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m healthkit.trainer.supervise", description="restart the healthkit daemon on crash"
    )
    ap.add_argument("--workspace", required=True, type=Path)
    ap.add_argument("--backoff", type=float, default=float(os.environ.get("HEALTHKIT_SUPERVISE_BACKOFF_S", "1.0")))
    ap.add_argument("--max-fast-failures", type=int, default=5)
    ap.add_argument("--fast-seconds", type=float, default=60.0)
    a = ap.parse_args(argv)
    lay = Layout.of(a.workspace)
    log_to(lay, "supervisor.log", "supervisor")
    return Supervisor(lay, backoff_s=a.backoff, max_fast_failures=a.max_fast_failures, fast_s=a.fast_seconds).run()


if __name__ == "__main__":
    sys.exit(main())
