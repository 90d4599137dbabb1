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


def run_checks(
    ws: Any, checks: Iterable[Check], timeout_s: float, ignore_codes: Iterable[str] = ()
) -> list[CheckResult]:
    """Run every check in its own daemon thread; each gets ``timeout_s`` from the common start.

    Threads (not processes) because the checks share the workspace's cached views; a
    hung thread is abandoned (daemon) so it cannot hold the audit or the exit.
    """
    checks = list(checks)
    ignore = list(ignore_codes)
    slots: dict[str, dict[str, Any]] = {c.id: {} for c in checks}

    def run_one(c: Check) -> None:
        slot = slots[c.id]
        t0 = time.perf_counter()
        try:
            slot["out"] = _normalize(c, c.func(ws))
        except BaseException as exc:
            slot["error"] = f"{type(exc).__name__}: {redact_text(str(exc))}"
        slot["duration"] = time.perf_counter() - t0

    threads = []
    start = time.perf_counter()
    for c in checks:
        t = threading.Thread(target=run_one, args=(c,), name=f"check-{c.id}", daemon=True)
        t.start()
        threads.append((c, t))

    results: list[CheckResult] = []
    for c, t in threads:
        t.join(max(0.0, start + timeout_s - time.perf_counter()))
        slot = slots[c.id]
        if t.is_alive():
            results.append(
                CheckResult(
                    c.id,
                    c.title,
                    Status.UNKNOWN,
                    [],
                    [],
                    {},
                    [],
                    time.perf_counter() - start,
                    error=f"did not finish within {timeout_s:g}s (a hung disk, process or port?)",
                )
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
