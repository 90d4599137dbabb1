"""Free space now, and whether the rest of the run fits at the current retention."""

from __future__ import annotations

import math
from typing import Any

from healthkit import CheckOutput, CodeDoc, Evidence, Finding, Healthy, Severity, check
from healthkit.core.workspace import Workspace
from healthkit.system.fsutil import human_bytes
from healthkit.system.procs import probe

from ._common import number, q
from .checkpoints import PRUNE_UNSAFE, _allowed, best_checkpoint, declared_limit

LOW = CodeDoc(
    "disk.low-space",
    "warning",
    "Free space under threshold",
    what="The filesystem holding the checkpoints has less free space (for an unprivileged writer, f_bavail) than the "
    "configured minimum (percent or bytes).",
    why="The next checkpoint save fails half-written and the run dies, often hours into it.",
    fix="Free space: prune checkpoints beyond the retention limit (`healthkit fix`), move finished models elsewhere.",
    fixes=(PRUNE_UNSAFE,),
)
FORECAST = CodeDoc(
    "disk.forecast-full",
    "critical",
    "Remaining training will not fit at the current retention",
    what="What the rest of the run will write (checkpoints not yet saved, minus those retention deletes, plus the final "
    "model) is more than the free space.",
    why="The run is going to die at a save before it finishes, losing the steps since the last checkpoint.",
    fix="Set or lower `save_total_limit`, prune now, or free space before the run gets there.",
)


def waiting_daemon(ws: Workspace) -> dict[str, Any] | None:
    """The daemon state when a live daemon waits for disk space (it resumes by itself once there is room), else None."""
    st = ws.daemon_state.data if ws.daemon_state.ok and isinstance(ws.daemon_state.data, dict) else {}
    pid = st.get("pid")
    if st.get("state") != "waiting" or st.get("waiting_for") != "disk" or not isinstance(pid, int):
        return None
    return st if probe(pid).state in ("alive", "alive-eperm") else None


def _waiting_cause(st: dict[str, Any]) -> list[str]:
    disk = st.get("disk") or {}
    need = disk.get("need_bytes")
    return [
        f"The daemon (PID {st.get('pid')}) is waiting for disk space since {st.get('waiting_since')}: {st.get('waiting_reason')}",
        f"Its training of {st.get('waiting_file')} ran out of space at a checkpoint save; it resumes from the last complete "
        f"checkpoint by itself once ~{human_bytes(need) if isinstance(need, int) else '?'} are free",
    ]


