"""Is training progressing? Progress figures for the report, and `training.stalled` when it is not."""

from __future__ import annotations

import math
from typing import Any

from healthkit import CheckOutput, CodeDoc, Evidence, Finding, Healthy, Severity, check
from healthkit.core.findings import Progress
from healthkit.core.workspace import MISSING, Workspace

from ._common import ago, jq_pick, number, parse_time, q, stat_time

STALLED = CodeDoc(
    "training.stalled",
    "critical",
    "Training status not updated for much longer than a step takes",
    what="The status file says training is running, but it has not been updated for far longer than a training step takes "
    "(at least the configured minimum), or no training process exists any more.",
    why="A hung run (a deadlocked data loader, a stuck collective, an expensive monitoring hook) burns GPU hours and makes no "
    "progress; a dead one leaves a status file that lies.",
    fix="Look at the training log and the process (py-spy dump --pid N); restart the daemon, which resumes from the last checkpoint.",
)

BAD_STEP = CodeDoc(
    "status.bad-step",
    "warning",
    "The status file's step is not a finite number (NaN or infinite)",
    what="The status file states a step that is NaN or infinite (JSON's non-standard `NaN` and `Infinity` are written "
    "and read by Python's json by default).",
    why="Progress, the percentage, the seconds per step and the disk forecast are computed from the step: with a NaN they "
    "are meaningless, so they are left out of this report.",
    fix="Find what writes the status file (the training callback) and why its step is not a number; the next status "
    "write with a real step clears this. No automatic fix.",
)

CLOCK_SKEW = CodeDoc(
    "status.clock-skew",
    "warning",
    "The status file's timestamp is in the future, or in a unit not understood",
    what="The status file's update time lies further in the future than `[thresholds] clock_skew_seconds` allows, or is "
    "a number in a unit healthkit does not understand (1e20, nanoseconds), or is not finite.",
    why='Staleness is judged from that time: a time in the future would read "updated 0s ago" for ever and hide every '
    "stall. So this report judges staleness from the file's modification time instead.",
    fix="Check the clocks of the hosts that write and read the workspace (`timedatectl`, chrony/NTP) and the unit the "
    "writer uses (seconds since the epoch, or ISO 8601). No automatic fix.",
)


def progress(ws: Workspace) -> dict[str, Any]:
    """The report's "current training status" figures, from the status file (keys mapped by settings)."""
    if not ws.status.is_object:
        return {}
    t: dict[str, Any] = {}
    for key in (
        "state",
        "step",
        "total_steps",
        "loss",
        "val_loss",
        "val_train_gap",
        "current_file",
        "eta_seconds",
        "started_at",
        "updated_at",
        "loss_step",
        "val_loss_step",
    ):
        v = ws.status_value(key)
        if v is not MISSING:
            t[key] = v
    step, total = number(t.get("step")), number(t.get("total_steps"))
    if step is not None and total:
        t["percent"] = round(100.0 * step / total, 1)
    eta = number(t.get("eta_seconds"))
    if eta is not None:
        t["eta"] = f"~{ago(eta)} remaining"
    step_raw = t.get("step")
    if step is not None and not math.isfinite(step):  # NaN or infinite (other garbage is shown as it is, as before)
        t["bad_step"] = str(step_raw)
        t.pop("percent", None)
        t.pop("step")  # a NaN step feeds no computation (disk forecast, seconds per step)
    updated = parse_time(t.get("updated_at"))
    skew = ws.settings.thresholds.clock_skew_seconds
    if updated is not None and (not math.isfinite(updated) or updated > ws.now + skew):
        t["clock_skew"] = {"stated": str(t.get("updated_at")), "epoch": updated if math.isfinite(updated) else None}
        updated = None  # judged from the file's mtime instead
    updated = updated or ws.status.mtime
    if updated:
        t["updated_ago"] = ago(ws.now - updated)
        t["updated_epoch"] = updated
    gpu = ws.status_value("gpu")
    if isinstance(gpu, dict):
        t["gpu"] = {k: number(gpu.get(k)) for k in ("memory_used_mb", "memory_total_mb", "temperature_c")}
    return t


def _seconds_per_step(ws: Workspace, t: dict[str, Any]) -> float | None:
    step = number(t.get("step"))
    started, updated = parse_time(t.get("started_at")), t.get("updated_epoch")
    if step and step > 0 and started and updated and updated > started:
        return (updated - started) / step
    eta, total = number(t.get("eta_seconds")), number(t.get("total_steps"))
    if eta and total and step is not None and total > step:
        return eta / (total - step)
    return None


