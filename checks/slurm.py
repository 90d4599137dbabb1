"""The daemon's Slurm job, as the scheduler and the workspace's event log tell it (only with `[daemon] scheduler = "slurm"`)."""

from __future__ import annotations

import os
import shlex
from dataclasses import field

from healthkit import CheckOutput, CodeDoc, Evidence, Finding, FixRef, Healthy, Severity, check
from healthkit.contract.events import SLURM_JOB, SLURM_REQUEUE, read_events
from healthkit.contract.wsid import read_workspace_id
from healthkit.core.workspace import Workspace
from healthkit.system.records import identity_record
from healthkit.system.slurmq import JOB_PREFIX, jobs_named, seconds, show_job

from ._common import iso, q

STORM_REQUEUES = 3

PENDING = CodeDoc(
    "slurm.pending",
    "info",
    "The daemon's Slurm job is pending",
    what="The batch job that runs this workspace's daemon waits in Slurm's queue; squeue says why (Priority, Resources, "
    "BeginTime after a requeue, ...).",
    why="Nothing trains until it runs. After a requeue Slurm holds the job for a while (its begin time) before it "
    "runs again; that is expected.",
    fix="None: it runs when Slurm starts it. A reason such as PartitionDown or ReqNodeNotAvail needs the cluster's admin.",
    fix_safety="No fix: the scheduler decides.",
)
REQUEUED = CodeDoc(
    "slurm.requeued",
    "info",
    "The daemon's Slurm job was requeued",
    what="The daemon received Slurm's USR1 before its time limit, had the training save at its next step boundary, "
    "and requeued its job (`scontrol requeue`); the event log (logs/events.jsonl) records each requeue.",
    why="Nothing is wrong: the requeued job resumes from the checkpoint it saved. Each requeue costs the wait for the "
    "job to run again.",
    fix="None. A longer `[slurm] time` means fewer requeues.",
    fix_safety="No fix needed.",
)
STORM = CodeDoc(
    "slurm.requeue-storm",
    "critical",
    "The daemon's Slurm job requeues without making progress",
    what=f"The job was requeued {STORM_REQUEUES} times or more with no new checkpoint since: each run ends before it "
    "saves anything new.",
    why="The job can requeue forever and never train further: the time limit is shorter than start-up plus one save "
    "interval, or every run fails before its first save.",
    fix="Give the job more time (`[slurm] time`), save more often (`save_steps`), or look at logs/slurm-<job>.out for "
    "why each run ends early; then `scancel` the job and `healthkit daemon start` again.",
    fix_safety="No automatic fix: the settings are the user's call.",
)


SUBMIT = FixRef(
    "submit-daemon-job", "Submit the daemon's Slurm job again (it resumes from the newest checkpoint)", "safe"
)
ENDED = CodeDoc(
    "slurm.ended",
    "critical",
    "The daemon's Slurm job ended with work still queued",
    what="The job that ran the daemon ended as PREEMPTED, NODE_FAIL or OUT_OF_MEMORY (scontrol show job), and files "
    "still wait in the queue or in processing/: nothing will train them until a job runs again.",
    why="Slurm does not requeue such a job unless the cluster says so; the queue stops until someone submits again.",
    fix="`healthkit fix --safe` submits the daemon's job again (as `healthkit daemon start WS` does); it resumes from "
    'the newest complete checkpoint. For OUT_OF_MEMORY ask for more memory (`[slurm] sbatch_args = ["--mem=..."]`).',
    fix_safety="Safe: never after a stop on request, never while a job of the workspace is pending or running, and root "
    "submits nothing for a user.",
    fixes=(SUBMIT,),
)
TIMEOUT_UNSAVED = CodeDoc(
    "slurm.timeout-unsaved",
    "critical",
    "The daemon's Slurm job hit its time limit without saving",
    what="The job ended as TIMEOUT and no checkpoint was written after the time-limit signal was due "
    "(end time minus `[slurm] signal_lead_seconds`): the work since the last periodic save is lost.",
    why="The signal did not reach the daemon (a script that does not `exec` it, a missing --signal), or the lead was "
    "shorter than one step plus a save.",
    fix="Submit with `healthkit daemon slurm-script` / `daemon start` (which `exec` the daemon and ask for "
    "--signal=B:USR1@lead), and make `signal_lead_seconds` longer than a step plus a save.",
    fix_safety="No automatic fix.",
)
LIMIT_BEFORE_SAVE = CodeDoc(
    "slurm.limit-before-save",
    "warning",
    "The job's time left ends before the next periodic save",
    what="The running job's time left (squeue) is shorter than the time to the next periodic save at the current "
    "speed (status file: step, eta; config: save_steps).",
    why="Unless the time-limit signal makes the training save first, the work since the last save is lost at the limit.",
    fix="Keep the time-limit signal working (the printed script), or save more often, or ask for more time.",
    fix_safety="No automatic fix.",
)
FINAL_BAD = ("PREEMPTED", "NODE_FAIL", "OUT_OF_MEMORY")


