"""Checkpoints of a failed queue file, kept for its retry: where they are, and the step a retry resumes from.

No torch here. Our trainer marks each checkpoint it saves with `healthkit_checkpoint.json`
(the queue file it belongs to). When another file is about to train, a failed file's
checkpoints are moved into `<checkpoint dir>/.failed-<name>/` (a rename: nothing is
copied, and HF's rotation, which deletes the oldest `checkpoint-*` at the top level, no
longer sees them). `healthkit queue retry` puts the file back in the queue; the daemon moves
the checkpoints back before the file trains and resumes from the newest complete one.
The trainer (what a retry resumes from) and the audit (`queue.failed` says how many steps
a retry keeps) ask the same functions here.
"""

from __future__ import annotations

import os
from pathlib import Path

from healthkit.formats.hf_checkpoints import CHECKPOINT_NAME, STATE_FILE, checkpoint_completeness, newest_with_state

MARK = "healthkit_checkpoint.json"  # inside each checkpoint our trainer saved: {"file": queue file, "step": N}
FAILED_PREFIX = ".failed-"
# Folders the trainer makes beside the checkpoints: a failed file's kept checkpoints, and checkpoints it could not
# prove its own, moved aside intact (checks/aside.py reports them; the trainer makes them).
ASIDE_PREFIX = ".foreign-"


def owner_of(ckpt: Path) -> str | None:
    """The queue file a checkpoint was saved for, or None when it carries no marker of ours."""
    from healthkit.system.fsutil import CAP_TINY, ReadProblem, read_json

    try:
        owner = read_json(ckpt / MARK, CAP_TINY).get("file")
    except (ReadProblem, AttributeError):
        return None
    return owner if isinstance(owner, str) and owner else None


def step_dirs(folder: Path) -> list[tuple[int, Path]]:
    """checkpoint-N folders directly in ``folder``, by step number (never by name).

    HF's name rule (hf_checkpoints.CHECKPOINT_NAME), but unlike the format's listing a symlink is not followed: a
    retry resumes from, and moves, only folders our trainer wrote in place; the format follows a linked checkpoint to
    judge it and to protect it from deletion."""
    out = []
    try:
        for e in os.scandir(folder):
            m = CHECKPOINT_NAME.fullmatch(e.name)
            if m and e.is_dir(follow_symlinks=False):
                out.append((int(m.group(1)), Path(e.path)))
    except OSError:
        return []
    return sorted(out)


def is_complete(ckpt: Path) -> bool:
    """Everything a resume of our trainer needs (optimizer state included), by the shared rule."""
    return checkpoint_completeness(ckpt, need_optimizer=True).complete


def newest_complete(found: list[tuple[int, Path]]) -> Path | None:
    """The newest complete of (step, checkpoint) pairs, its trainer_state.json parsed whole (HF will load it to resume)."""
    newest = newest_with_state(found, lambda c: is_complete(c[1]), lambda c: c[1] / STATE_FILE)[0]
    return newest[1] if newest else None


def failed_folder(checkpoint_dir: Path, name: str) -> Path:
    """Where the checkpoints of failed queue file ``name`` are kept until it is retried or they are deleted on purpose."""
    return checkpoint_dir / f"{FAILED_PREFIX}{name}"


def kept_for(checkpoint_dir: Path, name: str) -> list[tuple[int, Path]]:
    """Every checkpoint of ``name`` still on disk: in its `.failed-<name>/` folder, or at the top level with its marker."""
    top = [(s, p) for s, p in step_dirs(checkpoint_dir) if owner_of(p) == name]
    return sorted(top + step_dirs(failed_folder(checkpoint_dir, name)))


def retry_point(checkpoint_dir: Path, name: str) -> tuple[int, Path] | None:
    """(step, checkpoint) a retry of ``name`` resumes from: its newest complete checkpoint; None when it starts over."""
    newest = newest_complete(kept_for(checkpoint_dir, name))
    return (int(newest.name.split("-")[1]), newest) if newest is not None else None
