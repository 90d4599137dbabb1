"""status/daemon_state.json and other small JSON files: read leniently, written atomically.

The daemon's and the supervisor's own writes (`update_state`, `update_status`) never
raise OSError: on a full disk they first release a small reserve file kept beside the
state for this moment, and when the write still fails the changes are kept in memory
(the file keeps its last good state) and written by the next call or `flush_pending`.
"""

from __future__ import annotations

import errno
import json
import logging
import os
from pathlib import Path
from typing import Any

from healthkit.contract.states import DAEMON_STATES
from healthkit.system.fsutil import atomic_write

NO_SPACE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})
RESERVE_NAME = ".disk-reserve"
RESERVE_BYTES = 256 * 1024

log = logging.getLogger("healthkit.trainer.state")
_pending: dict[Path, dict[str, Any]] = {}

DEFAULT_STATE: dict[str, Any] = {
    "state": "stopped",
    "pid": None,
    "started_at": None,
    "paused_at": None,
    "pause_reason": None,
    "restarts": 0,
    "current_file": None,
    "child_pid": None,
    "child_started_at": None,
}


def read_json(path: Path) -> dict[str, Any]:
    """The object in ``path``, or {} when it is missing, unreadable or not an object."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def write_json(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, json.dumps(data, indent=2, sort_keys=True) + "\n")


def read_state(path: Path) -> dict[str, Any]:
    return {**DEFAULT_STATE, **read_json(path)}


def update_state(path: Path, **changes: Any) -> dict[str, Any]:
    """Merge ``changes`` into the state file (the daemon and its supervisor are its only writers); never raises OSError."""
    if "state" in changes and changes["state"] not in DAEMON_STATES:
        raise ValueError(f"unknown daemon state {changes['state']!r}")
    state = {**read_state(path), **_pending.get(path, {}), **changes}
    _write_or_keep(path, state, changes)
    return state


def ensure_reserve(folder: Path) -> bool:
    """Keep RESERVE_BYTES allocated in ``folder`` for our own writes on a full disk; False when there is no room now."""
    path = folder / RESERVE_NAME
    if path.exists():
        return True
    try:
        st = os.statvfs(folder)
        if st.f_bavail * st.f_frsize < 4 * RESERVE_BYTES:
            return False  # a disk this full needs the room now: taking it back would only fail the next write
    except OSError:
        return False
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    except OSError:
        return False
    try:
        os.posix_fallocate(fd, 0, RESERVE_BYTES)
        return True
    except OSError:
        path.unlink(missing_ok=True)
        return False
    finally:
        os.close(fd)


def release_reserve(folder: Path) -> bool:
    """Give the reserve's blocks back so that a state write can succeed; False when there was none."""
    try:
        (folder / RESERVE_NAME).unlink()
        return True
    except OSError:
        return False


def write_using_reserve(path: Path, text: str, reserve: Path | None = None) -> None:
    """atomic_write that survives a full disk: it releases the reserve (in ``reserve``, else beside ``path``) and tries
    again, and as a last resort rewrites the file in place when the text fits in the blocks it already owns."""
    first = _try_atomic(path, text)
    if first is None:
        return
    if release_reserve(reserve or path.parent):
        log.warning("disk full: released the reserve in %s to write %s", reserve or path.parent, path.name)
        if _try_atomic(path, text) is None:
            return
    if not _rewrite_in_place(path, text.encode("utf-8")):
        raise first


def _try_atomic(path: Path, text: str) -> OSError | None:
    """None when written; the error when the disk is full. Any other error raises."""
    try:
        atomic_write(path, text)
        return None
    except OSError as exc:
        if exc.errno not in NO_SPACE_ERRNOS:
            raise
        return exc


def _rewrite_in_place(path: Path, data: bytes) -> bool:
    """Overwrite ``path`` within the blocks it owns (no new space needed); False when it is missing or too small."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
    except OSError:
        return False
    try:
        if len(data) > max(os.fstat(fd).st_blocks * 512, os.fstat(fd).st_size):
            return False
        os.pwrite(fd, data, 0)
        os.ftruncate(fd, len(data))
        return True
    except OSError:
        return False
    finally:
        os.close(fd)


def _write_or_keep(path: Path, data: dict[str, Any], changes: dict[str, Any]) -> bool:
    """Write ``data``; on failure keep ``changes`` pending (the file keeps its last good content) and say so once."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_using_reserve(path, json.dumps(data, indent=2, sort_keys=True) + "\n")
    except OSError as exc:
        if path not in _pending:
            log.warning("cannot write %s (%s): keeping its last good state, retrying later", path, exc.strerror or exc)
        _pending[path] = {**_pending.get(path, {}), **changes}
        return False
    if _pending.pop(path, None) is not None:
        log.info("wrote %s again after earlier failed writes", path.name)
    return True


def flush_pending() -> bool:
    """Retry the writes kept in memory; True when nothing is pending any more."""
    for path in list(_pending):
        if path.name == "training_status.json":
            update_status(path)
        else:
            update_state(path)
    return not _pending


STATUS_TEMPLATE: dict[str, Any] = {
    "state": "idle",
    "step": None,
    "total_steps": None,
    "loss": None,
    "val_loss": None,
    "val_train_gap": None,
    "current_file": None,
    "started_at": None,
    "updated_at": None,
    "eta_seconds": None,
    "gpu": None,
}


def update_status(path: Path, **changes: Any) -> None:
    """Rewrite status/training_status.json with every contract key present (the daemon's writes, when no child runs)."""
    from .layout import iso_now

    changes = {**_pending.get(path, {}), **changes, "updated_at": iso_now()}
    _write_or_keep(path, {**STATUS_TEMPLATE, **read_json(path), **changes}, changes)
