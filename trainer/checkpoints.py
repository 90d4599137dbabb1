"""Checkpoints of the file being trained (`current_model/checkpoint-N`) and final models (`models/<stem>/`).

No torch here: the daemon decides what to resume from before it starts a child, so every
rank of a multi-process run gets the same answer.

Lifecycle: while a file trains, HF Trainer writes and rotates `current_model/checkpoint-N`
(`save_total_limit`, plus the best one when `load_best_model_at_end`). When the file
completes, its final model goes to `models/<stem>/` (with `healthkit_final.json`),
`models/LATEST` names it (the next file starts from it when `continue_from_previous`),
the file's checkpoints are deleted, and only the newest `keep_final_models` final models
are kept. `current_model/healthkit_owner.json` names the file the checkpoints belong to:
checkpoints of another file (one that failed) are never resumed from.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

from .layout import Layout, iso_now
from .state import read_json, write_json

CHECKPOINT_RE = re.compile(r"^checkpoint-(\d+)$")
OWNER = "healthkit_owner.json"
FINAL_MARKER = "healthkit_final.json"
WEIGHTS = ("model.safetensors", "pytorch_model.bin", "model.safetensors.index.json", "pytorch_model.bin.index.json",
           "adapter_model.safetensors", "adapter_model.bin")


def checkpoints(folder: Path) -> list[tuple[int, Path]]:
    """checkpoint-N folders by step number (never by name: checkpoint-900 comes before checkpoint-2600)."""
    out = []
    try:
        for e in os.scandir(folder):
            m = CHECKPOINT_RE.match(e.name)
            if m and e.is_dir(follow_symlinks=False):
                out.append((int(m.group(1)), Path(e.path)))
    except FileNotFoundError:
        return []
    return sorted(out)


def is_complete(ckpt: Path) -> bool:
    """Everything a resume needs; trainer_state.json is written last, so a killed save lacks it."""
    try:
        names = set(os.listdir(ckpt))
        json.loads((ckpt / "trainer_state.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return bool(names & set(WEIGHTS)) and "optimizer.pt" in names and "scheduler.pt" in names


def last_complete(folder: Path) -> Path | None:
    for _, p in reversed(checkpoints(folder)):
        if is_complete(p):
            return p
    return None


def prepare(layout: Layout, file_name: str) -> tuple[Path | None, list[str]]:
    """Make current_model/ belong to ``file_name``; returns (checkpoint to resume from, what was removed).

    Checkpoints of another file are removed (that file finished or failed); incomplete
    checkpoints newer than the one resumed from are removed too (a killed save, which the
    resumed run would write again).
    """
    folder = layout.checkpoints
    folder.mkdir(parents=True, exist_ok=True)
    removed: list[str] = []
    owner = read_json(folder / OWNER).get("file")
    if owner != file_name:
        for _, p in checkpoints(folder):
            shutil.rmtree(p, ignore_errors=True)
            removed.append(f"{p.name} (of {owner or 'an unknown file'})")
        write_json(folder / OWNER, {"file": file_name, "since": iso_now()})
        return None, removed
    resume = last_complete(folder)
    for step, p in checkpoints(folder):
        if resume is None or step > int(resume.name.split("-")[1]):
            shutil.rmtree(p, ignore_errors=True)
            removed.append(f"{p.name} (incomplete)")
    return resume, removed


def clear(layout: Layout) -> None:
    for _, p in checkpoints(layout.checkpoints):
        shutil.rmtree(p, ignore_errors=True)
    (layout.checkpoints / OWNER).unlink(missing_ok=True)


def latest_final(layout: Layout) -> Path | None:
    try:
        name = (layout.models / "LATEST").read_text(encoding="utf-8").strip()
    except OSError:
        return None
    d = layout.models / name
    return d if name and (d / FINAL_MARKER).exists() else None


def install_final(layout: Layout, saved: Path, stem: str, info: dict) -> Path:
    """Move a saved model into models/<stem>/, point LATEST at it, keep the newest keep_final_models."""
    from healthkit.fsutil import atomic_write

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
