"""Checkpoint retention, bloat and completeness, read from real HF Trainer output."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from healthkit import CheckOutput, CodeDoc, Evidence, Finding, FixRef, Healthy, Severity, check
from healthkit.fsutil import human_bytes, is_within
from healthkit.workspace import Checkpoint, Workspace

from ._common import ago, q

NO_RETENTION = CodeDoc(
    "checkpoints.no-retention", "warning", "No checkpoint retention configured",
    what="Neither config.json nor healthkit.toml declares `save_total_limit` (or it is null), so the Trainer keeps every checkpoint.",
    why="Checkpoints accumulate for the whole run; on a long run they fill the disk and the run dies at a save.",
    fix="Add `save_total_limit` to config.json (unsafe: it changes what training deletes). If the training script hard-codes "
        "a limit, declare it in healthkit.toml under [retention].",
    fix_safety="Unsafe: from then on the Trainer deletes old checkpoints.",
)
BLOAT = CodeDoc(
    "checkpoints.bloat", "warning", "More checkpoints than the retention policy allows",
    what="The checkpoint folder holds more checkpoints (and bytes) than `save_total_limit` allows, counting the best "
         "checkpoint the way the Trainer does; or, with no limit, far more than a run needs.",
    why="Wasted disk and slower scans today; a full disk and a dead run tomorrow.",
    fix="Prune the oldest complete checkpoints beyond the limit, never the newest, never `best_model_checkpoint`, never one "
        "being written or resumed from.",
    fix_safety="Safe when the user declared the limit (it restores their own policy); unsafe with a limit we choose (`--keep N`).",
)
INCOMPLETE = CodeDoc(
    "checkpoints.incomplete", "warning", "Checkpoint a resume would choke on",
    what="A checkpoint-N folder lacks what `Trainer.train(resume_from_checkpoint=...)` needs: a readable trainer_state.json and "
         "the model weights (all shards of a sharded save).",
    why="Resuming picks the newest checkpoint; an incomplete one crashes the resume or silently restarts from scratch.",
    fix="Delete the incomplete checkpoint so that resume falls back to the previous complete one.",
    fix_safety="Unsafe: it deletes data (possibly the only copy of those steps).",
)

PRUNE = FixRef("prune-checkpoints", "Delete the oldest checkpoints beyond the declared save_total_limit", "safe")
PRUNE_UNSAFE = FixRef("prune-checkpoints", "Delete the oldest checkpoints, keeping the newest N (--keep N)", "unsafe")
PRUNE_DEFAULT = FixRef("prune-checkpoints", "Delete the oldest checkpoints beyond the trainer's default limit", "unsafe")
SET_LIMIT = FixRef("set-save-total-limit", "Add save_total_limit to config.json", "unsafe")
DELETE_INCOMPLETE = FixRef("delete-incomplete-checkpoint", "Delete the incomplete checkpoint", "unsafe")

WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin", "adapter_model.safetensors", "adapter_model.bin", "tf_model.h5", "flax_model.msgpack")
INDEX_FILES = ("model.safetensors.index.json", "pytorch_model.bin.index.json")
DEFAULT_RECOMMENDED_LIMIT = 3


def declared_limit(ws: Workspace) -> tuple[int | None, str]:
    """The retention limit and who declared it; (None, why) when nobody did."""
    key = ws.settings.config_keys.save_total_limit
    if ws.config.is_object and key in ws.config.data:
        v = ws.config.data[key]
        if isinstance(v, int) and not isinstance(v, bool) and v >= 1:
            return v, f"config.json `{key}`"
        if v is None:
            if ws.settings.retention.save_total_limit:
                return ws.settings.retention.save_total_limit, "healthkit.toml [retention]"
            return None, f"config.json sets `{key}` to null"
    if ws.settings.retention.save_total_limit:
        return ws.settings.retention.save_total_limit, "healthkit.toml [retention]"
    if ws.settings.paths.config_schema == "healthkit" and ws.config.is_object:
        from healthkit.configschema import default

        if default("save_total_limit"):
            return default("save_total_limit"), f"healthkit trainer default (config.json has no `{key}`)"
    return None, f"config.json has no `{key}`"


def best_checkpoint(ws: Workspace) -> Checkpoint | None:
    """`best_model_checkpoint` resolved by name: it is often an absolute path from before the workspace moved."""
    _, ts = ws.latest_trainer_state
    if ts is None:
        return None
    best = ts.data.get("best_model_checkpoint")
    if not isinstance(best, str) or not best:
        return None
    name = Path(best.rstrip("/")).name
    for c in ws.checkpoints:
        if c.name == name:
            return c
    return None


def missing_parts(ws: Workspace, c: Checkpoint) -> list[str]:
    """What a resume from this checkpoint would miss; empty when it is complete."""
    if c.list_error:
        return [f"its folder cannot be listed ({c.list_error})"]
    problems: list[str] = []
    if "trainer_state.json" not in c.files:
        problems.append("trainer_state.json is missing")
    else:
        ts = ws.trainer_state_of(c)
        if not ts.ok:
            problems.append(f"trainer_state.json is unreadable ({ts.problem.message if ts.problem else ''})")
        elif not isinstance(ts.data, dict) or "global_step" not in ts.data:
            problems.append("trainer_state.json has no global_step")
    weights = [f for f in WEIGHT_FILES if f in c.files]
    index = next((f for f in INDEX_FILES if f in c.files), None)
    if index:
        try:
            with open(c.path / index, encoding="utf-8") as fh:
                shards = sorted(set(json.load(fh).get("weight_map", {}).values()))
            lost = [s for s in shards if s not in c.files]
            if lost:
                problems.append(f"{len(lost)} of {len(shards)} weight shards are missing ({', '.join(lost[:3])})")
        except (OSError, ValueError, AttributeError):
            problems.append(f"{index} is unreadable")
    elif not weights:
        problems.append("no model weights (model.safetensors, pytorch_model.bin or an adapter)")
    for w in weights:
        try:
            if os.stat(c.path / w).st_size == 0:
                problems.append(f"{w} is empty")
        except OSError as exc:
            problems.append(f"{w} cannot be read ({exc.strerror})")
    return problems


def _allowed(limit: int, ckpts: list[Checkpoint], best: Checkpoint | None) -> int:
    """How many checkpoints the Trainer itself would keep: the newest `limit`, plus the best if it is older."""
    newest = ckpts[-limit:] if limit else []
    return limit + (1 if best is not None and best not in newest else 0)


def _limit_words(limit: int, declared_by: str) -> str:
    """'declared limit (3)' only when someone declared it; a default nobody wrote down is called what it is."""
    if declared_by.startswith("healthkit trainer default"):
        return f"trainer's default limit ({limit}; nothing declares one in config.json or healthkit.toml)"
    return f"declared limit ({limit}, {declared_by})"


def _du_lines(ws: Workspace, ckpts: list[Checkpoint], total: int) -> str:
    usage = ws.checkpoint_usage
    rows = sorted(ckpts, key=lambda c: usage[c.path].bytes, reverse=True)[:4]
    lines = [f"{human_bytes(total):<8}{ws.rel(ws.checkpoint_dir)}/"]
    lines += [f"{human_bytes(usage[c.path].bytes):<8}{ws.rel(c.path)}" for c in rows]
    return "\n".join(lines)


@check("checkpoints", title="Checkpoint retention and completeness", codes=[NO_RETENTION, BLOAT, INCOMPLETE], tags=["disk"])
def checkpoints_check(ws: Workspace) -> CheckOutput:
    root = ws.checkpoint_dir
    if not root.exists():
        return CheckOutput(notes=[f"no checkpoint folder at {ws.rel(root)} yet"])
    if not os.access(root, os.R_OK | os.X_OK):
        return CheckOutput(unknown=f"{ws.rel(root)} is not readable (permission denied)")
    ckpts = ws.checkpoints
    # Completeness first: it reads small files while `du` (prefetched) is still walking the tree.
    incomplete: list[Finding] = []
    for c in ckpts:
        if c.is_symlink and not is_within(c.path, ws.base):
            continue  # not ours to judge or touch; noted below
        parts = missing_parts(ws, c)
        if parts:
            newest = c is ckpts[-1]
            incomplete.append(Finding(
                code=INCOMPLETE.code, severity=Severity.WARNING, title=f"Incomplete checkpoint {c.name}",
                problem=[f"`{ws.rel(c.path)}` cannot be resumed from: {'; '.join(parts)}"]
                + (["It is the newest checkpoint, the one a resume would pick"] if newest else []),
                impact=["A resume from it crashes or silently starts over" if newest else "A resume that reaches it would fail"],
                evidence=[Evidence(f"ls {q(ws, c.path)}", "\n".join(sorted(c.files)) or "(empty)")],
                root_cause=["A save was interrupted (crash, kill or full disk during the write), or files were removed by hand"],
                recommendations=["Delete it so that a resume falls back to the previous complete checkpoint"],
                fixes=[DELETE_INCOMPLETE], urgency="immediate" if newest else "short-term",
                data={"checkpoint": c.name, "path": str(c.path), "missing": parts},
            ))
    usage = ws.checkpoint_usage
    total = ws.checkpoint_dir_usage.bytes
    limit, declared_by = declared_limit(ws)
    best = best_checkpoint(ws)
    findings: list[Finding] = []
    healthy: list[Healthy] = []
    sizes = [usage[c.path].bytes for c in ckpts if not c.is_symlink]
    typical = sorted(sizes)[len(sizes) // 2] if sizes else 0  # median, high
    rootq = q(ws, root)
    count_ev = Evidence(f"ls -d {rootq}/checkpoint-* | wc -l", str(len(ckpts)))
    du_ev = Evidence(f"du -h {rootq} --max-depth=1 | sort -hr | head -5", _du_lines(ws, ckpts, total))
    limit_key = ws.settings.config_keys.save_total_limit
    limit_ev = Evidence(f"jq '.{limit_key}' {q(ws, ws.config_path)}", str(limit) if declared_by.startswith("config") and limit else "null")
    facts: dict[str, Any] = {
        "dir": str(root), "count": len(ckpts), "bytes": total, "typical_bytes": typical,
        "newest_step": ckpts[-1].step if ckpts else None, "oldest_step": ckpts[0].step if ckpts else None,
        "limit": limit, "limit_declared_by": declared_by if limit else None, "best": best.name if best else None,
    }

    if limit is None:
        findings.append(Finding(
            code=NO_RETENTION.code, severity=Severity.WARNING, title="No checkpoint retention",
            problem=[f"`save_total_limit` is not configured: {declared_by}", "The Trainer keeps every checkpoint it writes"],
            impact=["Checkpoints accumulate indefinitely", "Risk of running out of disk space on long training runs"],
            evidence=[limit_ev],
            root_cause=["`save_total_limit` not configured (or hard-coded to None in the training script)"],
            recommendations=[f"Configure `save_total_limit={DEFAULT_RECOMMENDED_LIMIT}` in the training config "
                             f"(keeps ~{human_bytes(typical * DEFAULT_RECOMMENDED_LIMIT)} instead of {human_bytes(total)})",
                             "If the training script enforces its own limit, declare it in healthkit.toml [retention]"],
            # --unsafe --keep N prunes here too, whatever the count: N is the user's explicit choice.
            fixes=[SET_LIMIT, PRUNE_UNSAFE], urgency="short-term",
            data={"config_key": limit_key, "limit": None, "best": best.name if best else None},
        ))

    allowed = _allowed(limit, ckpts, best) if limit else ws.settings.thresholds.checkpoint_count_without_limit
    if len(ckpts) > allowed:
        keep = limit or DEFAULT_RECOMMENDED_LIMIT
        expected = typical * _allowed(keep, ckpts, best)
        excess = [c for c in ckpts[: max(0, len(ckpts) - keep)] if c is not best]  # the Trainer keeps the best too
        first, last = ckpts[0].name, ckpts[-1].name
        problem = [
            f"`{ws.rel(root)}/` is {human_bytes(total)} (should be ~{human_bytes(expected)} at {keep} checkpoint{'s' if keep > 1 else ''}"
            + (" plus the best" if best and best not in ckpts[-keep:] else "") + ")",
            f"{len(ckpts)} checkpoints exist ({first} through {last}, ordered by step)",
            f"Each checkpoint is ~{human_bytes(typical)}",
        ]
        if limit:
            problem.append(f"The limit is {limit} ({declared_by}); the Trainer would keep {allowed}")
        findings.append(Finding(
            code=BLOAT.code, severity=Severity.WARNING, title="Disk space bloat",
            problem=problem,
            impact=[f"{human_bytes(max(0, total - expected))} of disk wasted",
                    "Slower operations (more files to scan)", "Risk of running out of disk space on long training runs"],
            evidence=[count_ev, du_ev] + ([] if limit else [limit_ev]),
            root_cause=(["`save_total_limit` not configured or not working", "Checkpoints accumulate indefinitely; no automatic cleanup"]
                        if not limit else [f"The {_limit_words(limit, declared_by)} is not being enforced: the training code "
                                           "ignores it, or checkpoints were copied in"]),
            recommendations=[f"Keep only the newest {keep} checkpoints (~{human_bytes(expected)})"
                             + (f" plus the best ({best.name})" if best else "")],
            # Safe only under a limit the user wrote down; a default nobody declared may not be what they meant.
            fixes=[PRUNE_UNSAFE if not limit else PRUNE_DEFAULT if declared_by.startswith("healthkit trainer default") else PRUNE],
            urgency="short-term",
            data={"dir": str(root), "limit": limit, "declared_by": declared_by if limit else None,
                  "best": best.name if best else None, "excess": [c.name for c in excess],
                  "excess_bytes": sum(usage[c.path].bytes for c in excess)},
        ))

    findings += incomplete
    notes = [f"{c.name} is a symlink out of the workspace; not counted as our data" for c in ckpts if c.is_symlink and not is_within(c.path, ws.base)]
    if ws.in_progress_saves:
        notes.append(f"save in progress: {', '.join(p.name for p in ws.in_progress_saves)}")

    if ckpts:
        newest = ckpts[-1]
        try:
            age = ago(ws.now - newest.path.stat().st_mtime)
        except OSError:
            age = "unknown time"
        healthy.append(Healthy("Checkpoints being saved", [f"Latest: {newest.name} (written {age} ago)", f"{len(ckpts)} checkpoint(s), {human_bytes(total)}"]))
    return CheckOutput(findings=findings, healthy=healthy, facts={"checkpoints": facts}, notes=notes)
