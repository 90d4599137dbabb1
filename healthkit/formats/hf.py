"""transformers' `Trainer`: `checkpoint-N/` folders, `trainer_state.json`, and its weight variants.

The completeness rule is healthkit.checkpoints (shared with our trainer): top-level weights,
sharded safetensors with their index, peft adapters, DeepSpeed ZeRO states (`deepspeed`) and
FSDP shards (`fsdp`). The run's record is the newest sound `trainer_state.json`: global_step,
max_steps, save/eval intervals, `log_history`, `best_model_checkpoint`. The retention it
declared is `save_total_limit` in the checkpoint's `training_args.bin` (read without torch).
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..checkpoints import STATE_FILE, checkpoint_completeness, newest_with_state
from .base import SRC, Checkpoint, Completeness, DeclaredRetention, Recognised, RunFormat, RunRecord, Said, field_of, listed

CHECKPOINT_RE = re.compile(r"^checkpoint-(\d+)$")
NAME_IN_TEXT = re.compile(r"checkpoint-\d+")
ARGS_FILE = "training_args.bin"

if TYPE_CHECKING:
    from ..fsutil import Reader


def _num(v: Any) -> float | None:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None


class HFTrainer(RunFormat):
    name = "hf"
    title = "transformers Trainer"
    priority = 10
    checkpoint_word = "checkpoint-N/"
    counted_as = "checkpoint-N/trainer_state.json"  # detection's evidence: "`folder/` holds N <counted_as>"
    glob = "checkpoint-*"
    limit_word = "`save_total_limit`"

    def recognise(self, root: Path, entries: list[os.DirEntry]) -> Recognised | None:
        n = sum(1 for e in entries if CHECKPOINT_RE.fullmatch(e.name))
        return Recognised(f"`{root.name}/` holds {n} `checkpoint-N/` folder(s)") if n else None

    def holds_checkpoints(self, entries: list[os.DirEntry]) -> int:
        return sum(1 for e in entries if CHECKPOINT_RE.fullmatch(e.name) and os.path.isfile(os.path.join(e.path, STATE_FILE)))

    def checkpoints(self, root: Path, entries: list[os.DirEntry]) -> list[Checkpoint]:
        found = []
        for entry in entries:
            m = CHECKPOINT_RE.fullmatch(entry.name)
            if not m:
                continue
            try:
                if not entry.is_dir(follow_symlinks=True):
                    continue
            except OSError:
                continue
            files, err = listed(Path(entry.path))
            found.append(Checkpoint(Path(entry.path), int(m.group(1)), entry.is_symlink(), files, err))
        return sorted(found, key=lambda c: c.step)

    def in_progress(self, root: Path, entries: list[os.DirEntry]) -> list[Path]:
        return sorted(Path(e.path) for e in entries if e.name.startswith("tmp-checkpoint-"))

    def completeness(self, ckpt: Checkpoint) -> Completeness:
        if ckpt.list_error:
            return Completeness(None, (f"its folder cannot be listed ({ckpt.list_error})",))
        return checkpoint_completeness(ckpt.path, ckpt.files)

    def is_checkpoint_name(self, name: str) -> bool:
        return NAME_IN_TEXT.search(name) is not None

    def survey(self, root: Path, ckpts: list[Checkpoint], reader: "Reader | None" = None) -> tuple[dict[Path, Completeness], RunRecord | None]:
        judged = {c.path: self.completeness(c) for c in ckpts}
        newest, data, failed = newest_with_state(ckpts, lambda c: judged[c.path].state_ok, lambda c: c.path / STATE_FILE,
                                                 reader)
        for i, why in failed.items():
            judged[ckpts[i].path] = judged[ckpts[i].path].broken_state(why)
        if newest is None or data is None:
            return judged, None
        return judged, record(newest, data)


def _mtime(p: Path) -> float | None:
    try:
        return os.stat(p).st_mtime
    except OSError:
        return None


def _series(data: dict) -> tuple[list[list[float]], list[list[float]]]:
    train: list[list[float]] = []
    evals: list[list[float]] = []
    hist = data.get("log_history")
    for e in hist if isinstance(hist, list) else []:
        if not isinstance(e, dict) or _num(e.get("step")) is None:
            continue
        if _num(e.get("loss")) is not None:
            train.append([float(e["step"]), float(e["loss"])])
        if _num(e.get("eval_loss")) is not None:
            evals.append([float(e["step"]), float(e["eval_loss"])])
    return train, evals


def declared_by_args(ckpt: Checkpoint) -> DeclaredRetention | None:
    """`save_total_limit` as the Trainer was given it, from the checkpoint's training_args.bin (never unpickled for real)."""
    if ARGS_FILE not in ckpt.files:
        return None
    from ..fsutil import ReadProblem, open_regular

    try:
        with open_regular(ckpt.path / ARGS_FILE) as fh:
            if fh.read(4) != b"PK\x03\x04":
                return None  # not a torch.save zip (an old pickle-only save, or not the Trainer's)
    except (OSError, ReadProblem):
        return None
    from .torchzip import read_pickle  # zipfile and pickle: only when a check asks for the declared retention

    args, why = read_pickle(ckpt.path / ARGS_FILE, max_bytes=4 * 1024 * 1024)
    if why is not None or args is None:
        return None
    fields = field_of(args, "save_total_limit", "absent")
    if fields == "absent":
        return None
    where = f"{ckpt.name}/{ARGS_FILE} (the Trainer's own arguments)"
    said = Said(f"python -c \"import sys, torch; print(torch.load(sys.argv[1], weights_only=False).save_total_limit)\" {SRC}",
                str(fields))
    src = ckpt.path / ARGS_FILE
    if isinstance(fields, int) and not isinstance(fields, bool) and fields >= 1:
        return DeclaredRetention(fields, where, said, source=src)
    if fields is None:
        return DeclaredRetention(None, f"{where} has `save_total_limit: None`", said, keeps_all=True, source=src)
    return None


def record(newest: Checkpoint, data: dict) -> RunRecord:
    """The run's record from the newest sound trainer_state.json (parsed whole)."""
    path = newest.path / STATE_FILE
    where = SRC
    train, evals = _series(data)
    best = data.get("best_model_checkpoint")
    best_names = (Path(best.rstrip("/")).name,) if isinstance(best, str) and best else ()
    gs = data.get("global_step")

    def evals_said(window: list[list[float]]) -> Said:
        lines = [json.dumps({"step": int(s) if s == int(s) else s, "eval_loss": e}, separators=(",", ":")) for s, e in window]
        return Said(f"jq -c '.log_history[] | select(.eval_loss and .step >= {window[0][0]:g}) | {{step, eval_loss}}' {where}",
                    "\n".join(lines))

    def no_evals_said(last: float | None) -> Said:
        if last is None:
            return Said(f"jq '[.log_history[] | select(.eval_loss)] | length' {where}", "0")
        return Said(f"jq '[.log_history[] | select(.eval_loss) | .step] | last' {where}", f"{last:g}")

    return RunRecord(
        label=f"{STATE_FILE} of {newest.name}", source=path, mtime=_mtime(path),
        global_step=gs if isinstance(gs, int) and not isinstance(gs, bool) else None,
        max_steps=_num(data.get("max_steps")), save_steps=_num(data.get("save_steps")), eval_steps=_num(data.get("eval_steps")),
        records_eval_interval=True, evals_word="`eval_loss` in log_history", train=train, evals=evals, best=best_names, retention_reader=lambda: declared_by_args(newest),
        evals_said=evals_said, no_evals_said=no_evals_said,
        raw=(newest, data),
    )


FORMAT = HFTrainer()
