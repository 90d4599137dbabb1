"""Files stuck in processing/ with no training on them."""

from __future__ import annotations

import json
import os
from pathlib import Path

from healthkit import CheckOutput, CodeDoc, Evidence, Finding, FixRef, Healthy, Severity, check
from healthkit.ownership import daemon_processes, stopped_on_request, training_processes
from healthkit.fsutil import ReadProblem, read_json
from healthkit.redact import redact_text
from healthkit.workspace import MISSING, Workspace

from ._common import ago, q
from .disk import waiting_daemon


def _names_file(cmdline: tuple[str, ...], name: str) -> bool:
    """Whether an argv names the file (as a path or `--file=path`), by whole basename: `a.jsonl` is not `data_a.jsonl`."""
    for tok in cmdline[1:]:
        val = tok.split("=", 1)[1] if tok.startswith("-") and "=" in tok else tok
        if os.path.basename(val.rstrip("/")) == name:
            return True
    return False

REQUEUE = FixRef("requeue-stuck-file", "Move the file back to the queue", "safe")

STUCK = CodeDoc(
    "queue.stuck", "warning", "A file sits in processing/ with no training on it",
    what="A queue file is in the processing folder, but no training process works on it (no live training at all, or the "
         "running one trains another file), and the daemon was not stopped on request (that is `daemon.stopped`).",
    why="The file will never finish: the daemon that moved it there died, and a restarted daemon may skip it.",
    fix="Move it back to the queue so that the daemon trains it (resuming from its checkpoints).",
    fix_safety="Safe: the file is moved, never deleted or edited.",
    fixes=(REQUEUE,),
)
FAILED = CodeDoc(
    "queue.failed", "warning", "A queue file failed",
    what="A file is in the queue's failed folder: its data was invalid, or its training failed `max_failures` times.",
    why="Its data was never (fully) trained: a model that should have learned from it did not.",
    fix="Read the reason (`<name>.error.json` beside it), repair the data or the setup, and queue it again "
        "(`healthkit queue add WS FILE`).",
    fix_safety="No automatic fix: only a person can tell whether the data or the setup was wrong.",
)


def _training_on_queue(ws: Workspace) -> list:
    trainings = training_processes(ws)
    if not trainings and ws.settings.processes.training_in_daemon:
        trainings = daemon_processes(ws)  # training runs inside the daemon process: the daemon is the trainer
    return trainings


def _stuck_finding(ws: Workspace, f, trainings: list, current: object) -> Finding:
    try:
        age = ago(ws.now - f.stat().st_mtime)
    except OSError:
        age = "?"
    why = "no training process runs" if not trainings else f"the running training (PID {trainings[0].pid}) works on another file"
    return Finding(
        code=STUCK.code, severity=Severity.WARNING, title=f"Queue file stuck: {f.name}",
        problem=[f"`{ws.rel(f)}` is in processing (last modified {age} ago) but {why}"],
        impact=["It will never be trained unless it is moved back to the queue"],
        evidence=[Evidence(f"ls -l {q(ws, f.parent)}", f.name),
                  Evidence(f"jq '.{ws.status_key('current_file')}' {q(ws, ws.status_path)}", json.dumps(None if current is MISSING else current, default=str))],
        root_cause=["The daemon that was training it died (or the training crashed) and nothing put it back"],
        recommendations=["Move it back to the queue; the daemon resumes it from its last checkpoint"],
        fixes=[REQUEUE], urgency="short-term", data={"path": str(f)},
    )


def _being_started(ws: Workspace, processing: list[Path]) -> set[Path]:
    """Files a live daemon has just claimed and is starting a training on (no training process yet).

    Between the claim (a rename into processing/, which sets the file's ctime) and the training
    child's start the daemon checks the data and prepares checkpoints: seconds, in which the file
    has no training on it and is not stuck. Past `claim_grace_seconds` it is.
    """
    if not processing or not daemon_processes(ws):
        return set()
    grace = ws.settings.thresholds.claim_grace_seconds
    started = set()
    for f in processing:
        try:
            if ws.now - f.stat().st_ctime <= grace:
                started.add(f)
        except OSError:
            started.add(f)  # moved on while we look: to done/ or failed/
    return started


def _rule_stuck(ws: Workspace) -> list[Finding]:
    """`queue.stuck`: in processing/ with no training on it, unless the daemon was stopped on request."""
    if stopped_on_request(ws) is not None and not daemon_processes(ws):
        return []  # the file waits for the next start: reported once, as daemon.stopped (info)
    trainings = _training_on_queue(ws)
    current = ws.status_value("current_file")
    current_name = os.path.basename(current) if isinstance(current, str) else None
    state = ws.status_value("state")
    out = []
    waiting = waiting_daemon(ws)
    starting = _being_started(ws, ws.queue.processing) if not trainings else set()
    for f in ws.queue.processing:
        if waiting and waiting.get("waiting_file") == f.name:
            continue  # held by a daemon waiting for disk space: disk.low-space says so
        mentioned = any(_names_file(p.cmdline, f.name) for p in trainings)
        in_status = current_name == f.name and state == "training"
        if not (mentioned or (trainings and in_status) or f in starting):
            out.append(_stuck_finding(ws, f, trainings, current))
    return out


def _error_reason(ws: Workspace, f) -> tuple[str, str]:
    """(the error file's path, its reason), from `<name>.error.json` beside the failed file.

    Read with the workspace owner's permission (ws.reader): root quotes nothing its owner could not read.
    """
    err = f.with_name(f.name + ".error.json")
    if not err.exists():
        err = f.with_name(f.stem + ".error.json")
    try:
        data = read_json(err, max_bytes=1024 * 1024, reader=ws.reader)
    except ReadProblem:
        return str(err), "(no readable error file beside it)"
    reason = data.get("error") or data.get("reason") if isinstance(data, dict) else None
    return str(err), str(reason or json.dumps(data)[:300])


def _rule_failed(ws: Workspace) -> list[Finding]:
    """`queue.failed`: each failed file, with its error file's reason as the evidence."""
    out = []
    for f in ws.queue.failed:
        err, reason = _error_reason(ws, f)
        out.append(Finding(
            code=FAILED.code, severity=Severity.WARNING, title=f"Queue file failed: {f.name}",
            problem=[f"`{ws.rel(f)}` failed: {redact_text(reason)[:300]}"],
            impact=["Its data was not trained into the model"],
            evidence=[Evidence(f"jq . {q(ws, Path(err))}", redact_text(reason)[:500])],
            recommendations=["Fix the data or the setup named in the reason, then queue the file again"],
            fixes=[], urgency="short-term", data={"path": str(f), "error_file": err, "reason": reason},
        ))
    return out


@check("queue", title="Training queue", codes=[STUCK, FAILED], tags=["queue"])
def queue_check(ws: Workspace) -> CheckOutput:
    qv = ws.queue
    findings = _rule_stuck(ws) + _rule_failed(ws)
    healthy = []
    if (qv.pending or qv.done) and not qv.failed:
        healthy.append(Healthy("Queue", [f"{len(qv.pending)} queued, {len(qv.processing)} processing, {len(qv.done)} done, 0 failed"]))
    return CheckOutput(findings=findings, healthy=healthy, notes=list(qv.errors),
                       facts={"queue": {"pending": len(qv.pending), "processing": len(qv.processing), "done": len(qv.done), "failed": len(qv.failed)}})
