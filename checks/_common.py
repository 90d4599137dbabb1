"""Small helpers shared by the built-in checks: durations, timestamps, quoting for evidence commands."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from healthkit.core.workspace import MISSING, Workspace


def ago(seconds: float) -> str:
    """`4h 12m`, `3d 2h`, `45s`: how people say how long."""
    s = int(max(0, seconds))
    d, s = divmod(s, 86400)
    h, s = divmod(s, 3600)
    m, s = divmod(s, 60)
    if d:
        return f"{d}d {h}h"
    if h:
        return f"{h}h {m}m"
    if m:
        return f"{m}m {s}s"
    return f"{s}s"


def parse_time(value: Any) -> float | None:
    """Epoch seconds from an ISO 8601 string or a number; None when it is neither."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value) / (1000.0 if value > 1e12 else 1.0)
    if isinstance(value, str) and value.strip():
        text = value.strip().replace("Z", "+00:00")
        try:
            dt = datetime.fromisoformat(text)
        except ValueError:
            return None
        if dt.tzinfo is None:
            dt = dt.astimezone()  # naive timestamps are local time, as written by datetime.now()
        return dt.timestamp()
    return None


def stat_time(ts: float) -> str:
    """A time as `stat -c '%y'` prints it (local time, nanoseconds, numeric zone)."""
    dt = datetime.fromtimestamp(ts).astimezone()
    ns = round((ts - int(ts)) * 1e9) % 1_000_000_000
    return f"{dt:%Y-%m-%d %H:%M:%S}.{ns:09d} {dt:%z}"


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds")


def q(ws: Workspace, p: Path) -> str:
    """A path as a person would type it from the workspace folder."""
    from healthkit.system.shellcmd import quote_arg

    return quote_arg(ws.rel(p))  # control characters and undecodable bytes as $'…', like every printed command


def jq_pick(data: dict[str, Any], keys: list[str]) -> str:
    """What `jq '{a, b}'` prints for these keys (null when absent, as jq does)."""
    return json.dumps({k: data.get(k) for k in keys}, indent=2, default=str)


def present(value: Any) -> bool:
    return value is not MISSING


def number(value: Any) -> float | None:
    if isinstance(value, bool) or value is MISSING or value is None:
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    return None


def tail_text(path: Path, max_bytes: int = 65536, lines: int = 8) -> list[str]:
    """Last lines of a log, read from its end without loading it whole."""
    from healthkit.system.fsutil import ReadProblem, open_regular

    try:
        with open_regular(path) as fh:  # a FIFO in place of a log never blocks
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - max_bytes))
            data = fh.read(max_bytes)
    except (OSError, ReadProblem):
        return []
    return data.decode("utf-8", "replace").splitlines()[-lines:]
