"""status/daemon_state.json and other small JSON files: read leniently, written atomically."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from healthkit.contract import DAEMON_STATES
from healthkit.fsutil import atomic_write


DEFAULT_STATE: dict[str, Any] = {
    "state": "stopped",
    "pid": None,
    "started_at": None,
    "paused_at": None,
    "pause_reason": None,
    "restarts": 0,
    "current_file": None,
    "child_pid": None,
    "child_started_at": None,
}


def read_json(path: Path) -> dict[str, Any]:
    """The object in ``path``, or {} when it is missing, unreadable or not an object."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def write_json(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, json.dumps(data, indent=2, sort_keys=True) + "\n")


def read_state(path: Path) -> dict[str, Any]:
    return {**DEFAULT_STATE, **read_json(path)}


def update_state(path: Path, **changes: Any) -> dict[str, Any]:
    """Merge ``changes`` into the state file (the daemon and its supervisor are its only writers)."""
    state = read_state(path)
    if "state" in changes and changes["state"] not in DAEMON_STATES:
        raise ValueError(f"unknown daemon state {changes['state']!r}")
    state.update(changes)
    write_json(path, state)
    return state


STATUS_TEMPLATE: dict[str, Any] = {
    "state": "idle", "step": None, "total_steps": None, "loss": None, "val_loss": None, "val_train_gap": None,
    "current_file": None, "started_at": None, "updated_at": None, "eta_seconds": None, "gpu": None,
}


def update_status(path: Path, **changes: Any) -> None:
    """Rewrite status/training_status.json with every contract key present (the daemon's writes, when no child runs)."""
    from .layout import iso_now

    status = {**STATUS_TEMPLATE, **read_json(path), **changes}
    status["updated_at"] = iso_now()
    write_json(path, status)
