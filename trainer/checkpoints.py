"""Checkpoints of the file being trained (`current_model/checkpoint-N`) and final models (`models/<stem>/`).

No torch here: the daemon decides what to resume from before it starts a child, so every
rank of a multi-process run gets the same answer.

Lifecycle: while a file trains, HF Trainer writes and rotates `current_model/checkpoint-N`
(`save_total_limit`, plus the best one when `load_best_model_at_end`). When the file
completes, its final model goes to `models/<stem>/` (with `healthkit_final.json`),
`models/LATEST` names it (the next file starts from it when `continue_from_previous`),
the file's checkpoints are deleted, and only the newest `keep_final_models` final models
are kept. `current_model/healthkit_owner.json` names the file the checkpoints belong to:
checkpoints of another file are never resumed from. A failed file's checkpoints are not
finished with: before another file trains they are moved into `current_model/.failed-<name>/`
(healthkit/contract/retry_checkpoints.py), out of reach of HF's rotation, and `healthkit queue retry` brings the
file back to resume from them; only a person deletes them (`healthkit fix --unsafe`).

Ownership: the trainer deletes only checkpoints it can prove are its own and finished with.
Each checkpoint it saves gets `healthkit_checkpoint.json` (the file it belongs to, written
by the status callback right after HF's save). A checkpoint without that marker (restored
from a backup, left by another tool, a save killed before its marker) is never deleted:
it is *moved aside* to `current_model/.foreign-<UTC time>/` before training starts, with
`healthkit_aside.json` saying why. Moving aside rather than refusing the start keeps the
queue going (nobody has to be there) and keeps every byte (a rename in the same folder);
leaving them in place is not an option, because HF Trainer's own rotation deletes the
oldest `checkpoint-*` of its output folder whoever wrote them. The daemon logs and records
each move (`set_aside` in status/daemon_state.json), the audit reports the folder
(`checkpoints.set-aside`), and `healthkit fix` shows the move in the start-daemon plan.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from healthkit.contract.retry_checkpoints import (
    ASIDE_PREFIX,
    MARK,
    failed_folder,
    is_complete,
    newest_complete,
    owner_of,
    step_dirs,
)
from healthkit.formats.hf_checkpoints import checkpoint_completeness

from .layout import Layout, iso_now
from .state import read_json, write_json

OWNER = "healthkit_owner.json"
FINAL_MARKER = "healthkit_final.json"
ASIDE_INFO = "healthkit_aside.json"


def checkpoints(folder: Path) -> list[tuple[int, Path]]:
    """checkpoint-N folders by step number (never by name: checkpoint-900 comes before checkpoint-2600)."""
    return step_dirs(folder)


def last_complete(folder: Path) -> Path | None:
    return newest_complete(checkpoints(folder))


def mark(ckpt: Path, file_name: str, step: int, data_order: str | None = None) -> None:
    """Record that ``ckpt`` was saved by this trainer for ``file_name`` (the proof ``prepare`` asks for), and the
    example order it trained in (trainer/data_order.py): a rewind skips batches only where that order is known."""
    info: dict[str, object] = {"file": file_name, "step": step, "saved_at": iso_now()}
    if data_order is not None:
        info["data_order"] = data_order
    write_json(ckpt / MARK, info)


def _finished(layout: Layout, name: str) -> str | None:
    """Where a queue file ended (``done`` or ``failed``), or None while it may still train."""
    for where, folder in (("done", layout.done), ("failed", layout.failed)):
        if (folder / name).exists() and not (layout.processing / name).exists() and not (layout.inbox / name).exists():
            return where
    return None


@dataclass
class Preparation:
    """What ``prepare`` would do before training ``file_name``: computed without changing anything."""

    file_name: str
    resume: Path | None = None
    delete: list[tuple[Path, str]] = field(default_factory=list)
    aside: list[tuple[Path, str]] = field(default_factory=list)
    keep_failed: list[tuple[Path, str]] = field(default_factory=list)  # (checkpoint, the failed file it belongs to)
    restore: list[Path] = field(default_factory=list)  # this file's own, kept in .failed-<name>/ since it failed

    def lines(self) -> list[str]:
        out = [f"delete {p.name} ({why})" for p, why in self.delete]
        out += [f"move {p.name} aside to {p.parent.name}/{ASIDE_PREFIX}<time>/ ({why})" for p, why in self.aside]
        out += [
            f"move {p.name} to {p.parent.name}/{failed_folder(p.parent, owner).name}/ (of {owner}, which is in failed/: "
            "kept for `healthkit queue retry`)"
            for p, owner in self.keep_failed
        ]
        out += [
            f"move {p.name} back from {p.parent.name}/ (kept since {self.file_name} failed: it resumes from them)"
            for p in self.restore
        ]
        return out


def plan_prepare(layout: Layout, file_name: str) -> Preparation:
    """Decide each checkpoint's fate; never a deletion without proof that it is ours and finished with.

    A failed file's checkpoints are not finished with: they are what its retry resumes from.
    """
    prep = Preparation(file_name)
    found = checkpoints(layout.checkpoints)
    top = {p.name for _, p in found}
    kept = [(s, p) for s, p in checkpoints(failed_folder(layout.checkpoints, file_name)) if p.name not in top]
    mine = sorted([(s, p) for s, p in found if owner_of(p) == file_name] + kept)
    prep.resume = newest_complete(mine)
    if prep.resume is not None and prep.resume.parent != layout.checkpoints:
        prep.resume = layout.checkpoints / prep.resume.name  # where it will be once moved back
    resume_step = int(prep.resume.name.split("-")[1]) if prep.resume is not None else -1
    cut_short = f"incomplete, newer than the resume point: a save of {file_name} that was cut short"
    for step, p in kept:
        if step > resume_step and not is_complete(p):
            prep.delete.append((p, cut_short))
        else:
            prep.restore.append(p)
    for step, p in found:
        owner = owner_of(p)
        if owner is None:
            prep.aside.append((p, "no healthkit marker: not provably written by this trainer"))
        elif owner != file_name:
            where = _finished(layout, owner)
            if where == "failed":
                prep.keep_failed.append((p, owner))
            elif where:
                prep.delete.append((p, f"of {owner}, which is in {where}/"))
            else:
                prep.aside.append((p, f"of {owner}, which has not finished"))
        elif step > resume_step and not is_complete(p):
            prep.delete.append((p, cut_short))
    return prep


def move_aside(layout: Layout, items: list[tuple[Path, str]], file_name: str) -> Path | None:
    """Rename ``items`` into a new ``.foreign-<time>/`` folder (same filesystem: nothing is copied or lost)."""
    if not items:
        return None
    stamp = iso_now().replace(":", "").replace("-", "").replace("+0000", "Z")
    dest = layout.checkpoints / f"{ASIDE_PREFIX}{stamp}"
    n = 1
    while dest.exists():
        n += 1
        dest = layout.checkpoints / f"{ASIDE_PREFIX}{stamp}-{n}"
    dest.mkdir()
    write_json(
        dest / ASIDE_INFO,
        {
            "moved_at": iso_now(),
            "before_training": file_name,
            "by_pid": os.getpid(),
            "checkpoints": {p.name: why for p, why in items},
        },
    )
    for p, _ in items:
        os.rename(p, dest / p.name)
    return dest


def prepare(layout: Layout, file_name: str) -> tuple[Path | None, list[str]]:
    """Make current_model/ belong to ``file_name``; returns (checkpoint to resume from, what was done).

    Proven ours and finished with (marker of a file now in done/ or failed/, or an
    incomplete save of this file newer than the resume point): deleted. Everything else
    not of this file: moved aside, never deleted (see the module docstring).
    """
    folder = layout.checkpoints
    folder.mkdir(parents=True, exist_ok=True)
    prep = plan_prepare(layout, file_name)
    done: list[str] = []
    dest = move_aside(layout, prep.aside, file_name)
    for p, why in prep.aside:
        done.append(f"moved {p.name} to {dest.name}/ ({why})")  # type: ignore[union-attr]
    for p, why in prep.delete:
        shutil.rmtree(p, ignore_errors=True)
        done.append(f"deleted {p.name} ({why})")
    for p, owner in prep.keep_failed:
        dest = failed_folder(folder, owner)
        dest.mkdir(exist_ok=True)
        if (dest / p.name).exists():
            dest = dest / f".{iso_now().replace(':', '')}"  # a second failure's save of the same step: both kept
            dest.mkdir(exist_ok=True)
        os.rename(p, dest / p.name)
        done.append(f"kept {p.name} of {owner} (in failed/) in {dest.relative_to(folder)}/ for `healthkit queue retry`")
    for p in prep.restore:
        os.rename(p, folder / p.name)
        done.append(f"restored {p.name} from {p.parent.name}/: {file_name} resumes from its own checkpoints")
    try:
        failed_folder(folder, file_name).rmdir()  # empty once all are back
    except OSError:
        pass
    if read_json(folder / OWNER).get("file") != file_name:
        write_json(folder / OWNER, {"file": file_name, "since": iso_now()})
    return prep.resume, done


def set_aside_incomplete(layout: Layout, file_name: str) -> Path | None:
    """Move every incomplete checkpoint-N out of HF's reach before a save (returns the folder, or None).

    HF's rotation counts checkpoints, not complete ones: with one made incomplete (a file lost,
    a save cut short) it deletes the oldest complete checkpoint and keeps the broken one. Set
    aside first (a rename, nothing lost), the rotation only ever sees complete checkpoints.
    Called by rank 0 just before each save, when no checkpoint is being written.
    """
    broken = [
        (
            p,
            "incomplete when the next save came: kept aside so that the save's rotation keeps the complete ones "
            f"({'; '.join(checkpoint_completeness(p, need_optimizer=True).missing) or 'unreadable'})",
        )
        for _, p in checkpoints(layout.checkpoints)
        if not is_complete(p)
    ]
    return move_aside(layout, broken, file_name)


def last_complete_of(layout: Layout, file_name: str) -> Path | None:
    """The newest complete checkpoint this trainer saved for ``file_name``."""
    return plan_prepare(layout, file_name).resume


def clear(layout: Layout, file_name: str) -> None:
    """Delete ``file_name``'s own checkpoints once its final model is installed; anything else stays."""
    for _, p in checkpoints(layout.checkpoints):
        if owner_of(p) == file_name:
            shutil.rmtree(p, ignore_errors=True)
    (layout.checkpoints / OWNER).unlink(missing_ok=True)


