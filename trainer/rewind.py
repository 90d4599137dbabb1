"""A file rewound to an earlier checkpoint: the checkpoints after it moved aside, and the steps whose batches it skips.

`healthkit fix --unsafe` (the `rewind-to-checkpoint` fix, trainer/fix_rewind.py) writes this; the
training child reads it (trainer/data_order.py cuts the windows out of the example order) for as
long as the file trains, so a crash and resume later in the same epoch still sees the same order.
It is removed when the file completes. One JSON file per queue file, `status/rewinds/<name>.json`:

    {"file": "a.jsonl", "rewinds": [{"to": "checkpoint-600", "to_step": 600, "skip_first": 691,
      "skip_last": 700, "reached_step": 800, "moved": ["checkpoint-700", ...],
      "aside": "current_model/.foreign-…", "reason": "...", "by": "...", "at": "<UTC>"}]}

The checkpoints after the chosen one are moved, never deleted: a rename into a `.foreign-<time>/`
folder beside them (with `healthkit_aside.json` saying why), which the audit reports and only a
person deletes. No torch here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from healthkit.contract.retry_checkpoints import is_complete, kept_for

from . import checkpoints as ck
from .data_order import Window
from .layout import Layout, iso_now
from .state import read_json, write_json


def record_path(layout: Layout, name: str) -> Path:
    return layout.status_dir / "rewinds" / f"{name}.json"


def rewinds(layout: Layout, name: str) -> list[dict[str, Any]]:
    """The rewinds recorded for ``name``, oldest first (empty when none, or the record is unreadable)."""
    got = read_json(record_path(layout, name)).get("rewinds")
    return [r for r in got if isinstance(r, dict)] if isinstance(got, list) else []


def windows(layout: Layout, name: str, recorded: list[dict[str, Any]] | None = None) -> list[Window]:
    """The skip windows of ``name``'s rewinds (or of ``recorded``, already read), in the order they were recorded
    (each cut applies to the order the one before it left)."""
    out = []
    for r in rewinds(layout, name) if recorded is None else recorded:
        first, last = r.get("skip_first"), r.get("skip_last")
        if isinstance(first, int) and isinstance(last, int) and 0 < first <= last:
            out.append(Window(first, last))
    return out


def clear(layout: Layout, name: str) -> None:
    """The file completed: its order no longer matters."""
    record_path(layout, name).unlink(missing_ok=True)


def step_of(ckpt: Path) -> int:
    return int(ckpt.name.rpartition("-")[2])


def find_checkpoint(layout: Layout, name: str, checkpoint: str) -> Path | None:
    """``checkpoint`` (a `checkpoint-N` name) among ``name``'s own checkpoints, wherever they are kept
    (current_model/, marked as its own, or `.failed-<name>/`)."""
    return next((p for _, p in kept_for(layout.checkpoints, name) if p.name == checkpoint), None)


@dataclass
class Rewind:
    """What a rewind of ``file`` to ``target`` does, computed without changing anything."""

    file: str
    target: Path
    window: Window | None
    later: list[Path] = field(default_factory=list)

    @property
    def to_step(self) -> int:
        return step_of(self.target)


def plan(layout: Layout, name: str, target: Path, window: Window | None) -> Rewind:
    """Every checkpoint of ``name`` after ``target`` goes; the window starts after the target (its steps are trained
    again from the target, so a window at or before it would skip nothing of what is retrained)."""
    to_step = step_of(target)
    later = [p for s, p in kept_for(layout.checkpoints, name) if s > to_step]
    if window is not None and window.last <= to_step:
        window = None
    elif window is not None and window.first <= to_step:
        window = Window(to_step + 1, window.last)
    return Rewind(name, target, window, later)


def apply(layout: Layout, rw: Rewind, reason: str, by: str, reached_step: int | None) -> Path | None:
    """Move the later checkpoints aside and record the rewind; returns the folder they went to (None: there were none).

    The record is written after the moves, so that a kill in between never leaves a window recorded for a resume
    from a later checkpoint: it leaves the file resuming from the target without the skip (the fix's journal shows
    the move and no record).
    """
    if not is_complete(rw.target):  # checked again: the plan was shown a while ago
        raise ValueError(f"{rw.target.name} is not complete (a save cut short, or files missing)")
    moved = [(p, f"rewound past: {reason}; training resumes from {rw.target.name}") for p in rw.later if p.exists()]
    aside = ck.move_aside(layout, moved, rw.file)
    entry = {
        "to": rw.target.name,
        "to_step": rw.to_step,
        "skip_first": rw.window.first if rw.window else None,
        "skip_last": rw.window.last if rw.window else None,
        "reached_step": reached_step,
        "moved": [p.name for p, _ in moved],
        "aside": str(aside.relative_to(layout.base)) if aside else None,
        "reason": reason,
        "by": by,
        "at": iso_now(),
    }
    path = record_path(layout, rw.file)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json(path, {"file": rw.file, "rewinds": [*rewinds(layout, rw.file), entry]})
    return aside
