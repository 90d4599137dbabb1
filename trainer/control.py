"""Control requests as files in `control/`: `pause` (its text is the reason), `resume`, `stop`.

The CLI writes them; the training child reads `pause` and `stop` at every step boundary
(two stat calls), and the daemon reads all three in its loop. `resume` removes `pause`
at once (so a child pauses no longer even with no daemon alive) and leaves `resume` for
the daemon to clear its paused state.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from healthkit.system.fsutil import atomic_write

from .layout import Layout, iso_now


@dataclass(frozen=True)
class Requests:
    pause: bool
    pause_reason: str | None
    paused_at: str | None
    resume: bool
    stop: bool


def request_pause(layout: Layout, reason: str | None = None) -> None:
    layout.control.mkdir(parents=True, exist_ok=True)
    (layout.control / "resume").unlink(missing_ok=True)
    atomic_write(
        layout.control / "pause", json.dumps({"reason": reason or "paused by user", "requested_at": iso_now()}) + "\n"
    )


def request_resume(layout: Layout) -> None:
    layout.control.mkdir(parents=True, exist_ok=True)
    (layout.control / "pause").unlink(missing_ok=True)
    atomic_write(layout.control / "resume", iso_now() + "\n")


def request_stop(layout: Layout, by: str | None = None, reason: str | None = None) -> None:
    """Ask for a stop; who asked and why travel in the file so the daemon can record a stop *on request*."""
    layout.control.mkdir(parents=True, exist_ok=True)
    info = {"requested_at": iso_now(), "by": by or "unknown", "reason": reason or "stopped by user"}
    atomic_write(layout.control / "stop", json.dumps(info) + "\n")


def stop_info(layout: Layout) -> dict[str, str]:
    """Who asked for the pending stop, when and why (a hand-made `touch control/stop` says nothing: 'unknown')."""
    try:
        text = (layout.control / "stop").read_text(encoding="utf-8").strip()
    except OSError:
        text = ""
    try:
        data = json.loads(text)
    except ValueError:
        data = None
    if not isinstance(data, dict):
        data = {"requested_at": text if text[:2] == "20" else None}
    return {
        "at": str(data.get("requested_at") or iso_now()),
        "by": str(data.get("by") or "unknown (control/stop file)"),
        "reason": str(data.get("reason") or "stop requested"),
    }


def clear(layout: Layout, name: str) -> None:
    (layout.control / name).unlink(missing_ok=True)


def _pause_info(path: Path) -> tuple[str | None, str | None]:
    try:
        text = path.read_text(encoding="utf-8").strip()
    except OSError:
        return None, None
    try:
        data = json.loads(text)
        if isinstance(data, dict):
            return data.get("reason"), data.get("requested_at")
    except ValueError:
        pass
    return (text or None), None  # a hand-written `echo reason > control/pause`


def read(layout: Layout) -> Requests:
    pause = layout.control / "pause"
    paused = pause.exists()
    reason, at = _pause_info(pause) if paused else (None, None)
    return Requests(paused, reason, at, (layout.control / "resume").exists(), (layout.control / "stop").exists())
