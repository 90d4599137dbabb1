"""The daemon's lease (`.daemon.lease`, beside `.daemon.pid`): which host holds a workspace and until when, read by content.

A PID means nothing on another host, and an mtime seen through NFS attribute caching can be as old as a lease, so a
daemon publishes who it is (host name, boot id, PID, start time, the workspace id) and renews the lease's
``renewed_at`` from a thread (never on the step path). Anyone may judge it: it is *fresh* while
``renewed_at + lease_seconds + margin`` lies ahead on the reader's clock (``margin`` is
`Thresholds.clock_skew_seconds`, the one clock-skew allowance). A lease written by another host (its host name or boot
id differs from ours) is judged only by this, never by a local PID. ``generation`` grows by one with each daemon that
takes the workspace; it is the fencing token a checkpoint is committed under. The writer lives in the trainer
(`trainer/lease.py`); this module reads, parses and judges, and writes nothing.
"""

from __future__ import annotations

import math
import os
import socket
from dataclasses import asdict
from pathlib import Path
from typing import Any

from healthkit.system.fsutil import Reader, ReadProblem, read_json
from healthkit.system.records import record

LEASE_VERSION = 1
MAX_LEASE_BYTES = 64 * 1024
BOOT_ID_PATH = "/proc/sys/kernel/random/boot_id"


def lease_path(pid_path: Path) -> Path:
    """The lease beside a PID file: `.daemon.pid` → `.daemon.lease` (any other name gains `.lease`)."""
    name = pid_path.name
    return pid_path.with_name((name.removesuffix(".pid")) + ".lease")


@record
class HostId:
    """A host as a lease names it: its name (`uname -n`) and this boot's id (a reboot is another life)."""

    host: str
    boot_id: str


def this_host() -> HostId:
    try:
        with open(BOOT_ID_PATH, encoding="ascii") as fh:
            boot = fh.read(64).strip()
    except OSError:
        boot = ""
    return HostId(os.uname().nodename or socket.gethostname(), boot)


@record
class Lease:
    """One lease as written (all times are Unix seconds on the writer's clock)."""

    host: str
    boot_id: str
    pid: int
    start_time: float
    generation: int
    lease_seconds: float
    renewed_at: float
    acquired_at: float
    workspace_id: str | None = None
    holder: str = ""  # a random token of the daemon that claimed this generation
    renewed_by: int | None = None  # the PID that wrote the last renewal (the daemon, or its orphaned training)
    released_at: float | None = None  # set by a daemon that stopped cleanly: the lease holds nothing any more

    def is_local(self, here: HostId | None = None) -> bool:
        """Written on this host in this boot (a different name or boot id is another host)."""
        h = here or this_host()
        return self.host == h.host and (not self.boot_id or not h.boot_id or self.boot_id == h.boot_id)

    def expires_at(self, margin_s: float) -> float:
        """When a reader whose clock may differ by ``margin_s`` calls it expired."""
        return self.renewed_at + self.lease_seconds + margin_s

    def fresh(self, now: float, margin_s: float) -> bool:
        return self.released_at is None and now <= self.expires_at(margin_s)

    def to_json(self) -> dict[str, Any]:
        return {"version": LEASE_VERSION, **asdict(self)}


@record
class LeaseFile:
    """A lease file as found: ``state`` missing, ok or malformed (``reason`` says why)."""

    path: Path
    state: str
    lease: Lease | None = None
    reason: str = ""


def _num(v: Any) -> float | None:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    return float(v) if math.isfinite(v) else None


def parse_lease(data: Any) -> Lease | str:
    """The lease in a parsed JSON value, or why it is not one."""
    if not isinstance(data, dict):
        return "it is not a JSON object"
    host, boot = data.get("host"), data.get("boot_id")
    if not isinstance(host, str) or not host:
        return "it names no host"
    if not isinstance(boot, str):
        return "it has no boot_id"
    pid, gen = data.get("pid"), data.get("generation")
    if not isinstance(pid, int) or isinstance(pid, bool) or pid <= 0:
        return "it has no valid pid"
    if not isinstance(gen, int) or isinstance(gen, bool) or gen < 1:
        return "it has no valid generation"
    nums = {k: _num(data.get(k)) for k in ("start_time", "lease_seconds", "renewed_at", "acquired_at")}
    missing = [k for k, v in nums.items() if v is None]
    if missing:
        return f"it has no valid {', '.join(missing)}"
    if nums["lease_seconds"] <= 0:  # type: ignore[operator]
        return "its lease_seconds is not positive"
    wsid, holder, by, released = (
        data.get("workspace_id"),
        data.get("holder"),
        data.get("renewed_by"),
        data.get("released_at"),
    )
    return Lease(
        host,
        boot,
        pid,
        nums["start_time"],  # type: ignore[arg-type]  # each checked a number above
        gen,
        nums["lease_seconds"],  # type: ignore[arg-type]
        nums["renewed_at"],  # type: ignore[arg-type]
        nums["acquired_at"],  # type: ignore[arg-type]
        wsid if isinstance(wsid, str) else None,
        holder if isinstance(holder, str) else "",
        by if isinstance(by, int) and not isinstance(by, bool) else None,
        _num(released),
    )


def read_lease(path: Path, reader: Reader | None = None) -> LeaseFile:
    """Read a lease bounded and non-blocking (a FIFO or a huge file in its place is a malformed lease, never a wait)."""
    try:
        data = read_json(path, max_bytes=MAX_LEASE_BYTES, reader=reader)
    except ReadProblem as exc:
        if exc.kind == "missing":
            return LeaseFile(path, "missing")
        return LeaseFile(path, "malformed", reason=exc.message)
    found = parse_lease(data)
    if isinstance(found, str):
        return LeaseFile(path, "malformed", reason=found)
    return LeaseFile(path, "ok", found)


def describe_age(seconds: float) -> str:
    """ "12 s", "3 min", "2 h": how long ago, said as a person would."""
    s = max(0.0, seconds)
    if s < 120:
        return f"{s:.0f} s"
    if s < 7200:
        return f"{s / 60:.0f} min"
    return f"{s / 3600:.1f} h"
