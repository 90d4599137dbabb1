"""The loss chart beside a report: training and validation loss over steps, from trainer_state.json's log_history
(and the status file's newer values, at the steps where they were measured).

matplotlib is optional (extra ``charts``) and imported only here, only when a report is
written into a folder, so a plain audit never pays for it. Without it, or without any
loss history, the report says why there is no chart instead of failing. The series and
the plot area's pixel box are stored in the PNG's text chunk (key ``healthkit``) so tests
and tools can read back exactly what was drawn.
"""

from __future__ import annotations

import io
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeGuard

TRAIN_COLOR = "#1f77b4"
EVAL_COLOR = "#d62728"
GAP_COLOR = "#ff7f0e"
SIZE_IN = (8.0, 4.5)
DPI = 100
MAX_POINTS = 2000
PNG_KEY = "healthkit"


@dataclass(frozen=True)
class Chart:
    """Where the chart went (``link``: a file name relative to the report), or why there is none (``note``)."""

    path: Path | None = None
    link: str | None = None
    note: str | None = None
    caption: str | None = None
    train_points: int = 0
    eval_points: int = 0


def caption(train: list[tuple[float, float]], evals: list[tuple[float, float]]) -> str:
    """What the chart shows, in one sentence with the figures a person would look for."""
    parts = []
    if train:
        parts.append(
            f"{len(train)} training-loss points (steps {train[0][0]:g}-{train[-1][0]:g}, "
            f"loss {train[0][1]:.4g} -> {train[-1][1]:.4g})"
        )
    if evals:
        text = f"{len(evals)} validation evaluations (latest {evals[-1][1]:.4g} at step {evals[-1][0]:g}"
        tr = _interp(train, evals[-1][0])
        parts.append(text + (f", gap {evals[-1][1] - tr:+.4g})" if tr is not None else ")"))
    else:
        parts.append("no validation loss logged, so the validation/training gap cannot be shown")
    return "; ".join(parts) + "."


def series(facts: dict[str, Any]) -> tuple[list[tuple[float, float]], list[tuple[float, float]]]:
    """(train, eval) as sorted (step, loss) pairs, keeping only finite numbers."""
    hist = facts.get("log_history") if isinstance(facts, dict) else None
    if not isinstance(hist, dict):
        return [], []

    def clean(points: Any) -> list[tuple[float, float]]:
        out = []
        for p in points if isinstance(points, list) else []:
            if isinstance(p, (list, tuple)) and len(p) == 2 and all(_finite(v) for v in p):
                out.append((float(p[0]), float(p[1])))
        return sorted(out)

    return clean(hist.get("train")), clean(hist.get("eval"))


def loss_series(facts: dict[str, Any]) -> tuple[list[tuple[float, float]], list[tuple[float, float]]]:
    """(train, eval) from log_history, extended by the status file's latest values only at the step where each was
    measured (`loss_step`, `val_loss_step`, written by our trainer) and only when that step is newer.

    The status file's `step` is where training is now, not where its `val_loss` was measured: a value plotted
    there would be an evaluation that never ran. A status without those keys adds nothing.
    """
    train, evals = series(facts)
    t = got if isinstance(facts, dict) and isinstance(got := facts.get("training"), dict) else {}
    for points, key in ((train, "loss"), (evals, "val_loss")):
        step, value = t.get(f"{key}_step"), t.get(key)
        if _finite(step) and _finite(value) and (not points or step > points[-1][0]):
            points.append((float(step), float(value)))
    return train, evals


def no_chart_reason(facts: dict[str, Any]) -> str:
    """Why there is no loss to draw, from what the audit saw: no checkpoint at all, or one without log_history."""
    ck = facts.get("checkpoints") if isinstance(facts, dict) else None
    if isinstance(ck, dict) and ck.get("count") == 0:
        return (
            "No loss chart: there is no checkpoint to read a loss history from (none saved yet, or the finished "
            "file's checkpoints were cleared), and the status file names no step its loss was measured at."
        )
    return "No loss chart: the newest checkpoint's trainer_state.json has no loss history (log_history)."


