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
    slots: dict[str, dict[str, Any]] = {c.id: {} for c in checks}
    pending = list(reversed(checks))
    busy: dict[int, float] = {}  # runner -> when its current check began
    left = [len(checks)]
    lock = threading.Condition()

    def run_one(c: Check) -> None:
        slot = slots[c.id]
        t0 = time.perf_counter()
        try:
            slot["out"] = _normalize(c, c.func(ws))
        except BaseException as exc:
            slot["error"] = f"{type(exc).__name__}: {redact_text(str(exc))}"
        slot["duration"] = time.perf_counter() - t0

    def runner(n: int) -> None:
        while True:
            with lock:
                if not pending:
                    busy.pop(n, None)
                    return
                c = pending.pop()
                slots[c.id]["started"] = True
                busy[n] = time.perf_counter()
            run_one(c)
            with lock:
                slots[c.id]["done"] = True
                left[0] -= 1
                if not left[0]:
                    lock.notify_all()  # only the last one: a wake-up per check is a GIL hand-off per check

    def add_runner() -> None:
        n = len(runners)
        busy[n] = time.perf_counter()
        t = threading.Thread(target=runner, args=(n,), name=f"checks-{n}", daemon=True)
        runners.append(t)
        t.start()

    runners: list[threading.Thread] = []
    start = time.perf_counter()
    with lock:
        add_runner()
        while left[0]:
            now = time.perf_counter()
            if now >= start + timeout_s:
                break
            if pending and all(now - since >= STALL_S for since in busy.values()):
                add_runner()
            lock.wait(min(STALL_S, start + timeout_s - now))

    results: list[CheckResult] = []
    for c in checks:
        slot = slots[c.id]
        if "done" not in slot:
            why = (
                f"did not finish within {timeout_s:g}s (a hung disk, process or port?)"
                if "started" in slot
                else f"did not start within {timeout_s:g}s: the checks before it did not finish (a hung disk, process or port?)"
            )
            results.append(
                CheckResult(c.id, c.title, Status.UNKNOWN, [], [], {}, [], time.perf_counter() - start, error=why)
            )
            continue
        if "error" in slot:
            results.append(
                CheckResult(
                    c.id, c.title, Status.UNKNOWN, [], [], {}, [], slot["duration"], error=f"crashed: {slot['error']}"
                )
            )
            continue
        out: CheckOutput = slot["out"]
        findings = [sanitize(f, c.id) for f in out.findings if not _code_ignored(f.code, ignore)]
        status = status_for(findings)
        if out.unknown and status is Status.OK:
            status = Status.UNKNOWN
        notes = list(out.notes) + ([out.unknown] if out.unknown else [])
        results.append(
            CheckResult(c.id, c.title, status, findings, list(out.healthy), dict(out.facts), notes, slot["duration"])
        )
    return results


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
