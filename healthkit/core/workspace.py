"""The training workspace: paths from settings, and lazily read views cached for one audit.

Checks run concurrently, so each view is computed under its own lock: every file and
the process table are read once per audit however many checks ask.
"""

from __future__ import annotations

import functools
import os
import threading
import time
from collections.abc import Callable
from dataclasses import field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar, cast

from healthkit.contract.settings import Settings, load_settings, resolve_path
from healthkit.formats.base import Checkpoint, Completeness, Recognised, RunFormat, RunRecord
from healthkit.system.fsutil import (
    CAP_DOC,
    CAP_JSON,
    DiskUsage,
    Reader,
    ReadProblem,
    disk_usage_children,
    read_json,
    read_text,
)
from healthkit.system.records import record


def _phase(text: str) -> Any:
    from healthkit.system.deadline import phase

    return phase(text)


if TYPE_CHECKING:
    from healthkit.contract.lease import LeaseFile
    from healthkit.contract.trust import Trust
    from healthkit.system.procs import PidFile, ProcInfo

T = TypeVar("T")
MISSING = object()


# Workspaces opened before the CLI loaded (healthkit.console), by absolute path.
EARLY: dict[str, Workspace] = {}


class WorkspaceError(Exception):
    """The workspace itself cannot be audited (missing, not a folder, unreadable, bad settings)."""


class _Failed:
    """A view whose computation raised: the error is cached too, so a hung step is not retried per check."""

    def __init__(self, exc: BaseException):
        self.exc = exc


def cached_view(func: Callable[[Any], T]) -> property:
    """A lazily computed, thread-safe, once-per-workspace property."""
    name = func.__name__

    def compute(self: Any) -> Any:
        cache = self._cache
        if name not in cache:
            with self._locks_guard:
                lock = self._locks.setdefault(name, threading.Lock())
            with lock:
                if name not in cache:
                    try:
                        cache[name] = func(self)
                    except Exception as exc:
                        cache[name] = _Failed(exc)
        return cache[name]

    @functools.wraps(func)
    def getter(self: Any) -> T:
        value = compute(self)
        if isinstance(value, _Failed):
            raise value.exc
        return value

    getter.compute = compute  # type: ignore[attr-defined]
    return property(getter)


@record
class JsonFile:
    """A JSON file as found: its data, or the problem that stopped us reading it."""

    path: Path
    data: Any = None
    problem: ReadProblem | None = None
    mtime: float | None = None
    duplicates: tuple[str, ...] = ()  # keys an object states twice (the last one wins); read only for config.json

    @property
    def exists(self) -> bool:
        return self.problem is None or self.problem.kind != "missing"

    @property
    def ok(self) -> bool:
        return self.problem is None

    @property
    def is_object(self) -> bool:
        return self.problem is None and isinstance(self.data, dict)


def _mtime(path: Path) -> float | None:
    try:
        return os.stat(path).st_mtime
    except OSError:
        return None


def _file_usage(path: Path) -> DiskUsage:
    """A checkpoint that is one file (a Lightning `.ckpt`), counted as `du` counts it: its allocated blocks."""
    try:
        st = os.stat(path, follow_symlinks=False)
    except OSError as exc:
        return DiskUsage(0, None, (f"{path}: {exc.strerror}",))
    return DiskUsage(st.st_blocks * 512, None)


def load_json_file(path: Path, reader: Reader | None = None, duplicates: bool = False) -> JsonFile:
    mtime = _mtime(path)
    dupes: list[str] | None = [] if duplicates else None
    try:
        return JsonFile(
            path, read_json(path, CAP_JSON, reader=reader, duplicates=dupes), None, mtime, tuple(dupes or ())
        )
    except ReadProblem as exc:
        return JsonFile(path, None, exc, mtime)


@record
class Doc:
    path: Path
    text: str | None
    problem: ReadProblem | None = None


