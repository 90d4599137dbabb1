"""Files stuck in processing/ with no training on them."""

from __future__ import annotations

import json
import os
from pathlib import Path

from healthkit import CheckOutput, CodeDoc, Evidence, Finding, FixRef, Healthy, Severity, check
from healthkit.core.ownership import daemon_processes, remote_lease, stopped_on_request, training_processes
from healthkit.core.workspace import MISSING, Workspace
from healthkit.system.fsutil import ReadProblem, read_json
from healthkit.system.redact import redact_text
from healthkit.system.safetext import md_code
from healthkit.system.shellcmd import command

from ._common import ago, q
from .disk import waiting_daemon


def _names_file(cmdline: tuple[str, ...], name: str) -> bool:
    """Whether an argv names the file (as a path or `--file=path`), by whole basename: `a.jsonl` is not `data_a.jsonl`."""
    for tok in cmdline[1:]:
        val = tok.split("=", 1)[1] if tok.startswith("-") and "=" in tok else tok
        if os.path.basename(val.rstrip("/")) == name:
            return True
    return False


# `queue.lines-dropped` is a warning above this share of a file (the trainer's own limit, 10%, fails the file):
# 2% is about where leaving out the longest conversations starts to show in what a model learns.
WARN_DROPPED_SHARE = 0.02

REQUEUE = FixRef("requeue-stuck-file", "Move the file back to the queue", "safe")

STUCK = CodeDoc(
    "queue.stuck",
    "warning",
    "A file sits in processing/ with no training on it",
    what="A queue file is in the processing folder, but no training process works on it (no live training at all, or the "
    "running one trains another file), and the daemon was not stopped on request (that is `daemon.stopped`).",
    why="The file will never finish: the daemon that moved it there died, and a restarted daemon may skip it.",
    fix="Move it back to the queue so that the daemon trains it (resuming from its checkpoints).",
    fix_safety="Safe: the file is moved, never deleted or edited.",
    fixes=(REQUEUE,),
)
DELETE_FAILED = FixRef("delete-failed-checkpoints", "Delete the failed file's kept checkpoints", "unsafe")

