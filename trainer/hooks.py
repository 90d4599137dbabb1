"""Timed monitoring hooks that cannot stall training.

Work that may block (a status write on a slow disk, an NVML query on a sick driver, the
costs file under its lock) runs on one background thread; the training thread only hands
it a closure (latest wins per name) and never waits. A job that runs past its timeout is
counted as a timeout and abandoned: a fresh worker thread takes over, so one hung hook
costs at most one stale reading. Work done on the training thread (the callback bodies)
is timed too. Both go to the "training" section of monitoring_costs.json, with their
share of the training wall time.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from healthkit.contract.monitoring_costs import update_costs

from .layout import iso_now


class HookCosts:
    """calls / total_s / max_s / timeouts per hook name; thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.hooks: dict[str, dict[str, float]] = {}
        self.evaluation = {"calls": 0, "total_s": 0.0, "max_s": 0.0}

    def record(self, name: str, seconds: float, timed_out: bool = False) -> None:
        with self._lock:
            h = self.hooks.setdefault(name, {"calls": 0, "total_s": 0.0, "max_s": 0.0, "timeouts": 0})
            h["calls"] += 1
            h["total_s"] += seconds
            h["max_s"] = max(h["max_s"], seconds)
            if timed_out:
                h["timeouts"] += 1

    def record_evaluation(self, seconds: float) -> None:
        with self._lock:
            e = self.evaluation
            e["calls"] += 1
            e["total_s"] += seconds
            e["max_s"] = max(e["max_s"], seconds)

    def total_s(self) -> float:
        with self._lock:
            return sum(h["total_s"] for h in self.hooks.values())

    def section(self, step: int, train_time_s: float) -> dict[str, Any]:
        with self._lock:
            hooks = {
                k: {
                    "calls": int(v["calls"]),
                    "total_s": round(v["total_s"], 6),
                    "max_s": round(v["max_s"], 6),
                    "timeouts": int(v["timeouts"]),
                }
                for k, v in sorted(self.hooks.items())
            }
            total = sum(v["total_s"] for v in self.hooks.values())
            ev = dict(self.evaluation)
        return {
            "updated_at": iso_now(),
            "step": step,
            "train_time_s": round(train_time_s, 6),
            "hooks": hooks,
            "hook_share": round(total / train_time_s, 6) if train_time_s > 0 else None,
            # The evaluation loop is the validation itself, not monitoring: reported, not in hook_share.
            "evaluation": {
                "calls": int(ev["calls"]),
                "total_s": round(ev["total_s"], 6),
                "max_s": round(ev["max_s"], 6),
                "share": round(ev["total_s"] / train_time_s, 6) if train_time_s > 0 else None,
            },
        }


class Background:
    """One worker thread running named jobs, latest wins; a job past ``timeout_s`` is cut off."""

    def __init__(self, costs: HookCosts, timeout_s: float):
        self.costs = costs
        self.timeout_s = timeout_s
        self._cv = threading.Condition()
        self._pending: dict[str, Callable[[], Any]] = {}
        self._current: tuple[str, float, int] | None = None
        self._generation = 0
        self._closed = False
        self._start_worker()

    def _start_worker(self) -> None:
        self._generation += 1
        t = threading.Thread(
            target=self._run, args=(self._generation,), name=f"healthkit-hooks-{self._generation}", daemon=True
        )
        t.start()

    def _run(self, gen: int) -> None:
        while True:
            with self._cv:
                while not self._pending and not self._closed and gen == self._generation:
                    self._cv.wait(0.5)
                if gen != self._generation or (self._closed and not self._pending):
                    return
                name, fn = next(iter(self._pending.items()))
                del self._pending[name]
                t0 = time.perf_counter()
                self._current = (name, t0, gen)
            try:
                fn()
            except Exception:
                pass
            dt = time.perf_counter() - t0
            with self._cv:
                if gen != self._generation:  # we were cut off meanwhile: the timeout is already counted
                    return
                self._current = None
                self.costs.record(name, dt)
                self._cv.notify_all()

    def check_hung(self) -> None:
        """Abandon a job that has run past the timeout (called from the training thread: O(1))."""
        with self._cv:
            cur = self._current
            if cur is not None and time.perf_counter() - cur[1] > self.timeout_s:
                self.costs.record(cur[0], time.perf_counter() - cur[1], timed_out=True)
                self._current = None
                self._start_worker()

    def submit(self, name: str, fn: Callable[[], Any]) -> None:
        self.check_hung()
        with self._cv:
            self._pending[name] = fn
            self._cv.notify_all()

    def flush(self, timeout_s: float | None = None) -> bool:
        """Wait (bounded) until every submitted job ran; False when one is still running or hung."""
        deadline = time.monotonic() + (self.timeout_s if timeout_s is None else timeout_s)
        while True:
            self.check_hung()
            with self._cv:
                if not self._pending and self._current is None:
                    return True
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cv.wait(min(left, 0.05))

    def close(self) -> None:
        self.flush()
        with self._cv:
            self._closed = True
            self._cv.notify_all()


def write_costs(path: Path, costs: HookCosts, step: int, train_time_s: float) -> None:
    section = costs.section(step, train_time_s)

    def mutate(data: dict[str, Any]) -> None:
        data["training"] = section

    update_costs(path, mutate)
