"""The daemon's Slurm job, as the scheduler and the workspace's event log tell it (only with `[daemon] scheduler = "slurm"`)."""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass, field

from healthkit import CheckOutput, CodeDoc, Evidence, Finding, Healthy, Severity, check
from healthkit.events import SLURM_JOB, SLURM_REQUEUE, read_events
from healthkit.shellcmd import command
from healthkit.workspace import Workspace
from healthkit.wsid import read_workspace_id

from ._common import iso, q

SQUEUE_TIMEOUT_S = 5.0
JOB_PREFIX = "healthkit-"  # trainer/slurm.py names each job so; the audit finds jobs submitted by hand by it
SQUEUE_FORMAT = "%i|%T|%r|%L"
STORM_REQUEUES = 3

PENDING = CodeDoc(
    "slurm.pending", "info", "The daemon's Slurm job is pending",
    what="The batch job that runs this workspace's daemon waits in Slurm's queue; squeue says why (Priority, Resources, "
         "BeginTime after a requeue, ...).",
    why="Nothing trains until it runs. After a requeue Slurm holds the job for a while (its begin time) before it "
        "runs again; that is expected.",
    fix="None: it runs when Slurm starts it. A reason such as PartitionDown or ReqNodeNotAvail needs the cluster's admin.",
    fix_safety="No fix: the scheduler decides.",
)
REQUEUED = CodeDoc(
    "slurm.requeued", "info", "The daemon's Slurm job was requeued",
    what="The daemon received Slurm's USR1 before its time limit, had the training save at its next step boundary, "
         "and requeued its job (`scontrol requeue`); the event log (logs/events.jsonl) records each requeue.",
    why="Nothing is wrong: the requeued job resumes from the checkpoint it saved. Each requeue costs the wait for the "
        "job to run again.",
    fix="None. A longer `[slurm] time` means fewer requeues.",
    fix_safety="No fix needed.",
)
STORM = CodeDoc(
    "slurm.requeue-storm", "critical", "The daemon's Slurm job requeues without making progress",
    what=f"The job was requeued {STORM_REQUEUES} times or more with no new checkpoint since: each run ends before it "
         "saves anything new.",
    why="The job can requeue forever and never train further: the time limit is shorter than start-up plus one save "
        "interval, or every run fails before its first save.",
    fix="Give the job more time (`[slurm] time`), save more often (`save_steps`), or look at logs/slurm-<job>.out for "
        "why each run ends early; then `scancel` the job and `healthkit daemon start` again.",
    fix_safety="No automatic fix: the settings are the user's call.",
)


def _squeue(name: str) -> tuple[list[dict] | None, str, str]:
    """(jobs, the command, why not) from squeue, bounded in time."""
    argv = ["squeue", "-h", "-n", name, "-o", SQUEUE_FORMAT]
    shown = command(*argv)
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=SQUEUE_TIMEOUT_S, stdin=subprocess.DEVNULL)
    except FileNotFoundError:
        return None, shown, "squeue is not installed on this host"
    except subprocess.TimeoutExpired:
        return None, shown, f"squeue did not answer within {SQUEUE_TIMEOUT_S:g}s (slurmctld down or unreachable)"
    if out.returncode != 0:
        return None, shown, f"squeue failed: {(out.stderr or out.stdout).strip()[:300]}"
    jobs = []
    for line in out.stdout.splitlines():
        parts = line.strip().split("|")
        if len(parts) == 4 and parts[0]:
            jobs.append({"job_id": parts[0], "state": parts[1], "reason": parts[2], "time_left": parts[3]})
    return jobs, shown, ""


def _newest_checkpoint_time(ws: Workspace) -> float | None:
    try:
        ckpts = ws.checkpoints
    except Exception:  # noqa: BLE001 - an unreadable checkpoint folder is the checkpoints check's finding
        return None
    if not ckpts:
        return None
    try:
        return os.stat(ckpts[-1].path).st_mtime
    except OSError:
        return None


@dataclass
class _Out:
    """What the check gathers before it returns one (frozen) CheckOutput."""

    findings: list = field(default_factory=list)
    healthy: list = field(default_factory=list)
    facts: dict = field(default_factory=dict)
    notes: list = field(default_factory=list)
    unknown: str | None = None

    def done(self) -> CheckOutput:
        return CheckOutput(findings=self.findings, healthy=self.healthy, facts=self.facts, unknown=self.unknown,
                           notes=self.notes)