def forecast(ws: Workspace) -> dict[str, Any] | None:
    """Bytes the rest of the run will add, from steps left, save_steps, retention and the typical checkpoint size."""
    ckpts = ws.checkpoints
    if not ckpts:
        return None
    step = number(ws.status_value("step"))
    total = number(ws.status_value("total_steps"))
    rec = ws.run  # the run's own record, through its format (healthkit.formats)
    if step is None and rec is not None:
        step = number(rec.global_step)
    if total is None and rec is not None:
        total = number(rec.max_steps)
    save_steps = number(ws.config_value("save_steps", None))
    if save_steps is None and rec is not None:
        save_steps = number(rec.save_steps)
    if step is None or not total or not math.isfinite(step) or not math.isfinite(total) or total <= step:
        return None
    strategy = ws.config_value("save_strategy", "steps")
    if strategy == "no":
        save_steps = None  # no more checkpoints: only the final model is still to be written
    elif strategy != "steps" or not save_steps or save_steps <= 0:
        return None  # saves per epoch (or an unknown schedule): not a step count to forecast from
    usage = ws.checkpoint_usage
    size = max(usage[c.path].bytes for c in ckpts[-3:])
    saves_left = int(total // save_steps) - int(step // save_steps) if save_steps else 0
    limit, _ = declared_limit(ws)
    now_count = len(ckpts)
    if limit:
        final_count = max(_allowed(limit, ckpts, best_checkpoint(ws)), min(now_count, limit))
        growth_count = max(0, min(now_count + saves_left, final_count) - now_count)
    else:
        growth_count = saves_left
    need = (growth_count + 1) * size  # +1: the final model save
    return {
        "saves_left": saves_left,
        "checkpoint_bytes": size,
        "need_bytes": need,
        "limit": limit,
        "steps_left": total - step,
        "growth_checkpoints": growth_count,
    }


@check("disk", title="Disk space", codes=[LOW, FORECAST], tags=["disk"])
def disk_check(ws: Workspace) -> CheckOutput:
    d = ws.disk
    if d is None:
        return CheckOutput(unknown="statvfs failed on the workspace's filesystem")
    th = ws.settings.thresholds
    findings: list[Finding] = []
    target = q(ws, d.path) if d.path != ws.base else "."
    df = Evidence(
        f"df -h {target}",
        f"{human_bytes(d.used)} / {human_bytes(d.total)} used ({d.used_percent:.0f}%), "
        f"{human_bytes(d.free)} available to unprivileged writers",
    )
    facts = {
        "disk": {
            "path": str(d.path),
            "total_bytes": d.total,
            "free_bytes": d.free,
            "free_percent": round(d.free_percent, 2),
        }
    }
    waiting = waiting_daemon(ws)
    if d.free_percent < th.disk_min_free_percent or d.free < th.disk_min_free_bytes or waiting:
        crit = d.free_percent < th.disk_critical_free_percent or waiting is not None
        findings.append(
            Finding(
                code=LOW.code,
                severity=Severity.CRITICAL if crit else Severity.WARNING,
                title="Low disk space",
                problem=[
                    f"Only {human_bytes(d.free)} ({d.free_percent:.1f}%) free on the filesystem of `{target}`",
                    f"Threshold: {th.disk_min_free_percent:g}% and {human_bytes(th.disk_min_free_bytes)}",
                ],
                impact=[
                    "Training is held until there is room"
                    if waiting
                    else "The next checkpoint save may fail half-written and kill the run"
                ],
                evidence=[df]
                + (
                    [Evidence(f"jq .waiting_reason {q(ws, ws.daemon_state.path)}", str(waiting.get("waiting_reason")))]
                    if waiting
                    else []
                ),
                root_cause=_waiting_cause(waiting) if waiting else [],
                recommendations=["Prune checkpoints beyond retention; move finished models off this disk"],
                fixes=[PRUNE_UNSAFE] if len(ws.checkpoints) > 1 else [],
                urgency="immediate" if crit else "short-term",
                data={**facts["disk"], "daemon_waiting": bool(waiting)},
            )
        )
    fc = forecast(ws)
    if fc:
        facts["disk"]["forecast"] = fc
        if fc["need_bytes"] > d.free:
            findings.append(
                Finding(
                    code=FORECAST.code,
                    severity=Severity.CRITICAL,
                    title="Disk will fill before training finishes",
                    problem=[
                        f"{fc['steps_left']:g} steps left: {fc['saves_left']} more checkpoint save(s) of ~{human_bytes(fc['checkpoint_bytes'])}",
                        f"At the current retention ({'save_total_limit=' + str(fc['limit']) if fc['limit'] else 'none'}) the run needs "
                        f"~{human_bytes(fc['need_bytes'])} more; {human_bytes(d.free)} is free",
                    ],
                    impact=["The run dies at a save before it finishes, losing the steps since the last checkpoint"],
                    evidence=[
                        df,
                        Evidence(f"du -sh {q(ws, ws.checkpoint_dir)}", human_bytes(ws.checkpoint_dir_usage.bytes)),
                    ],
                    recommendations=["Set (or lower) save_total_limit and prune now", "Free space on this filesystem"],
                    urgency="immediate",
                    data=fc,
                )
            )
    healthy = (
        []
        if findings
        else [
            Healthy(
                "Disk space OK",
                [
                    f"{human_bytes(d.used)} / {human_bytes(d.total)} used ({d.used_percent:.0f}%)",
                    f"{human_bytes(d.free)} available"
                    + (f"; the rest of the run needs ~{human_bytes(fc['need_bytes'])}" if fc else ""),
                ],
            )
        ]
    )
    return CheckOutput(findings=findings, healthy=healthy, facts=facts)
