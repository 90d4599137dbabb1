"""The Slurm analogue of start-daemon (safe): submit the daemon's batch job again when its last job ended with work queued.

Never after a stop on request, never while a job for the workspace is pending or running (asked again at apply
time), never for an untrusted workspace; the job runs as whoever submits it, so root submits nothing for a user.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import cast

from healthkit.contract.wsid import read_workspace_id
from healthkit.core.findings import Finding, FixRef
from healthkit.core.ownership import stopped_on_request
from healthkit.fix.daemon_adapters import load_adapter
from healthkit.fix.fixes_daemon import untrusted_block
from healthkit.fix.plan import ApplyContext, Outcome, Plan, PlanContext, Safety, applied, failed, fixer, skipped
from healthkit.system.slurmq import job_name, jobs_named


def _blocker(ctx: PlanContext) -> str | None:
    ws = ctx.ws
    why = untrusted_block(ws)
    if why:
        return why
    if ws.settings.daemon.scheduler != "slurm":
        return "the workspace does not run its daemon under Slurm ([daemon] scheduler)"
    stop = stopped_on_request(ws)
    if stop is not None:
        return f"the daemon was stopped on request ({stop.at}, by {stop.by}); no fix submits it again"
    if os.geteuid() == 0 and ws.trust.owner_uid not in (None, 0):
        return "root submits no job for a user: run `healthkit daemon start` as the workspace's owner"
    return _live_job(ws)


def _live_job(ws) -> str | None:
    wsid = read_workspace_id(ws.base)
    if wsid is None:
        return "no workspace id: no job was ever submitted for it"
    jobs, ans = jobs_named(job_name(wsid))
    if jobs is None:
        return f"cannot ask Slurm: {ans.why}"
    if jobs:
        return f"job {jobs[0]['job_id']} for this workspace is {jobs[0]['state']}"
    return None


@fixer("submit-daemon-job", order=91, codes=("slurm.ended",), safety=Safety.SAFE)
def plan_submit(ctx: PlanContext, finding: Finding, ref: FixRef) -> list[Plan]:
    ws = ctx.ws
    plan = Plan(
        "submit-daemon-job",
        Safety.SAFE,
        "Submit the daemon's Slurm job again",
        "",
        [finding.code],
        key="start-daemon",
        order=91,
    )
    plan.blocked = _blocker(ctx)
    adapter, why_not = load_adapter("trainer")
    script = getattr(adapter, "slurm_script", None) if adapter is not None else None
    if plan.blocked is None and not callable(script):
        plan.blocked = why_not or "the trainer cannot submit Slurm jobs"
    if plan.blocked:
        return [plan]
    plan.preview = (
        "sbatch --parsable <<'EOF'\n"
        + cast(Callable[..., str], script)(ws.base)
        + "EOF\n(the daemon resumes from the newest complete checkpoint)"
    )

    def apply(actx: ApplyContext) -> Outcome:
        live = _live_job(ws)
        if live:
            actx.record("submit", "slurm job", "skipped", live)
            return skipped(live)
        actx.record("submit", "slurm job", "started", "sbatch")
        try:
            job = adapter.slurm_submit(ws.base)  # type: ignore[union-attr]
        except Exception as exc:
            actx.record("submit", "slurm job", "failed", str(exc))
            return failed(f"not submitted: {exc}")
        actx.record("submit", "slurm job", "applied", f"job {job}")
        return applied(f"submitted batch job {job}")

    plan.apply = apply
    return [plan]
