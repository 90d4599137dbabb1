"""Where everything lives in a workspace our trainer runs (the contract in docs/architecture.md)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from healthkit.contract.settings import PathSettings

# The audit's defaults are the trainer's layout: one home for where each file lives, so the
# two halves cannot drift apart (healthkit.toml only ever overrides them for other setups).
_PATHS = PathSettings()

EXIT_OK = 0
EXIT_DATA = 65  # EX_DATAERR: the queue file itself is bad; retrying cannot help
EXIT_STOPPED = 75  # a stop request was honoured (checkpoint saved); the file stays in processing/
EXIT_ALREADY_RUNNING = 73  # another daemon holds the lock, or a training it would not adopt works in the workspace
EXIT_DISK_FULL = 74  # EX_IOERR: a write failed for lack of space; the daemon waits for room, then resumes
EXIT_FENCED = (
    76  # EX_PROTOCOL: the lease could not be renewed or another holder took it; training stopped, nothing committed
)
EXIT_CONFIG = 78  # EX_CONFIG: config.json invalid, docs drift (policy fail), or evaluation cannot run


def iso_now(ts: float | None = None) -> str:
    dt = datetime.now(UTC) if ts is None else datetime.fromtimestamp(ts, UTC)
    return dt.isoformat(timespec="seconds")


@dataclass(frozen=True)
class Layout:
    """Absolute paths of one workspace."""

    base: Path

    @classmethod
    def of(cls, base: Path | str) -> Layout:
        return cls(Path(base).expanduser().absolute())

    @property
    def config(self) -> Path:
        return self.base / _PATHS.config

    @property
    def pid_file(self) -> Path:
        return self.base / _PATHS.pid_file

    @property
    def lock_file(self) -> Path:
        return self.base / ".daemon.lock"

    @property
    def supervisor_lock(self) -> Path:
        return self.base / ".supervisor.lock"

    @property
    def status_dir(self) -> Path:
        return self.status.parent

    @property
    def status(self) -> Path:
        return self.base / _PATHS.status

    @property
    def daemon_state(self) -> Path:
        return self.base / _PATHS.daemon_state

    @property
    def supervisor_state(self) -> Path:
        return self.base / _PATHS.supervisor_state

    @property
    def last_result(self) -> Path:
        return self.base / "status" / "last_result.json"

    @property
    def queue(self) -> Path:
        return self.processing.parent

    @property
    def inbox(self) -> Path:
        return self.base / _PATHS.queue_pending[0]

    @property
    def processing(self) -> Path:
        return self.base / _PATHS.queue_processing

    @property
    def done(self) -> Path:
        return self.base / _PATHS.queue_done

    @property
    def failed(self) -> Path:
        return self.base / _PATHS.queue_failed

    @property
    def control(self) -> Path:
        return self.base / _PATHS.control

    @property
    def logs(self) -> Path:
        return self.base / _PATHS.logs

    @property
    def checkpoints(self) -> Path:
        return self.base / _PATHS.checkpoints

    @property
    def models(self) -> Path:
        return self.base / "models"

    @property
    def monitoring_costs(self) -> Path:
        return self.base / _PATHS.monitoring_costs

    def resolve(self, p: str) -> Path:
        """A config path: absolute as given, relative to the workspace otherwise."""
        q = Path(p).expanduser()
        return q if q.is_absolute() else self.base / q

    def ensure(self) -> None:
        for d in (
            self.status_dir,
            self.inbox,
            self.processing,
            self.done,
            self.failed,
            self.control,
            self.logs,
            self.checkpoints,
            self.models,
        ):
            d.mkdir(parents=True, exist_ok=True)


class TolerantFileHandler(logging.FileHandler):
    """A log file a full disk cannot break: a line that fails is dropped (no traceback on stderr, which is on the same
    disk), the file is reopened on the next line, and the count of lost lines is logged once writing works again."""

    def __init__(self, filename: Path) -> None:
        super().__init__(filename, encoding="utf-8", delay=True)
        self.lost = 0

    def handleError(self, record: logging.LogRecord) -> None:
        self.lost += 1
        stream, self.stream = self.stream, None
        if stream is not None:
            try:
                stream.close()  # drops what the failed flush left buffered
            except OSError:
                pass

    def emit(self, record: logging.LogRecord) -> None:
        lost = self.lost
        super().emit(record)
        if lost and self.lost == lost:
            self.lost = 0
            note = logging.makeLogRecord(
                {
                    "name": record.name,
                    "levelno": logging.WARNING,
                    "levelname": "WARNING",
                    "msg": "%d log line(s) lost while the log could not be written (disk full?)",
                    "args": (lost,),
                }
            )
            super().emit(note)


def log_to(layout: Layout, filename: str, role: str) -> None:
    """Log this process to logs/<filename> and stderr, each line naming its role and PID."""
    import sys

    layout.logs.mkdir(parents=True, exist_ok=True)
    fmt = logging.Formatter(f"%(asctime)s [{role} %(process)d] %(levelname)s %(message)s")
    root = logging.getLogger()
    root.setLevel(logging.INFO)
    stderr = logging.StreamHandler(sys.stderr)
    stderr.handleError = lambda record: None  # type: ignore[method-assign]  # stderr is a file on the same disk
    for handler in (TolerantFileHandler(layout.logs / filename), stderr):
        handler.setFormatter(fmt)
        root.addHandler(handler)
