"""The values a run format gives the checks, and the interface a format implements.

A format is one training stack's on-disk layout (HF Trainer, Lightning, Accelerate, ...).
Checks and fixes never name a stack's file: they ask the workspace's run (`Workspace.run`),
which asks the format that recognised the checkpoint folder. Everything here is plain data,
so a third-party format (entry-point group `healthkit.formats`) needs nothing else.
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Callable
from dataclasses import field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from healthkit.system.records import identity_record, record

if TYPE_CHECKING:
    from healthkit.system.fsutil import Reader


SRC = "\0src\0"  # in a format's evidence command: the record's source file, placed by the check (relative to the workspace)
_AT = re.compile("\0@([^\0]*)\0")


def at(path: Path) -> str:
    """Any other path in a format's evidence command, placed like SRC (relative to the workspace, quoted)."""
    return f"\0@{path}\0"


@record
class Checkpoint:
    """One checkpoint as its format names it (a folder, or a single file such as a Lightning `.ckpt`); ordered by step."""

    path: Path
    step: int
    is_symlink: bool
    files: frozenset[str]
    list_error: str | None = None
    is_file: bool = False

    @property
    def name(self) -> str:
        return self.path.name


@record
class Completeness:
    """A checkpoint judged by its format's rule; ``missing`` lists what a resume would lack (empty: complete).

    ``unknown`` says why the format cannot judge it (a layout it does not know): such a
    checkpoint is neither complete nor incomplete, and no fix deletes it.
    """

    global_step: int | None
    missing: tuple[str, ...]
    state_problem: str | None = None  # what is wrong with the run's state file alone (also in ``missing``)
    unknown: str | None = None

    @property
    def complete(self) -> bool:
        return not self.missing and self.unknown is None

    @property
    def incomplete(self) -> bool:
        return bool(self.missing) and self.unknown is None

    @property
    def state_ok(self) -> bool:
        """The state file is sound, whatever the weights: its history is the run's newest record."""
        return self.state_problem is None and self.global_step is not None

    def broken_state(self, why: str) -> Completeness:
        """This checkpoint after a whole parse of its state file failed."""
        return Completeness(self.global_step, (why, *self.missing), why)


@record
class Said:
    """One thing a run's files say, with the command a person can re-run to see it (Evidence's two halves)."""

    command: str
    observed: str


@record
class DeclaredRetention:
    """The retention the run itself declared. ``limit`` None with ``keeps_all``: it declared it keeps every checkpoint."""

    limit: int | None
    declared_by: str
    said: Said | None = None
    keeps_all: bool = False
    by_metric: bool = False  # top-k by a monitored metric (Lightning): the kept ones are the best k, not the newest
    source: Path | None = None  # the file ``said`` reads (its SRC placeholder)
    kept: tuple[
        str, ...
    ] = ()  # by_metric: the checkpoints the run itself keeps (its best k); a safe prune keeps them all


