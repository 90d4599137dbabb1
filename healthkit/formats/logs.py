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

from healthkit.formats.base import SRC, RunRecord, Said, at
from healthkit.system.lazyre import LazyPattern

MAX_CSV_BYTES = 32 * 1024 * 1024
EVENTS = "events.out.tfevents."
TB_EXTRA = "healthkit[tensorboard]"
_VAL = LazyPattern(r"(^|[^a-z])(val|valid|validation|eval)([^a-z]|$)", re.I)


def is_val_loss(name: str) -> bool:
    low = name.lower()
    return "loss" in low and _VAL.search(low) is not None


def is_train_loss(name: str) -> bool:
    low = name.lower()
    return "loss" in low and not is_val_loss(name) and not any(w in low for w in ("test", "gap"))


def is_grad_norm(name: str) -> bool:
    """`grad_norm`, `train/grad_norm`, Lightning's `grad_2.0_norm_total`: a gradient norm (not a validation one)."""
    low = name.lower()
    return "grad" in low and "norm" in low and _VAL.search(low) is None


def is_learning_rate(name: str) -> bool:
    """`learning_rate`, `train/learning_rate`, `lr`, LearningRateMonitor's `lr-AdamW` (its first param group)."""
    low = name.lower().rsplit("/", 1)[-1]
    return "learning_rate" in low or low == "lr" or low.startswith(("lr-", "lr_"))


def is_wall_time(name: str) -> bool:
    return name.lower() in ("time", "timestamp", "wall_time", "walltime", "_timestamp", "created_at")


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
    grad_norm: list[list[float]] = field(default_factory=list)
    learning_rate: list[list[float]] = field(default_factory=list)
    times: list[list[float]] = field(default_factory=list)
    grad_key: str | None = None
    lr_key: str | None = None
    time_key: str | None = None
    lines: dict[float, int] = field(default_factory=dict)  # step -> the CSV line of its training-loss row (1 = header)


def _pick(keys: list[str], test, prefer: str | None) -> str | None:
    found = [k for k in keys if test(k)]
    if prefer in found:
        return prefer
    return (
        sorted(found, key=lambda k: (not k.lower().endswith(("loss", "loss_epoch")), "step" in k.lower(), len(k)))[0]
        if found
        else None
    )


def read_csv(path: Path, monitor: str | None = None) -> Series | None:
    """(train, eval) series from a metrics.csv (a row per logging call, `step` column); None when unreadable."""
    import csv  # only where a CSV log exists
    import io

    from healthkit.system.fsutil import ReadProblem, read_bytes

    try:
        text = read_bytes(path, MAX_CSV_BYTES).decode("utf-8", "replace")
        rows = list(csv.DictReader(io.StringIO(text, newline="")))
    except (ReadProblem, csv.Error):
        return None
    keys = list(rows[0].keys()) if rows else []
    out = Series(keys=keys)
    out.eval_key = _pick(keys, is_val_loss, monitor)
    out.train_key = _pick(keys, is_train_loss, None)
    grads = sorted((k for k in keys if is_grad_norm(k)), key=lambda k: ("total" not in k.lower(), len(k)))
    out.grad_key = grads[0] if grads else None
    out.lr_key = next((k for k in keys if is_learning_rate(k)), None)
    out.time_key = next((k for k in keys if is_wall_time(k)), None)
    wanted = [
        (out.train_key, out.train),
        (out.eval_key, out.evals),
        (out.grad_key, out.grad_norm),
        (out.lr_key, out.learning_rate),
        (out.time_key, None),
    ]
    wanted = [(k, series) for k, series in wanted if k]
    for n, row in enumerate(rows, start=2):
        step = _float(row.get("step", ""))
        if step is None:
            continue
        for key, series in wanted:
            v = _float(row.get(key) or "")
            if v is None:
                continue
            if series is None:
                out.times.append([step, v / (1000.0 if v > 1e12 else 1.0)])
            else:
                series.append([step, v])
                if series is out.train:
                    out.lines[step] = n
    return out