@record
class QueueView:
    pending: list[Path] = field(default_factory=list)
    processing: list[Path] = field(default_factory=list)
    done: list[Path] = field(default_factory=list)
    failed: list[Path] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


@record
class DiskSpace:
    total: int
    free: int  # f_bavail: what an unprivileged writer gets
    used: int
    path: Path

    @property
    def free_percent(self) -> float:
        return 100.0 * self.free / self.total if self.total else 0.0

    @property
    def used_percent(self) -> float:
        """As `df` computes Use%: used / (used + available), root's reserve excluded."""
        denom = self.used + self.free
        return 100.0 * self.used / denom if denom else 0.0


class Workspace:
    """Paths plus cached views of one workspace, for one audit."""

    def __init__(self, base: Path, settings: Settings | None = None, settings_path: Path | None = None):
        self.base = base
        self._declared = settings or Settings()
        self.settings_path = settings_path
        self.now = time.time()
        self.started = time.perf_counter()
        self._prefetched = False
        self.check_timeout_s: float | None = None  # the runner's per-check timeout, for slow sub-steps (du)
        self._cache: dict[str, Any] = {}
        self._locks: dict[str, threading.Lock] = {}
        self._locks_guard = threading.Lock()

    @classmethod
    def open(cls, base: Path | str) -> Workspace:
        from healthkit.contract.settings import SettingsError

        started = time.perf_counter()  # the audit's duration counts opening and detection (healthkit.core.api)
        base = Path(base).expanduser()
        try:
            st = base.stat()
        except FileNotFoundError:
            raise WorkspaceError(f"workspace {base} does not exist") from None
        except OSError as exc:
            raise WorkspaceError(f"workspace {base} cannot be read: {exc.strerror}") from None
        if not os.path.isdir(base):
            raise WorkspaceError(f"workspace {base} is not a directory")
        if not os.access(base, os.R_OK | os.X_OK):
            raise WorkspaceError(f"workspace {base} is not readable (permission denied)")
        del st
        from healthkit.system.deadline import phase

        try:
            with phase(f"reading {base.name}/healthkit.toml"):
                settings, spath = load_settings(base)
        except SettingsError as exc:
            raise WorkspaceError(str(exc)) from None
        ws = cls(base.absolute(), settings, spath)
        ws.started = started
        return ws

    # settings --------------------------------------------------------------
    @cached_view
    def settings(self) -> Settings:
        """The declared settings, with detection's guesses for whatever healthkit.toml leaves unset (on first use)."""
        if self._declared.inferred is not None:
            return self._declared  # already detected (a fix's fresh look at the same workspace)
        from healthkit.core.detect import detect

        return detect(self.base, self._declared)

    @cached_view
    def trust(self) -> Trust:
        """Whether this workspace's plugins and settings commands may run (healthkit.contract.trust), from ownership and modes only."""
        from healthkit.contract.trust import assess

        return assess(self.base, self._declared, self.settings_path)

    @property
    def inferred(self) -> tuple:
        """The settings detection guessed (healthkit.core.detect.Inferred), in rule order."""
        return self.settings.inferred or ()

    @property
    def declared_checkpoint_root(self) -> Path | None:
        """The checkpoint folder when the user named it (healthkit.toml, or the config.json key naming it)."""
        paths = self.settings.paths
        if (
            paths.checkpoints_config_key
            and self.config.is_object
            and isinstance(self.config.data.get(paths.checkpoints_config_key), str)
        ):
            return self.checkpoint_dir
        if "paths.checkpoints" in self.settings.explicit:
            return self.checkpoint_dir
        return None

    # paths -----------------------------------------------------------------
    def path(self, rel: str) -> Path:
        return resolve_path(self.base, rel)

    def rel(self, p: Path) -> str:
        try:
            return str(p.relative_to(self.base))
        except ValueError:
            return str(p)

    @property
    def config_path(self) -> Path:
        return self.path(self.settings.paths.config)

    @property
    def status_path(self) -> Path:
        return self.path(self.settings.paths.status)

    @property
    def pid_path(self) -> Path:
        return self.path(self.settings.paths.pid_file)

    # views -----------------------------------------------------------------
    @cached_view
    def reader(self) -> Reader | None:
        """Whose read permission the workspace's files are read with: its owner's, while root audits another user's workspace."""
        from healthkit.contract.trust import reader_for

        return reader_for(self.base)

    @cached_view
    def config(self) -> JsonFile:
        return load_json_file(self.config_path, self.reader, duplicates=True)

    def config_value(self, key: str, default: Any = MISSING) -> Any:
        """A config value by its canonical (HF) name, through the settings' key mapping."""
        cfg = self.config
        actual = getattr(self.settings.config_keys, key, key)
        if cfg.is_object and actual in cfg.data:
            return cfg.data[actual]
        return default

    @cached_view
    def status(self) -> JsonFile:
        return load_json_file(self.status_path, self.reader)

    def status_value(self, key: str) -> Any:
        """A status value by canonical name; MISSING when the key is absent (which differs from null)."""
        st = self.status
        actual = getattr(self.settings.status_keys, key, key)
        if st.is_object and actual in st.data:
            return st.data[actual]
        return MISSING

    def status_key(self, key: str) -> str:
        return getattr(self.settings.status_keys, key, key)

    @cached_view
    def daemon_state(self) -> JsonFile:
        return load_json_file(self.path(self.settings.paths.daemon_state), self.reader)

    @cached_view
    def supervisor_state(self) -> JsonFile:
        return load_json_file(self.path(self.settings.paths.supervisor_state), self.reader)

    @cached_view
    def monitoring_costs(self) -> JsonFile:
        return load_json_file(self.path(self.settings.paths.monitoring_costs), self.reader)

    @cached_view
    def pid_file(self) -> PidFile:
        from healthkit.system.procs import read_pid_file  # psutil is imported when a check needs processes, not at open

        return read_pid_file(self.pid_path)

    @cached_view
    def lease(self) -> LeaseFile:
        """The daemon's lease beside the PID file (healthkit.contract.lease), read by content, bounded."""
        from healthkit.contract.lease import lease_path, read_lease

        return read_lease(lease_path(self.pid_path), self.reader)

    @cached_view
    def processes(self) -> list[ProcInfo]:
        """The whole process table (every process's details): prefer `processes_matching`."""
        from healthkit.system.procs import scan_processes

        return scan_processes()

    def owns(self, p: ProcInfo) -> bool:
        """Whether a process works on this workspace: its cwd or a path in its argv lies inside it.

        Several workspaces on one machine each have a daemon and a train.py; a pattern
        alone would mix them up (settings: processes.match_workspace).
        """
        if not self.settings.processes.match_workspace:
            return True
        base = os.path.realpath(self.base)

        def inside(path: str) -> bool:
            try:
                real = os.path.realpath(path)
            except (OSError, ValueError):
                return False
            return real == base or real.startswith(base + os.sep)

        if p.cwd and inside(p.cwd):
            return True
        for tok in p.cmdline[1:]:
            val = tok.split("=", 1)[1] if tok.startswith("-") and "=" in tok else tok
            if ("/" in val or val.startswith(".")) and inside(
                val if os.path.isabs(val) else os.path.join(p.cwd or "/", val)
            ):
                return True
        return False

    def processes_matching(self, patterns: list[str]) -> list[ProcInfo]:
        """Processes whose argv matches ``patterns``: the process table's argv is read once per audit (the
        daemon, training and watcher patterns share that pass), the details of each pattern set's matches once."""
        key = "procs:" + "\0".join(patterns)
        with self._locks_guard:
            lock = self._locks.setdefault(key, threading.Lock())
            table_lock = self._locks.setdefault("procs-argv", threading.Lock())
        with lock:
            if key not in self._cache:
                from healthkit.system.procs import match_scanned, scan_argv

                with table_lock:
                    if "procs-argv" not in self._cache:
                        self._cache["procs-argv"] = scan_argv()
                self._cache[key] = match_scanned(self._cache["procs-argv"], list(patterns))
            return self._cache[key]

    @cached_view
    def checkpoint_dir(self) -> Path:
        key = self.settings.paths.checkpoints_config_key
        if key and self.config.is_object and isinstance(self.config.data.get(key), str):
            return self.path(self.config.data[key])
        return self.path(self.settings.paths.checkpoints)

    @cached_view
    def run_format(self) -> tuple[RunFormat, Recognised | None, list]:
        """(the format the checkpoint folder is written in, the evidence, the folder's entries), read once.

        healthkit.formats: each stack's layout is one module; checks and fixes read runs only through it.
        """
        from healthkit.formats.base import scan_checked
        from healthkit.formats.registry import recognise

        with _phase(f"listing {self.rel(self.checkpoint_dir)}/"):
            entries, problem = scan_checked(self.checkpoint_dir)
        self._cache["checkpoint_dir_problem"] = problem
        return recognise(self.checkpoint_dir, entries, declared=self.settings.run.format)

    @property
    def checkpoint_dir_problem(self) -> str | None:
        """Why the checkpoint folder, or an entry in it, cannot be read (errno and path: EIO, a symlink loop); None: readable.

        A check that finds this is UNKNOWN, never OK: checkpoints behind an I/O error are not "no checkpoints".
        """
        self.run_format  # noqa: B018 - listing the folder is what finds the problem
        return self._cache.get("checkpoint_dir_problem")

    @property
    def format(self) -> RunFormat:
        return self.run_format[0]

    @cached_view
    def checkpoints(self) -> list[Checkpoint]:
        """The run's checkpoints as its format names them, sorted by step (a save in progress is not one)."""
        fmt, _, entries = self.run_format
        return fmt.checkpoints(self.checkpoint_dir, entries)

    @cached_view
    def in_progress_saves(self) -> list[Path]:
        fmt, _, entries = self.run_format
        return fmt.in_progress(self.checkpoint_dir, entries)

    @cached_view
    def _usage(self) -> tuple[dict[str, DiskUsage], DiskUsage]:
        """One `du` of the checkpoint folder: each folder inside it, and the whole."""
        timeout = self.check_timeout_s or self.settings.checks.timeout_seconds
        with _phase(f"measuring {self.rel(self.checkpoint_dir)}/ (du)"):
            return disk_usage_children(self.checkpoint_dir, timeout_s=timeout)

    @property
    def checkpoint_usage(self) -> dict[Path, DiskUsage]:
        """`du` of each checkpoint (a symlinked one counts as the link only), hard links counted once overall."""
        children, _ = self._usage
        return {
            c.path: _file_usage(c.path) if c.is_file else children.get(c.name, DiskUsage(0, None))
            for c in self.checkpoints
        }

    @property
    def checkpoint_dir_usage(self) -> DiskUsage:
        """The checkpoint folder's total, as `du -s` prints it."""
        return self._usage[1]

    def prefetch(self) -> None:
        """Start the slow reads in the background while checks are loaded: disk usage, and the checkpoint survey.

        The survey (every checkpoint's completeness, the newest sound trainer_state.json parsed
        whole) is the heaviest Python work of an audit of a long run; done here it overlaps
        the imports instead of holding the GIL in a check thread while the others wait.
        """
        if self._prefetched:
            return
        self._prefetched = True
        if os.path.isdir(self.checkpoint_dir):
            cls = type(self)
            for name, view in (("prefetch-du", cls._usage), ("prefetch-checkpoints", cls._checkpoint_survey)):
                threading.Thread(
                    target=cast(Any, view.fget).compute, args=(self,), name=name, daemon=True
                ).start()  # _view sets .compute

    @cached_view
    def _checkpoint_survey(self) -> tuple[dict[Path, Completeness], RunRecord | None]:
        """Every checkpoint judged by its format's rule in bounded time, and the run's newest record."""
        ckpts = self.checkpoints
        with _phase(f"reading the checkpoints in {self.rel(self.checkpoint_dir)}/"):
            return self.format.survey(self.checkpoint_dir, ckpts, reader=self.reader)

    def completeness_of(self, ckpt: Checkpoint) -> Completeness:
        """Whether a resume from ``ckpt`` would work, by its format's rule (HF's is healthkit.formats.hf_checkpoints, shared with the trainer)."""
        judged = self._checkpoint_survey[0]
        return judged.get(ckpt.path) or self.format.completeness(ckpt)

    @property
    def run(self) -> RunRecord | None:
        """What the run's newest sound record says (progress, loss history, best, declared retention); None: nothing read."""
        return self._checkpoint_survey[1]

    @property
    def latest_trainer_state(self) -> tuple[Checkpoint | None, JsonFile | None]:
        """The HF format's newest sound trainer_state.json, parsed whole (for that format's tests and tools; checks use ``run``)."""
        rec = self.run
        if rec is None or not isinstance(rec.raw, tuple) or len(rec.raw) != 2:
            return None, None
        ckpt, data = rec.raw
        from healthkit.formats.historycache import CachedHistory, history_of

        if isinstance(data, dict) and isinstance(data.get("log_history"), CachedHistory):
            data = {**data, "log_history": history_of(data)}  # the audit read its series from the cache
        return ckpt, JsonFile(rec.source, data, None, rec.mtime) if rec.source else None

    @cached_view
    def docs(self) -> list[Doc]:
        out = []
        for rel in self.settings.paths.docs:
            p = self.path(rel)
            try:
                out.append(Doc(p, read_text(p, max_bytes=CAP_DOC, reader=self.reader)))
            except ReadProblem as exc:
                if exc.kind != "missing":
                    out.append(Doc(p, None, exc))
        return out

    @cached_view
    def queue(self) -> QueueView:
        errors: list[str] = []

        def listing(rel: str) -> list[Path]:
            d = self.path(rel)
            try:
                return sorted(Path(e.path) for e in os.scandir(d) if e.name.endswith(".jsonl") and e.is_file())
            except FileNotFoundError:
                return []
            except OSError as exc:
                errors.append(f"{self.rel(d)}: {exc.strerror}")
                return []

        with _phase("listing the queue"):
            pending = [p for rel in self.settings.paths.queue_pending for p in listing(rel)]
            p = self.settings.paths
            return QueueView(
                pending, listing(p.queue_processing), listing(p.queue_done), listing(p.queue_failed), errors
            )

    @cached_view
    def disk(self) -> DiskSpace | None:
        with _phase("statvfs of the checkpoint folder"):
            return self._disk()

    def _disk(self) -> DiskSpace | None:
        try:
            target = self.checkpoint_dir if os.path.exists(self.checkpoint_dir) else self.base
            st = os.statvfs(target)
        except OSError:
            return None
        total = st.f_blocks * st.f_frsize
        free = st.f_bavail * st.f_frsize
        used = (st.f_blocks - st.f_bfree) * st.f_frsize
        return DiskSpace(total, free, used, target)


def take_early(path: Any) -> Any:
    """The workspace the console entry opened before the CLI loaded (healthkit/console.py), or ``path`` itself.

    The table lives here, not in launch: under `python -m healthkit.console` that module runs
    as __main__ and a later `import healthkit.console` is another copy.
    """
    return EARLY.pop(os.path.abspath(str(path)), None) or path


def open_workspace(base: Path | str) -> Workspace:
    return Workspace.open(base)


__all__ = ["Workspace", "WorkspaceError", "JsonFile", "Checkpoint", "MISSING", "load_settings", "open_workspace"]
