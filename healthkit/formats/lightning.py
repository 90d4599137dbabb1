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
import re
from pathlib import Path
from typing import Any

from .base import SRC, Checkpoint, Completeness, DeclaredRetention, Recognised, RunFormat, RunRecord, Said
from .logs import csv_record, event_files, events_record
from .safepickle import Stub, field_of
from .torchzip import read_pickle, zip_problem

STEP_IN_NAME = re.compile(r"(?:^|[-_])step=(\d+)")
ALIAS = re.compile(r"^last(-v\d+)?\.ckpt$")
SUFFIX = ".ckpt"
METRICS = "metrics.csv"


def _is_ckpt(e: os.DirEntry) -> bool:
    try:
        return e.name.endswith(SUFFIX) and e.is_file()
    except OSError:
        return False


def _state(obj: Any) -> dict:
    return obj.fields() if isinstance(obj, Stub) else obj if isinstance(obj, dict) else {}


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
        n = sum(1 for e in entries if _is_ckpt(e))
        return Recognised(f"`{root.name}/` holds {n} Lightning `*.ckpt` file(s)") if n else None

    def holds_checkpoints(self, entries: list[os.DirEntry]) -> int:
        return sum(1 for e in entries if _is_ckpt(e) and not ALIAS.match(e.name))

    def checkpoints(self, root: Path, entries: list[os.DirEntry]) -> list[Checkpoint]:
        files = [e for e in entries if _is_ckpt(e)]
        real = [e for e in files if not ALIAS.match(e.name)] or files  # a lone last.ckpt is the checkpoint
        found = []
        for e in real:
            m = STEP_IN_NAME.search(e.name)
            step = int(m.group(1)) if m else self._step_from_file(Path(e.path))
            found.append(Checkpoint(Path(e.path), step if step is not None else -1, e.is_symlink(), frozenset(), None, True))
        return sorted(found, key=lambda c: (c.step, c.name))

    @staticmethod
    def _step_from_file(path: Path) -> int | None:
        data, _ = read_pickle(path)
        step = field_of(data, "global_step")
        return step if isinstance(step, int) and not isinstance(step, bool) else None

    def completeness(self, ckpt: Checkpoint) -> Completeness:
        problem = zip_problem(ckpt.path)
        return Completeness(ckpt.step if ckpt.step >= 0 else None, (problem,) if problem else ())

    def is_checkpoint_name(self, name: str) -> bool:
        return name.endswith(SUFFIX)

    def survey(self, root: Path, ckpts: list[Checkpoint]) -> tuple[dict[Path, Completeness], RunRecord | None]:
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
        return judged, rec

    def _history(self, root: Path, monitor: str | None) -> RunRecord:
        version = root.parent
        csv_path = version / METRICS
        if csv_path.is_file():
            rec = csv_record(csv_path, monitor, version.parent)
            if rec is not None:
                return rec
        events = event_files(version, depth=1)
        if events:
            return events_record(events, version.parent)
        return RunRecord(label=f"no {METRICS} or TensorBoard event files in {version.name}/")


def _best_names(state: dict) -> tuple[str, ...]:
    best = state.get("best_model_path")
    return (os.path.basename(best),) if isinstance(best, str) and best else ()


def _best_k(state: dict) -> tuple[str, ...]:
    k = state.get("best_k_models")
    return tuple(os.path.basename(p) for p in k if isinstance(p, str)) if isinstance(k, dict) else ()


def _retention(key: str | None, state: dict, monitor: str | None, ckpts: list[Checkpoint], source: Checkpoint) -> DeclaredRetention | None:
    if key is None:
        return None
    said = Said(f"python -c \"import sys, torch; cb = torch.load(sys.argv[1], weights_only=False)['callbacks']; "
                f"print([(v['monitor'], len(v['best_k_models'])) for k, v in cb.items() if k.startswith('ModelCheckpoint')])\" {SRC}",
                f"[({monitor!r}, {len(state.get('best_k_models') or {})})]")
    where = f"ModelCheckpoint state in {source.name}"
    if monitor:
        k = len(state.get("best_k_models") or {})
        if k and k < len(ckpts):
            return DeclaredRetention(k, f"{where} (top {k} by `{monitor}`)", said, by_metric=True, kept=_best_k(state),
                                     source=source.path)
        return DeclaredRetention(None, f"{where}: every checkpoint is among its best by `{monitor}` (save_top_k=-1, "
                                       "or not yet more saves than k)", said, keeps_all=True, by_metric=True, source=source.path)
    if len(ckpts) > 1:
        return DeclaredRetention(None, f"{where} has no `monitor` and {len(ckpts)} checkpoints are kept: save_top_k=-1 "
                                       "keeps every one", said, keeps_all=True, source=source.path)
    return DeclaredRetention(1, f"{where} (no `monitor`: Lightning's default save_top_k=1 keeps the newest)", said,
                             source=source.path)


FORMAT = Lightning()
