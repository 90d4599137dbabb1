"""Checkpoint retention, bloat and completeness, read through the run's format (healthkit.formats): any stack."""

from __future__ import annotations

import os
from enum import Enum
from pathlib import Path
from typing import Any

from healthkit import CheckOutput, CodeDoc, Evidence, Finding, FixRef, Healthy, Severity, check
from healthkit.core.workspace import Checkpoint, Workspace
from healthkit.formats.base import SRC
from healthkit.system.fsutil import human_bytes, is_within
from healthkit.system.records import record

from ._common import ago, q

PRUNE = FixRef("prune-checkpoints", "Delete the oldest checkpoints beyond the declared save_total_limit", "safe")
PRUNE_UNSAFE = FixRef(
    "prune-checkpoints",
    "Delete the oldest checkpoints, keeping the newest N (--keep N)",
    "unsafe",
    args=("--keep", "N"),
)
PRUNE_DEFAULT = FixRef(
    "prune-checkpoints", "Delete the oldest checkpoints beyond the trainer's default limit", "unsafe"
)
SET_LIMIT = FixRef("set-save-total-limit", "Add save_total_limit to config.json", "unsafe")
DELETE_INCOMPLETE = FixRef("delete-incomplete-checkpoint", "Delete the incomplete checkpoint", "unsafe")

NO_RETENTION = CodeDoc(
    "checkpoints.no-retention",
    "warning",
    "No checkpoint retention configured",
    what="Neither config.json, healthkit.toml nor the run's own files (the Trainer's training_args.bin, Lightning's "
    "ModelCheckpoint state) declare a retention limit (`save_total_limit`, `save_top_k`), so every checkpoint is kept.",
    why="Checkpoints accumulate for the whole run; on a long run they fill the disk and the run dies at a save.",
    fix="Add `save_total_limit` to config.json (unsafe: it changes what training deletes). If the training script hard-codes "
    "a limit, declare it in healthkit.toml under [retention].",
    fix_safety="Unsafe: from then on the Trainer deletes old checkpoints.",
    fixes=(SET_LIMIT, PRUNE_UNSAFE),
)
BLOAT = CodeDoc(
    "checkpoints.bloat",
    "warning",
    "More checkpoints than the retention policy allows",
    what="The checkpoint folder holds more checkpoints (and bytes) than `save_total_limit` allows, counting the best "
    "checkpoint the way the Trainer does; or, with no limit, far more than a run needs.",
    why="Wasted disk and slower scans today; a full disk and a dead run tomorrow.",
    fix="Prune the oldest complete checkpoints beyond the limit, never the newest, never `best_model_checkpoint`, never one "
    "being written or resumed from.",
    fix_safety="Safe when the user declared the limit (it restores their own policy); unsafe with a limit we choose (`--keep N`).",
    fixes=(PRUNE, PRUNE_UNSAFE, PRUNE_DEFAULT),
)
INCOMPLETE = CodeDoc(
    "checkpoints.incomplete",
    "warning",
    "Checkpoint a resume would choke on",
    what="A checkpoint lacks what its stack needs to resume from it, by that stack's own rule (healthkit.formats): for HF "
    "`Trainer.train(resume_from_checkpoint=...)` a readable trainer_state.json and "
    "the model weights (all shards of a sharded save; every rank's ZeRO or FSDP states); for Lightning a whole `.ckpt` "
    "zip; for Accelerate the weights, optimizer and RNG states. A layout the format cannot judge is not incomplete.",
    why="Resuming picks the newest checkpoint; an incomplete one crashes the resume or silently restarts from scratch.",
    fix="Delete the incomplete checkpoint so that resume falls back to the previous complete one.",
    fix_safety="Unsafe: it deletes data (possibly the only copy of those steps).",
    fixes=(DELETE_INCOMPLETE,),
)


DEFAULT_RECOMMENDED_LIMIT = 3


class LimitSource(str, Enum):
    """Who declared the retention limit: it decides whether pruning to it is safe (never the wording of a message)."""

    CONFIG = "config"  # config.json: the user's own policy
    RUN = (
        "run"  # the run's own files (the Trainer's arguments, Lightning's ModelCheckpoint state): the user's own policy
    )
    SETTINGS = "settings"  # healthkit.toml [retention]: the user's own policy
    TRAINER_DEFAULT = "trainer-default"  # our trainer's default, written nowhere: maybe not what they meant
    INIT_DEFAULT = "init-default"  # the default `healthkit init` wrote into config.json, for a run it did not train
    NONE = "none"


