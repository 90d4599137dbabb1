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
from dataclasses import field
from datetime import UTC, datetime
from typing import Any

from healthkit.contract import events as ev
from healthkit.system.records import identity_record

CAUSES = ("no-daemon", "redone-steps", "stalled", "waiting-for-disk", "restart", "checkpointing", "unattributed")
NOT_COUNTED = ("paused", "stopped", "idle", "none")
STALL_SECONDS = 900.0  # no progress this long while a training runs is a stall (the training.stalled minimum)
GAP_FACTOR = 3.0  # a foreign run's interval this many times its median per-step time holds a gap


@identity_record
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
    line = _Timeline(_at(evs[0]))
    for e in evs:
        line.event(e["event"], e, _at(e))
    line.until(now, daemon_alive, last_progress)
    return line.result()


class _Timeline:
    """The events replayed in time order: each stretch between two events is spent in the state the first left.

    ``training`` is the seconds spent training (checkpoint saves and redone steps are taken out of it at the end),
    a training *segment* runs from the step it began at (``seg_start``) to the step its end event names.
    """

    def __init__(self, since: float):
        self.g = Goodput(since=since)
        self.state, self.t = "none", since
        self.training = 0.0
        self.trained_steps = 0
        self.redone = 0
        self.seg_start: float | None = None
        self.last_step: float | None = None
        self.prev_state = "training"
        self.exited = True  # the previous daemon said it exits (a DAEMON_START after none means it died)

    def spend(self, until: float, as_state: str) -> None:
        span = max(0.0, until - self.t)
        if span <= 0 or as_state in NOT_COUNTED:
            return
        self.g.wall += span
        if as_state == "training":
            self.training += span
        else:
            self.g.lost[as_state if as_state in self.g.lost else "unattributed"] += span

    def end_segment(self, step: Any) -> None:
        s = _num(step)
        if s is not None and self.seg_start is not None and s > self.seg_start:
            self.trained_steps += int(s - self.seg_start)
        if s is not None:
            self.last_step = s
        self.seg_start = None

    def daemon_start(self, e: dict[str, Any], at: float) -> None:
        """A daemon started: after one that never said it exits, the time since its last progress is `no-daemon`."""
        if not self.exited and self.state not in NOT_COUNTED:
            p = _num(e.get("previous_progress_at"))
            p = min(max(p if p is not None else self.t, self.t), at)
            self.spend(p, self.state)
            self.t = p
            if self.state == "training":
                self.end_segment(e.get("previous_step"))
            self.spend(at, "no-daemon")
        else:
            self.spend(at, self.state)  # a stopped, paused or idle stretch is not wall time
        self.t, self.exited, self.state = at, False, "restart"

    def event(self, name: str, e: dict[str, Any], at: float) -> None:
        if name == ev.DAEMON_START:
            self.daemon_start(e, at)
            return
        self.spend(at, self.state)
        self.t = at
        step = e.get("step")
        if name == ev.FILE_START:
            self.state, self.seg_start = "restart", _num(step) or 0.0
        elif name == ev.TRAINING:
            self.state = "training"
            self.seg_start = _num(step) if _num(step) is not None else self.seg_start
        elif name == ev.ADOPT:
            self.state, self.seg_start = "training", _num(step)
        elif name == ev.RESUME:
            frm, reached = _num(step), _num(e.get("reached"))
            if frm is not None and reached is not None and reached > frm:
                self.redone += int(reached - frm)
        elif name == ev.CHECKPOINT:
            take = min(_num(e.get("seconds")) or 0.0, self.training)
            self.training -= take
            self.g.lost["checkpointing"] += take
        elif name in ENDS_SEGMENT:
            self.end_segment(step)
            self.state = ENDS_SEGMENT[name]
        elif name == ev.PAUSE:
            self.prev_state, self.state = self.state, "paused"
        elif name == ev.UNPAUSE:
            self.state = self.prev_state if self.state == "paused" else self.state
        elif name == ev.DISK_WAIT:
            if self.state == "training":
                self.end_segment(step)
            self.state = "waiting-for-disk"
        elif name in SETS_STATE:
            self.state = SETS_STATE[name]
        if name == ev.DAEMON_EXIT:
            self.exited = True

    def until(self, now: float, daemon_alive: bool, last_progress: float | None) -> None:
        """The stretch from the newest event to now: `no-daemon` when the daemon died, `stalled` after a silence."""
        if self.state == "training" and last_progress is not None and last_progress > self.t:
            self.spend(last_progress, self.state)
            self.t = last_progress
        if self.state in NOT_COUNTED:
            return
        if not daemon_alive and not self.exited:
            self.spend(now, "no-daemon")
        elif self.state == "training" and now - self.t > STALL_SECONDS and last_progress is not None:
            self.spend(now, "stalled")
        else:
            self.spend(now, self.state)

    def result(self) -> Goodput:
        """Redone steps cost what a step cost on average; what is left of the training time is productive."""
        g = self.g
        if self.seg_start is not None and self.last_step is not None and self.last_step > self.seg_start:
            self.trained_steps += int(self.last_step - self.seg_start)
        if self.redone and self.trained_steps > 0:
            take = min(self.training, self.redone * self.training / self.trained_steps)
            self.training -= take
            g.lost["redone-steps"] += take
        g.steps["redone-steps"] = self.redone
        g.productive = self.training
        _balance(g)
        return g


# The events that end a training segment, and the state each leaves; those that only set the state.
ENDS_SEGMENT = {ev.CRASH: "restart", ev.FILE_FAILED: "restart", ev.FILE_DONE: "unattributed", ev.STOP: "stopped"}
SETS_STATE = {ev.DISK_RESUMED: "restart", ev.IDLE: "idle", ev.DAEMON_EXIT: "stopped"}


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
