"""PyTorch Lightning: `*.ckpt` files written by `ModelCheckpoint`, one `torch.save` zip each.

- Order by step: `step=N` in the file name (Lightning's default `epoch={e}-step={s}.ckpt`), else
  the `global_step` in the file. `last.ckpt` (`save_last`: a copy or a link of the newest) is
  an alias, not one more checkpoint: never counted, never deleted.
- Complete: a whole zip, judged from its end (healthkit.formats.torchzip), never read whole.
- The record: the newest whole checkpoint's `ModelCheckpoint` state (`best_model_path`,
  `best_k_models`, `monitor`), read through safepickle (no class is imported, no tensor
  built); the loss history from the logger's `metrics.csv` or TensorBoard event files in the
  version folder above `checkpoints/`.
- Retention: Lightning does not store `save_top_k`. With a `monitor`, the top k it keeps are
  `best_k_models` (k of them); without one, more than one checkpoint means `save_top_k=-1`
  (every checkpoint kept); a single one is the default `save_top_k=1`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from healthkit.formats.base import (
    SRC,
    Checkpoint,
    Completeness,
    DeclaredRetention,
    Recognised,
    RunFormat,
    RunRecord,
    Said,
    field_of,
    listed,
    use_save_times,
)
from healthkit.system.lazyre import LazyPattern

STEP_IN_NAME = LazyPattern(r"(?:^|[-_])step=(\d+)")
ALIAS = LazyPattern(r"^last(-v\d+)?\.ckpt$")
SUFFIX = ".ckpt"
METRICS = "metrics.csv"

if TYPE_CHECKING:
    from healthkit.system.fsutil import Reader


def _is_ckpt(e: os.DirEntry) -> bool:
    """A `.ckpt` file, or a `.ckpt` folder (Lightning's DeepSpeed strategy saves one: a layout not judged here)."""
    try:
        return e.name.endswith(SUFFIX) and (e.is_file() or e.is_dir())
    except OSError:
        return False


def _state(obj: Any) -> dict:
    return obj if isinstance(obj, dict) else obj.fields() if hasattr(obj, "fields") else {}


def model_checkpoint_state(data: Any) -> tuple[str | None, dict]:
    """(the callbacks key, its state) of the ModelCheckpoint callback saved in a checkpoint's data."""
    callbacks = field_of(data, "callbacks") or {}
    if not isinstance(callbacks, dict):
        return None, {}
    for key, value in callbacks.items():
        if isinstance(key, str) and key.startswith("ModelCheckpoint"):
            return key, _state(value)
    return None, {}


class Lightning(RunFormat):
    name = "lightning"
    title = "PyTorch Lightning"
    priority = 20
    checkpoint_word = "*.ckpt"
    counted_as = "Lightning *.ckpt"  # detection's evidence: "`folder/` holds N <counted_as>"
    glob = "*.ckpt"
    limit_word = "`save_top_k`"

    def recognise(self, root: Path, entries: list[os.DirEntry]) -> Recognised | None:
        ckpts = [e.name for e in entries if _is_ckpt(e)]
        aliases = [n for n in ckpts if ALIAS.fullmatch(n)]
        if not ckpts:
            return None
        also = (
            f" and {', '.join(sorted(aliases))} (a copy or link of one, not counted)"
            if len(aliases) < len(ckpts) and aliases
            else ""
        )
        return Recognised(
            f"`{root.name}/` holds {len(ckpts) - len(aliases) or len(ckpts)} Lightning `*.ckpt` file(s){also}"
        )

    def holds_checkpoints(self, entries: list[os.DirEntry]) -> int:
        return sum(1 for e in entries if _is_ckpt(e) and not ALIAS.fullmatch(e.name))

    def checkpoints(self, root: Path, entries: list[os.DirEntry]) -> list[Checkpoint]:
        files = [e for e in entries if _is_ckpt(e)]
        real = [e for e in files if not ALIAS.fullmatch(e.name)] or files  # a lone last.ckpt is the checkpoint
        found = []
        for e in real:
            m = STEP_IN_NAME.search(e.name)
            step = int(m.group(1)) if m else (None if e.is_dir() else self._step_from_file(Path(e.path)))
            if e.is_dir():
                names, err = listed(Path(e.path))
                found.append(Checkpoint(Path(e.path), step if step is not None else -1, e.is_symlink(), names, err))
                continue
            found.append(
                Checkpoint(Path(e.path), step if step is not None else -1, e.is_symlink(), frozenset(), None, True)
            )
        return sorted(found, key=lambda c: (c.step, c.name))

    @staticmethod
    def _step_from_file(path: Path) -> int | None:
        from healthkit.formats.torchzip import read_pickle

        data, _ = read_pickle(path)
        step = field_of(data, "global_step")
        return step if isinstance(step, int) and not isinstance(step, bool) else None

    def completeness(self, ckpt: Checkpoint) -> Completeness:
        if not ckpt.is_file:
            return Completeness(
                None,
                (),
                unknown="a `.ckpt` folder (a sharded save, e.g. the DeepSpeed strategy's), "
                "not a torch.save file: its completeness is not judged",
            )
        from healthkit.formats.torchzip import zip_problem

        problem = zip_problem(ckpt.path)
        if ckpt.step < 0 and problem is None:
            return Completeness(
                None,
                (),
                unknown="its step is neither in its name (`step=N`) nor readable from the file: "
                "it cannot be ordered, so nothing deletes it",
            )
        return Completeness(ckpt.step if ckpt.step >= 0 else None, (problem,) if problem else ())

    def is_checkpoint_name(self, name: str) -> bool:
        return name.endswith(SUFFIX)

    def survey(
        self, root: Path, ckpts: list[Checkpoint], reader: Reader | None = None
    ) -> tuple[dict[Path, Completeness], RunRecord | None]:
        from healthkit.formats.torchzip import read_pickle

        judged = {c.path: self.completeness(c) for c in ckpts}
        data, source = None, None
        for c in reversed(ckpts):
            if judged[c.path].complete:
                data, why = read_pickle(c.path)
                if data is not None:
                    source = c
                    break
        key, state = model_checkpoint_state(data) if data is not None else (None, {})
        monitor = state.get("monitor") if isinstance(state.get("monitor"), str) else None
        rec = self._history(root, monitor)
        if source is not None:
            gs = field_of(data, "global_step")
            rec.global_step = gs if isinstance(gs, int) and not isinstance(gs, bool) else rec.global_step
            rec.best = _best_names(state) if monitor else ()  # without a monitor, "best" is only the last saved
            rec.retention = _retention(key, state, monitor, ckpts, source)
            rec.source = rec.source or source.path
        if not rec.times:
            use_save_times(rec, [c for c in ckpts if c.is_file], root, self.glob)
        return judged, rec

    def _history(self, root: Path, monitor: str | None) -> RunRecord:
        from healthkit.formats.logs import csv_record, event_files, events_record

        version = root.parent
        csv_path = version / METRICS
        if csv_path.is_file():
            rec = csv_record(csv_path, monitor, version.parent)
            if rec is not None:
                return rec
        events = event_files(version, depth=1)
        if events:
            return events_record(events, version.parent)
        logged = logger_csv(version)  # ModelCheckpoint(dirpath=...) apart from the CSVLogger's own folders
        if logged is not None:
            rec = csv_record(logged, monitor, version)
            if rec is not None:
                rec.notes.append(
                    f"the loss history is {os.path.relpath(logged, version)}: the CSVLogger's own layout "
                    "(`<save_dir>/<name>/version_N/metrics.csv`), apart from the checkpoint folder"
                )
                return rec
        return RunRecord(
            label=f"no {METRICS} or TensorBoard event files in {version.name}/ (nor a CSVLogger's "
            f"`version_N/{METRICS}` below it)"
        )


VERSION_DIR = LazyPattern(r"^version_\d+$")
LOGGER_SCAN_DEPTH = 3
LOGGER_SCAN_MAX = 2000


def logger_csv(folder: Path) -> Path | None:
    """The newest `version_N/metrics.csv` a CSVLogger wrote below ``folder`` (down to LOGGER_SCAN_DEPTH, a bounded
    scan of folders only): where the history of a run whose checkpoints live apart from its logs is."""
    found: list[tuple[float, str, Path]] = []
    level, seen = [folder], 0
    for depth in range(LOGGER_SCAN_DEPTH + 1):
        nxt: list[Path] = []
        for d in level:
            try:
                with os.scandir(d) as it:
                    entries = [e for e in it if e.is_dir(follow_symlinks=False) and not e.name.startswith(".")]
            except OSError:
                continue
            seen += len(entries)
            if seen > LOGGER_SCAN_MAX:
                break
            for e in entries:
                if VERSION_DIR.match(e.name):
                    csv = Path(e.path) / METRICS
                    try:
                        st = os.stat(csv)
                    except OSError:
                        continue
                    found.append((st.st_mtime, e.path, csv))
                elif depth < LOGGER_SCAN_DEPTH and e.name != "checkpoints":
                    nxt.append(Path(e.path))
        level = nxt
    return max(found)[2] if found else None


def _best_names(state: dict) -> tuple[str, ...]:
    best = state.get("best_model_path")
    return (os.path.basename(best),) if isinstance(best, str) and best else ()


def _best_k(state: dict) -> tuple[str, ...]:
    k = state.get("best_k_models")
    return tuple(os.path.basename(p) for p in k if isinstance(p, str)) if isinstance(k, dict) else ()


def _retention(
    key: str | None, state: dict, monitor: str | None, ckpts: list[Checkpoint], source: Checkpoint
) -> DeclaredRetention | None:
    if key is None:
        return None
    said = Said(
        f"python -c \"import sys, torch; cb = torch.load(sys.argv[1], weights_only=False)['callbacks']; "
        f"print([(v['monitor'], len(v['best_k_models'])) for k, v in cb.items() if k.startswith('ModelCheckpoint')])\" {SRC}",
        f"[({monitor!r}, {len(state.get('best_k_models') or {})})]",
    )
    where = f"ModelCheckpoint state in {source.name}"
    if monitor:
        k = len(state.get("best_k_models") or {})
        if k and k < len(ckpts):
            return DeclaredRetention(
                k, f"{where} (top {k} by `{monitor}`)", said, by_metric=True, kept=_best_k(state), source=source.path
            )
        return DeclaredRetention(
            None,
            f"{where}: every checkpoint is among its best by `{monitor}` (save_top_k=-1, or not yet more saves than k)",
            said,
            keeps_all=True,
            by_metric=True,
            source=source.path,
        )
    if len(ckpts) > 1:
        return DeclaredRetention(
            None,
            f"{where} has no `monitor` and {len(ckpts)} checkpoints are kept: save_top_k=-1 keeps every one",
            said,
            keeps_all=True,
            source=source.path,
        )
    return DeclaredRetention(
        1, f"{where} (no `monitor`: Lightning's default save_top_k=1 keeps the newest)", said, source=source.path
    )


FORMAT = Lightning()
