"""Accelerate: `Accelerator.save_state()` folders, `checkpoint_N/` under `ProjectConfiguration(automatic_checkpoint_naming=True)`.

Layout as Accelerate writes it (accelerate/checkpointing.py, `save_accelerator_state`, with
the names in accelerate/utils/constants.py): the models (`model.safetensors` or
`pytorch_model.bin`, `model_{i}.*` for a second model, `pytorch_model_fsdp_{i}/` under FSDP),
then `optimizer.bin` / `optimizer_{i}.bin` (or `optimizer_{i}/` under FSDP), schedulers,
samplers, the scaler, and last the RNG states `random_states_{process}.pkl`. N is the save
count (`iteration`), which grows with the step: the order.

Complete: model weights, optimizer and RNG states are all there and none is empty (a save
interrupted part-way lacks the later ones). `total_limit` is not recorded on disk: the run
declares no retention this audit can read. The loss history is TensorBoard's, when
`log_with="tensorboard"` wrote event files under the project folder.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from healthkit.formats.base import (
    Checkpoint,
    Completeness,
    DeclaredRetention,
    Recognised,
    RunFormat,
    RunRecord,
    listed,
    use_save_times,
)
from healthkit.formats.fsdp import dcp_problems
from healthkit.system.lazyre import LazyPattern

ACCELERATE_CHECKPOINT_RE = LazyPattern(r"checkpoint_(\d+)")  # `checkpoint_N` (underscore): not HF's rule
WEIGHTS = LazyPattern(
    r"^(model(_\d+)?\.safetensors|pytorch_model(_\d+)?\.bin|model(_\d+)?\.safetensors\.index\.json|"
    r"pytorch_model(_\d+)?\.bin\.index\.json)$"
)
FSDP_MODEL = LazyPattern(r"^pytorch_model_fsdp_\d+$")
OPTIM = LazyPattern(r"^optimizer(_\d+)?\.bin$")
FSDP_OPTIM = LazyPattern(r"^optimizer_\d+$")
RNG = LazyPattern(r"^random_states_\d+\.pkl$")
KNOWN = (WEIGHTS, FSDP_MODEL, OPTIM, FSDP_OPTIM, RNG, LazyPattern(r"^(scheduler|sampler|scaler|custom_checkpoint)"))

if TYPE_CHECKING:
    from healthkit.system.fsutil import Reader


class Accelerate(RunFormat):
    name = "accelerate"
    title = "Accelerate save_state"
    priority = 30
    checkpoint_word = "checkpoint_N/"
    counted_as = "Accelerate checkpoint_N/"  # detection's evidence: "`folder/` holds N <counted_as>"
    glob = "checkpoint_*"
    limit_word = "`total_limit`"

    def recognise(self, root: Path, entries: list[os.DirEntry]) -> Recognised | None:
        n = sum(1 for e in entries if ACCELERATE_CHECKPOINT_RE.fullmatch(e.name))
        return Recognised(f"`{root.name}/` holds {n} Accelerate `checkpoint_N/` state folder(s)") if n else None

    def holds_checkpoints(self, entries: list[os.DirEntry]) -> int:
        return sum(1 for e in entries if ACCELERATE_CHECKPOINT_RE.fullmatch(e.name) and e.is_dir())

    def checkpoints(self, root: Path, entries: list[os.DirEntry]) -> list[Checkpoint]:
        found = []
        for e in entries:
            m = ACCELERATE_CHECKPOINT_RE.fullmatch(e.name)
            if not m or not e.is_dir():
                continue
            files, err = listed(Path(e.path))
            found.append(Checkpoint(Path(e.path), int(m.group(1)), e.is_symlink(), files, err))
        return sorted(found, key=lambda c: c.step)

    def completeness(self, ckpt: Checkpoint) -> Completeness:
        if ckpt.list_error:
            return Completeness(None, (f"its folder cannot be listed ({ckpt.list_error})",))
        names = ckpt.files
        if names and not any(p.match(f) for f in names for p in KNOWN):
            return Completeness(None, (), unknown=f"none of Accelerate's state files ({', '.join(sorted(names)[:3])})")
        problems = []
        weights = [f for f in names if WEIGHTS.fullmatch(f)]
        fsdp = [f for f in names if FSDP_MODEL.fullmatch(f)]
        if not weights and not fsdp:
            problems.append("no model weights (model.safetensors, pytorch_model.bin or pytorch_model_fsdp_0/)")
        if not any(OPTIM.fullmatch(f) or FSDP_OPTIM.fullmatch(f) for f in names):
            problems.append("no optimizer state (optimizer.bin)")
        if not any(RNG.fullmatch(f) for f in names):
            problems.append("no RNG states (random_states_0.pkl): save_state did not finish")
        for f in sorted(names):
            if WEIGHTS.fullmatch(f) or OPTIM.fullmatch(f) or RNG.fullmatch(f):
                try:
                    if os.stat(ckpt.path / f).st_size == 0:
                        problems.append(f"{f} is empty")
                except OSError as exc:
                    problems.append(f"{f} cannot be read ({exc.strerror})")
        for d in sorted(fsdp) + sorted(f for f in names if FSDP_OPTIM.fullmatch(f)):
            problems += dcp_problems(ckpt.path / d, d)
        return Completeness(ckpt.step, tuple(problems))

    def is_checkpoint_name(self, name: str) -> bool:
        return ACCELERATE_CHECKPOINT_RE.fullmatch(os.path.basename(name.rstrip("/"))) is not None

    def survey(
        self, root: Path, ckpts: list[Checkpoint], reader: Reader | None = None
    ) -> tuple[dict[Path, Completeness], RunRecord | None]:
        from healthkit.formats.logs import event_files, events_record

        judged = {c.path: self.completeness(c) for c in ckpts}
        events = event_files(root.parent, depth=3)
        rec = (
            events_record(events, root.parent)
            if events
            else RunRecord(label=f"no TensorBoard event files under {root.parent.name}/")
        )
        rec.retention = DeclaredRetention(
            None,
            "Accelerate does not record `ProjectConfiguration.total_limit` on disk "
            "(declare the run's limit in healthkit.toml [retention])",
        )
        if not rec.times:
            use_save_times(rec, ckpts, root, self.glob)
        return judged, rec


FORMAT = Accelerate()
