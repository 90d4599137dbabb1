"""The workspace's event log (`logs/events.jsonl`): what the daemon did and when, for goodput and the Slurm findings.

One writer: the daemon that holds the workspace (its PID file lock, or its lease). Each event is one JSON line
``{"ts": <unix seconds>, "event": <name>, ...fields}``, written with a single ``write`` on an O_APPEND descriptor.
The log is rotated by size to ``events.jsonl.1`` (one generation kept), so a months-long run cannot fill a disk
with it. An event that cannot be written (a full disk) is kept in memory and written first when the next append
succeeds, so the record of a disk wait survives the disk wait.

Readers go through the bounded reader: an event log that is a FIFO, too large or garbled is a problem about that
file, never a hang; a torn last line (the writer died mid-write) is skipped.
"""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path
from typing import Any

from healthkit.system.fsutil import Reader, ReadProblem, read_bytes

EVENTS_FILE = "events.jsonl"
ROTATED_SUFFIX = ".1"
ROTATE_BYTES = 8 * 1024 * 1024
# Reading both generations must stay cheap: the cap is a little over two full files.
READ_CAP_BYTES = 2 * ROTATE_BYTES + 1024 * 1024

# Event names, written by the trainer and read by the audit (one vocabulary, held here).
FILE_START = "file-start"  # file, step (0 or the step resumed from)
RESUME = "resume"  # file, step (resumed from), reached (the furthest step trained before)
TRAINING = "training"  # file, step, at (when the child began training: its model loaded, its resume done)
ADOPT = "adopt"  # file, pid, step: a new daemon took over a training that ran on without one
CHECKPOINT = "checkpoint"  # file, step, seconds (time spent saving)
FILE_DONE = "file-done"  # file, step
FILE_FAILED = "file-failed"  # file, step, reason
CRASH = "crash"  # file, step, exit_code | signal
STOP = "stop"  # a stop on request
PAUSE = "pause"
UNPAUSE = "unpause"
DAEMON_START = "daemon-start"  # pid, host, previous_progress_at, previous_step (the status file's last word)
DAEMON_EXIT = "daemon-exit"  # reason
DISK_WAIT = "disk-wait"  # free_bytes, needed_bytes
DISK_RESUMED = "disk-resumed"
IDLE = "idle"  # the queue is empty
SLURM_JOB = "slurm-job"  # job_id, array/requeue count
SLURM_REQUEUE = "slurm-requeue"  # job_id, reason
SLURM_END = "slurm-end"  # job_id, state


def events_path(logs_dir: Path) -> Path:
    return logs_dir / EVENTS_FILE


class EventLog:
    """The single writer of a workspace's event log (held by the daemon)."""

    def __init__(self, logs_dir: Path, rotate_bytes: int = ROTATE_BYTES, clock: Any = time.time):
        self.path = events_path(logs_dir)
        self.rotate_bytes = rotate_bytes
        self._clock = clock
        self._pending: list[bytes] = []

    def append(self, event: str, **fields: Any) -> bool:
        """Record ``event`` now; False when it could not be written yet (it is kept and written with the next one)."""
        record = {"ts": round(float(self._clock()), 3), "event": event, **fields}
        line = json.dumps(record, sort_keys=True, allow_nan=False, default=_jsonable, ensure_ascii=True) + "\n"
        self._pending.append(line.encode("ascii"))
        return self.flush()

    def flush(self) -> bool:
        """Write what is pending; an OSError (ENOSPC, EIO) keeps it for the next try, never raises."""
        if not self._pending:
            return True
        data = b"".join(self._pending)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._rotate_if_needed(len(data))
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
            try:
                written = os.write(fd, data)
            finally:
                os.close(fd)
        except OSError:
            return False
        if written < len(data):
            # A short write on a nearly full disk: what was written stays (whole lines or a torn tail the reader
            # skips); the rest waits.
            rest = data[written:]
            cut = rest.find(b"\n")
            self._pending = [rest[cut + 1 :]] if cut >= 0 and rest[cut + 1 :] else []
            return False
        self._pending = []
        return True

    def _rotate_if_needed(self, incoming: int) -> None:
        try:
            size = os.lstat(self.path).st_size
        except FileNotFoundError:
            return
        if size + incoming > self.rotate_bytes:
            os.replace(self.path, self.path.with_name(self.path.name + ROTATED_SUFFIX))


def _jsonable(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return str(value)


def read_events(logs_dir: Path, reader: Reader | None = None) -> tuple[list[dict[str, Any]], list[ReadProblem]]:
    """All events, oldest first (the rotated generation, then the current one), and what could not be read.

    A missing log is no problem (no events); a line that is not a JSON object with a numeric ``ts`` and a string
    ``event`` is skipped (a torn write)."""
    events: list[dict[str, Any]] = []
    problems: list[ReadProblem] = []
    current = events_path(logs_dir)
    for path in (current.with_name(current.name + ROTATED_SUFFIX), current):
        try:
            data = read_bytes(path, READ_CAP_BYTES, follow_symlinks=False, reader=reader)
        except ReadProblem as exc:
            if exc.kind != "missing":
                problems.append(exc)
            continue
        for raw in data.splitlines():
            try:
                record = json.loads(raw)
            except (ValueError, RecursionError):
                continue
            if (
                isinstance(record, dict)
                and isinstance(record.get("event"), str)
                and isinstance(record.get("ts"), (int, float))
                and math.isfinite(record["ts"])
            ):
                events.append(record)
    events.sort(key=lambda r: r["ts"])
    return events, problems