@record
class Retention:
    limit: int | None
    source: LimitSource
    declared_by: str  # for people: where the limit comes from, or why there is none


def retention(ws: Workspace) -> Retention:
    """The retention limit and who declared it; limit None (source NONE) when nobody did."""
    key = ws.settings.config_keys.save_total_limit
    from_settings = ws.settings.retention.save_total_limit
    marked = None
    if ws.config.is_object and key in ws.config.data:
        v = ws.config.data[key]
        if isinstance(v, int) and not isinstance(v, bool) and v >= 1:
            if not _written_by_init(ws, key, v):
                return Retention(v, LimitSource.CONFIG, f"config.json `{key}`")
            marked = v  # healthkit's default: the user's only once our trainer runs with it here (below)
        if v is None and not from_settings:
            return Retention(None, LimitSource.NONE, f"config.json sets `{key}` to null")
    if from_settings:
        return Retention(from_settings, LimitSource.SETTINGS, "healthkit.toml [retention]")
    run = ws.run.declared_retention() if ws.run is not None else None
    if run is not None and run.limit:
        return Retention(run.limit, LimitSource.RUN, run.declared_by)
    if run is not None:
        return Retention(None, LimitSource.NONE, run.declared_by)  # it keeps every one, or its limit is not on disk
    if marked is not None:
        if _trained_by_us(ws):
            return Retention(marked, LimitSource.CONFIG, f"config.json `{key}`, which our trainer runs with here")
        return Retention(
            marked,
            LimitSource.INIT_DEFAULT,
            f"config.json `{key}` as `healthkit init` wrote it (its default, not declared by you)",
        )
    if ws.settings.paths.config_schema == "healthkit" and ws.config.is_object:
        from healthkit.contract.configschema import default

        if default("save_total_limit"):
            return Retention(
                default("save_total_limit"),
                LimitSource.TRAINER_DEFAULT,
                f"healthkit trainer default (config.json has no `{key}`)",
            )
    if ws.format.name != "hf":
        return Retention(
            None, LimitSource.NONE, f"nothing the {ws.format.title} run wrote declares {ws.format.limit_word}"
        )
    return Retention(None, LimitSource.NONE, f"config.json has no `{key}`")


def _written_by_init(ws: Workspace, key: str, value: int) -> bool:
    """Whether config.json's ``key`` still holds the default `healthkit init` recorded writing (healthkit.contract.configschema.DEFAULTS_KEY)."""
    from healthkit.contract.configschema import DEFAULTS_KEY

    marks = ws.config.data.get(DEFAULTS_KEY)
    return isinstance(marks, dict) and key in marks and marks[key] == value


def _trained_by_us(ws: Workspace) -> bool:
    """Every checkpoint carries our trainer's marker (healthkit.contract.retry_checkpoints.MARK): the limit is the one it runs with here."""
    from healthkit.contract.retry_checkpoints import MARK

    ckpts = [c for c in ws.checkpoints if not c.is_file]
    return bool(ckpts) and all(MARK in c.files for c in ckpts)


def declared_limit(ws: Workspace) -> tuple[int | None, str]:
    """(limit, who declared it): `retention` for callers that only show it."""
    r = retention(ws)
    return r.limit, r.declared_by


def best_checkpoint(ws: Workspace) -> Checkpoint | None:
    """The run's best checkpoint (HF `best_model_checkpoint`, Lightning `best_model_path`), resolved by name: it is
    often an absolute path from before the workspace moved."""
    names = ws.run.best if ws.run is not None else ()
    by_name = {c.name: c for c in ws.checkpoints}
    return next((by_name[n] for n in names if n in by_name), None)


def missing_parts(ws: Workspace, c: Checkpoint) -> list[str]:
    """What a resume from this checkpoint would miss (the shared rule, healthkit.formats.hf_checkpoints); empty when complete."""
    return list(ws.completeness_of(c).missing)