def _sec_per_step(ws: Workspace) -> tuple[int, float] | None:
    """(step, seconds per step) from the status file's eta, or None."""
    step, total, eta = ws.status_value("step"), ws.status_value("total_steps"), ws.status_value("eta_seconds")
    nums = [x for x in (step, total, eta) if isinstance(x, (int, float)) and not isinstance(x, bool)]
    if len(nums) != 3 or total <= step:
        return None
    return int(step), float(eta) / (total - step)


def _limit_before_save(ws: Workspace, job: dict, shown: str) -> Finding | None:
    left = seconds(job["time_left"])
    speed = _sec_per_step(ws)
    save_steps = ws.config_value("save_steps", None)
    if (
        left is None
        or speed is None
        or not isinstance(save_steps, int)
        or isinstance(save_steps, bool)
        or save_steps < 1
    ):
        return None
    step, per = speed
    nxt = (step // save_steps + 1) * save_steps
    to_save = (nxt - step) * per
    if left >= to_save:
        return None
    return Finding(
        code=LIMIT_BEFORE_SAVE.code,
        severity=Severity.WARNING,
        title=f"Slurm job {job['job_id']} ends before its next save",
        problem=[
            f"Job {job['job_id']} has {job['time_left']} left; the next periodic save (step {nxt}) is about "
            f"{to_save:.0f} s away at {per:.2f} s per step (now at step {step})"
        ],
        impact=["Unless the time-limit signal makes the training save first, the steps since the last save are lost"],
        evidence=[Evidence(shown, f"{job['job_id']}|{job['state']}|{job['reason']}|{job['time_left']}")],
        fixes=[],
        urgency="short-term",
        data={**job, "next_save_step": nxt, "seconds_to_save": round(to_save, 1)},
    )


def _ended(ws: Workspace, job_id: str, requeues: list, signal_lead: float) -> Finding | None:
    """slurm.ended / slurm.timeout-unsaved for the daemon's last job, from `scontrol show job` while Slurm remembers it."""
    info, ans = show_job(job_id)
    if info is None:
        return None
    state = info.get("JobState", "")
    ev = Evidence(
        ans.shown + " | tr ' ' '\\n' | grep -E '^(JobState|Reason|EndTime)='",
        "\n".join(f"{k}={info.get(k)}" for k in ("JobState", "Reason", "EndTime")),
    )
    work = len(ws.queue.pending) + len(ws.queue.processing)
    if state in FINAL_BAD and work:
        return Finding(
            code=ENDED.code,
            severity=Severity.CRITICAL,
            title=f"Slurm job {job_id} ended: {state}",
            problem=[
                f"Job {job_id} ended as {state} (reason {info.get('Reason')}, at {info.get('EndTime')}) with "
                f"{work} file(s) still queued or in processing/"
            ],
            impact=["Nothing trains them until a job runs the daemon again"],
            evidence=[ev],
            recommendations=[f"Submit it again: `healthkit daemon start {shlex.quote(str(ws.base))}`"],
            fixes=[SUBMIT],
            urgency="immediate",
            data={"job_id": job_id, "state": state, "queued": work},
        )
    if state == "TIMEOUT":
        from datetime import datetime

        try:
            end = datetime.fromisoformat(info.get("EndTime", "")).timestamp()
        except ValueError:
            return None
        due = end - signal_lead
        newest = _newest_checkpoint_time(ws)
        if newest is None or newest < due:
            return Finding(
                code=TIMEOUT_UNSAVED.code,
                severity=Severity.CRITICAL,
                title=f"Slurm job {job_id} timed out unsaved",
                problem=[
                    f"Job {job_id} ended as TIMEOUT at {info.get('EndTime')}; no checkpoint was written after the "
                    f"time-limit signal was due ({iso(due)})"
                ],
                impact=["The steps since the last periodic save are lost"],
                evidence=[ev],
                fixes=[],
                urgency="immediate",
                data={"job_id": job_id, "state": state},
            )
    return None


def _newest_checkpoint_time(ws: Workspace) -> float | None:
    try:
        ckpts = ws.checkpoints
    except Exception:
        return None
    if not ckpts:
        return None
    try:
        return os.stat(ckpts[-1].path).st_mtime
    except OSError:
        return None


@identity_record
class _Out:
    """What the check gathers before it returns one (frozen) CheckOutput."""

    findings: list = field(default_factory=list)
    healthy: list = field(default_factory=list)
    facts: dict = field(default_factory=dict)
    notes: list = field(default_factory=list)
    unknown: str | None = None

    def done(self) -> CheckOutput:
        return CheckOutput(
            findings=self.findings, healthy=self.healthy, facts=self.facts, unknown=self.unknown, notes=self.notes
        )


@check(
    "slurm",
    title="The daemon's Slurm job",
    codes=[PENDING, REQUEUED, STORM, ENDED, TIMEOUT_UNSAVED, LIMIT_BEFORE_SAVE],
    tags=["process", "slurm"],
)
def slurm_check(ws: Workspace) -> CheckOutput:
    if ws.settings.daemon.scheduler != "slurm":
        return CheckOutput()
    out = _Out()
    logs = ws.path(ws.settings.paths.logs)
    events, _ = read_events(logs, ws.reader)
    jobs_seen = [e for e in events if e.get("event") == SLURM_JOB]
    requeues = [e for e in events if e.get("event") == SLURM_REQUEUE]
    ev_cmd = f"jq -c 'select(.event|startswith(\"slurm\"))' {q(ws, logs / 'events.jsonl')}"
    ev_shown = "\n".join(
        f'{{"event": "{e.get("event")}", "job_id": "{e.get("job_id")}", "at": "{iso(e.get("ts") or 0)}"}}'
        for e in (jobs_seen + requeues)[-6:]
    )
    out.facts["slurm"] = {"requeues": len(requeues), "jobs_started": len(jobs_seen)}
    if requeues:
        out.findings.append(_requeued(ws, requeues, Evidence(ev_cmd, ev_shown)))
    wsid = read_workspace_id(ws.base)
    if wsid is None:
        out.notes.append("No workspace id (.healthkit-id): no Slurm job can be matched to this workspace yet")
        return out.done()
    jobs, ans = jobs_named(JOB_PREFIX + wsid)
    if jobs is None:
        out.unknown = f"the scheduler's view is unknown: {ans.why}; the daemon's lease is the fallback"
        return out.done()
    out.facts["slurm"]["jobs"] = jobs
    for job in jobs:
        _judge_job(ws, out, job, JOB_PREFIX + wsid, ans.shown, bool(requeues))
    last_job = str(jobs_seen[-1].get("job_id")) if jobs_seen else None
    if last_job and last_job.isdigit() and last_job not in {j["job_id"] for j in jobs}:
        ended = _ended(ws, last_job, requeues, float(ws.settings.slurm.signal_lead_seconds))
        if ended is not None:
            out.findings.append(ended)
    return out.done()


def _requeued(ws: Workspace, requeues: list[dict], evidence: Evidence) -> Finding:
    """A requeue storm (the last STORM_REQUEUES requeues with no checkpoint since), else the requeues as info."""
    newest = _newest_checkpoint_time(ws)
    last = requeues[-STORM_REQUEUES:]
    if len(last) == STORM_REQUEUES and (newest is None or newest < float(last[0].get("ts") or 0)):
        return Finding(
            code=STORM.code,
            severity=Severity.CRITICAL,
            title="Slurm job requeues without progress",
            problem=[
                f"The daemon's job was requeued {len(requeues)} times; the last {STORM_REQUEUES} (jobs "
                f"{', '.join(str(e.get('job_id')) for e in last)}) came with no new checkpoint since "
                f"{iso(float(last[0].get('ts') or 0))}"
            ],
            impact=["Each run ends before it saves: the job can requeue forever without training further"],
            evidence=[evidence],
            recommendations=[
                "Give the job more time ([slurm] time) or save more often (save_steps); read "
                "logs/slurm-<job>.out for why each run ends early"
            ],
            fixes=[],
            urgency="immediate",
            data={"requeues": len(requeues), "jobs": [e.get("job_id") for e in last]},
        )
    return Finding(
        code=REQUEUED.code,
        severity=Severity.INFO,
        title=f"Slurm job requeued {len(requeues)} time(s)",
        problem=[
            f"The daemon's job was requeued {len(requeues)} time(s) at its time limit, last job "
            f"{requeues[-1].get('job_id')} at {iso(float(requeues[-1].get('ts') or 0))}"
        ],
        impact=["None: each requeued run resumes from the checkpoint saved before the requeue"],
        evidence=[evidence],
        fixes=[],
        urgency="long-term",
        data={"requeues": len(requeues), "job_id": requeues[-1].get("job_id")},
    )


def _judge_job(ws: Workspace, out: _Out, job: dict, name: str, shown: str, requeued: bool) -> None:
    """A pending job is info (with its reason); a running one is healthy unless its time ends before the next save."""
    if job["state"] == "PENDING":
        out.findings.append(
            Finding(
                code=PENDING.code,
                severity=Severity.INFO,
                title=f"Slurm job {job['job_id']} is pending",
                problem=[
                    f"Job {job['job_id']} ({name}) is PENDING: reason {job['reason']}"
                    + (
                        " (a requeued job waits for its begin time)"
                        if job["reason"] == "BeginTime" and requeued
                        else ""
                    )
                ],
                impact=["Nothing trains until Slurm runs it"],
                evidence=[Evidence(shown, f"{job['job_id']}|{job['state']}|{job['reason']}|{job['time_left']}")],
                fixes=[],
                urgency="long-term",
                data=job,
            )
        )
    elif job["state"] == "RUNNING":
        late = _limit_before_save(ws, job, shown)
        if late is not None:
            out.findings.append(late)
        else:
            out.healthy.append(Healthy(f"Slurm job {job['job_id']} is running", [f"time left {job['time_left']}"]))