@identity_record
class RunRecord:
    """What the run's newest sound record says: progress, loss history, best checkpoint(s), declared retention."""

    label: str  # where it was read, for people: "trainer_state.json of checkpoint-40", "metrics.csv"
    source: Path | None = None
    mtime: float | None = None
    global_step: int | None = None
    max_steps: float | None = None
    save_steps: float | None = None
    eval_steps: float | None = None
    evals_word: str = "a validation loss"  # how the record names its validation losses, for people
    records_eval_interval: bool = (
        False  # the format writes down when evaluation is due (HF): absence of evals is judged by it
    )
    train: list[list[float]] = field(default_factory=list)
    evals: list[list[float]] = field(default_factory=list)
    best: tuple[str, ...] = ()  # checkpoint names a prune must never delete (best, best-k)
    retention: DeclaredRetention | None = None
    retention_reader: Callable[[], DeclaredRetention | None] | None = (
        None  # read on first ask (a file the audit may not need)
    )
    missing_extra: str | None = None  # an optional extra that would read more history (e.g. healthkit[tensorboard])
    notes: list[str] = field(default_factory=list)
    evals_said: Callable[[list[list[float]]], Said] | None = None
    no_evals_said: Callable[[float | None], Said] | None = None
    raw: Any = None  # the format's own parsed record (for that format's code only)
    # The training signal (checks/trainsignal.py): [[step, value], ...] by step, non-finite values kept as logged.
    grad_norm: list[list[float]] = field(default_factory=list)
    learning_rate: list[list[float]] = field(default_factory=list)
    times: list[list[float]] = field(default_factory=list)  # [[step, epoch seconds]]: when the run was at that step
    times_from: str = (
        ""  # where ``times`` come from, for people: "TensorBoard wall times", "checkpoint save times (...)"
    )
    # The lines of the history between two steps (loss, grad_norm, learning_rate), as a person re-reads them.
    signal_said: Callable[[float, float], Said] | None = None
    times_said: Callable[[float, float], Said] | None = None
    _retention_lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def declared_retention(self) -> DeclaredRetention | None:
        """The retention the run declared, read the first time a check asks.

        Checks run in threads and several ask (checkpoints, disk, the fix's planner): one reads, the others
        wait for its answer, never seeing "none declared" while the read is under way.
        """
        with self._retention_lock:
            if self.retention is None and self.retention_reader is not None:
                reader, self.retention_reader = self.retention_reader, None
                self.retention = reader()
            return self.retention

    def _placed(self, said: Said, shown: Callable[[Path], str] | None) -> Said:
        """A command with its SRC placeholder replaced by the source path as a person types it (relative, quoted)."""
        where = shown(self.source) if shown and self.source else str(self.source or "")

        def place(text: str) -> str:
            return _AT.sub(lambda m: shown(Path(m.group(1))) if shown else m.group(1), text)

        return Said(place(said.command.replace(SRC, where)), place(said.observed))

    def said_evals(self, window: list[list[float]], shown: Callable[[Path], str] | None = None) -> Said:
        if self.evals_said is not None:
            return self._placed(self.evals_said(window), shown)
        return Said(f"# {self.label}", "\n".join(f"step {s:g}: {v}" for s, v in window))

    def said_signal(self, lo: float, hi: float, shown: Callable[[Path], str] | None = None) -> Said:
        """The logs from step ``lo`` to ``hi`` (loss, grad_norm, learning_rate where recorded), with the command."""
        if self.signal_said is not None:
            return self._placed(self.signal_said(lo, hi), shown)
        rows: dict[float, dict[str, float]] = {}
        for name, series in (
            ("loss", self.train),
            ("grad_norm", self.grad_norm),
            ("learning_rate", self.learning_rate),
        ):
            for s, v in series:
                if lo <= s <= hi:
                    rows.setdefault(s, {})[name] = v
        return Said(
            f"# {self.label}",
            "\n".join(f"step {s:g}: " + ", ".join(f"{k} {v:g}" for k, v in r.items()) for s, r in sorted(rows.items())),
        )

    def said_times(self, lo: float, hi: float, shown: Callable[[Path], str] | None = None) -> Said:
        """When the run reached each step from ``lo`` to ``hi``, with the command that shows it."""
        if self.times_said is not None:
            return self._placed(self.times_said(lo, hi), shown)
        return Said(
            f"# {self.times_from or self.label}",
            "\n".join(f"step {s:g}: {t:.0f}" for s, t in self.times if lo <= s <= hi),
        )

    def said_no_evals(self, last_eval: float | None, shown: Callable[[Path], str] | None = None) -> Said:
        if self.no_evals_said is not None:
            return self._placed(self.no_evals_said(last_eval), shown)
        return Said(f"# {self.label}", "none" if last_eval is None else f"{last_eval:g}")


@record
class Recognised:
    """A format's claim on a folder, with the evidence for people ("12 `epoch=*-step=*.ckpt` files")."""

    evidence: str


