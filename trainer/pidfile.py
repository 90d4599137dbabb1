"""The daemon's PID file `.daemon.pid` ("PID START_TIME"), held under an flock while the daemon lives.

Two locks, both released by the kernel when the process dies, so a dead daemon never
leaves a live lock: `.daemon.lock` (a stable inode, never replaced) serialises daemons;
`.daemon.pid` is written atomically (rename) and then locked too, so anyone can ask
"is the process named here alive and holding it?" with `flock -n .daemon.pid true`.
Both descriptors are close-on-exec: a training child never inherits them.
"""

from __future__ import annotations

import fcntl
import os

import psutil

from healthkit.system.procs import read_pid_file

from .layout import Layout
from .state import write_using_reserve


class DaemonLock:
    def __init__(self, layout: Layout):
        self.layout = layout
        self._lock_fd: int | None = None
        self._pid_fd: int | None = None

    def acquire(self) -> bool:
        """Take the lock and write the PID file; False when another live daemon holds it."""
        fd = os.open(self.layout.lock_file, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        self._lock_fd = fd
        me = psutil.Process()
        write_using_reserve(self.layout.pid_file, f"{me.pid} {me.create_time():.2f}\n", self.layout.status_dir)
        pfd = os.open(self.layout.pid_file, os.O_RDONLY | os.O_CLOEXEC)
        fcntl.flock(pfd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        self._pid_fd = pfd
        return True

    def release(self) -> None:
        if self._lock_fd is None:
            return
        pf = read_pid_file(self.layout.pid_file)
        if pf.state == "ok" and pf.pid == os.getpid():
            self.layout.pid_file.unlink(missing_ok=True)
        for fd in (self._pid_fd, self._lock_fd):
            if fd is not None:
                os.close(fd)
        self._lock_fd = self._pid_fd = None


def is_locked(layout: Layout) -> bool:
    """Whether a live process holds the daemon lock (the kernel's answer, not the PID file's)."""
    try:
        fd = os.open(layout.lock_file, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


def running_daemon(layout: Layout) -> int | None:
    """PID of the live daemon holding the lock, else None."""
    if not is_locked(layout):
        return None
    pf = read_pid_file(layout.pid_file)
    return pf.pid if pf.state == "ok" else -1