FAILED = CodeDoc(
    "queue.failed",
    "warning",
    "A queue file failed",
    what="A file is in the queue's failed folder: its data was invalid, or its training failed `max_failures` times. "
    "Our trainer keeps the checkpoints it had reached (in `current_model/.failed-<name>/`); the finding says how many "
    "steps a retry keeps and the command that retries it.",
    why="Its data was never (fully) trained: a model that should have learned from it did not.",
    fix="Read the reason (`<name>.error.json` beside it), repair the data or the setup, then `healthkit queue retry WS NAME`: "
    "the file goes back in the queue and resumes from its newest complete checkpoint. A file you no longer want: "
    "`healthkit fix --unsafe --only queue.failed` deletes its kept checkpoints (the plan says how many steps that throws away).",
    fix_safety="Retrying is the person's call (only they know whether the data or the setup was wrong). Deleting the kept "
    "checkpoints is unsafe: it throws away the steps already trained.",
    fixes=(DELETE_FAILED,),
)
DROPPED = CodeDoc(
    "queue.lines-dropped",
    "info",
    "A trained file was trained without its over-long lines",
    what="A file in done/ trained without some of its lines: conversations whose assistant part did not fit "
    "max_seq_length were dropped and counted (its `<name>.done.json` gives the count and the first line numbers). "
    "Info up to 2% of the file, a warning above (the trainer fails a file that would lose more than 10%).",
    why="Every dropped line is a long one: the model learnt from a sample biased towards short conversations. A few lines "
    "are noise; a larger share changes what it learns.",
    fix="Raise max_seq_length (up to the model's positions), or split the long conversations, and queue them again. "
    "`healthkit queue add` shows the lines that would be dropped before a file is queued.",
    fix_safety="No automatic fix: the data and max_seq_length are the person's to change.",
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
    why = (
        "no training process runs"
        if not trainings
        else f"the running training (PID {trainings[0].pid}) works on another file"
    )
    return Finding(
        code=STUCK.code,
        severity=Severity.WARNING,
        title=f"Queue file stuck: {f.name}",
        problem=[f"`{ws.rel(f)}` is in processing (last modified {age} ago) but {why}"],
        impact=["It will never be trained unless it is moved back to the queue"],
        evidence=[
            Evidence(f"ls -l {q(ws, f.parent)}", f.name),
            Evidence(
                f"jq '.{ws.status_key('current_file')}' {q(ws, ws.status_path)}",
                json.dumps(None if current is MISSING else current, default=str),
            ),
        ],
        root_cause=["The daemon that was training it died (or the training crashed) and nothing put it back"],
        recommendations=["Move it back to the queue; the daemon resumes it from its last checkpoint"],
        fixes=[REQUEUE],
        urgency="short-term",
        data={"path": str(f)},
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
    remote = remote_lease(ws, now=ws.now)
    if remote is not None and remote.fresh:
        return []  # its daemon runs on another host (daemon.remote): its training is not a process we can see
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


def _error_file(ws: Workspace, f) -> tuple[Path, dict]:
    """(the error file's path, its content) from `<name>.error.json` beside the failed file ({} when unreadable).

    Read with the workspace owner's permission (ws.reader): root quotes nothing its owner could not read.
    """
    err = f.with_name(f.name + ".error.json")
    if not err.exists():
        err = f.with_name(f.stem + ".error.json")
    try:
        data = read_json(err, max_bytes=1024 * 1024, reader=ws.reader)
    except ReadProblem:
        return err, {}
    return err, data if isinstance(data, dict) else {"error": data}


def _error_reason(ws: Workspace, f) -> tuple[str, str]:
    """(the error file's path, its reason), from `<name>.error.json` beside the failed file."""
    err, data = _error_file(ws, f)
    if not data:
        return str(err), "(no readable error file beside it)"
    reason = data.get("error") or data.get("reason")
    return str(err), str(reason or json.dumps(data)[:300])


def _retry_lines(ws: Workspace, f: Path, queued_as: str) -> tuple[list[str], dict]:
    """What `healthkit queue retry` keeps for a failed file of our trainer: (problem lines, finding data)."""
    from healthkit.contract.retry_checkpoints import kept_for, retry_point

    kept = kept_for(ws.checkpoint_dir, queued_as)
    point = retry_point(ws.checkpoint_dir, queued_as)
    cmd = command("healthkit", "queue", "retry", ws.rel(ws.base), f.name)
    if point:
        line = (
            f"A retry keeps {point[0]} step(s): it resumes from {ws.rel(point[1])} (step {point[0]}); "
            f"{len(kept)} checkpoint(s) of it are kept. Retry with {md_code(cmd)}"
        )
    else:
        line = f"No complete checkpoint of it is kept: a retry starts from step 0. Retry with {md_code(cmd)}"
    data = {
        "retry_command": cmd,
        "retry_step": point[0] if point else 0,
        "queued_as": queued_as,
        "kept_checkpoints": [str(p) for _, p in kept],
    }
    return [line], data


def _rule_failed(ws: Workspace) -> list[Finding]:
    """`queue.failed`: each failed file, with its error file's reason as the evidence and what a retry keeps."""
    out = []
    ours = ws.settings.paths.config_schema == "healthkit"  # `queue retry` and the kept checkpoints are our trainer's
    for f in ws.queue.failed:
        err, reason = _error_reason(ws, f)
        queued_as = _error_file(ws, f)[1].get("file")
        retry, data = _retry_lines(ws, f, queued_as if isinstance(queued_as, str) else f.name) if ours else ([], {})
        out.append(
            Finding(
                code=FAILED.code,
                severity=Severity.WARNING,
                title=f"Queue file failed: {f.name}",
                problem=[f"`{ws.rel(f)}` failed: {redact_text(reason)[:300]}"] + retry,
                impact=["Its data was not trained into the model"],
                evidence=[Evidence(f"jq . {q(ws, Path(err))}", redact_text(reason)[:500])],
                recommendations=[
                    "Fix the data or the setup named in the reason, then "
                    + (md_code(data["retry_command"]) if data else "queue the file again")
                ],
                fixes=[DELETE_FAILED] if data.get("kept_checkpoints") else [],
                urgency="short-term",
                data={"path": str(f), "error_file": err, "reason": reason, **data},
            )
        )
    return out


def _rule_dropped(ws: Workspace) -> list[Finding]:
    """`queue.lines-dropped`: a done file's record says lines were dropped as too long (info, or warning above 2%)."""
    out = []
    for f in ws.queue.done:
        rec = f.with_name(f.name + ".done.json")
        try:
            data = read_json(rec, max_bytes=1024 * 1024, reader=ws.reader)
        except ReadProblem:
            continue
        dropped = data.get("dropped_lines") if isinstance(data, dict) else None
        if not isinstance(dropped, dict) or not isinstance(dropped.get("count"), int) or not dropped["count"]:
            continue
        share = float(dropped.get("share") or 0.0)
        lines = ", ".join(str(n) for n in dropped.get("first_lines") or [])
        more = " ..." if dropped["count"] > len(dropped.get("first_lines") or []) else ""
        out.append(
            Finding(
                code=DROPPED.code,
                severity=Severity.WARNING if share > WARN_DROPPED_SHARE else Severity.INFO,
                title=f"{f.name} trained without {dropped['count']} over-long line(s)",
                problem=[
                    f"`{ws.rel(f)}` trained without {dropped['count']} of its {dropped.get('total')} line(s) "
                    f"({share:.1%}): too long for max_seq_length={dropped.get('max_seq_length')} (the assistant part wholly "
                    f"cut off): line(s) {lines}{more}"
                ],
                impact=["The model learnt from a sample without the longest conversations"],
                evidence=[Evidence(f"jq .dropped_lines {q(ws, rec)}", json.dumps(dropped, sort_keys=True)[:500])],
                recommendations=[
                    "Raise max_seq_length (up to the model's positions) or split the long conversations, and queue "
                    "those lines again"
                ],
                fixes=[],
                urgency="long-term",
                data={"path": str(f), **dropped},
            )
        )
    return out


@check("queue", title="Training queue", codes=[STUCK, FAILED, DROPPED], tags=["queue"])
def queue_check(ws: Workspace) -> CheckOutput:
    qv = ws.queue
    findings = _rule_stuck(ws) + _rule_failed(ws) + _rule_dropped(ws)
    healthy = []
    if (qv.pending or qv.done) and not qv.failed:
        healthy.append(
            Healthy(
                "Queue", [f"{len(qv.pending)} queued, {len(qv.processing)} processing, {len(qv.done)} done, 0 failed"]
            )
        )
    return CheckOutput(
        findings=findings,
        healthy=healthy,
        notes=list(qv.errors),
        facts={
            "queue": {
                "pending": len(qv.pending),
                "processing": len(qv.processing),
                "done": len(qv.done),
                "failed": len(qv.failed),
            }
        },
    )
