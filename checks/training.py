"""Is training progressing? Progress figures for the report, and `training.stalled` when it is not."""

from __future__ import annotations

from typing import Any

from healthkit import CheckOutput, CodeDoc, Evidence, Finding, Healthy, Severity, check
from healthkit.core.findings import Progress
from healthkit.core.workspace import MISSING, Workspace

from ._common import ago, jq_pick, number, parse_time, q, stat_time

STALLED = CodeDoc(
    "training.stalled", "critical", "Training status not updated for much longer than a step takes",
    what="The status file says training is running, but it has not been updated for far longer than a training step takes "
         "(at least the configured minimum), or no training process exists any more.",
    why="A hung run (a deadlocked data loader, a stuck collective, an expensive monitoring hook) burns GPU hours and makes no "
        "progress; a dead one leaves a status file that lies.",
    fix="Look at the training log and the process (py-spy dump --pid N); restart the daemon, which resumes from the last checkpoint.",
)


def progress(ws: Workspace) -> dict[str, Any]:
    """The report's "current training status" figures, from the status file (keys mapped by settings)."""
    if not ws.status.is_object:
        return {}
    t: dict[str, Any] = {}
    for key in ("state", "step", "total_steps", "loss", "val_loss", "val_train_gap", "current_file", "eta_seconds", "started_at",
                "updated_at", "loss_step", "val_loss_step"):
        v = ws.status_value(key)
        if v is not MISSING:
            t[key] = v
    step, total = number(t.get("step")), number(t.get("total_steps"))
    if step is not None and total:
        t["percent"] = round(100.0 * step / total, 1)
    eta = number(t.get("eta_seconds"))
    if eta is not None:
        t["eta"] = f"~{ago(eta)} remaining"
    updated = parse_time(t.get("updated_at")) or ws.status.mtime
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


@check("training", title="Training progress", codes=[STALLED], tags=["training"])
def training_check(ws: Workspace) -> CheckOutput:
    st = ws.status
    if not st.exists:
        return CheckOutput(notes=[f"no status file at {ws.rel(st.path)}"])
    if not st.is_object:
        why = st.problem.message if st.problem else "its top level is not a JSON object"
        return CheckOutput(unknown=f"status file unusable: {why}")
    t = progress(ws)
    state = t.get("state")
    findings: list[Finding] = []
    healthy: list[Healthy] = []
    th = ws.settings.thresholds
    rel = q(ws, st.path)
    if state == "training" and t.get("updated_epoch"):
        silent = ws.now - t["updated_epoch"]
        per_step = _seconds_per_step(ws, t)
        limit = max(th.stalled_min_seconds, th.stalled_step_factor * per_step) if per_step else th.stalled_min_seconds
        if silent > limit:
            basis = f"{th.stalled_step_factor:g}x the ~{per_step:.1f}s a step takes" if per_step and limit > th.stalled_min_seconds else f"the {ago(th.stalled_min_seconds)} minimum"
            keys = [ws.status_key(k) for k in ("state", "step", "updated_at") if ws.status_key(k) in st.data]
            findings.append(Finding(
                code=STALLED.code, severity=Severity.CRITICAL, title="Training has stalled",
                problem=[f"The status file says `training` but was last updated {ago(silent)} ago"
                         + (f" (at step {t['step']})" if t.get("step") is not None else ""),
                         f"That is longer than {basis}"],
                impact=["No progress while the GPU (and the clock) keep running", "The ETA and the status file are stale"],
                evidence=[Evidence(f"jq '{{{', '.join(keys)}}}' {rel}", jq_pick(st.data, keys)),
                          Evidence(f"stat -c '%y' {rel}", stat_time(st.mtime) if st.mtime else f"stat: cannot statx '{ws.rel(st.path)}'")],
                root_cause=["The training process hung (data loader, collective, a slow monitoring hook) or died without updating its status"],
                recommendations=["Inspect the process (`py-spy dump --pid PID`) and the training log; restart from the last checkpoint if it is hung"],
                urgency="immediate", data={"silent_s": silent, "limit_s": limit, "step": t.get("step")},
            ))
    if state == "training" and not findings:
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
    elif findings:
        t["verdict"], t["progress"] = "Training is not progressing.", Progress.NOT_PROGRESSING
    return CheckOutput(findings=findings, healthy=healthy, facts={"training": t} if t else {})
