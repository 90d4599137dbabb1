"""The order a file's examples are trained in, fixed by the seed, and the windows of steps a rewind skips.

HF's RandomSampler draws each epoch's permutation from torch's global RNG when the epoch begins,
so which examples step N trained on can only be learned by replaying the run. A rewind has to
name them to skip them (PaLM's recipe for a loss spike: restart before it and skip the batches
that caused it), so the trainer orders its examples itself: epoch ``e`` is the shuffle of
``range(n)`` by ``random.Random(f"{seed}:{e}")`` (a str seed is stable across runs, machines and
Python's hash randomisation). HF calls ``set_epoch`` before every epoch, resumed ones included.

A skip window is a run of optimizer steps. Its examples are the positions those steps take in the
epoch's order: with per-device batch B, gradient accumulation G and W processes, step ``s`` of an
epoch takes positions ``[(s-1)·G·B·W, s·G·B·W)`` (accelerate deals consecutive batches of B to the
ranks in turn). The epoch is then yielded without them and topped up with the first examples it kept,
so its length does not change: HF's resume arithmetic (``global_step // steps per epoch``, then
"skip the first k batches") depends on it, and the positions before the window stay where they
were. Windows apply in the order they were recorded, each to the order the one before it left.

No torch here: the fix that records a window and the tests read the same arithmetic.
"""

from __future__ import annotations

import math
import os
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SEEDED = "seeded-1"  # what a checkpoint's marker says when its file trained in this order (checkpoints.mark)


def order_of(ckpt: Path) -> str | None:
    """The example order the checkpoint's file trained in, from its marker: SEEDED, or None for a checkpoint saved
    before the trainer ordered its examples itself (HF's RandomSampler: its batches cannot be named)."""
    from healthkit.contract.retry_checkpoints import MARK
    from healthkit.system.fsutil import CAP_TINY, ReadProblem, read_json

    try:
        got = read_json(ckpt / MARK, max_bytes=CAP_TINY)
    except ReadProblem:
        return None
    return got.get("data_order") if isinstance(got, dict) and isinstance(got.get("data_order"), str) else None


@dataclass(frozen=True)
class Geometry:
    """How a file's examples become optimizer steps."""

    examples: int
    batch: int  # per device
    accumulation: int = 1
    world: int = 1

    @property
    def per_step(self) -> int:
        """Examples one optimizer step takes, all ranks together."""
        return self.batch * self.accumulation * self.world

    @property
    def steps_per_epoch(self) -> int:
        """As HF counts them: each rank's batches (``ceil(n / (B·W))``), in groups of G, the last one possibly short."""
        batches = math.ceil(self.examples / (self.batch * self.world))
        return max(1, math.ceil(batches / self.accumulation))

    def span(self, step: int) -> tuple[int, int, int]:
        """(epoch, first position, end position) of optimizer step ``step`` (1-based, as ``global_step`` counts)."""
        epoch, within = divmod(step - 1, self.steps_per_epoch)
        start = within * self.per_step
        return epoch, min(start, self.examples), min(start + self.per_step, self.examples)

    def cut(self, first_step: int, last_step: int) -> dict[int, tuple[int, int]]:
        """The positions steps ``first_step..last_step`` take, per epoch, as one range each (a window may cross
        an epoch's end)."""
        out: dict[int, tuple[int, int]] = {}
        for step in range(first_step, last_step + 1):
            epoch, start, end = self.span(step)
            lo, hi = out.get(epoch, (start, end))
            out[epoch] = (min(lo, start), max(hi, end))
        return out


def epoch_order(examples: int, seed: int, epoch: int) -> list[int]:
    """The examples' order in ``epoch`` before any window is cut out."""
    order = list(range(examples))
    random.Random(f"{seed}:{epoch}").shuffle(order)
    return order


def without(order: Sequence[int], start: int, end: int) -> list[int]:
    """``order`` with positions ``[start, end)`` cut out, topped up to its length with the first examples it kept
    (never with a cut one). A window that would leave nothing is not cut: an epoch cannot train on no example."""
    kept = [*order[:start], *order[end:]]
    if not kept:
        return list(order)
    missing = len(order) - len(kept)
    return kept + (kept * math.ceil(missing / len(kept)))[:missing]


@dataclass(frozen=True)
class Window:
    """Steps ``first..last`` (inclusive) of a file whose batches a rewind skips."""

    first: int
    last: int

    @property
    def steps(self) -> int:
        return self.last - self.first + 1


class SeededOrder:
    """The training sampler (HF takes any sized iterable of indices): the seeded order with the windows cut out."""

    def __init__(self, geometry: Geometry, seed: int, windows: Sequence[Window] = ()):
        self.geometry = geometry
        self.seed = seed
        self.windows = list(windows)
        self.cuts = [geometry.cut(w.first, w.last) for w in windows]
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def order(self, epoch: int) -> list[int]:
        order = epoch_order(self.geometry.examples, self.seed, epoch)
        for cut in self.cuts:
            if epoch in cut:
                order = without(order, *cut[epoch])
        return order

    def skipped(self, epoch: int) -> list[int]:
        """The examples (dataset indices) this epoch does not train on because of the windows."""
        order = epoch_order(self.geometry.examples, self.seed, epoch)
        gone: list[int] = []
        for cut in self.cuts:
            if epoch in cut:
                start, end = cut[epoch]
                gone.extend(order[start:end])
                order = without(order, start, end)
        return gone

    def __len__(self) -> int:
        return self.geometry.examples

    def __iter__(self) -> Iterator[int]:
        return iter(self.order(self.epoch))


RECORD_ENV = "HEALTHKIT_TEST_RECORD_EXAMPLES"  # tests only: append each trained example's index to this file


class Recorded:
    """A dataset that appends every index it is asked for to a file (a line `--- start` and its length first).

    A test hook, like HEALTHKIT_TEST_INJECT_NAN_AT_STEP: with no data loader workers, HF asks the training
    dataset for exactly the examples it trains on, in order, and never for those a resume skips, so the file shows
    what a rewound run really trained on.
    """

    def __init__(self, dataset: Any, path: str):
        self.dataset = dataset
        self.out = open(path, "a", encoding="utf-8")  # noqa: SIM115 - open for the process's life; line-buffered below
        self.out.write(f"--- start\n{len(dataset)}\n")
        self.out.flush()

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int) -> Any:
        self.out.write(f"{i}\n")
        self.out.flush()
        return self.dataset[i]


def recorded(dataset: Any) -> Any:
    """``dataset``, recorded when the test hook asks for it."""
    path = os.environ.get(RECORD_ENV)
    return Recorded(dataset, path) if path else dataset