def save_in_progress(ws: Workspace, ckpts: list[Checkpoint]) -> Checkpoint | None:
    """The newest checkpoint while the Trainer is still saving (or rotating) it, else None.

    HF writes `checkpoint-N` in place, file by file, and deletes the oldest only afterwards: for
    a moment the newest is incomplete and there is one checkpoint too many. That is a save, not
    a fault, while a training of this workspace runs and wrote into the folder within
    `save_grace_seconds`; a save that died leaves no training process (reported at once), one
    that hangs stops the status file (`training.stalled`).
    """
    if not ckpts:
        return None
    newest = ckpts[-1]
    try:
        touched = max([os.stat(newest.path).st_mtime] + [_mtime(newest.path / f) for f in newest.files])
    except OSError:
        return None
    if ws.now - touched > ws.settings.thresholds.save_grace_seconds:
        return None
    from healthkit.core.ownership import daemon_processes, remote_lease, training_processes

    alive = training_processes(ws) or (ws.settings.processes.training_in_daemon and daemon_processes(ws))
    if not alive:
        remote = remote_lease(ws, now=ws.now)  # a daemon on another host saves where we cannot see its process
        alive = remote is not None and remote.fresh
    return newest if alive else None


def _mtime(path: Path) -> float:
    try:
        return os.stat(path).st_mtime
    except OSError:  # removed while we look: the rotation or the save is moving it
        return 0.0


def _allowed(limit: int, ckpts: list[Checkpoint], best: Checkpoint | None) -> int:
    """How many checkpoints the Trainer itself would keep: the newest `limit`, plus the best if it is older."""
    newest = ckpts[-limit:] if limit else []
    return limit + (1 if best is not None and best not in newest else 0)


def _limit_words(r: Retention) -> str:
    """'declared limit (3)' only when someone declared it; a default nobody wrote down is called what it is."""
    if r.source is LimitSource.INIT_DEFAULT:
        return f"default limit ({r.limit}; {r.declared_by})"
    if r.source is LimitSource.TRAINER_DEFAULT:
        return f"trainer's default limit ({r.limit}; nothing declares one in config.json or healthkit.toml)"
    return f"declared limit ({r.limit}, {r.declared_by})"


def _du_lines(ws: Workspace, ckpts: list[Checkpoint], total: int) -> str:
    usage = ws.checkpoint_usage
    rows = sorted(ckpts, key=lambda c: usage[c.path].bytes, reverse=True)[:4]
    lines = [f"{human_bytes(total):<8}{ws.rel(ws.checkpoint_dir)}/"]
    lines += [f"{human_bytes(usage[c.path].bytes):<8}{ws.rel(c.path)}" for c in rows]
    return "\n".join(lines)


@record
class _View:
    """What every rule of the check reads, computed once."""

    ckpts: list[Checkpoint]
    total: int
    typical: int  # median checkpoint size (high median)
    retention: Retention
    best: Checkpoint | None
    saving: Checkpoint | None = None  # the newest, while the running training still saves (or rotates) it


def _incomplete_finding(ws: Workspace, c: Checkpoint, parts: list[str], newest: bool) -> Finding:
    return Finding(
        code=INCOMPLETE.code,
        severity=Severity.WARNING,
        title=f"Incomplete checkpoint {c.name}",
        problem=[f"`{ws.rel(c.path)}` cannot be resumed from: {'; '.join(parts)}"]
        + (["It is the newest checkpoint, the one a resume would pick"] if newest else []),
        impact=[
            "A resume from it crashes or silently starts over" if newest else "A resume that reaches it would fail"
        ],
        evidence=[_listing(ws, c)],
        root_cause=[
            "A save was interrupted (crash, kill or full disk during the write), or files were removed by hand"
        ],
        recommendations=["Delete it so that a resume falls back to the previous complete checkpoint"],
        fixes=[DELETE_INCOMPLETE],
        urgency="immediate" if newest else "short-term",
        data={"checkpoint": c.name, "path": str(c.path), "missing": parts},
    )


def _listing(ws: Workspace, c: Checkpoint) -> Evidence:
    """`ls` of a checkpoint folder, or `ls -l` of a checkpoint file (its size is what a cut save shows)."""
    if c.is_file:
        try:
            size = str(os.stat(c.path).st_size)
        except OSError as exc:
            size = exc.strerror or "unreadable"
        return Evidence(f"stat -c %s {q(ws, c.path)}", size)
    return Evidence(f"ls {q(ws, c.path)}", "\n".join(sorted(c.files)) or "(empty)")


def _vanishing(c: Checkpoint) -> bool:
    """Whether files listed a moment ago are gone: the checkpoint is being deleted (HF's rotation, the end of a file)."""
    if c.is_file:
        return not os.path.lexists(c.path)
    try:
        now = set(os.listdir(c.path))
    except FileNotFoundError:
        return True
    except OSError:
        return False
    return bool(c.files - now)


