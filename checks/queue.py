"""Files stuck in processing/ with no training on them."""

from __future__ import annotations

import json
import os

from healthkit import CheckOutput, CodeDoc, Evidence, Finding, FixRef, Healthy, Severity, check
from healthkit.workspace import MISSING, Workspace

from ._common import ago, q
from .daemon import _daemon_procs, _training_procs


def _names_file(cmdline: tuple[str, ...], name: str) -> bool:
    """Whether an argv names the file (as a path or `--file=path`), by whole basename: `a.jsonl` is not `data_a.jsonl`."""
    for tok in cmdline[1:]:
        val = tok.split("=", 1)[1] if tok.startswith("-") and "=" in tok else tok
        if os.path.basename(val.rstrip("/")) == name:
            return True
    return False

STUCK = CodeDoc(
    "queue.stuck", "warning", "A file sits in processing/ with no training on it",
    what="A queue file is in the processing folder, but no training process works on it (no live training at all, or the "
         "running one trains another file).",
    why="The file will never finish: the daemon that moved it there died, and a restarted daemon may skip it.",
    fix="Move it back to the queue so that the daemon trains it (resuming from its checkpoints).",
    fix_safety="Safe: the file is moved, never deleted or edited.",
)
REQUEUE = FixRef("requeue-stuck-file", "Move the file back to the queue", "safe")


@check("queue", title="Training queue", codes=[STUCK], tags=["queue"])
def queue_check(ws: Workspace) -> CheckOutput:
    qv = ws.queue
    notes = list(qv.errors)
    trainings = _training_procs(ws)
    if not trainings and ws.settings.processes.training_in_daemon:
        trainings = _daemon_procs(ws)  # training runs inside the daemon process: the daemon is the trainer
    current = ws.status_value("current_file")
    current_name = os.path.basename(current) if isinstance(current, str) else None
    state = ws.status_value("state")
    findings: list[Finding] = []
    for f in qv.processing:
        mentioned = any(_names_file(p.cmdline, f.name) for p in trainings)
        in_status = current_name == f.name and state == "training"
        if mentioned or (trainings and in_status):
            continue
        try:
            age = ago(ws.now - f.stat().st_mtime)
        except OSError:
            age = "?"
        why = "no training process runs" if not trainings else f"the running training (PID {trainings[0].pid}) works on another file"
        findings.append(Finding(
            code=STUCK.code, severity=Severity.WARNING, title=f"Queue file stuck: {f.name}",
            problem=[f"`{ws.rel(f)}` is in processing (last modified {age} ago) but {why}"],
            impact=["It will never be trained unless it is moved back to the queue"],
            evidence=[Evidence(f"ls -l {q(ws, f.parent)}", f.name),
                      Evidence(f"jq '.{ws.status_key('current_file')}' {q(ws, ws.status_path)}", json.dumps(None if current is MISSING else current, default=str))],
            root_cause=["The daemon that was training it died (or the training crashed) and nothing put it back"],
            recommendations=["Move it back to the queue; the daemon resumes it from its last checkpoint"],
            fixes=[REQUEUE], urgency="short-term", data={"path": str(f)},
        ))
    healthy = []
    if qv.pending or qv.done:
        healthy.append(Healthy("Queue", [f"{len(qv.pending)} queued, {len(qv.processing)} processing, {len(qv.done)} done, {len(qv.failed)} failed"]))
    return CheckOutput(findings=findings, healthy=healthy, notes=notes,
                       facts={"queue": {"pending": len(qv.pending), "processing": len(qv.processing), "done": len(qv.done), "failed": len(qv.failed)}})
