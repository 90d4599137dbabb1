"""TensorBoard event files read through the `tensorboard` package's own loader (the optional extra).

Imported only when event files exist; without the package, `read_scalars` returns None and
the caller names the extra (`healthkit[tensorboard]`) rather than guessing at the file format.
"""

from __future__ import annotations

import struct
from pathlib import Path

MAX_EVENTS = 200_000


def _value(v) -> float | None:
    if v.HasField("simple_value"):
        return float(v.simple_value)
    if v.HasField("tensor"):
        t = v.tensor
        if t.float_val:
            return float(t.float_val[0])
        if t.double_val:
            return float(t.double_val[0])
        if len(t.tensor_content) == 4:
            return struct.unpack("<f", t.tensor_content)[0]
        if len(t.tensor_content) == 8:
            return struct.unpack("<d", t.tensor_content)[0]
    return None


def read_scalars(
    files: list[Path], walls: dict[str, dict[float, float]] | None = None
) -> dict[str, list[list[float]]] | None:
    """{tag: [[step, value], ...]} from the event files; None when the tensorboard package is not installed.

    ``walls``, when given, is filled with {tag: {step: wall time}} (when the run logged that step).
    """
    try:
        from tensorboard.backend.event_processing.event_file_loader import EventFileLoader
    except ImportError:
        return None
    out: dict[str, dict[float, float]] = {}
    n = 0
    for f in files:
        try:
            for event in EventFileLoader(str(f)).Load():
                n += 1
                if n > MAX_EVENTS:
                    break
                if not event.HasField("summary"):
                    continue
                for v in event.summary.value:
                    val = _value(v)
                    if val is not None:
                        out.setdefault(v.tag, {})[float(event.step)] = val
                        if walls is not None:
                            walls.setdefault(v.tag, {})[float(event.step)] = float(event.wall_time)
        except Exception:
            continue
    return {tag: sorted([s, v] for s, v in pts.items()) for tag, pts in out.items()}


def main(argv: list[str] | None = None) -> int:
    """`python -m healthkit.formats.tensorboard LOGDIR FROM TO TAG... [--wall-time]`: the scalars the audit read."""
    import sys

    args = list(sys.argv[1:] if argv is None else argv)
    wall = "--wall-time" in args
    args = [a for a in args if a != "--wall-time"]
    if len(args) < 4:
        print(main.__doc__, file=sys.stderr)
        return 64
    folder, lo, hi, tags = Path(args[0]), float(args[1]), float(args[2]), args[3:]
    walls: dict[str, dict[float, float]] = {}
    scalars = read_scalars(sorted(p for p in folder.glob("events.out.tfevents.*") if p.is_file()), walls)
    if scalars is None:
        print("the tensorboard package is not installed (pip install 'healthkit[tensorboard]')", file=sys.stderr)
        return 3
    rows: dict[float, list[str]] = {}
    for tag in tags:
        for s, v in scalars.get(tag, []):
            if lo <= s <= hi:
                rows.setdefault(s, []).append(f"{walls[tag][s]:.0f}" if wall else f"{tag}={v:g}")
    for s, r in sorted(rows.items()):
        print(f"step {s:g}: " + " ".join(r))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