def _status_findings(ws: Workspace, t: dict[str, Any]) -> list[Finding]:
    """status.bad-step and status.clock-skew: values of the status file that would mislead every figure built on them."""
    rel = q(ws, ws.status.path)
    out = []
    if "bad_step" in t:
        key = ws.status_key("step")
        out.append(
            Finding(
                code=BAD_STEP.code,
                severity=Severity.WARNING,
                title=f"The status file's step is not a number ({t['bad_step']})",
                problem=[f"`{key}` in the status file is {t['bad_step']}, not a finite number"],
                impact=["Progress, the percentage and the disk forecast cannot be computed from it: they are left out"],
                evidence=[Evidence(f"jq '.{key}' {rel}", str(t["bad_step"]))],
                recommendations=["Find why the writer of the status file records a step that is not a number"],
                data={"step": str(t["bad_step"])},
            )
        )
    if "clock_skew" in t:
        stated = t["clock_skew"]["stated"]
        key = ws.status_key("updated_at")
        mtime = ws.status.mtime
        out.append(
            Finding(
                code=CLOCK_SKEW.code,
                severity=Severity.WARNING,
                title="The status file's update time is in the future (or in a unit not understood)",
                problem=[
                    f"`{key}` says {stated!r}, more than {ws.settings.thresholds.clock_skew_seconds:g}s ahead of this host's "
                    "clock, or not a time in seconds or ISO 8601",
                    "Staleness is judged from the file's modification time instead"
                    + (f" (last modified {ago(ws.now - mtime)} ago)" if mtime else ""),
                ],
                impact=['A future time would read "updated 0s ago" and hide a stall'],
                evidence=[
                    Evidence(f"jq '.{key}' {rel}", str(stated)),
                    Evidence(f"stat -c '%y' {rel}", stat_time(mtime) if mtime else "?"),
                    Evidence("date -Is", _now_iso(ws.now)),
                ],
                recommendations=[
                    "Check the clocks of the hosts that write and read the workspace (`timedatectl`) and the unit the "
                    "writer uses (seconds since the epoch, or ISO 8601)"
                ],
                data={"stated": str(stated), "skew_seconds": ws.settings.thresholds.clock_skew_seconds},
            )
        )
    return out


def _now_iso(now: float) -> str:
    from datetime import datetime

    return datetime.fromtimestamp(now).astimezone().isoformat(timespec="seconds")


@check("training", title="Training progress", codes=[STALLED, BAD_STEP, CLOCK_SKEW], tags=["training"])
def training_check(ws: Workspace) -> CheckOutput:
    st = ws.status
    if not st.exists:
        return CheckOutput(notes=[f"no status file at {ws.rel(st.path)}"])
    if not st.is_object:
        why = st.problem.message if st.problem else "its top level is not a JSON object"
        return CheckOutput(unknown=f"status file unusable: {why}")
    t = progress(ws)
    state = t.get("state")
    findings: list[Finding] = _status_findings(ws, t)
    healthy: list[Healthy] = []
    th = ws.settings.thresholds
    rel = q(ws, st.path)
    if state == "training" and t.get("updated_epoch"):
        silent = ws.now - t["updated_epoch"]
        per_step = _seconds_per_step(ws, t)
        limit = max(th.stalled_min_seconds, th.stalled_step_factor * per_step) if per_step else th.stalled_min_seconds
        if silent > limit:
            basis = (
                f"{th.stalled_step_factor:g}x the ~{per_step:.1f}s a step takes"
                if per_step and limit > th.stalled_min_seconds
                else f"the {ago(th.stalled_min_seconds)} minimum"
            )
            keys = [ws.status_key(k) for k in ("state", "step", "updated_at") if ws.status_key(k) in st.data]
            findings.append(
                Finding(
                    code=STALLED.code,
                    severity=Severity.CRITICAL,
                    title="Training has stalled",
                    problem=[
                        f"The status file says `training` but was last updated {ago(silent)} ago"
                        + (f" (at step {t['step']})" if t.get("step") is not None else ""),
                        f"That is longer than {basis}",
                    ],
                    impact=[
                        "No progress while the GPU (and the clock) keep running",
                        "The ETA and the status file are stale",
                    ],
                    evidence=[
                        Evidence(f"jq '{{{', '.join(keys)}}}' {rel}", jq_pick(st.data, keys)),
                        Evidence(
                            f"stat -c '%y' {rel}",
                            stat_time(st.mtime) if st.mtime else f"stat: cannot statx '{ws.rel(st.path)}'",
                        ),
                    ],
                    root_cause=[
                        "The training process hung (data loader, collective, a slow monitoring hook) or died without updating its status"
                    ],
                    recommendations=[
                        "Inspect the process (`py-spy dump --pid PID`) and the training log; restart from the last checkpoint if it is hung"
                    ],
                    urgency="immediate",
                    data={"silent_s": silent, "limit_s": limit, "step": t.get("step")},
                )
            )
    if state == "training" and not any(f.code == STALLED.code for f in findings):
        details = []
        if t.get("step") is not None:
            pct = f" ({t['percent']:.0f}% complete)" if "percent" in t else ""
            details.append(f"Step {t.get('step')}/{t.get('total_steps', '?')}{pct}")
        loss = number(t.get("loss"))
        if loss is not None:
            details.append(f"Loss: {loss:.4g}")
        gpu = t.get("gpu") or {}
        if gpu.get("memory_used_mb") is not None:
            details.append(f"GPU: {gpu['memory_used_mb']:.0f} MB / {gpu.get('memory_total_mb') or 0:.0f} MB")
        if gpu.get("temperature_c") is not None:
            details.append(f"Temperature: {gpu['temperature_c']:.0f}°C")
        if t.get("updated_ago"):
            details.append(f"Status updated {t['updated_ago']} ago")
        healthy.append(Healthy("Training is progressing", details))
        t["verdict"], t["progress"] = "Training is progressing.", Progress.PROGRESSING
    elif any(f.code == STALLED.code for f in findings):
        t["verdict"], t["progress"] = "Training is not progressing.", Progress.NOT_PROGRESSING
    return CheckOutput(findings=findings, healthy=healthy, facts={"training": t} if t else {})
