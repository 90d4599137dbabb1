"""What the daemon records in `logs/events.jsonl` for goodput (healthkit.core.goodput): one writer, the daemon.

The daemon calls these at its own transitions (start, a file started or resumed, its end, pause, disk wait,
idle, exit); `watch` reads the child's status file each loop to record when training began (model loaded,
resume done), each checkpoint with the seconds its save took, and the furthest step reached, which a later
resume names as the steps it redoes.
"""

from __future__ import annotations

import socket
import time
from pathlib import Path
from typing import Any

from healthkit.contract import events as ev
from healthkit.contract.events import EventLog

from .layout import Layout
from .state import read_json


def _epoch(value: Any) -> float | None:
    from datetime import datetime

    if not isinstance(value, str) or not value:
        return None
    try:
        dt = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return (dt if dt.tzinfo else dt.astimezone()).timestamp()


def checkpoint_step(path: Path | None) -> int | None:
    if path is None:
        return None
    tail = path.name.rsplit("-", 1)[-1]
    return int(tail) if tail.isdigit() else None


class RunEvents:
    def __init__(self, layout: Layout):
        self.layout = layout
        self.log = EventLog(layout.logs)
        self.reached: dict[str, int] = {}  # file -> the furthest step its training reported
        self._file: str | None = None
        self._child_started = 0.0
        self._began = False
        self._last_ckpt: str | None = None

    def append(self, event: str, **fields: Any) -> None:
        try:
            self.log.append(event, **fields)
        except Exception:
            pass

    def daemon_start(self, pid: int, restarts: int, work_queued: bool) -> None:
        st = read_json(self.layout.status)
        step = st.get("step") if isinstance(st.get("step"), int) else None
        name = st.get("current_file")
        if isinstance(name, str) and step is not None:
            self.reached[name] = max(self.reached.get(name, 0), step)
        self.append(
            ev.DAEMON_START,
            pid=pid,
            host=socket.gethostname(),
            restarts=restarts,
            work_queued=work_queued,
            previous_progress_at=_epoch(st.get("updated_at")),
            previous_step=step,
            previous_file=name,
        )

    def file_start(self, name: str, resume: Path | None, attempt: int, child_started: float) -> None:
        frm = checkpoint_step(resume) or 0
        self.append(ev.FILE_START, file=name, step=frm, attempt=attempt)
        if resume is not None:
            self.append(ev.RESUME, file=name, step=frm, reached=self.reached.get(name, frm), checkpoint=resume.name)
        self._watching(name, child_started)

    def adopt(self, name: str, pid: int, child_started: float) -> None:
        st = read_json(self.layout.status)
        self.append(ev.ADOPT, file=name, pid=pid, step=st.get("step"))
        self._watching(name, child_started)
        self._began = True

    def _watching(self, name: str, child_started: float) -> None:
        self._file, self._child_started, self._began, self._last_ckpt = name, child_started, False, None

    def watch(self) -> None:
        """The child's status file: training began, a checkpoint was saved (with its seconds), the step reached."""
        name = self._file
        if name is None:
            return
        st = read_json(self.layout.status)
        if st.get("current_file") != name:
            return
        step = st.get("step")
        if isinstance(step, int):
            self.reached[name] = max(self.reached.get(name, 0), step)
        started = _epoch(st.get("started_at"))
        if (
            not self._began
            and st.get("state") == "training"
            and started is not None
            and started >= self._child_started - 1
        ):
            self._began = True
            self.append(ev.TRAINING, file=name, step=step, at=_epoch(st.get("updated_at")) or time.time())
            self._last_ckpt = st.get("last_checkpoint")
        ckpt = st.get("last_checkpoint")
        if self._began and isinstance(ckpt, str) and ckpt != self._last_ckpt:
            self._last_ckpt = ckpt
            self.append(ev.CHECKPOINT, file=name, step=checkpoint_step(Path(ckpt)), seconds=st.get("last_save_s"))

    def child_ended(self, name: str, outcome: str, step: Any, **fields: Any) -> None:
        """outcome: done, failed, stop, disk, crash."""
        self.watch()
        step = step if isinstance(step, int) else self.reached.get(name)
        event = {
            "done": ev.FILE_DONE,
            "failed": ev.FILE_FAILED,
            "stop": ev.STOP,
            "disk": ev.DISK_WAIT,
            "crash": ev.CRASH,
        }[outcome]
        self.append(event, file=name, step=step, **fields)
        if outcome == "done":
            self.reached.pop(name, None)
        self._file = None