def _finite(v: Any) -> TypeGuard[float]:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _thin(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    if len(points) <= MAX_POINTS:
        return points
    stride = math.ceil(len(points) / MAX_POINTS)
    return points[::stride] + ([points[-1]] if (len(points) - 1) % stride else [])


def _interp(points: list[tuple[float, float]], x: float) -> float | None:
    """Training loss at step x by linear interpolation (None outside the logged range)."""
    if not points or x < points[0][0] or x > points[-1][0]:
        return None
    for (x0, y0), (x1, y1) in zip(points, points[1:]):
        if x0 <= x <= x1:
            return y0 if x1 == x0 else y0 + (y1 - y0) * (x - x0) / (x1 - x0)
    return points[-1][1]


def write_loss_chart(facts: dict[str, Any], folder: Path, stamp: str) -> Chart:
    """Write `loss-<stamp>.png` and `latest-loss.png` into ``folder``; never raises for a missing library or data."""
    train, evals = loss_series(facts)
    if not train and not evals:
        return Chart(note=no_chart_reason(facts))
    name = f"loss-{stamp}.png"
    if (same := _unchanged(folder / "latest-loss.png", train, evals)) is not None:
        from healthkit.system.fsutil import atomic_write

        atomic_write(folder / name, same)  # the series did not move since the last chart: no redraw
        return Chart(
            path=folder / name,
            link=name,
            caption=caption(train, evals),
            train_points=len(train),
            eval_points=len(evals),
        )
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        return Chart(
            note="No loss chart: matplotlib is not installed (pip install 'healthkit[charts]').",
            train_points=len(train),
            eval_points=len(evals),
        )
    from healthkit.system.fsutil import atomic_write

    fig = Figure(figsize=SIZE_IN, dpi=DPI)
    canvas = FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    t, e = _thin(train), _thin(evals)
    if t:
        ax.plot([p[0] for p in t], [p[1] for p in t], color=TRAIN_COLOR, linewidth=2, label="training loss", zorder=3)
    if e:
        ax.plot(
            [p[0] for p in e],
            [p[1] for p in e],
            color=EVAL_COLOR,
            linewidth=2,
            marker="o",
            markersize=4,
            label="validation loss",
            zorder=4,
        )
        paired = [(x, y, tr) for x, y in e if (tr := _interp(train, x)) is not None]
        if len(paired) >= 2:
            ax.fill_between(
                [p[0] for p in paired],
                [p[2] for p in paired],
                [p[1] for p in paired],
                color=GAP_COLOR,
                alpha=0.15,
                linewidth=0,
                label="validation - training gap",
                zorder=1,
            )
        if paired:
            x, y, tr = paired[-1]
            ax.annotate(
                f"gap {y - tr:+.3g} at step {x:g}",
                xy=(x, y),
                xytext=(-8, 10),
                textcoords="offset points",
                ha="right",
                va="bottom",
                fontsize=9,
                color=EVAL_COLOR,
            )
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.set_title("Training and validation loss")
    ax.grid(True, alpha=0.3)
    ax.legend(loc="upper right", fontsize=9)
    fig.tight_layout()
    canvas.draw()
    height = fig.bbox.height
    box = ax.get_window_extent()
    meta = {
        "train": train,
        "eval": evals,
        "axes_px": [box.x0, height - box.y1, box.x1, height - box.y0],  # left, top, right, bottom (image pixels)
        "xlim": list(ax.get_xlim()),
        "ylim": list(ax.get_ylim()),
        "colors": {"train": TRAIN_COLOR, "eval": EVAL_COLOR},
        "drawn_by": _drawn_by(),
    }
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, metadata={PNG_KEY: json.dumps(meta, separators=(",", ":"))})
    path = folder / name
    atomic_write(path, buf.getvalue())
    atomic_write(folder / "latest-loss.png", buf.getvalue())
    return Chart(path=path, link=name, caption=caption(train, evals), train_points=len(train), eval_points=len(evals))


def _drawn_by() -> str:
    """What drew a chart: a chart drawn by another healthkit version is drawn again, never reused."""
    from healthkit._version import __version__

    return f"healthkit {__version__}"


def png_text(data: bytes, key: str = PNG_KEY) -> str | None:
    """The tEXt chunk ``key`` of a PNG, read without an image library (None when absent or not a PNG)."""
    if not data.startswith(b"\x89PNG\r\n\x1a\n"):
        return None
    pos = 8
    while pos + 8 <= len(data):
        length, kind = int.from_bytes(data[pos : pos + 4], "big"), data[pos + 4 : pos + 8]
        body = data[pos + 8 : pos + 8 + length]
        if kind == b"tEXt":
            k, _, text = body.partition(b"\0")
            if k == key.encode("latin-1"):
                return text.decode("latin-1")
        if kind == b"IEND":
            break
        pos += 12 + length
    return None


def _unchanged(latest: Path, train: list[tuple[float, float]], evals: list[tuple[float, float]]) -> bytes | None:
    """The bytes of ``latest`` when it already draws exactly these series (a cron run between two checkpoints).

    Drawing costs matplotlib's import and about half a second per workspace; the loss history
    only moves when a checkpoint is written, so most scheduled runs would redraw the same picture.
    """
    try:
        data = latest.read_bytes()
        meta = json.loads(png_text(data) or "null")
    except (OSError, ValueError):
        return None
    if not isinstance(meta, dict) or meta.get("drawn_by") != _drawn_by():
        return None
    if meta.get("colors") != {"train": TRAIN_COLOR, "eval": EVAL_COLOR}:
        return None
    same = json.loads(json.dumps({"train": train, "eval": evals})) == {
        "train": meta.get("train"),
        "eval": meta.get("eval"),
    }
    return data if same else None
