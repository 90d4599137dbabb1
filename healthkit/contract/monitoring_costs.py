"""monitoring_costs.json: the audit's per-check costs and the trainer's hook costs, in one file.

Both sides read-modify-write it, so every update holds an flock on a side lock file
(`.monitoring_costs.json.lock`; the data file itself is replaced by rename, which would
orphan a lock held on it). A corrupt file is moved aside, never silently overwritten.

Layout::

    {"audit_runs": [{"at": ISO, "total_s": s, "checks": {id: s}}, ...],   # last 200 runs
     "training": {"updated_at": ISO, "step": n, "train_time_s": s,
                  "hooks": {name: {"calls": n, "total_s": s, "max_s": s, "timeouts": n}},
                  "hook_share": hooks' total_s / train_time_s}}
"""

from __future__ import annotations

import fcntl
import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from healthkit.system.fsutil import atomic_write


def update_costs(path: Path, mutate: Callable[[dict[str, Any]], None]) -> None:
    """Apply ``mutate`` to the file's object under the lock and write it back atomically (raises OSError)."""
    lock_path = path.with_name(f".{path.name}.lock")
    lock_fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(lock_fd, fcntl.LOCK_EX)
        data: dict[str, Any] = {}
        try:
            loaded = json.loads(path.read_bytes())
            if not isinstance(loaded, dict):
                raise ValueError("not an object")
            data = loaded
        except FileNotFoundError:
            pass
        except (ValueError, OSError):
            try:
                os.replace(path, path.with_name(f"{path.name}.corrupt-{int(time.time())}"))
            except OSError:
                pass
        mutate(data)
        # A cost log: never half-written (rename), but not worth two fsyncs on every audit.
        atomic_write(path, json.dumps(data, indent=2, sort_keys=True) + "\n", durable=False)
    finally:
        os.close(lock_fd)
