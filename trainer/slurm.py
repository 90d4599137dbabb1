"""The daemon as a Slurm batch job: the batch script, its submission with sbatch, and the requeue at the time limit.

Why a script that `exec`s the daemon: Slurm's `--signal=B:USR1@N` reaches only the batch shell, and bash defers a
trap while a foreground child runs, so the daemon must *be* the batch shell's process. The job is named after the
workspace id (`--job-name=healthkit-<id>`) with the workspace path in `--comment`, so that the audit finds jobs
submitted by hand too. Every scheduler command runs with a timeout: an unanswering slurmctld is an error, never a hang.
"""

from __future__ import annotations

import os
import subprocess
import sys

from healthkit.contract.settings import Settings
from healthkit.system.shellcmd import command, quote_arg
from healthkit.system.slurmq import job_name

from .layout import Layout

SLURM_TIMEOUT_S = 30.0


class SlurmError(Exception):
    """sbatch or scontrol failed, is missing, or did not answer in time; the message says which."""


def batch_script(lay: Layout, settings: Settings, workspace_id: str, python: str | None = None) -> str:
    """The batch script `healthkit daemon slurm-script` prints and `daemon start` submits."""
    sl = settings.slurm
    opts = [
        f"--job-name={job_name(workspace_id)}",
        f"--comment={quote_arg(str(lay.base))}",
        "--requeue",
        f"--signal=B:USR1@{sl.signal_lead_seconds}",
        f"--output={quote_arg(str(lay.logs / 'slurm-%j.out'))}",
        "--open-mode=append",
    ]
    if sl.partition:
        opts.append(f"--partition={quote_arg(sl.partition)}")
    if sl.time:
        opts.append(f"--time={quote_arg(sl.time)}")
    opts += [quote_arg(a) for a in sl.sbatch_args]
    py = python or sys.executable
    lines = [
        "#!/bin/bash",
        *[f"#SBATCH {o}" for o in opts],
        "# healthkit: the daemon replaces this shell (exec), so that Slurm's B:USR1 reaches it: on USR1 the",
        "# training saves at its next step boundary and the daemon requeues this job; on TERM it saves and ends.",
        f"cd {quote_arg(str(lay.base))} || exit 1",
        "export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1 PYTHONUNBUFFERED=1",
        "exec " + command(py, "-m", "healthkit.trainer.daemon", "--workspace", str(lay.base)),
    ]
    return "\n".join(lines) + "\n"


def _run(argv: list[str], stdin: str | None = None) -> str:
    try:
        out = subprocess.run(argv, input=stdin, capture_output=True, text=True, timeout=SLURM_TIMEOUT_S)
    except FileNotFoundError:
        raise SlurmError(f"{argv[0]} is not installed here (Slurm's client commands are needed)") from None
    except subprocess.TimeoutExpired:
        raise SlurmError(f"`{command(*argv)}` did not answer within {SLURM_TIMEOUT_S:g}s (is slurmctld up?)") from None
    if out.returncode != 0:
        raise SlurmError(f"`{command(*argv)}` failed: {(out.stderr or out.stdout).strip()[-500:]}")
    return out.stdout


def submit(lay: Layout, settings: Settings, workspace_id: str) -> str:
    """Submit the batch script; the job id."""
    lay.logs.mkdir(parents=True, exist_ok=True)
    out = _run(["sbatch", "--parsable"], stdin=batch_script(lay, settings, workspace_id))
    job = out.strip().split(";")[0]
    if not job.isdigit():
        raise SlurmError(f"sbatch answered {out.strip()[:200]!r}, not a job id")
    return job


def requeue(job_id: str) -> None:
    _run(["scontrol", "requeue", job_id])


def this_job() -> str | None:
    """The job this process runs in (SLURM_JOB_ID), or None outside Slurm."""
    job = os.environ.get("SLURM_JOB_ID", "")
    return job if job.isdigit() else None


def restarts() -> int:
    try:
        return int(os.environ.get("SLURM_RESTART_COUNT") or 0)
    except ValueError:
        return 0
