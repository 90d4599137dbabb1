"""Checkpoints the trainer moved aside (`current_model/.foreign-<time>/`) because it could not prove they were its own.

The trainer never deletes a checkpoint it cannot prove it wrote (see trainer/checkpoints.py):
before training it moves them into a `.foreign-<time>/` folder with `healthkit_aside.json`
saying why. They are intact, but out of the way: nothing resumes from them and nothing
rotates them, so a person must decide (keep, restore, or delete to free the disk).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from healthkit import CheckOutput, CodeDoc, Evidence, Finding, Severity, check
from healthkit.contract.retry_checkpoints import ASIDE_PREFIX
from healthkit.core.workspace import Workspace
from healthkit.system.fsutil import ReadProblem, read_json

from ._common import q

ASIDE_INFO = "healthkit_aside.json"

SET_ASIDE = CodeDoc(
    "checkpoints.set-aside",
    "warning",
    "Checkpoints moved aside by the trainer",
    what="Before training, the daemon found checkpoints in the checkpoint folder that it could not prove it had written "
    "(no `healthkit_checkpoint.json` marker: restored from a backup, left by another tool, or a save cut short), or "
    "that belong to a file still queued. It never deletes those: it moved them, intact, into `.foreign-<time>/`.",
    why="They still take disk space, and nothing will resume from them: if one is the run you wanted to continue, it "
    "must be restored by hand.",
    fix="Look at them (`healthkit_aside.json` lists each and why), then move back what you want or delete the folder.",
    fix_safety="No automatic fix: only a person knows whether these checkpoints matter.",
)


def _aside_folders(root: Path) -> list[Path]:
    try:
        return sorted(
            Path(e.path)
            for e in os.scandir(root)
            if e.name.startswith(ASIDE_PREFIX) and e.is_dir(follow_symlinks=False)
        )
    except OSError:
        return []


def _finding(ws: Workspace, folder: Path) -> Finding:
    try:  # with the owner's permission (ws.reader): root quotes nothing its owner could not read
        info = read_json(folder / ASIDE_INFO, max_bytes=1024 * 1024, reader=ws.reader)
    except ReadProblem:
        info = {}
    info = info if isinstance(info, dict) else {}
    reasons = got if isinstance(got := info.get("checkpoints"), dict) else {}
    names = sorted((e.name for e in os.scandir(folder) if e.is_dir(follow_symlinks=False)), key=lambda n: (len(n), n))
    problem = [
        f"`{ws.rel(folder)}/` holds {len(names)} checkpoint(s) moved there"
        + (f" at {info.get('moved_at')} before training {info.get('before_training')}" if info else "")
    ]
    problem += [f"{n}: {reasons.get(n, 'no reason recorded')}" for n in names[:10]]
    return Finding(
        code=SET_ASIDE.code,
        severity=Severity.WARNING,
        title=f"{len(names)} checkpoint(s) set aside in {folder.name}",
        problem=problem,
        impact=["They take disk space and nothing resumes from them"],
        evidence=[
            Evidence(f"ls {q(ws, folder)}", " ".join(names) or "(empty)"),
            Evidence(f"jq . {q(ws, folder / ASIDE_INFO)}", json.dumps(info)[:500] if info else "(missing)"),
        ],
        recommendations=["Keep what you need (move it back or elsewhere), then delete the folder to free the disk"],
        fixes=[],
        urgency="short-term",
        data={"folder": str(folder), "checkpoints": names},
    )


@check("set-aside", title="Checkpoints moved aside", codes=[SET_ASIDE], tags=["checkpoints"])
def aside_check(ws: Workspace) -> CheckOutput:
    return CheckOutput(findings=[_finding(ws, f) for f in _aside_folders(ws.checkpoint_dir)])
