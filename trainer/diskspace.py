"""A full disk is a state, not a crash: free space, what one checkpoint needs, and how to tell ENOSPC apart.

The child exits with EXIT_DISK_FULL when a write fails for lack of space; the daemon then
waits (state `waiting`) until the checkpoints' filesystem has room for one more
checkpoint plus a margin, and resumes the file from its last complete checkpoint.
No torch here: the daemon imports it.
"""

from __future__ import annotations

import errno
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from healthkit.formats.hf_checkpoints import WEIGHT_FILES

from . import checkpoints as ck
from .layout import Layout

NO_SPACE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})
# How libraries word ENOSPC when they do not raise an OSError: libc's strerror, safetensors' Rust error, torch's writer.
NO_SPACE_TEXT = ("No space left on device", "StorageFull", "Disk quota exceeded", "file write failed")
MARGIN_BYTES = 1 << 20  # beyond one checkpoint: logs, state files, the final model's small files
MARGIN_SHARE = 0.25


def is_no_space(exc: BaseException | None) -> bool:
    """Whether ``exc`` (or what caused it) is a failed write for lack of space."""
    seen = 0
    while exc is not None and seen < 10:
        if isinstance(exc, OSError) and exc.errno in NO_SPACE_ERRNOS:
            return True
        if any(t in str(exc) for t in NO_SPACE_TEXT):
            return True
        exc = exc.__cause__ or exc.__context__
        seen += 1
    return False


def mount_point(path: Path) -> Path:
    """The mount point of the filesystem holding ``path`` (the nearest existing folder's)."""
    p = Path(os.path.realpath(path))
    while not p.exists() and p != p.parent:
        p = p.parent
    while not os.path.ismount(p) and p != p.parent:
        p = p.parent
    return p


def free_bytes(path: Path) -> int:
    """Bytes an unprivileged writer may still write on the filesystem of ``path`` (f_bavail, as `df` shows)."""
    p = Path(path)
    while not p.exists() and p != p.parent:
        p = p.parent
    st = os.statvfs(p)
    return st.f_bavail * st.f_frsize


def tree_bytes(path: Path) -> int:
    """Allocated bytes under ``path`` (what writing it again takes), 0 when it is gone."""
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            try:
                st = os.lstat(os.path.join(root, name))
            except OSError:
                continue
            total += max(st.st_size, st.st_blocks * 512)
    return total


def checkpoint_bytes(layout: Layout, model_dir: Path | None = None) -> int:
    """The size of one checkpoint: the largest complete one, else three times the model's weights (weights + Adam)."""
    sizes = [tree_bytes(p) for _, p in ck.checkpoints(layout.checkpoints) if ck.is_complete(p)]
    if sizes:
        return max(sizes)
    weights = 0
    if model_dir is not None and model_dir.is_dir():
        weights = sum(
            tree_bytes(model_dir / w) if (model_dir / w).is_dir() else _size(model_dir / w) for w in WEIGHT_FILES
        )
    return 3 * weights


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


@dataclass(frozen=True)
class Space:
    """Free space on the checkpoints' filesystem against what the next checkpoint needs."""

    mount: Path
    free: int
    need: int

    @property
    def enough(self) -> bool:
        return self.free >= self.need

    def reason(self) -> str:
        return f"disk full: {self.free} bytes free on {self.mount}, a checkpoint needs ~{self.need}"

    def as_dict(self) -> dict[str, Any]:
        return {"mount": str(self.mount), "free_bytes": self.free, "need_bytes": self.need}


def out_of_room(layout: Layout, exc: BaseException) -> bool:
    """Whether a crash is a full disk: said so by the error, or no checkpoint fits any more (torch's writer reports
    ENOSPC as e.g. "unexpected pos 125696 vs 125588", with no errno)."""
    if is_no_space(exc):
        return True
    try:
        return not measure(layout).enough
    except OSError:
        return False


def measure(layout: Layout, model_dir: Path | None = None) -> Space:
    """Free bytes where the checkpoints go, and one checkpoint's size plus the margin."""
    one = checkpoint_bytes(layout, model_dir)
    need = one + max(MARGIN_BYTES, int(one * MARGIN_SHARE))
    return Space(mount_point(layout.checkpoints), free_bytes(layout.checkpoints), need)


FIRST_CHECK_S = 0.5
MAX_CHECK_S = float(os.environ.get("HEALTHKIT_DISK_CHECK_MAX_S", "30"))
CLEARED: dict[str, Any] = {
    "waiting_for": None,
    "waiting_reason": None,
    "waiting_file": None,
    "waiting_since": None,
    "disk": None,
}


class DiskWait:
    """The daemon's wait for room: when to look at free space again (the delay doubles up to MAX_CHECK_S)."""

    def __init__(self, file: str, space: Space, since: str):
        self.file = file
        self.space = space
        self.since = since
        self.delay = FIRST_CHECK_S
        self.next_at = time.monotonic() + self.delay

    def due(self) -> bool:
        return time.monotonic() >= self.next_at

    def checked(self, space: Space) -> None:
        self.space = space
        self.delay = min(MAX_CHECK_S, self.delay * 2)
        self.next_at = time.monotonic() + self.delay

    def state(self) -> dict[str, Any]:
        """What daemon_state.json says while waiting (`healthkit daemon status` and the audit read it)."""
        return {
            "state": "waiting",
            "waiting_for": "disk",
            "waiting_reason": self.space.reason(),
            "waiting_file": self.file,
            "waiting_since": self.since,
            "disk": self.space.as_dict(),
        }
