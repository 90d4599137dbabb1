"""Loss histories written beside checkpoints by loggers: CSV (Lightning's CSVLogger) and TensorBoard event files.

Which column or tag is a validation loss is a small rule on its name (`val`/`valid`/`eval`
and `loss`), as people name them; a training loss is `loss` without those. Event files are
read by the `tensorboard` package's own loader (healthkit.formats.tensorboard) when the
optional extra is installed; without it the record names the extra instead of claiming that
no validation ran.
"""

from __future__ import annotations

import math
import os
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

from .base import SRC, RunRecord, Said

MAX_CSV_BYTES = 32 * 1024 * 1024
EVENTS = "events.out.tfevents."
TB_EXTRA = "healthkit[tensorboard]"
_VAL = re.compile(r"(^|[^a-z])(val|valid|validation|eval)([^a-z]|$)", re.I)


def is_val_loss(name: str) -> bool:
    low = name.lower()
    return "loss" in low and _VAL.search(low) is not None


def is_train_loss(name: str) -> bool:
    low = name.lower()
    return "loss" in low and not is_val_loss(name) and not any(w in low for w in ("test", "gap"))


def _float(text: str) -> float | None:
    try:
        v = float(text)
    except (TypeError, ValueError):
        return None
    return v


@dataclass
class Series:
    train: list[list[float]] = field(default_factory=list)
    evals: list[list[float]] = field(default_factory=list)
    train_key: str | None = None
    eval_key: str | None = None
    keys: list[str] = field(default_factory=list)


def _pick(keys: list[str], test, prefer: str | None) -> str | None:
    found = [k for k in keys if test(k)]
    if prefer in found:
        return prefer
    return sorted(found, key=lambda k: (not k.lower().endswith(("loss", "loss_epoch")), "step" in k.lower(), len(k)))[0] if found else None


def read_csv(path: Path, monitor: str | None = None) -> Series | None:
    """(train, eval) series from a metrics.csv (a row per logging call, `step` column); None when unreadable."""
    import csv  # only where a CSV log exists

    import io

    from ..fsutil import ReadProblem, read_bytes

    try:
        text = read_bytes(path, MAX_CSV_BYTES).decode("utf-8", "replace")
        rows = list(csv.DictReader(io.StringIO(text, newline="")))
    except (ReadProblem, csv.Error):
        return None
    keys = list(rows[0].keys()) if rows else []
    out = Series(keys=keys)
    out.eval_key = _pick(keys, is_val_loss, monitor)
    out.train_key = _pick(keys, is_train_loss, None)
    for row in rows:
        step = _float(row.get("step", ""))
        if step is None:
            continue
        for key, series in ((out.train_key, out.train), (out.eval_key, out.evals)):
            v = _float(row.get(key) or "") if key else None
            if v is not None:
                series.append([step, v])
    return out


def csv_record(path: Path, monitor: str | None, label_root: Path) -> RunRecord | None:
    s = read_csv(path, monitor)
    if s is None:
        return None
    where = SRC

    def evals_said(window: list[list[float]]) -> Said:
        lines = [f"{s_:g},{v}" for s_, v in window]
        return Said(f"awk -F, -v c={s.eval_key} 'NR==1{{for(i=1;i<=NF;i++){{if($i==c)k=i;if($i==\"step\")t=i}};next}} "
                    f"$k!=\"\" && $t>={window[0][0]:g}{{print $t\",\"$k}}' {where}",
                    "\n".join(lines))

    def no_evals_said(last: float | None) -> Said:
        return Said(f"head -1 {where}", ",".join(s.keys))

    try:
        mtime = os.stat(path).st_mtime
    except OSError:
        mtime = None
    rec = RunRecord(label=os.path.relpath(path, label_root) if str(path).startswith(str(label_root)) else str(path),
                    records_eval_interval=False,
                    source=path, mtime=mtime, train=s.train, evals=s.evals, evals_said=evals_said, no_evals_said=no_evals_said)
    rec.global_step = int(max([p[0] for p in s.train + s.evals], default=0)) or None
    return rec


def event_files(folder: Path, depth: int = 3, limit: int = 200) -> list[Path]:
    """TensorBoard event files under ``folder`` (bounded walk: names only)."""
    out: list[Path] = []
    level = [folder]
    for _ in range(depth + 1):
        nxt = []
        for d in level:
            try:
                with os.scandir(d) as it:
                    for e in it:
                        if e.name.startswith(EVENTS) and e.is_file():
                            out.append(Path(e.path))
                        elif e.is_dir(follow_symlinks=False) and not e.name.startswith(".") and e.name != "checkpoints":
                            nxt.append(Path(e.path))
            except OSError:
                continue
            if len(out) >= limit:
                return sorted(out)
        level = nxt
    return sorted(out)


def events_record(files: list[Path], label_root: Path) -> RunRecord:
    """The loss history in event files, through the tensorboard package; without it, a record naming the extra."""
    from .tensorboard import read_scalars

    label = os.path.relpath(files[0].parent, label_root) if str(files[0]).startswith(str(label_root)) else str(files[0].parent)
    scalars = read_scalars(files)
    if scalars is None:
        rec = RunRecord(label=f"TensorBoard event files in {label}/")
        rec.missing_extra = TB_EXTRA
        rec.notes.append(f"{len(files)} TensorBoard event file(s) in {label}/ hold the loss history; install "
                         f"`{TB_EXTRA}` so that the audit can read them")
        return rec
    keys = list(scalars)
    ek, tk = _pick(keys, is_val_loss, None), _pick(keys, is_train_loss, None)
    rec = RunRecord(label=f"TensorBoard event files in {label}/ (tags {', '.join(k for k in (tk, ek) if k)})")
    rec.train = sorted(scalars.get(tk, [])) if tk else []
    rec.evals = sorted(scalars.get(ek, [])) if ek else []
    rec.global_step = int(max([p[0] for p in rec.train + rec.evals], default=0)) or None
    cmd = f"tensorboard --inspect --logdir {shlex.quote(str(files[0].parent))} --tag {ek or 'TAG'}"
    rec.evals_said = lambda w: Said(cmd, "\n".join(f"step {s:g}: {v}" for s, v in w))
    rec.no_evals_said = lambda last: Said(f"tensorboard --inspect --logdir {shlex.quote(str(files[0].parent))}",
                                          f"scalar tags: {', '.join(sorted(keys)) or 'none'}")
    return rec


def finite(v: float) -> bool:
    return math.isfinite(v)
