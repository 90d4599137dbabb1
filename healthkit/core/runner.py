"""Run checks concurrently, each under a timeout; a crash or a hang becomes an `unknown` result, never a stop."""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from healthkit.contract.monitoring_costs import update_costs
from healthkit.core.findings import CheckOutput, CheckResult, Evidence, Finding, Status, status_for
from healthkit.core.registry import Check
from healthkit.system.redact import redact_mapping, redact_text

COSTS_HISTORY = 200


def _normalize(check: Check, value: Any) -> CheckOutput:
    if isinstance(value, CheckOutput):
        out = value
    elif isinstance(value, list) and all(isinstance(f, Finding) for f in value):
        out = CheckOutput(findings=value)
    else:
        raise TypeError(f"check {check.id!r} returned {type(value).__name__}, not a list of Finding or a CheckOutput")
    declared = {d.code: d.fixes for d in check.codes}
    for f in out.findings:
        if not isinstance(f, Finding):
            raise TypeError(f"check {check.id!r} returned a non-Finding: {f!r}")
        undeclared = [r.id for r in f.fixes if f.code in declared and r not in declared[f.code]]
        if undeclared:  # the contract: a code's CodeDoc lists every FixRef its findings may carry
            raise TypeError(
                f"check {check.id!r}: a {f.code} finding carries FixRef(s) its CodeDoc does not declare: "
                f"{', '.join(undeclared)}"
            )
    return out


def sanitize(f: Finding, check_id: str) -> Finding:
    """Stamp the check id and mask secrets in every text a report shows: the last line of defence."""
    return dataclasses.replace(
        f,
        check=check_id,
        problem=[redact_text(x) for x in f.problem],
        impact=[redact_text(x) for x in f.impact],
        evidence=[Evidence(redact_text(e.command), redact_text(e.observed)) for e in f.evidence],
        root_cause=[redact_text(x) for x in f.root_cause],
        recommendations=[redact_text(x) for x in f.recommendations],
        data=redact_mapping(f.data),
    )


def _code_ignored(code: str, ignore: list[str]) -> bool:
    return any(code == n or code.startswith(n + ".") for n in ignore)


STALL_S = 0.2  # a runner this long inside one check gets company: the next check starts on a new runner


def run_checks(
    ws: Any, checks: Iterable[Check], timeout_s: float, ignore_codes: Iterable[str] = ()
) -> list[CheckResult]:
    """Run the checks on daemon threads; each gets ``timeout_s`` from the common start.

    Threads (not processes) because the checks share the workspace's cached views; a hung thread is abandoned
    (daemon) so it cannot hold the audit or the exit. One runner thread takes the checks in turn, and whenever
    every runner has been inside one check for STALL_S another runner starts: a healthy workspace's checks are
    CPU-bound, and twenty threads side by side only fight for the GIL (a third slower on the example machine),
    while a check waiting on a hung disk, process or port still holds up no other.
    """
    checks = list(checks)
    ignore = list(ignore_codes)
    turns = _Turns(ws, checks)
    start = time.perf_counter()
    turns.run_until(start + timeout_s)
    return [_result(c, turns.slots[c.id], ignore, timeout_s, time.perf_counter() - start) for c in checks]


class _Turns:
    """The checks in turn on runner threads, a new runner whenever all are STALL_S inside one check."""

    def __init__(self, ws: Any, checks: list[Check]):
        self.ws = ws
        self.slots: dict[str, dict[str, Any]] = {c.id: {} for c in checks}
        self.pending = list(reversed(checks))
        self.busy: dict[int, float] = {}  # runner -> when its current check began
        self.left = len(checks)
        self.lock = threading.Condition()
        self.runners = 0

    def run_until(self, deadline: float) -> None:
        with self.lock:
            self._add_runner()
            while self.left:
                now = time.perf_counter()
                if now >= deadline:
                    return
                if self.pending and all(now - since >= STALL_S for since in self.busy.values()):
                    self._add_runner()
                self.lock.wait(min(STALL_S, deadline - now))

    def _add_runner(self) -> None:
        n = self.runners
        self.runners += 1
        self.busy[n] = time.perf_counter()
        threading.Thread(target=self._runner, args=(n,), name=f"checks-{n}", daemon=True).start()

    def _runner(self, n: int) -> None:
        while True:
            with self.lock:
                if not self.pending:
                    self.busy.pop(n, None)
                    return
                c = self.pending.pop()
                self.slots[c.id]["started"] = True
                self.busy[n] = time.perf_counter()
            self._run_one(c)
            with self.lock:
                self.slots[c.id]["done"] = True
                self.left -= 1
                if not self.left:
                    self.lock.notify_all()  # only the last one: a wake-up per check is a GIL hand-off per check

    def _run_one(self, c: Check) -> None:
        slot = self.slots[c.id]
        t0 = time.perf_counter()
        try:
            slot["out"] = _normalize(c, c.func(self.ws))
        except BaseException as exc:
            slot["error"] = f"{type(exc).__name__}: {redact_text(str(exc))}"
        slot["duration"] = time.perf_counter() - t0


def _result(c: Check, slot: dict[str, Any], ignore: list[str], timeout_s: float, elapsed: float) -> CheckResult:
    """One check's result: UNKNOWN when it did not finish (or start) in time or crashed, else from its findings."""
    if "done" not in slot:
        why = (
            f"did not finish within {timeout_s:g}s (a hung disk, process or port?)"
            if "started" in slot
            else f"did not start within {timeout_s:g}s: the checks before it did not finish (a hung disk, process or port?)"
        )
        return CheckResult(c.id, c.title, Status.UNKNOWN, [], [], {}, [], elapsed, error=why)
    if "error" in slot:
        return CheckResult(
            c.id, c.title, Status.UNKNOWN, [], [], {}, [], slot["duration"], error=f"crashed: {slot['error']}"
        )
    out: CheckOutput = slot["out"]
    findings = [sanitize(f, c.id) for f in out.findings if not _code_ignored(f.code, ignore)]
    status = status_for(findings)
    if out.unknown and status is Status.OK:
        status = Status.UNKNOWN
    notes = list(out.notes) + ([out.unknown] if out.unknown else [])
    return CheckResult(c.id, c.title, status, findings, list(out.healthy), dict(out.facts), notes, slot["duration"])


def append_costs(path: Path, results: list[CheckResult], total_s: float) -> str | None:
    """Append this audit's per-check cost to monitoring_costs.json (kept to the last runs).

    Returns a note when the file could not be written (a read-only workspace is not an error).
    """
    entry = {
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
        "total_s": round(total_s, 6),
        "checks": {r.check: round(r.duration_s, 6) for r in results},
    }

    def add(data: dict[str, Any]) -> None:
        runs = data.get("audit_runs")
        runs = runs if isinstance(runs, list) else []
        runs.append(entry)
        data["audit_runs"] = runs[-COSTS_HISTORY:]

    try:
        update_costs(path, add)
    except OSError as exc:
        return f"monitoring costs not recorded: {path}: {exc.strerror or exc}"
    return None