@check("slurm", title="The daemon's Slurm job", codes=[PENDING, REQUEUED, STORM], tags=["process", "slurm"])
def slurm_check(ws: Workspace) -> CheckOutput:
    if ws.settings.daemon.scheduler != "slurm":
        return CheckOutput()
    out = _Out()
    logs = ws.path(ws.settings.paths.logs)
    events, _ = read_events(logs, ws.reader)
    jobs_seen = [e for e in events if e.get("event") == SLURM_JOB]
    requeues = [e for e in events if e.get("event") == SLURM_REQUEUE]
    ev_cmd = f"jq -c 'select(.event|startswith(\"slurm\"))' {q(ws, logs / 'events.jsonl')}"
    ev_shown = "\n".join(f'{{"event": "{e.get("event")}", "job_id": "{e.get("job_id")}", "at": "{iso(e.get("ts") or 0)}"}}'
                         for e in (jobs_seen + requeues)[-6:])
    out.facts["slurm"] = {"requeues": len(requeues), "jobs_started": len(jobs_seen)}
    if requeues:
        newest = _newest_checkpoint_time(ws)
        last = requeues[-STORM_REQUEUES:]
        stalled = len(last) == STORM_REQUEUES and (newest is None or newest < float(last[0].get("ts") or 0))
        if stalled:
            out.findings.append(Finding(
                code=STORM.code, severity=Severity.CRITICAL, title="Slurm job requeues without progress",
                problem=[f"The daemon's job was requeued {len(requeues)} times; the last {STORM_REQUEUES} (jobs "
                         f"{', '.join(str(e.get('job_id')) for e in last)}) came with no new checkpoint since "
                         f"{iso(float(last[0].get('ts') or 0))}"],
                impact=["Each run ends before it saves: the job can requeue forever without training further"],
                evidence=[Evidence(ev_cmd, ev_shown)],
                recommendations=["Give the job more time ([slurm] time) or save more often (save_steps); read "
                                 "logs/slurm-<job>.out for why each run ends early"],
                fixes=[], urgency="immediate", data={"requeues": len(requeues), "jobs": [e.get("job_id") for e in last]},
            ))
        else:
            out.findings.append(Finding(
                code=REQUEUED.code, severity=Severity.INFO, title=f"Slurm job requeued {len(requeues)} time(s)",
                problem=[f"The daemon's job was requeued {len(requeues)} time(s) at its time limit, last job "
                         f"{requeues[-1].get('job_id')} at {iso(float(requeues[-1].get('ts') or 0))}"],
                impact=["None: each requeued run resumes from the checkpoint saved before the requeue"],
                evidence=[Evidence(ev_cmd, ev_shown)], fixes=[], urgency="long-term",
                data={"requeues": len(requeues), "job_id": requeues[-1].get("job_id")},
            ))
    wsid = read_workspace_id(ws.base)
    if wsid is None:
        out.notes.append("No workspace id (.healthkit-id): no Slurm job can be matched to this workspace yet")
        return out.done()
    jobs, shown, why = _squeue(JOB_PREFIX + wsid)
    if jobs is None:
        out.unknown = f"the scheduler's view is unknown: {why}; the daemon's lease is the fallback"
        return out.done()
    out.facts["slurm"]["jobs"] = jobs
    for job in jobs:
        if job["state"] == "PENDING":
            out.findings.append(Finding(
                code=PENDING.code, severity=Severity.INFO, title=f"Slurm job {job['job_id']} is pending",
                problem=[f"Job {job['job_id']} ({JOB_PREFIX}{wsid}) is PENDING: reason {job['reason']}"
                         + (" (a requeued job waits for its begin time)" if job["reason"] == "BeginTime" and requeues else "")],
                impact=["Nothing trains until Slurm runs it"],
                evidence=[Evidence(shown, f"{job['job_id']}|{job['state']}|{job['reason']}|{job['time_left']}")],
                fixes=[], urgency="long-term", data=job,
            ))
        elif job["state"] == "RUNNING":
            out.healthy.append(Healthy(f"Slurm job {job['job_id']} is running", [f"time left {job['time_left']}"]))
    return out.done()