def incomplete_rule(ws: Workspace, ckpts: list[Checkpoint], saving: Checkpoint | None = None) -> list[Finding]:
    """checkpoints.incomplete: each checkpoint a resume would choke on (symlinks out of the workspace are not ours);
    not the one being saved, nor one being deleted."""
    out = []
    for c in ckpts:
        if c.is_symlink and not is_within(c.path, ws.base):
            continue
        parts = missing_parts(ws, c)
        if parts and c is not saving and not _vanishing(c):
            out.append(_incomplete_finding(ws, c, parts, c is ckpts[-1]))
    return out


def _limit_evidence(ws: Workspace, r: Retention) -> Evidence:
    run = ws.run.declared_retention() if ws.run is not None else None
    if r.source in (LimitSource.RUN, LimitSource.NONE) and run is not None and run.said is not None:
        return Evidence(run.said.command.replace(SRC, q(ws, run.source) if run.source else ""), run.said.observed)
    if ws.format.name != "hf" and r.source is LimitSource.NONE:
        return Evidence(f"ls {q(ws, ws.checkpoint_dir)}", ", ".join(c.name for c in ws.checkpoints[-12:]))
    key = ws.settings.config_keys.save_total_limit
    return Evidence(f"jq '.{key}' {q(ws, ws.config_path)}", str(r.limit) if r.source is LimitSource.CONFIG else "null")


def _limit_unreadable(ws: Workspace) -> bool:
    """The run's format records no limit at all (Accelerate's total_limit): whether one is set cannot be read."""
    run = ws.run.declared_retention() if ws.run is not None else None
    return run is not None and run.limit is None and not run.keeps_all


def _set_to_keep_all(ws: Workspace) -> bool:
    """The run itself declared that it keeps every checkpoint (Lightning's save_top_k=-1): set, not left unset."""
    run = ws.run.declared_retention() if ws.run is not None else None
    return run is not None and run.keeps_all and ws.format.name != "hf"


def no_retention_rule(ws: Workspace, v: _View) -> list[Finding]:
    """checkpoints.no-retention: nobody declared save_total_limit."""
    r = v.retention
    if r.limit is not None:
        return []
    return [
        Finding(
            code=NO_RETENTION.code,
            severity=Severity.WARNING,
            title="No checkpoint retention",
            problem=(
                [
                    f"No {ws.format.limit_word} can be read: {r.declared_by}",
                    f"Unless the training script sets one, the {ws.format.title} run keeps every checkpoint it writes",
                ]
                if _limit_unreadable(ws)
                else [
                    f"{ws.format.limit_word} is set to keep every checkpoint: {r.declared_by}"
                    if _set_to_keep_all(ws)
                    else f"{ws.format.limit_word} is not configured: {r.declared_by}",
                    f"The {ws.format.title} run keeps every checkpoint it writes",
                ]
            ),
            impact=["Checkpoints accumulate indefinitely", "Risk of running out of disk space on long training runs"],
            evidence=[_limit_evidence(ws, r)],
            root_cause=[f"{ws.format.limit_word} not configured (or hard-coded to keep all in the training script)"],
            recommendations=[
                f"Configure {ws.format.limit_word} = {DEFAULT_RECOMMENDED_LIMIT} in the training config or script "
                f"(keeps ~{human_bytes(v.typical * DEFAULT_RECOMMENDED_LIMIT)} instead of {human_bytes(v.total)})",
                "If the training script enforces its own limit, declare it in healthkit.toml [retention]",
            ],
            # --unsafe --keep N prunes here too, whatever the count: N is the user's explicit choice.
            fixes=[SET_LIMIT, PRUNE_UNSAFE] if ws.config.is_object else [PRUNE_UNSAFE],
            urgency="short-term",
            data={
                "config_key": ws.settings.config_keys.save_total_limit,
                "limit": None,
                "best": v.best.name if v.best else None,
            },
        )
    ]


def _prune_ref(r: Retention) -> FixRef:
    """Safe only under a limit the user wrote down; a default nobody declared may not be what they meant."""
    if r.source in (LimitSource.CONFIG, LimitSource.SETTINGS, LimitSource.RUN):
        return PRUNE
    return PRUNE_DEFAULT if r.source in (LimitSource.TRAINER_DEFAULT, LimitSource.INIT_DEFAULT) else PRUNE_UNSAFE