def csv_record(path: Path, monitor: str | None, label_root: Path) -> RunRecord | None:
    s = read_csv(path, monitor)
    if s is None:
        return None
    where = SRC

    def evals_said(window: list[list[float]]) -> Said:
        lines = [f"{s_:g},{v}" for s_, v in window]
        return Said(
            f'awk -F, -v c={s.eval_key} \'NR==1{{for(i=1;i<=NF;i++){{if($i==c)k=i;if($i=="step")t=i}};next}} '
            f'$k!="" && $t>={window[0][0]:g}{{print $t","$k}}\' {where}',
            "\n".join(lines),
        )

    def no_evals_said(last: float | None) -> Said:
        return Said(f"head -1 {where}", ",".join(s.keys))

    try:
        mtime = os.stat(path).st_mtime
    except OSError:
        mtime = None

    def signal_said(lo: float, hi: float) -> Said:
        at_lines = [n for step, n in s.lines.items() if lo <= step <= hi]
        first, last = (min(at_lines), max(at_lines)) if at_lines else (2, 1)
        try:
            with open(path, encoding="utf-8", errors="replace") as fh:
                text = [line.rstrip("\n") for i, line in enumerate(fh, start=1) if i == 1 or first <= i <= last]
        except OSError as exc:
            text = [f"cannot be read: {exc.strerror}"]
        return Said(f"sed -n '1p;{first},{last}p' {where}", "\n".join(text))

    def times_said(lo: float, hi: float) -> Said:
        lines = [f"{s_:g},{t:.0f}" for s_, t in s.times if lo <= s_ <= hi]
        return Said(
            f'awk -F, -v c={s.time_key} \'NR==1{{for(i=1;i<=NF;i++){{if($i==c)k=i;if($i=="step")t=i}};next}} '
            f'$k!="" && $t>={lo:g} && $t<={hi:g}{{print $t","$k}}\' {where}',
            "\n".join(lines),
        )

    rec = RunRecord(
        label=os.path.relpath(path, label_root) if str(path).startswith(str(label_root)) else str(path),
        records_eval_interval=False,
        source=path,
        mtime=mtime,
        train=s.train,
        evals=s.evals,
        evals_said=evals_said,
        no_evals_said=no_evals_said,
        grad_norm=s.grad_norm,
        learning_rate=s.learning_rate,
        signal_said=signal_said,
    )
    if s.times:
        rec.times, rec.times_from, rec.times_said = (
            sorted(s.times),
            f"the `{s.time_key}` column of {path.name}",
            times_said,
        )
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
    from healthkit.formats.tensorboard import read_scalars

    label = (
        os.path.relpath(files[0].parent, label_root)
        if str(files[0]).startswith(str(label_root))
        else str(files[0].parent)
    )
    walls: dict[str, dict[float, float]] = {}
    scalars = read_scalars(files, walls)
    if scalars is None:
        rec = RunRecord(label=f"TensorBoard event files in {label}/")
        rec.missing_extra = TB_EXTRA
        rec.notes.append(
            f"{len(files)} TensorBoard event file(s) in {label}/ hold the loss history; install "
            f"`{TB_EXTRA}` so that the audit can read them"
        )
        return rec
    keys = list(scalars)
    ek, tk = _pick(keys, is_val_loss, None), _pick(keys, is_train_loss, None)
    gk = next((k for k in sorted(keys, key=lambda k: ("total" not in k.lower(), len(k))) if is_grad_norm(k)), None)
    lk = next((k for k in sorted(keys, key=len) if is_learning_rate(k)), None)
    rec = RunRecord(label=f"TensorBoard event files in {label}/ (tags {', '.join(k for k in (tk, ek) if k)})")
    rec.train = sorted(scalars.get(tk, [])) if tk else []
    rec.evals = sorted(scalars.get(ek, [])) if ek else []
    rec.grad_norm = sorted(scalars.get(gk, [])) if gk else []
    rec.learning_rate = sorted(scalars.get(lk, [])) if lk else []
    timed = walls.get(tk or "") or next(iter(walls.values()), {})
    rec.times = sorted([s, t] for s, t in timed.items())
    rec.times_from = f"TensorBoard wall times (tag {tk})" if tk and walls.get(tk) else "TensorBoard wall times"
    rec.global_step = int(max([p[0] for p in rec.train + rec.evals], default=0)) or None
    logdir = shlex.quote(str(files[0].parent))
    cmd = f"tensorboard --inspect --logdir {logdir} --tag {ek or 'TAG'}"
    rec.evals_said = lambda w: Said(cmd, "\n".join(f"step {s:g}: {v}" for s, v in w))
    rec.no_evals_said = lambda last: Said(
        f"tensorboard --inspect --logdir {logdir}", f"scalar tags: {', '.join(sorted(keys)) or 'none'}"
    )
    shown_tags = [k for k in (tk, gk, lk) if k]
    folder = at(files[0].parent)

    def signal_said(lo: float, hi: float) -> Said:
        rows: dict[float, list[str]] = {}
        for tag in shown_tags:
            for s, v in scalars.get(tag, []):
                if lo <= s <= hi:
                    rows.setdefault(s, []).append(f"{tag}={v:g}")
        return Said(
            f"python -m healthkit.formats.tensorboard {folder} {lo:g} {hi:g} {' '.join(map(shlex.quote, shown_tags))}",
            "\n".join(f"step {s:g}: " + " ".join(r) for s, r in sorted(rows.items())),
        )

    def times_said(lo: float, hi: float) -> Said:
        return Said(
            f"python -m healthkit.formats.tensorboard {folder} {lo:g} {hi:g} {shlex.quote(tk or '')} --wall-time",
            "\n".join(f"step {s:g}: {t:.0f}" for s, t in rec.times if lo <= s <= hi),
        )

    rec.signal_said, rec.times_said = signal_said, times_said
    return rec


def finite(v: float) -> bool:
    return math.isfinite(v)