def set_aside(folder: Path) -> list[Path]:
    """The ``.foreign-*`` folders ``prepare`` made, oldest first."""
    try:
        return sorted(
            Path(e.path)
            for e in os.scandir(folder)
            if e.name.startswith(ASIDE_PREFIX) and e.is_dir(follow_symlinks=False)
        )
    except OSError:
        return []


def latest_final(layout: Layout) -> Path | None:
    try:
        name = (layout.models / "LATEST").read_text(encoding="utf-8").strip()
    except OSError:
        return None
    d = layout.models / name
    return d if name and (d / FINAL_MARKER).exists() else None


def install_final(layout: Layout, saved: Path, stem: str, info: dict) -> Path:
    """Move a saved model into models/<stem>/, point LATEST at it, keep the newest keep_final_models."""
    from healthkit.system.fsutil import atomic_write

    write_json(saved / FINAL_MARKER, {**info, "finished_at": iso_now()})
    final = layout.models / stem
    if final.exists():
        trash = layout.models / f".{stem}.old-{os.getpid()}"
        os.rename(final, trash)
        shutil.rmtree(trash, ignore_errors=True)
    os.rename(saved, final)
    atomic_write(layout.models / "LATEST", stem + "\n")
    return final


def prune_finals(layout: Layout, keep: int) -> list[Path]:
    finals = []
    for e in os.scandir(layout.models) if layout.models.exists() else []:
        marker = Path(e.path) / FINAL_MARKER
        if e.is_dir(follow_symlinks=False) and marker.exists():
            finals.append((marker.stat().st_mtime, Path(e.path)))
    finals.sort()
    latest = latest_final(layout)
    removed = []
    for _, p in finals[: max(0, len(finals) - keep)]:
        if latest is not None and p == latest:
            continue
        shutil.rmtree(p, ignore_errors=True)
        removed.append(p)
    return removed
