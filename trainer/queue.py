"""The queue: `queue/inbox -> processing -> done | failed`, one JSONL file per training run.

Order: a file named `p<N>-...jsonl` has priority N (0 runs first, 9 last); any other
name has priority 5. Within a priority, files run in order of arrival (mtime, which
`queue add` sets), then by name. A file is claimed by renaming it into processing/
(atomic), so two daemons can never take the same file. A failed file is moved to
failed/ with `<name>.error.json` beside it saying why.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .layout import Layout, iso_now
from .state import read_json, write_json

DONE_SUFFIX = ".done.json"  # the done record beside each file in done/ (as `.error.json` beside a failed one)
ERROR_SUFFIX = ".error.json"
PRIORITY_RE = re.compile(r"^p(\d)-")
DEFAULT_PRIORITY = 5


def priority_of(name: str) -> int:
    m = PRIORITY_RE.match(name)
    return int(m.group(1)) if m else DEFAULT_PRIORITY


@dataclass(frozen=True)
class Entry:
    path: Path
    priority: int
    mtime: float

    @property
    def name(self) -> str:
        return self.path.name


def _jsonl(folder: Path) -> list[Path]:
    try:
        return [
            Path(e.path)
            for e in os.scandir(folder)
            if e.name.endswith(".jsonl") and not e.name.startswith(".") and e.is_file()
        ]
    except FileNotFoundError:
        return []


def pending(layout: Layout) -> list[Entry]:
    """Files waiting in the inbox, in the order they will run."""
    out = []
    for p in _jsonl(layout.inbox):
        try:
            mtime = p.stat().st_mtime
        except OSError:
            continue
        out.append(Entry(p, priority_of(p.name), mtime))
    out.sort(key=lambda e: (e.priority, e.mtime, e.name))
    return out


def listing(layout: Layout) -> dict[str, list[str]]:
    return {
        "inbox": [e.name for e in pending(layout)],
        "processing": sorted(p.name for p in _jsonl(layout.processing)),
        "done": sorted(p.name for p in _jsonl(layout.done)),
        "failed": sorted(p.name for p in _jsonl(layout.failed)),
    }


def add(layout: Layout, src: Path, priority: int | None = None, move: bool = False) -> Path:
    """Put ``src`` in the inbox (copied, or moved with ``move``); returns its queue path."""
    if not src.is_file():
        raise FileNotFoundError(f"{src} is not a file")
    if src.suffix != ".jsonl":
        raise ValueError(f"{src.name}: queue files must end in .jsonl")
    if priority is not None and not 0 <= priority <= 9:
        raise ValueError("priority must be 0 (first) to 9 (last)")
    name = PRIORITY_RE.sub("", src.name) if priority is not None else src.name
    if priority is not None and priority != DEFAULT_PRIORITY:
        name = f"p{priority}-{name}"
    layout.inbox.mkdir(parents=True, exist_ok=True)
    dest = layout.inbox / name
    if dest.exists() or (layout.processing / name).exists():
        raise FileExistsError(f"{name} is already queued")
    tmp = layout.inbox / f".{name}.adding"
    if move:
        shutil.move(str(src), tmp)
    else:
        shutil.copyfile(src, tmp)
    now = time.time()
    os.utime(tmp, (now, now))
    os.replace(tmp, dest)  # appears whole, never half-copied
    return dest


def claim(layout: Layout, entry: Entry) -> Path | None:
    """Move an inbox file to processing/; None when someone else took it first."""
    dest = layout.processing / entry.name
    layout.processing.mkdir(parents=True, exist_ok=True)
    try:
        os.rename(entry.path, dest)
    except FileNotFoundError:
        return None
    return dest


def in_processing(layout: Layout) -> list[Path]:
    """Files already claimed (an interrupted run to resume first), oldest first."""
    files = _jsonl(layout.processing)
    return sorted(files, key=lambda p: (p.stat().st_mtime if p.exists() else 0, p.name))


def _unique(dest: Path) -> Path:
    if not dest.exists():
        return dest
    stem, n = dest.name[: -len(".jsonl")], 1
    while (dest.parent / f"{stem}.{n}.jsonl").exists():
        n += 1
    return dest.parent / f"{stem}.{n}.jsonl"


def _attempts_path(layout: Layout, name: str) -> Path:
    return layout.processing / f".{name}.attempts.json"


def attempts(layout: Layout, name: str) -> dict[str, Any]:
    data = read_json(_attempts_path(layout, name))
    data.setdefault("attempts", 0)
    data.setdefault("errors", [])
    return data


def record_failure(layout: Layout, name: str, error: str) -> int:
    """Count one failed attempt at ``name``; returns the count so far."""
    data = attempts(layout, name)
    data["attempts"] = int(data["attempts"]) + 1
    data["errors"] = (list(data["errors"]) + [{"at": iso_now(), "error": error}])[-10:]
    write_json(_attempts_path(layout, name), data)
    return data["attempts"]


def finish_done(layout: Layout, path: Path, record: dict[str, Any] | None = None) -> Path:
    """Move ``path`` to done/ with `<name>.done.json` beside it: when, at which step, and the lines it trained without."""
    layout.done.mkdir(parents=True, exist_ok=True)
    dest = _unique(layout.done / path.name)
    write_json(dest.with_name(dest.name + DONE_SUFFIX), {"file": path.name, "done_at": iso_now(), **(record or {})})
    os.rename(path, dest)
    _attempts_path(layout, path.name).unlink(missing_ok=True)
    return dest


def finish_failed(layout: Layout, path: Path, error: str, log: Path | None = None) -> Path:
    """Move ``path`` to failed/ with `<name>.error.json` (the error, the attempts, the log to read)."""
    layout.failed.mkdir(parents=True, exist_ok=True)
    dest = _unique(layout.failed / path.name)
    info = attempts(layout, path.name)
    write_json(
        dest.with_name(dest.name + ".error.json"),
        {
            "file": path.name,
            "error": error,
            "failed_at": iso_now(),
            "attempts": info["attempts"],
            "errors": info["errors"],
            "log": str(log) if log else None,
        },
    )
    os.rename(path, dest)
    _attempts_path(layout, path.name).unlink(missing_ok=True)
    return dest


def error_of(layout: Layout, name: str) -> str | None:
    data = read_json(layout.failed / f"{name}.error.json")
    return data.get("error") if data else None


def dumps_listing(layout: Layout) -> str:
    return json.dumps(listing(layout), indent=2)


class RetryError(Exception):
    """`queue retry` cannot move the file back; the message says why (nothing was changed)."""


def retry(layout: Layout, name: str) -> Path:
    """Move failed/``name`` back to the inbox under the name it was queued as, and remove its stale error file.

    Its checkpoints stay where they are kept (current_model/.failed-<name>/); the daemon moves
    them back before the file trains and resumes from the newest complete one.
    """
    src = layout.failed / name
    if not src.is_file():
        raise RetryError(f"{name} is not in {layout.failed}")
    err = src.with_name(src.name + ERROR_SUFFIX)
    original = read_json(err).get("file") if err.exists() else None
    original = original if isinstance(original, str) and original.endswith(".jsonl") and "/" not in original else name
    for folder in (layout.inbox, layout.processing):
        if (folder / original).exists():
            raise RetryError(f"{original} is already queued ({folder / original}); nothing was moved")
    layout.inbox.mkdir(parents=True, exist_ok=True)
    dest = layout.inbox / original
    now = time.time()
    os.utime(src, (now, now))  # queued now: it runs after what is already waiting at its priority
    os.rename(src, dest)
    err.unlink(missing_ok=True)
    return dest
