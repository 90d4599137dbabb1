"""`healthkit daemon status` for people: rounded numbers, durations in h/m/s, unknown values left out (no `eta Nones`)."""

from __future__ import annotations

import math
from typing import Any


def number(value: Any) -> str | None:
    """A loss as people read it (4 significant digits); None for a missing or non-numeric value."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    if not math.isfinite(value):
        return str(value).lower()  # nan, inf: said, not hidden
    return f"{value:.4g}"


def duration(seconds: Any) -> str | None:
    """`2h 05m`, `4m 10s`, `12s`; None when unknown or negative."""
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not math.isfinite(seconds) or seconds < 0:
        return None
    s = int(round(seconds))
    h, rest = divmod(s, 3600)
    m, sec = divmod(rest, 60)
    if h:
        return f"{h}h {m:02d}m"
    return f"{m}m {sec:02d}s" if m else f"{sec}s"


ACTIVE = ("training", "paused", "waiting")
FAILED_SHOWN = 3


def training_line(tr: dict[str, Any], current_file: str | None = None) -> str:
    """One line of the training status: what is known, nothing for what is not.

    ``current_file`` is the file the daemon works on now: a status file that still describes another (the
    previous file's `step 600/600` before the new one's first step) is not shown as this file's progress. A
    status that is not training describes a past run: named as such, with its file, never "no validation loss yet".
    """
    state, file = tr.get("state") or "unknown", tr.get("current_file")
    if current_file and file != current_file:
        return f"progress: {current_file} starting, no step yet" + (
            f" (the status file still describes {file})" if file else ""
        )
    if state == "idle":
        return "progress: idle, no file in training"
    parts = [f"progress: {state}" + ("" if state in ACTIVE or not file else f" ({file}, last run)")]
    step, total = tr.get("step"), tr.get("total_steps")
    if step is not None:
        parts.append(f"step {step}/{total}" if total else f"step {step}")
    for label, key in (("loss", "loss"), ("val_loss", "val_loss")):
        shown = number(tr.get(key))
        if shown is not None:
            parts.append(f"{label} {shown}")
    if tr.get("val_loss") is None and state in ACTIVE:
        parts.append("no validation loss yet")
    eta = duration(tr.get("eta_seconds"))
    if eta is not None:
        parts.append(f"eta {eta}")
    line = ", ".join(parts)
    return line + (f" (updated {tr['updated_at']})" if tr.get("updated_at") else "")


def daemon_line(running: bool, pid: int | None, st: dict[str, Any]) -> str:
    """`daemon: running (PID 12, since T, 1 restart)` or `daemon: not running (last state stopped)`; unknowns left out."""
    if not running:
        if not st:
            return "daemon: not running (none has run here: no status/daemon_state.json)"
        return "daemon: not running" + (f" (last state {st['state']})" if st.get("state") else "")
    extra = [f"PID {pid}"] + ([f"since {st['started_at']}"] if st.get("started_at") else [])
    restarts = st.get("restarts")
    if isinstance(restarts, int) and restarts:
        extra.append(f"{restarts} restart{'s' if restarts != 1 else ''}")
    return f"daemon: {st.get('state') or 'running'} ({', '.join(extra)})"


def disk_wait_line(st: dict[str, Any]) -> str:
    """What a daemon waiting for disk space waits for, in bytes and in words."""
    disk = st.get("disk") or {}
    free, need = disk.get("free_bytes"), disk.get("need_bytes")
    short = (
        f"; {need - free} more bytes needed" if isinstance(free, int) and isinstance(need, int) and need > free else ""
    )
    return (
        f"waiting for disk space since {st.get('waiting_since')}: {free} bytes free on {disk.get('mount')}, "
        f"a checkpoint needs ~{need}{short}; {st.get('waiting_file')} resumes from its last complete checkpoint "
        "once there is room (`healthkit fix` can free space)"
    )


def child_line(running: bool, st: dict[str, Any], alive: bool) -> str | None:
    """The training process the state file names, only while it is that very process: "adopted" only under a live
    daemon that adopted it; with no daemon it is said to be an orphan; a gone one is not shown."""
    pid, file = st.get("child_pid"), st.get("current_file")
    if not pid or not alive:
        return None
    if not running:
        return (
            f"training: PID {pid} on {file} runs with no daemon over it "
            "(`healthkit fix --safe` starts a daemon that adopts it)"
        )
    return f"training: PID {pid} on {file}" + (" (adopted)" if st.get("adopted") else "")


def failed_lines(failed: list[dict[str, Any]]) -> list[str]:
    """Why the newest failed files failed (their error files), so "failed 1" comes with its reason."""
    out = [
        f"failed: {f['file']}: {f['error']}" + (f" (at {f['failed_at']})" if f.get("failed_at") else "")
        for f in failed[:FAILED_SHOWN]
    ]
    if len(failed) > FAILED_SHOWN:
        out.append(f"failed: {len(failed) - FAILED_SHOWN} more (`healthkit queue list` shows them)")
    return out


def supervisor_line(sup: dict[str, Any], alive: bool) -> str | None:
    """Our supervisor as it is now: alive with its restarts and last crash, gone without a word, or ended (why)."""
    if not sup or not sup.get("pid"):
        return None
    crash = sup.get("last_crash") if isinstance(sup.get("last_crash"), dict) else None
    last = ""
    if crash:
        how = f"killed by {crash['signal']}" if crash.get("signal") else f"exit code {crash.get('exit_code')}"
        last = f"; last crash: daemon PID {crash.get('daemon_pid')} {how} at {crash.get('at')}"
    n = sup.get("restarts") or 0
    restarts = f"{n} restart{'s' if n != 1 else ''}"
    if alive:
        return f"supervisor: PID {sup['pid']} (since {sup.get('started_at')}), {restarts}{last}"
    if sup.get("state") == "running":
        return f"supervisor: PID {sup['pid']} is gone (it ended without recording why: killed?); nothing restarts the daemon"
    return f"supervisor: ended ({sup.get('state')}) at {sup.get('ended_at')}: {sup.get('reason')}"


def run_detail_lines(tr: dict[str, Any]) -> list[str]:
    """What the status file says the run left out or changed: the lines too long to train, the settings a resume took."""
    out = []
    dropped = tr.get("dropped_lines")
    if isinstance(dropped, dict) and dropped.get("count"):
        out.append(
            f"dropped: {dropped['count']} of {dropped.get('total')} line(s) too long for "
            f"max_seq_length={dropped.get('max_seq_length')} (line(s) {', '.join(map(str, dropped.get('first_lines') or []))})"
        )
    for key, change in (tr.get("settings_on_resume") or {}).items():
        out.append(
            f"on resume: {key} {change.get('checkpoint')} (checkpoint) -> {change.get('config')} (config.json applies)"
        )
    return out


def status_lines(s: dict[str, Any]) -> list[str]:
    """`healthkit daemon status`, line by line, from `trainer.daemon.status`: each line true of the workspace now."""
    st, tr, running = s["state"], s["training"], s["running"]
    out = [daemon_line(running, s["pid"], st)]
    lease = s.get("lease") or {}
    if lease and not lease.get("local") and not lease.get("released"):
        out.append(
            f"lease: held by host {lease['host']} (PID {lease['pid']} there, generation {lease['generation']}), "
            f"renewed {lease['renewed_s_ago']:.0f} s ago (lease {lease['lease_seconds']:.0f} s)"
        )
    sl = s.get("slurm")
    if sl is not None:
        if sl.get("why"):
            out.append(f"slurm: unknown ({sl['why']})")
        elif not sl.get("jobs"):
            out.append(f"slurm: no job named {sl.get('name')} in the queue")
        for job in sl.get("jobs") or []:
            out.append(
                f"slurm: job {job['job_id']} {job['state']}"
                + (f", reason {job['reason']}" if job.get("reason") not in (None, "", "None") else "")
                + f", time left {job['time_left']}"
            )
    sup = supervisor_line(s.get("supervisor") or {}, bool(s.get("supervisor_alive")))
    if sup:
        out.append(sup)
    if st.get("paused_at"):
        out.append(f"paused since {st.get('paused_at')}: {st.get('pause_reason')}")
    if st.get("state") == "waiting" and st.get("waiting_for") == "disk":
        out.append(disk_wait_line(st))
    child = child_line(running, st, bool(s.get("child_alive")))
    if child:
        out.append(child)
    if tr:
        out.append(training_line(tr, st.get("current_file") if running else None))
        out += run_detail_lines(tr)
    out.append("queue: " + ", ".join(f"{k} {len(v)}" for k, v in s["queue"].items()))
    out += failed_lines(s.get("failed") or [])
    out += [f"warning: {w}" for w in st.get("warnings") or []]
    if st.get("error"):
        out.append(f"error: {st.get('error')}")
    return out