def _bloat_problem(ws: Workspace, v: _View, keep: int, expected: int, allowed: int) -> list[str]:
    ckpts, best, limit = v.ckpts, v.best, v.retention.limit
    problem = [
        f"`{ws.rel(ws.checkpoint_dir)}/` is {human_bytes(v.total)} (should be ~{human_bytes(expected)} at {keep} "
        f"checkpoint{'s' if keep > 1 else ''}" + (" plus the best" if best and best not in ckpts[-keep:] else "") + ")",
        f"{len(ckpts)} checkpoints exist ({ckpts[0].name} through {ckpts[-1].name}, ordered by step)",
        f"Each checkpoint is ~{human_bytes(v.typical)}",
    ]
    if limit:
        problem.append(f"The limit is {limit} ({v.retention.declared_by}); the Trainer would keep {allowed}")
    return problem


def bloat_rule(ws: Workspace, v: _View) -> list[Finding]:
    """checkpoints.bloat: more checkpoints than the limit (or, with none, than a run needs)."""
    ckpts, best, r = v.ckpts, v.best, v.retention
    allowed = _allowed(r.limit, ckpts, best) if r.limit else ws.settings.thresholds.checkpoint_count_without_limit
    over = len(ckpts) - (v.saving is not None)  # the one being saved is not bloat until the rotation after it
    if over <= allowed:
        return []
    # Listed a moment ago and being deleted since: the rotation after a save (or the end of a file) ran between the
    # listing and this rule, as the training it was part of ended. Only the oldest are deleted by a rotation.
    if over - sum(_vanishing(c) for c in ckpts[: over - allowed]) <= allowed:
        return []
    keep = r.limit or DEFAULT_RECOMMENDED_LIMIT
    expected = v.typical * _allowed(keep, ckpts, best)
    excess = [c for c in ckpts[: max(0, len(ckpts) - keep)] if c is not best]  # the Trainer keeps the best too
    usage = ws.checkpoint_usage
    rootq = q(ws, ws.checkpoint_dir)
    evidence = [
        Evidence(f"ls -d {rootq}/{ws.format.glob} | wc -l", str(len(ckpts))),
        Evidence(f"du -h {rootq} --max-depth=1 | sort -hr | head -5", _du_lines(ws, ckpts, v.total)),
    ]
    return [
        Finding(
            code=BLOAT.code,
            severity=Severity.WARNING,
            title="Disk space bloat",
            problem=_bloat_problem(ws, v, keep, expected, allowed),
            impact=[
                f"{human_bytes(max(0, v.total - expected))} of disk wasted",
                "Slower operations (more files to scan)",
                "Risk of running out of disk space on long training runs",
            ],
            evidence=evidence + ([] if r.limit else [_limit_evidence(ws, r)]),
            root_cause=(
                [
                    f"{ws.format.limit_word} not configured or not working",
                    "Checkpoints accumulate indefinitely; no automatic cleanup",
                ]
                if not r.limit
                else [
                    f"The {_limit_words(r)} is not being enforced: the training code "
                    "ignores it, or checkpoints were copied in"
                ]
            ),
            recommendations=[
                f"Keep only the newest {keep} checkpoints (~{human_bytes(expected)})"
                + (f" plus the best ({best.name})" if best else "")
            ],
            fixes=[_prune_ref(r)],
            urgency="short-term",
            data={
                "dir": str(ws.checkpoint_dir),
                "limit": r.limit,
                "declared_by": r.declared_by if r.limit else None,
                "limit_source": r.source.value,
                "best": best.name if best else None,
                "excess": [c.name for c in excess],
                "excess_bytes": sum(usage[c.path].bytes for c in excess),
            },
        )
    ]


def _facts(ws: Workspace, v: _View) -> dict[str, Any]:
    ckpts, r = v.ckpts, v.retention
    return {
        "dir": str(ws.checkpoint_dir),
        "count": len(ckpts),
        "bytes": v.total,
        "typical_bytes": v.typical,
        "newest_step": ckpts[-1].step if ckpts else None,
        "oldest_step": ckpts[0].step if ckpts else None,
        "limit": r.limit,
        "limit_declared_by": r.declared_by if r.limit else None,
        "best": v.best.name if v.best else None,
        "format": ws.format.name,
    }


TRASH_PREFIX = ".healthkit-trash-"  # healthkit.fix.fileops.TRASH_PREFIX (not imported: the audit loads no fix module)


