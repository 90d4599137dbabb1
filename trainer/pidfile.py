"""The daemon's PID file `.daemon.pid` ("PID START_TIME"), held under an flock while the daemon lives.

Two locks, both released by the kernel when the process dies, so a dead daemon never
leaves a live lock: `.daemon.lock` (a stable inode, never replaced) serialises daemons;
`.daemon.pid` is written atomically (rename) and then locked too, so anyone can ask
"is the process named here alive and holding it?" with `flock -n .daemon.pid true`.
Both descriptors are close-on-exec: a training child never inherits them.

Where the file system has no flock (Lustre mounted without `-o flock` answers ENOSYS; some NFS setups ENOLCK), the
locks are skipped with a warning and the lease (`trainer/lease.py`) is the only fence. ``HEALTHKIT_TEST_HOST_LOCAL_LOCKS``
(tests only) names the lock file after the host, so that hosts simulated by UTS namespaces on one kernel do not
share it, as they would not where flock is node-local.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os

import psutil

from healthkit.system.procs import read_pid_file

from .layout import Layout
from .state import write_using_reserve

log = logging.getLogger("healthkit.trainer.pidfile")

HOST_LOCAL_LOCKS_ENV = "HEALTHKIT_TEST_HOST_LOCAL_LOCKS"
# flock is not there at all: no lock to take, and none that anyone holds.
NO_FLOCK_ERRNOS = frozenset({errno.ENOSYS, errno.ENOLCK, errno.EOPNOTSUPP, errno.EINVAL})


def lock_path(layout: Layout):
    """The daemon lock file (per host under the test hook that makes locks host-local)."""
    if os.environ.get(HOST_LOCAL_LOCKS_ENV):
        return layout.lock_file.with_name(f"{layout.lock_file.name}.{os.uname().nodename}")
    return layout.lock_file


def try_flock(fd: int, how: int) -> bool | None:
    """True when locked, False when someone else holds it, None when this file system has no flock (ENOSYS...)."""
    try:
        fcntl.flock(fd, how | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    except OSError as exc:
        if exc.errno in NO_FLOCK_ERRNOS:
            return None
        raise
    return True


class DaemonLock:
    def __init__(self, layout: Layout):
        self.layout = layout
        self._lock_fd: int | None = None
        self._pid_fd: int | None = None

    def acquire(self, before_pid_file=None) -> bool:
        """Take the lock and write the PID file; False when another live daemon holds it.

        ``before_pid_file`` runs once the lock is held and before the PID file is written (the lease claim); when it
        raises, the lock is let go and nothing was written."""
        fd = os.open(lock_path(self.layout), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        got = try_flock(fd, fcntl.LOCK_EX)
        stale = stale_remote_holder(self.layout) if got is False else None  # read once: it may vanish meanwhile
        if stale is not None:
            log.warning(
                "the daemon lock is held, but by host %s, whose lease expired: a dead host's lock at the file "
                "server (NFSv3 keeps it until that host reboots); going on, the lease fences",
                stale.host,
            )
            got = None
        if got is False:
            os.close(fd)
            return False
        if got is None:
            log.warning(
                "this file system has no flock (%s): the lease alone keeps a second daemon out",
                os.strerror(errno.ENOSYS),
            )
        if before_pid_file is not None:
            try:
                before_pid_file()
            except BaseException:
                os.close(fd)
                raise
        self._lock_fd = fd
        me = psutil.Process()
        write_using_reserve(self.layout.pid_file, f"{me.pid} {me.create_time():.2f}\n", self.layout.status_dir)
        pfd = os.open(self.layout.pid_file, os.O_RDONLY | os.O_CLOEXEC)
        try_flock(pfd, fcntl.LOCK_EX)
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
        fd = os.open(lock_path(layout), os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return False
    try:
        return try_flock(fd, fcntl.LOCK_SH) is False
    finally:
        os.close(fd)


def stale_remote_holder(layout: Layout):
    """The lease of another host that expired (its length plus the margin), else None: whatever lock that host left at
    the file server holds nothing any more."""
    import time

    from healthkit.contract.lease import lease_path, read_lease

    from .lease import lease_settings

    lease = read_lease(lease_path(layout.pid_file)).lease
    if lease is None or lease.is_local() or lease.released_at is not None:
        return None
    _, margin = lease_settings(layout.base)
    return None if lease.fresh(time.time(), margin) else lease


def running_daemon(layout: Layout) -> int | None:
    """PID of the live daemon holding the lock, else None (a lock left by a dead host whose lease expired is none)."""
    if not is_locked(layout) or stale_remote_holder(layout) is not None:
        return None
    pf = read_pid_file(layout.pid_file)
    return pf.pid if pf.state == "ok" else -1
