"""transformers' `Trainer`: `checkpoint-N/` folders, `trainer_state.json`, and its weight variants.

The completeness rule is healthkit.formats.hf_checkpoints (shared with our trainer): top-level weights,
sharded safetensors with their index, peft adapters, DeepSpeed ZeRO states (`deepspeed`) and
FSDP shards (`fsdp`). The run's record is the newest sound `trainer_state.json`: global_step,
max_steps, save/eval intervals, `log_history`, `best_model_checkpoint`. The retention it
declared is `save_total_limit` in the checkpoint's `training_args.bin` (read without torch).
"""

from __future__ import annotations

import gc
import json
import math
import os
import re
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
    at,
    field_of,
    listed,
)
from healthkit.formats.hf_checkpoints import (
    CHECKPOINT_NAME,
    STATE_FILE,
    checkpoint_completeness,
    load_state,
    newest_with_state,
)
from healthkit.formats.historycache import CachedHistory, history_of, load_with_cache

NAME_IN_TEXT = re.compile(r"checkpoint-\d+")
ARGS_FILE = "training_args.bin"

if TYPE_CHECKING:
    from healthkit.system.fsutil import Reader


_NUMBER = (int, float)  # JSON numbers as json.loads makes them (a bool is neither type)


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
        n = sum(1 for e in entries if CHECKPOINT_NAME.fullmatch(e.name))
        return Recognised(f"`{root.name}/` holds {n} `checkpoint-N/` folder(s)") if n else None

    def holds_checkpoints(self, entries: list[os.DirEntry]) -> int:
        return sum(
            1 for e in entries if CHECKPOINT_NAME.fullmatch(e.name) and os.path.isfile(os.path.join(e.path, STATE_FILE))
        )

    def checkpoints(self, root: Path, entries: list[os.DirEntry]) -> list[Checkpoint]:
        found = []
        for entry in entries:
            m = CHECKPOINT_NAME.fullmatch(entry.name)
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

    def survey(
        self, root: Path, ckpts: list[Checkpoint], reader: Reader | None = None
    ) -> tuple[dict[Path, Completeness], RunRecord | None]:
        judged = {c.path: self.completeness(c) for c in ckpts}
        load = None if reader is not None else lambda p: load_with_cache(p, load_state, _series)  # as itself only
        chosen = newest_with_state(
            ckpts, lambda c: judged[c.path].state_ok, lambda c: c.path / STATE_FILE, reader, load
        )
        newest, data, failed = chosen  # in two steps: unpacked at once, mypy types the lambdas' c as Optional
        for i, why in failed.items():
            judged[ckpts[i].path] = judged[ckpts[i].path].broken_state(why)
        if newest is None or data is None:
            return judged, None
        return judged, record(newest, data, ckpts)


def _mtime(p: Path) -> float | None:
    try:
        return os.stat(p).st_mtime
    except OSError:
        return None


def _series(data: dict) -> tuple[list[list[float]], list[list[float]], list[list[float]], list[list[float]]]:
    """(loss, eval_loss, grad_norm, learning_rate) from log_history; non-finite values kept as logged (NaN, Infinity)."""
    train: list[list[float]] = []
    evals: list[list[float]] = []
    grads: list[list[float]] = []
    lrs: list[list[float]] = []
    hist = data.get("log_history")
    if isinstance(hist, CachedHistory):
        return hist.series
    collecting = gc.isenabled()
    gc.disable()  # tens of thousands of small lists beside the parsed file: no full collection scans it meanwhile
    try:
        _fill(hist if isinstance(hist, list) else [], train, evals, grads, lrs)
    finally:
        if collecting:
            gc.enable()
    return train, evals, grads, lrs


def _fill(hist: list, train: list, evals: list, grads: list, lrs: list) -> None:
    """~10k entries in a 100k-step run, so the four series are written out, not looped over (a loop over
    (key, append) pairs costs a quarter more), with identity tests of the class and bound appends: a float, the
    usual value, is kept as it is; an int becomes one; a bool, a string or null is no number."""
    f, d = float, dict
    add_train, add_grad, add_lr, add_eval = train.append, grads.append, lrs.append, evals.append
    for e in hist:
        if e.__class__ is not d:
            continue
        step: Any = e.get("step")
        if step.__class__ is not f and step.__class__ is not int:
            continue
        step = f(step)
        v: Any = e.get("loss")
        if v.__class__ is f:
            add_train([step, v])
        elif v.__class__ is int:
            add_train([step, f(v)])
        v = e.get("grad_norm")
        if v.__class__ is f:
            add_grad([step, v])
        elif v.__class__ is int:
            add_grad([step, f(v)])
        v = e.get("learning_rate")
        if v.__class__ is f:
            add_lr([step, v])
        elif v.__class__ is int:
            add_lr([step, f(v)])
        v = e.get("eval_loss")
        if v.__class__ is f:
            add_eval([step, v])
        elif v.__class__ is int:
            add_eval([step, f(v)])


def jq_number(v: float) -> str:
    """A number as jq 1.6 prints it: NaN as null, infinities as the largest double, whole floats without `.0`."""
    if math.isnan(v):
        return "null"
    if math.isinf(v):
        return ("-" if v < 0 else "") + "1.7976931348623157e+308"
    if v == int(v) and abs(v) < 1e17:
        return str(int(v))
    return repr(v)


