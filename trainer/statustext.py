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


def training_line(tr: dict[str, Any]) -> str:
    """One line of the training status: what is known, nothing for what is not."""
    parts = [f"progress: {tr.get('state') or 'unknown'}"]
    step, total = tr.get("step"), tr.get("total_steps")
    if step is not None:
        parts.append(f"step {step}/{total}" if total else f"step {step}")
    for label, key in (("loss", "loss"), ("val_loss", "val_loss")):
        shown = number(tr.get(key))
        if shown is not None:
            parts.append(f"{label} {shown}")
    if tr.get("val_loss") is None:
        parts.append("no validation loss yet")
    eta = duration(tr.get("eta_seconds"))
    if eta is not None:
        parts.append(f"eta {eta}")
    line = ", ".join(parts)
    return line + (f" (updated {tr['updated_at']})" if tr.get("updated_at") else "")


def daemon_line(running: bool, pid: int | None, st: dict[str, Any]) -> str:
    """`daemon: running (PID 12, since T, 1 restart)` or `daemon: not running (last state stopped)`; unknowns left out."""
    if not running:
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
    short = f"; {need - free} more bytes needed" if isinstance(free, int) and isinstance(need, int) and need > free else ""
    return (f"waiting for disk space since {st.get('waiting_since')}: {free} bytes free on {disk.get('mount')}, "
            f"a checkpoint needs ~{need}{short}; {st.get('waiting_file')} resumes from its last complete checkpoint "
            "once there is room (`healthkit fix` can free space)")