def _trash_notes(ws: Workspace) -> list[str]:
    """What an interrupted fix left: a checkpoint renamed to the trash, already decided for deletion, still on disk."""
    left = sorted(e.name for e in ws.run_format[2] if e.name.startswith(TRASH_PREFIX))
    if not left:
        return []
    from healthkit.system.shellcmd import command

    shown = ", ".join(left[:5]) + (f" and {len(left) - 5} more" if len(left) > 5 else "")
    return [
        f"an interrupted `healthkit fix` left {len(left)} trash folder(s) in {ws.rel(ws.checkpoint_dir)}/ ({shown}): "
        f"already decided for deletion and still using space; the next fix run finishes removing them "
        f"(`{command('healthkit', 'fix', ws.base, '--safe')}`)"
    ]


def _format_notes(ws: Workspace) -> list[str]:
    """A declared format that is not registered, and format plugins that failed to load (the folder is still read)."""
    from healthkit.formats.registry import LOAD_ERRORS, formats

    declared = ws.settings.run.format
    out = list(LOAD_ERRORS) + _trash_notes(ws)
    if declared and declared != ws.format.name:
        out.append(
            f"healthkit.toml [run] format = {declared!r} names no registered format "
            f"({', '.join(f.name for f in formats())}); the folder was recognised as {ws.format.name} instead"
        )
    return out


def _healthy_and_notes(ws: Workspace, v: _View) -> tuple[list[Healthy], list[str]]:
    ckpts = v.ckpts
    notes = [
        f"{c.name} is a symlink out of the workspace; not counted as our data"
        for c in ckpts
        if c.is_symlink and not is_within(c.path, ws.base)
    ]
    notes += [
        f"{c.name}: not judged, {ws.completeness_of(c).unknown}; nothing offers to delete it"
        for c in ckpts
        if ws.completeness_of(c).unknown
    ]
    notes += _format_notes(ws)
    if ws.in_progress_saves:
        notes.append(f"save in progress: {', '.join(p.name for p in ws.in_progress_saves)}")
    if v.saving is not None:
        notes.append(
            f"save in progress: {v.saving.name} (written within the last {ws.settings.thresholds.save_grace_seconds:g}s "
            "by the running training)"
        )
    if not ckpts:
        return [], notes
    newest = ckpts[-1]
    try:
        age = ago(ws.now - newest.path.stat().st_mtime)
    except OSError:
        age = "unknown time"
    return [
        Healthy(
            "Checkpoints being saved",
            [f"Latest: {newest.name} (written {age} ago)", f"{len(ckpts)} checkpoint(s), {human_bytes(v.total)}"],
        )
    ], notes


@check(
    "checkpoints", title="Checkpoint retention and completeness", codes=[NO_RETENTION, BLOAT, INCOMPLETE], tags=["disk"]
)
def checkpoints_check(ws: Workspace) -> CheckOutput:
    root = ws.checkpoint_dir
    problem = ws.checkpoint_dir_problem
    if problem and not problem.startswith("EACCES"):
        return CheckOutput(unknown=f"the checkpoint folder cannot be read: {problem}")
    if not os.path.exists(root):
        return CheckOutput(notes=[f"no checkpoint folder at {ws.rel(root)} yet"])
    if not os.access(root, os.R_OK | os.X_OK):
        return CheckOutput(unknown=f"{ws.rel(root)} is not readable (permission denied)")
    if problem:
        return CheckOutput(unknown=f"the checkpoint folder cannot be read: {problem}")
    ckpts = ws.checkpoints
    # Completeness first: bounded reads of small files while `du` (prefetched) is still walking the tree.
    saving = save_in_progress(ws, ckpts)
    incomplete = incomplete_rule(ws, ckpts, saving)
    usage = ws.checkpoint_usage
    sizes = sorted(usage[c.path].bytes for c in ckpts if not c.is_symlink)
    v = _View(
        ckpts,
        ws.checkpoint_dir_usage.bytes,
        sizes[len(sizes) // 2] if sizes else 0,
        retention(ws),
        best_checkpoint(ws),
        saving,
    )
    findings = no_retention_rule(ws, v) + bloat_rule(ws, v) + incomplete
    healthy, notes = _healthy_and_notes(ws, v)
    return CheckOutput(findings=findings, healthy=healthy, facts={"checkpoints": _facts(ws, v)}, notes=notes)
