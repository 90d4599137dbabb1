"""Goodput: the share of the time with work queued that trained, and what each cause cost (a pure function of events).

Our trainer's daemon writes `logs/events.jsonl` (healthkit.contract.events); here those events become a timeline whose
every second with work queued has one cause: productive training, or lost to `no-daemon` (work queued and no
daemon alive), `redone-steps` (steps trained again after a resume from an older checkpoint), `stalled`,
`waiting-for-disk`, `restart` (daemon start, model load and resume overhead), `checkpointing` (saves), and
`unattributed` for the rest. Pauses, stops on request and an empty queue are not wall time. Evaluation counts
as productive. productive + lost == wall, always.

For a run without our events (a foreign run), `estimate` reads what its format recorded: timed points (log wall
times or checkpoint save times) with their steps: gaps far longer than a step takes, and steps that went back
(a resume from an older checkpoint), are marked as an estimate.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from healthkit.contract import events as ev

CAUSES = ("no-daemon", "redone-steps", "stalled", "waiting-for-disk", "restart", "checkpointing", "unattributed")
NOT_COUNTED = ("paused", "stopped", "idle", "none")
STALL_SECONDS = 900.0  # no progress this long while a training runs is a stall (the training.stalled minimum)
GAP_FACTOR = 3.0  # a foreign run's interval this many times its median per-step time holds a gap


@dataclass
class Goodput:
    since: float | None
    wall: float = 0.0
    productive: float = 0.0
    lost: dict[str, float] = field(default_factory=lambda: dict.fromkeys(CAUSES, 0.0))
    steps: dict[str, int] = field(default_factory=dict)
    estimate: bool = False
    basis: str = "logs/events.jsonl"

    def to_dict(self) -> dict[str, Any]:
        lost = [
            {"cause": c, "seconds": round(s, 3), "steps": self.steps.get(c)}
            for c, s in self.lost.items()
            if s > 0 or self.steps.get(c)
        ]
        return {
            "since": _iso(self.since),
            "wall_seconds": round(self.wall, 3),
            "productive_seconds": round(self.productive, 3),
            "ratio": round(self.productive / self.wall, 4) if self.wall > 0 else None,
            "lost": lost,
            "estimate": self.estimate,
            "basis": self.basis,
        }


def _iso(ts: float | None) -> str | None:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds") if ts is not None else None


def _num(v: Any) -> float | None:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) else None


def _at(e: dict[str, Any]) -> float:
    """When it happened: the event's own `at` (a time the daemon read, e.g. when training began) or when it was written."""
    return _num(e.get("at")) or float(e["ts"])


