"""The fix journal: one JSON object per line, appended with O_APPEND and fsync, secrets redacted.

Each line is written by a single write(2), so a run killed at any moment leaves whole
lines; a torn last line (power loss) is skipped by `read_journal` and the next append
starts on a fresh line. A destructive action is journalled twice: ``started`` before it,
its result after, so an interrupted action is visible as a ``started`` with no result.
"""

from __future__ import annotations

import json
import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ..redact import redact_mapping


class Journal:
    def __init__(self, path: Path, dry_run: bool = False):
        self.path = path
        self.dry_run = dry_run
        self.entries: list[dict[str, Any]] = []

    def append(self, **entry: Any) -> dict[str, Any]:
        record = {"ts": datetime.now(timezone.utc).isoformat(timespec="milliseconds"), "pid": os.getpid(), **entry}
        record = redact_mapping(record)
        self.entries.append(record)
        if self.dry_run:
            return record
        line = json.dumps(record, ensure_ascii=False, default=str, sort_keys=True) + "\n"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o644)
        try:
            data = line.encode("utf-8")
            size = os.fstat(fd).st_size
            if size:
                last = os.pread(fd, 1, size - 1)
                if last != b"\n":
                    data = b"\n" + data
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        return record


def read_journal(path: Path) -> list[dict[str, Any]]:
    """Every whole entry of a journal; torn or foreign lines are skipped."""
    out: list[dict[str, Any]] = []
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return out
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