class RunFormat:
    """One stack's on-disk format. Subclasses override what their stack records; defaults say "nothing recorded".

    Rules: recognising and listing read names (and at most bounded heads and tails), never a
    checkpoint's contents; ``completeness`` is that stack's own rule, in bounded time.
    """

    name = "unknown"
    title = "unknown layout"
    priority = 100  # lower is asked first (a more specific layout before a general one)
    checkpoint_word = "checkpoint"  # what `ls` shows for one: "checkpoint-N/", "*.ckpt"
    counted_as = "checkpoint(s)"  # detection's evidence: "`folder/` holds N <counted_as>"
    glob = "*"  # a shell glob matching the checkpoints in their folder (for evidence commands)
    limit_word = "a retention limit"  # what the stack calls its retention setting

    def recognise(self, root: Path, entries: list[os.DirEntry]) -> Recognised | None:
        return None

    def holds_checkpoints(self, entries: list[os.DirEntry]) -> int:
        """How many of these folder entries are this format's checkpoints (detection's folder scan)."""
        return 0

    def checkpoints(self, root: Path, entries: list[os.DirEntry]) -> list[Checkpoint]:
        return []

    def in_progress(self, root: Path, entries: list[os.DirEntry]) -> list[Path]:
        """Saves being written (HF's `tmp-checkpoint-*`): neither checkpoints nor faults."""
        return []

    def completeness(self, ckpt: Checkpoint) -> Completeness:
        return Completeness(None, (), unknown=f"{self.title}: its completeness rule is not known")

    def survey(
        self, root: Path, ckpts: list[Checkpoint], reader: Reader | None = None
    ) -> tuple[dict[Path, Completeness], RunRecord | None]:
        """Every checkpoint judged, and the run's newest record (None when none can be read).

        ``reader``: whose read permission the record's files need (healthkit.contract.trust.reader_for): while root
        audits another user's workspace, nothing that user could not read may reach a report.
        """
        return {c.path: self.completeness(c) for c in ckpts}, None

    def is_checkpoint_name(self, name: str) -> bool:
        """Whether a name (in a status file or a process's argv) names one of this format's checkpoints."""
        return False


class UnknownFormat(RunFormat):
    """A folder no format recognises: nothing in it is judged, counted or deleted."""


UNKNOWN = UnknownFormat()


def use_save_times(rec: RunRecord, ckpts: list[Checkpoint], folder: Path, glob: str, inside: str = "") -> None:
    """Where a log records no times: when each checkpoint was saved (the mtime of it, or of ``inside`` it), by step."""
    times = []
    for c in ckpts:
        try:
            times.append([float(c.step), os.stat(c.path / inside if inside else c.path).st_mtime])
        except OSError:
            continue
    rec.times = sorted(t for t in times if t[0] >= 0)
    rec.times_from = (
        f"checkpoint save times (the mtime of each {glob}{'/' + inside if inside else ''}; the log records no times)"
    )
    pattern = f"{at(folder)}/{glob}{'/' + inside if inside else ''}"

    def said(lo: float, hi: float) -> Said:
        return Said(
            f"stat -c '%Y %n' {pattern} | sort -n",
            "\n".join(
                f"{t:.0f} {at(c.path)}{'/' + inside if inside else ''}"
                for c in ckpts
                for s, t in rec.times
                if s == c.step and lo <= s <= hi
            ),
        )

    rec.times_said = said


def scan(root: Path) -> list[os.DirEntry]:
    """The checkpoint folder's entries, read once for recognising and listing ([] when it cannot be read)."""
    try:
        with os.scandir(root) as it:
            return list(it)
    except OSError:
        return []


def scan_checked(root: Path, max_errors: int = 5) -> tuple[list[os.DirEntry], str | None]:
    """The folder's entries and, when it or any entry cannot be read (EIO, a symlink loop), what failed.

    ``scan`` says [] for a folder it cannot read, which must never read as "no checkpoints, all fine":
    the audit reports this problem (errno and path) as UNKNOWN. A folder that does not exist is no problem here.
    """
    from healthkit.system.fsutil import os_error_words

    try:
        os.stat(root)
    except FileNotFoundError:
        return [], None
    except OSError as exc:
        return [], os_error_words(exc, root)
    try:
        with os.scandir(root) as it:
            entries = list(it)
    except FileNotFoundError:
        return [], None
    except OSError as exc:
        return [], os_error_words(exc, root)
    errors = []
    for e in entries:
        try:
            e.stat()  # follows a symlink as the formats will; cached on the entry for them
        except FileNotFoundError:
            continue  # removed since the listing (a rotation): not a fault
        except OSError as exc:
            errors.append(os_error_words(exc, e.path))
            if len(errors) >= max_errors:
                break
    if errors:
        return entries, "; ".join(errors) + (f" (and {len(entries)} entries listed)" if len(entries) > 1 else "")
    return entries, None


def listed(path: Path) -> tuple[frozenset[str], str | None]:
    """A checkpoint folder's file names, or why they cannot be listed."""
    try:
        return frozenset(os.listdir(path)), None
    except OSError as exc:
        return frozenset(), exc.strerror or str(exc)


def field_of(obj: Any, name: str, default: Any = None) -> Any:
    """A field of a dict, or of a stand-in the class-free unpickler made (healthkit.formats.safepickle.Stub)."""
    if isinstance(obj, dict):
        return obj.get(name, default)
    fields = getattr(obj, "fields", None)
    return fields().get(name, default) if callable(fields) else default
