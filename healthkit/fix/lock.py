"""One fix run at a time per workspace: an flock on `<workspace>/.healthkit-fix.lock`.

The kernel drops an flock when its holder dies, so a crashed (even SIGKILLed) run can
never leave the lock held. The file is never removed or replaced (a stable inode); the
holder writes its PID and start time into it so that a refused run can say who holds it.

The lock needs no free blocks: opening (or creating: an inode, no data) and flock work on a
full disk. Only the PID needs a block; when the disk is full it is written later
(`write_pid`, retried by the engine once an action has freed space).
"""

from __future__ import annotations

import errno
import fcntl
import os
import time
from pathlib import Path

LOCK_NAME = ".healthkit-fix.lock"


class LockBusy(Exception):
    """Another fix run holds the workspace's lock; the message names it."""


class FixLock:
    def __init__(self, base: Path, wait_s: float = 0.0):
        self.path = base / LOCK_NAME
        self.wait_s = wait_s
        self.fd: int | None = None
        self.pid_written = False

    def holder(self) -> str:
        """Who holds the lock: the PID it wrote, else the kernel's own record (/proc/locks: a holder that has not
        written its PID yet, or could not on a full disk), with its command line where it can be read. The lock file
        is read bounded and without following links (a FIFO there never blocks)."""
        from healthkit.system.fsutil import CAP_TINY, ReadProblem, read_bytes

        try:
            text = read_bytes(self.path, CAP_TINY, follow_symlinks=False).decode("ascii", "replace").split()
        except ReadProblem:
            text = []
        pid = int(text[0]) if text and text[0].isdigit() else _flock_holder(self.path)
        if pid is None:
            return "another process"
        try:
            import psutil

            cmd = " ".join(psutil.Process(pid).cmdline())
        except Exception:
            cmd = ""
        return f"PID {pid}" + (f": {cmd[:160]}" if cmd else "")

    def acquire(self) -> FixLock:
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o644)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise LockBusy(f"{self.path} is a symbolic link; refusing to use it as the fix lock") from None
            raise LockBusy(f"cannot open the fix lock {self.path}: {exc.strerror}") from None
        deadline = time.monotonic() + max(0.0, self.wait_s)
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    who = self.holder()
                    os.close(fd)
                    waited = f" after waiting {self.wait_s:g}s" if self.wait_s else ""
                    raise LockBusy(
                        f"another `healthkit fix` run ({who}) is working on this workspace{waited}; "
                        f"nothing was changed. Try again later, or pass --wait SECONDS"
                    ) from None
                time.sleep(0.1)
        self.fd = fd
        self.pid_written = False
        self.write_pid()
        return self

    def write_pid(self) -> bool:
        """Write our PID and start time into the held lock; False (no error) while the disk has no block for it."""
        if self.fd is None or self.pid_written:
            return self.fd is not None
        try:
            import psutil

            start = f" {psutil.Process().create_time():.2f}"
        except Exception:
            start = ""
        try:
            os.ftruncate(self.fd, 0)
            os.pwrite(self.fd, f"{os.getpid()}{start}\n".encode(), 0)
        except OSError:
            return False  # a full disk: the flock alone excludes other runs; the PID only names us
        self.pid_written = True
        return True

    def release(self) -> None:
        if self.fd is not None:
            try:
                os.ftruncate(self.fd, 0)
            except OSError:
                pass
            os.close(self.fd)  # closing drops the flock
            self.fd = None

    def __enter__(self) -> FixLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def _flock_holder(path: Path) -> int | None:
    """The PID holding an flock on ``path``, from /proc/locks (Linux); None when it cannot be told."""
    try:
        st = os.stat(path)
        with open("/proc/locks", encoding="ascii", errors="replace") as fh:
            lines = fh.read().splitlines()
    except OSError:
        return None
    want = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"
    for line in lines:
        parts = line.split()
        if len(parts) >= 6 and parts[1] == "FLOCK" and parts[5] == want and parts[4].isdigit():
            return int(parts[4])
    return None
