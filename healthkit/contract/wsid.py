"""The workspace id: one random id, created once in the workspace, that names it across hosts.

Mount points differ between the hosts of a cluster, so a path cannot name a workspace; this id does, in the
daemon's lease, in the monitor's `/health`, in Slurm job names and in reports. It is created by whoever first
needs to publish it (the trainer's daemon at start, `healthkit init`); an audit only reads it and never creates
it (an audit writes nothing into the audited tree).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

WSID_FILE = ".healthkit-id"
# 128 random bits as 32 hex digits; anything else in the file is not an id we made.
_ID_RE = re.compile(r"[0-9a-f]{32}")


def read_workspace_id(base: Path) -> str | None:
    """The id in ``base``'s id file, or None when there is none or it is not one of ours.

    Read bounded and non-blocking (a FIFO or a huge file in its place is not an id)."""
    try:
        fd = os.open(base / WSID_FILE, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW)
    except OSError:
        return None
    try:
        import stat

        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        data = os.read(fd, 256)
    except OSError:
        return None
    finally:
        os.close(fd)
    text = data.decode("ascii", "replace").strip()
    return text if _ID_RE.fullmatch(text) else None


def ensure_workspace_id(base: Path) -> str:
    """The workspace's id, created on first use with O_EXCL so that two starters agree on one id."""
    found = read_workspace_id(base)
    if found:
        return found
    import secrets  # only to make one: its hashlib and random cost every audit that reads one

    new = secrets.token_hex(16)
    path = base / WSID_FILE
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
    except FileExistsError:
        # Someone else made it first (or a broken file is there): theirs wins if it is an id.
        found = read_workspace_id(base)
        if found:
            return found
        raise
    try:
        os.write(fd, (new + "\n").encode("ascii"))
        os.fsync(fd)
    finally:
        os.close(fd)
    return new
