"""The fix journal: one JSON object per line, appended with O_APPEND and fsync, secrets redacted.

Each line is written by a single write(2), so a run killed at any moment leaves whole
lines; a torn last line (power loss) is skipped by `read_journal` and the next append
starts on a fresh line. A destructive action is journalled twice: ``started`` before it,
its result after, so an interrupted action is visible as a ``started`` with no result.

A full disk never loses an entry or stops a run: each run ends by preallocating room
beyond the end of the file (fallocate KEEP_SIZE: the size stays, appends land in blocks
already owned), so the next run can journal on a full disk. Without that room a line that
cannot be written (ENOSPC) is kept in memory and written, in order, by the next append or
`flush` once an action has freed space; a short write is cut back, so no torn line is left.
"""

from __future__ import annotations

import errno
import json
import os
import stat
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from healthkit.system.redact import redact_mapping

PREALLOCATE_BYTES = 64 * 1024
_FALLOC_FL_KEEP_SIZE = 1


class Journal:
    def __init__(self, path: Path, dry_run: bool = False, base: Path | None = None):
        self.path = path
        self.dry_run = dry_run
        self.base = base  # the workspace: folders made for the journal belong to its owner (healthkit.contract.trust.make_dirs_for)
        self.entries: list[dict[str, Any]] = []
        self.unwritten: list[bytes] = []  # lines a full disk refused, oldest first

    def append(self, **entry: Any) -> dict[str, Any]:
        record = {"ts": datetime.now(UTC).isoformat(timespec="milliseconds"), "pid": os.getpid(), **entry}
        record = redact_mapping(record)
        self.entries.append(record)
        if self.dry_run:
            return record
        line = json.dumps(record, ensure_ascii=False, default=str, sort_keys=True) + "\n"
        self.unwritten.append(line.encode("utf-8"))
        self.flush()
        return record

    def _make_folder(self) -> None:
        if self.base is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            return
        from healthkit.contract.trust import make_dirs_for

        make_dirs_for(self.path.parent, self.base)

    def flush(self) -> bool:
        """Write the lines a full disk held back; True when none is left. Errors other than a full disk raise."""
        if not self.unwritten or self.dry_run:
            return not self.unwritten
        self._make_folder()
        fd = os.open(
            self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK, 0o644
        )
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):  # a FIFO would take lines until its buffer fills, then block
                raise OSError(errno.EINVAL, f"{self.path} is not a regular file")
            while self.unwritten:
                if not _append_line(fd, self.unwritten[0]):
                    return False
                self.unwritten.pop(0)
        finally:
            os.close(fd)
        return True

    def preallocate(self, nbytes: int = PREALLOCATE_BYTES) -> bool:
        """Own ``nbytes`` beyond the end of the journal so that the next run can append on a full disk."""
        if self.dry_run:
            return False
        try:
            self._make_folder()
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o644)
        except OSError:
            return False
        try:
            return _fallocate_keep_size(fd, os.fstat(fd).st_size, nbytes)
        finally:
            os.close(fd)


def _append_line(fd: int, data: bytes) -> bool:
    """One whole line by one write(2), fsynced; False (nothing left behind) when the disk is full."""
    size = os.fstat(fd).st_size
    if size and os.pread(fd, 1, size - 1) != b"\n":
        data = b"\n" + data
    try:
        n = os.write(fd, data)
        if n != len(data):
            raise OSError(errno.ENOSPC, "short write")
        os.fsync(fd)
    except OSError as exc:
        if exc.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        os.ftruncate(fd, size)  # no torn line: the entry stays in memory for the next try
        return False
    return True


def _fallocate_keep_size(fd: int, offset: int, nbytes: int) -> bool:
    """fallocate(2) with FALLOC_FL_KEEP_SIZE (Linux); False where it is not supported or there is no room."""
    try:
        import ctypes  # here: its start-up is paid only by a run that preallocates the journal
        import ctypes.util

        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        fallocate = libc.fallocate
    except (OSError, AttributeError):
        return False
    fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_longlong, ctypes.c_longlong]
    return fallocate(fd, _FALLOC_FL_KEEP_SIZE, offset, nbytes) == 0


class JournalUnusable(Exception):
    """The fix journal is not a file a run can read and append to (a FIFO, a device, too large): the run refuses."""


def read_journal(path: Path) -> list[dict[str, Any]]:
    """Every whole entry of a journal; torn or foreign lines are skipped."""
    from healthkit.system.fsutil import CAP_HISTORY, ReadProblem, read_bytes

    out: list[dict[str, Any]] = []
    try:
        raw = read_bytes(path, CAP_HISTORY, follow_symlinks=False)  # a FIFO in its place never blocks the run
    except ReadProblem as exc:
        if exc.kind == "missing":
            return out
        raise JournalUnusable(f"the fix journal {exc.message}; nothing was changed (move it aside to fix)") from None
    for line in raw.splitlines():
        try:
            obj = json.loads(line)
        except (ValueError, UnicodeDecodeError):
            continue
        if isinstance(obj, dict):
            out.append(obj)
    return out


def interrupted(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``started`` entries with no later result for the same run, fix and target (a run killed mid-action)."""
    open_: dict[tuple, dict[str, Any]] = {}
    for e in entries:
        k = (e.get("run"), e.get("fix"), e.get("target"), e.get("action"))
        if e.get("result") == "started":
            open_[k] = e
        else:
            open_.pop(k, None)
    return list(open_.values())
