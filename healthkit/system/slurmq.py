"""Asking Slurm about a workspace's job, bounded in time: one home for the audit's check and `daemon status`.

The job is found by its name, `healthkit-<workspace id>` (trainer/slurm.py names it so), so that a job submitted by
hand with the printed script is found too. squeue or scontrol missing, failing or not answering within the timeout
is said in words, never a hang (a slurmctld that is down makes every client command wait).
"""

from __future__ import annotations

import subprocess

from healthkit.system.records import record
from healthkit.system.shellcmd import command

TIMEOUT_S = 5.0
JOB_PREFIX = "healthkit-"
SQUEUE_FORMAT = "%i|%T|%r|%L"


def job_name(workspace_id: str) -> str:
    return JOB_PREFIX + workspace_id


@record
class Answer:
    """What a scheduler command said: ``text`` (stdout) or ``why`` it could not say; ``shown`` is the command."""

    shown: str
    text: str | None
    why: str = ""


def ask(*argv: str, timeout_s: float = TIMEOUT_S) -> Answer:
    shown = command(*argv)
    try:
        out = subprocess.run(
            list(argv), capture_output=True, text=True, timeout=timeout_s, stdin=subprocess.DEVNULL, check=False
        )
    except FileNotFoundError:
        return Answer(shown, None, f"{argv[0]} is not installed on this host")
    except subprocess.TimeoutExpired:
        return Answer(shown, None, f"{argv[0]} did not answer within {timeout_s:g}s (slurmctld down or unreachable)")
    if out.returncode != 0:
        return Answer(shown, None, f"{argv[0]} failed: {(out.stderr or out.stdout).strip()[:300]}")
    return Answer(shown, out.stdout)


def jobs_named(name: str) -> tuple[list[dict[str, str]] | None, Answer]:
    """The jobs of that name in squeue (job_id, state, reason, time_left), or None with the answer saying why."""
    ans = ask("squeue", "-h", "-n", name, "-o", SQUEUE_FORMAT)
    if ans.text is None:
        return None, ans
    jobs = []
    for line in ans.text.splitlines():
        parts = line.strip().split("|")
        if len(parts) == 4 and parts[0]:
            jobs.append({"job_id": parts[0], "state": parts[1], "reason": parts[2], "time_left": parts[3]})
    return jobs, ans


def show_job(job_id: str) -> tuple[dict[str, str] | None, Answer]:
    """`scontrol show job -o JOB` as key=value pairs (JobState, Reason, ...), or None (finished and forgotten, or no
    answer: ``why`` says which)."""
    ans = ask("scontrol", "show", "job", "-o", job_id)
    if ans.text is None:
        return None, ans
    fields: dict[str, str] = {}
    for tok in ans.text.split():
        key, sep, value = tok.partition("=")
        if sep and key not in fields:
            fields[key] = value
    return (fields or None), ans


def seconds(slurm_time: str) -> float | None:
    """Slurm's `[D-]HH:MM:SS` / `MM:SS` as seconds; None for UNLIMITED, NOT_SET or garbage."""
    days = 0
    t = slurm_time.strip()
    if "-" in t:
        d, _, t = t.partition("-")
        if not d.isdigit():
            return None
        days = int(d)
    parts = t.split(":")
    if not parts or not all(p.isdigit() for p in parts) or len(parts) > 3:
        return None
    total = 0
    for p in parts:
        total = total * 60 + int(p)
    return days * 86400 + total