def from_events(
    events: Sequence[dict[str, Any]], now: float, *, daemon_alive: bool = True, last_progress: float | None = None
) -> Goodput | None:
    """The goodput since the first event; None without events. ``last_progress``: when the training last reported
    (the status file's updated_at): with no daemon alive now, the time after it is `no-daemon`; with one, a silence
    longer than STALL_SECONDS is `stalled`."""
    evs = sorted((e for e in events if isinstance(e.get("event"), str)), key=_at)
    if not evs:
        return None
    g = Goodput(since=_at(evs[0]))
    state, t = "none", _at(evs[0])
    training = 0.0
    trained_steps = 0
    redone = 0
    seg_start: float | None = None  # the step the current training segment began at
    last_step: float | None = None
    prev_state = "training"
    exited = True  # the previous daemon said it exits (a DAEMON_START after none means it died)

    def spend(until: float, as_state: str) -> None:
        nonlocal training
        span = max(0.0, until - t)
        if span <= 0 or as_state in NOT_COUNTED:
            return
        g.wall += span
        if as_state == "training":
            training += span
        elif as_state in g.lost:
            g.lost[as_state] += span
        else:
            g.lost["unattributed"] += span

    def end_segment(step: Any) -> None:
        nonlocal trained_steps, seg_start, last_step
        s = _num(step)
        if s is not None and seg_start is not None and s > seg_start:
            trained_steps += int(s - seg_start)
        if s is not None:
            last_step = s
        seg_start = None

    for e in evs:
        name, at = e["event"], _at(e)
        if name == ev.DAEMON_START:
            if not exited and state not in NOT_COUNTED:
                p = _num(e.get("previous_progress_at"))
                p = min(max(p if p is not None else t, t), at)
                spend(p, state)
                t = p
                if state == "training":
                    end_segment(e.get("previous_step"))
                spend(at, "no-daemon")
            else:
                spend(at, state)  # a stopped, paused or idle stretch is not wall time
            t, exited = at, False
            state = "restart"
            continue
        spend(at, state)
        t = at
        if name == ev.FILE_START:
            state, seg_start = "restart", _num(e.get("step")) or 0.0
        elif name == ev.TRAINING:
            state = "training"
            seg_start = _num(e.get("step")) if _num(e.get("step")) is not None else seg_start
        elif name == ev.ADOPT:
            state, seg_start = "training", _num(e.get("step"))
        elif name == ev.RESUME:
            frm, reached = _num(e.get("step")), _num(e.get("reached"))
            if frm is not None and reached is not None and reached > frm:
                redone += int(reached - frm)
        elif name == ev.CHECKPOINT:
            secs = _num(e.get("seconds")) or 0.0
            take = min(secs, training)
            training -= take
            g.lost["checkpointing"] += take
        elif name in (ev.CRASH, ev.FILE_FAILED):
            end_segment(e.get("step"))
            state = "restart"
        elif name in (ev.FILE_DONE,):
            end_segment(e.get("step"))
            state = "unattributed"
        elif name == ev.STOP:
            end_segment(e.get("step"))
            state = "stopped"
        elif name == ev.PAUSE:
            prev_state, state = state, "paused"
        elif name == ev.UNPAUSE:
            state = prev_state if state == "paused" else state
        elif name == ev.DISK_WAIT:
            if state == "training":
                end_segment(e.get("step"))
            state = "waiting-for-disk"
        elif name == ev.DISK_RESUMED:
            state = "restart"
        elif name == ev.IDLE:
            state = "idle"
        elif name == ev.DAEMON_EXIT:
            exited, state = True, "stopped"
    # up to now
    if state == "training" and last_progress is not None and last_progress > t:
        spend(last_progress, state)
        t = last_progress
    if state not in NOT_COUNTED:
        if not daemon_alive and not exited:
            spend(now, "no-daemon")
        elif state == "training" and now - t > STALL_SECONDS and last_progress is not None:
            spend(now, "stalled")
        else:
            spend(now, state)
    if seg_start is not None and last_step is not None and last_step > seg_start:
        trained_steps += int(last_step - seg_start)
    if redone and trained_steps > 0:
        per_step = training / trained_steps
        take = min(training, redone * per_step)
        training -= take
        g.lost["redone-steps"] += take
    g.steps["redone-steps"] = redone
    g.productive = training
    _balance(g)
    return g


def _balance(g: Goodput) -> None:
    """Rounding aside, productive + lost == wall: what no cause explains is `unattributed`."""
    gap = g.wall - g.productive - sum(g.lost.values())
    if abs(gap) > 1e-9:
        g.lost["unattributed"] = max(0.0, g.lost["unattributed"] + gap)


def estimate(times: Iterable[Sequence[float]], basis: str) -> Goodput | None:
    """A foreign run's goodput from timed points [[step, time]]: wall from the first to the last point; steps that go
    back in time order were redone; an interval slower than GAP_FACTOR x the median per-step time is a gap whose excess
    is `unattributed` (nothing says whether a daemon, a stall or a restart took it). None with fewer than 3 points."""
    pts = sorted((float(p[1]), float(p[0])) for p in times if math.isfinite(p[1]))
    if len(pts) < 3:
        return None
    g = Goodput(since=pts[0][0], estimate=True, basis=basis)
    g.wall = pts[-1][0] - pts[0][0]
    per_step = []
    for (t0, s0), (t1, s1) in zip(pts, pts[1:], strict=False):
        if s1 > s0 and t1 > t0:
            per_step.append((t1 - t0) / (s1 - s0))
    if not per_step or g.wall <= 0:
        return None
    med = sorted(per_step)[len(per_step) // 2]
    redone = 0
    reached = pts[0][1]
    for (t0, s0), (t1, s1) in zip(pts, pts[1:], strict=False):
        if s1 <= s0:
            continue
        span, steps = t1 - t0, s1 - s0
        again = max(0.0, min(reached, s1) - s0)  # steps below the furthest reached: trained again
        redone += int(again)
        expected = steps * med
        if span > GAP_FACTOR * expected:
            g.lost["unattributed"] += span - expected
        g.lost["redone-steps"] += min(span, again * med)
        reached = max(reached, s1)
    for (t0, s0), (t1, s1) in zip(pts, pts[1:], strict=False):
        if s1 <= s0:
            g.lost["restart"] += max(0.0, t1 - t0)  # the time between the last point and the resumed one
    g.steps["redone-steps"] = redone
    g.productive = max(0.0, g.wall - sum(g.lost.values()))
    _balance(g)
    return g