def save_times(ckpts: list[Checkpoint]) -> list[list[float]]:
    """[[step, mtime of its trainer_state.json]] for each checkpoint: when the run saved that step."""
    out = []
    for c in ckpts:
        t = _mtime(c.path / STATE_FILE)
        if t is not None:
            out.append([float(c.step), t])
    return out


def declared_by_args(ckpt: Checkpoint) -> DeclaredRetention | None:
    """`save_total_limit` as the Trainer was given it, from the checkpoint's training_args.bin (never unpickled for real)."""
    if ARGS_FILE not in ckpt.files:
        return None
    from healthkit.system.fsutil import ReadProblem, open_regular

    try:
        with open_regular(ckpt.path / ARGS_FILE) as fh:
            if fh.read(4) != b"PK\x03\x04":
                return None  # not a torch.save zip (an old pickle-only save, or not the Trainer's)
    except (OSError, ReadProblem):
        return None
    from healthkit.formats.torchzip import (
        read_pickle,  # zipfile and pickle: only when a check asks for the declared retention
    )

    args, why = read_pickle(ckpt.path / ARGS_FILE, max_bytes=4 * 1024 * 1024)
    if why is not None or args is None:
        return None
    fields = field_of(args, "save_total_limit", "absent")
    if fields == "absent":
        return None
    where = f"{ckpt.name}/{ARGS_FILE} (the Trainer's own arguments)"
    said = Said(
        f'python -c "import sys, torch; print(torch.load(sys.argv[1], weights_only=False).save_total_limit)" {SRC}',
        str(fields),
    )
    src = ckpt.path / ARGS_FILE
    if isinstance(fields, int) and not isinstance(fields, bool) and fields >= 1:
        return DeclaredRetention(fields, where, said, source=src)
    if fields is None:
        return DeclaredRetention(None, f"{where} has `save_total_limit: None`", said, keeps_all=True, source=src)
    return None


def record(newest: Checkpoint, data: dict, ckpts: list[Checkpoint] | None = None) -> RunRecord:
    """The run's record from the newest sound trainer_state.json (parsed whole)."""
    path = newest.path / STATE_FILE
    where = SRC
    train, evals, grads, lrs = _series(data)
    best = data.get("best_model_checkpoint")
    best_names = (Path(best.rstrip("/")).name,) if isinstance(best, str) and best else ()
    gs = data.get("global_step")

    def evals_said(window: list[list[float]]) -> Said:
        lines = [
            json.dumps({"step": int(s) if s == int(s) else s, "eval_loss": e}, separators=(",", ":")) for s, e in window
        ]
        return Said(
            f"jq -c '.log_history[] | select(.eval_loss and .step >= {window[0][0]:g}) | {{step, eval_loss}}' {where}",
            "\n".join(lines),
        )

    def no_evals_said(last: float | None) -> Said:
        if last is None:
            return Said(f"jq '[.log_history[] | select(.eval_loss)] | length' {where}", "0")
        return Said(f"jq '[.log_history[] | select(.eval_loss) | .step] | last' {where}", f"{last:g}")

    def signal_said(lo: float, hi: float) -> Said:
        hist = got if isinstance(got := history_of(data), list) else []
        keys = ("step", "loss", "grad_norm", "learning_rate")
        lines = []
        for e in hist:
            if isinstance(e, dict) and "loss" in e and _num(e.get("step")) is not None and lo <= e["step"] <= hi:
                shown = [(k, e[k]) for k in keys if k in e]
                lines.append(
                    "{"
                    + ",".join(
                        f'"{k}":' + (jq_number(float(v)) if _num(v) is not None else json.dumps(v)) for k, v in shown
                    )
                    + "}"
                )
        return Said(
            f"jq -c '.log_history[] | select(.loss != null and .step >= {lo:g} and .step <= {hi:g}) "
            f"| {{step, loss, grad_norm, learning_rate}} | with_entries(select(.value != null))' {where}",
            "\n".join(lines),
        )

    kept = [c for c in ckpts or [] if c.step <= (gs if isinstance(gs, int) else newest.step)]
    times = save_times(kept)
    folder = newest.path.parent

    def times_said(lo: float, hi: float) -> Said:
        shown = [(s_, t) for s_, t in times if lo <= s_ <= hi]
        return Said(
            f"stat -c '%Y %n' {at(folder)}/checkpoint-*/{STATE_FILE} | sort -n",
            "\n".join(f"{t:.0f} {at(folder)}/checkpoint-{s_:.0f}/{STATE_FILE}" for s_, t in shown),
        )

    return RunRecord(
        label=f"{STATE_FILE} of {newest.name}",
        source=path,
        mtime=_mtime(path),
        grad_norm=grads,
        learning_rate=lrs,
        times=times,
        times_from=f"checkpoint save times (the mtime of each {STATE_FILE}; log_history records no times)",
        signal_said=signal_said,
        times_said=times_said,
        global_step=gs if isinstance(gs, int) and not isinstance(gs, bool) else None,
        max_steps=_num(data.get("max_steps")),
        save_steps=_num(data.get("save_steps")),
        eval_steps=_num(data.get("eval_steps")),
        records_eval_interval=True,
        evals_word="`eval_loss` in log_history",
        train=train,
        evals=evals,
        best=best_names,
        retention_reader=lambda: declared_by_args(newest),
        evals_said=evals_said,
        no_evals_said=no_evals_said,
        raw=(newest, data),
    )


FORMAT = HFTrainer()
