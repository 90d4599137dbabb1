"""Hand-built reports and a one-check workspace for the report-format, history, chart and plugin tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from healthkit.core.findings import CheckResult, Evidence, Finding, FixRef, Healthy, Severity, Status, status_for
from healthkit.core.report import Report

DATA = Path(__file__).parent / "data"

DEAD = Finding(
    code="daemon.dead",
    severity=Severity.CRITICAL,
    title="Training daemon is dead",
    problem=["PID file names process 4242, which does not exist"],
    impact=["Nothing processes the queue"],
    evidence=[Evidence("ps -p 4242", "PID TTY TIME CMD")],
    root_cause=["The daemon crashed and nothing restarted it"],
    recommendations=["Remove the stale PID file and start the daemon"],
    fixes=[FixRef("daemon.remove-stale-pid", "Remove the stale PID file", "safe")],
    urgency="immediate",
    data={"pid": 4242},
)
BLOAT = Finding(
    code="checkpoints.bloat",
    severity=Severity.WARNING,
    title="12 checkpoints use 40.0G",
    problem=["12 checkpoints, limit 3"],
    recommendations=["Prune the oldest checkpoints"],
    data={"count": 12},
)
NO_VAL = Finding(
    code="validation.not-running",
    severity=Severity.WARNING,
    title="Validation never ran",
    problem=["val_loss is null after 900 steps"],
)
DRIFT_A = Finding(
    code="config.doc-drift",
    severity=Severity.WARNING,
    title="CLAUDE.md says eval_steps 500",
    problem=["CLAUDE.md: eval_steps 500, config.json: 100"],
    data={"doc": "CLAUDE.md", "key": "eval_steps"},
)
DRIFT_B = Finding(
    code="config.doc-drift",
    severity=Severity.WARNING,
    title="README.md says lr 1e-4",
    problem=["README.md: learning_rate 1e-4, config.json: 2e-4"],
    data={"doc": "README.md", "key": "learning_rate"},
)

TRAIN = [[s, 2.5 - 0.0015 * s] for s in range(10, 1010, 10)]
EVAL = [[s, 2.6 - 0.0012 * s] for s in range(100, 1100, 100)]

FACTS: dict[str, Any] = {
    "training": {
        "state": "training",
        "step": 1000,
        "total_steps": 4000,
        "percent": 25.0,
        "loss": 1.0,
        "val_loss": 1.4,
        "val_train_gap": 0.4,
        "eta_seconds": 7200,
        "eta": "2h 0m",
        "current_file": "queue/processing/a.jsonl",
        "updated_at": "2024-05-01T11:58:00+00:00",
        "updated_ago": "2m 0s",
        "gpu": {"memory_used_mb": 20000, "memory_total_mb": 81920, "temperature_c": 71},
        "verdict": "Training progresses.",
    },
    "disk": {"path": "/data", "total_bytes": 1000 * 1024**3, "free_bytes": 50 * 1024**3, "free_percent": 5.0},
    "checkpoints": {
        "dir": "/data/ws/current_model",
        "count": 12,
        "bytes": 40 * 1024**3,
        "newest_step": 1000,
        "oldest_step": 100,
        "limit": None,
        "best": None,
    },
    "log_history": {"train": TRAIN, "eval": EVAL},
    "daemon": {"state": "dead", "pid": 4242},
}


def result(
    check: str,
    findings: list[Finding] = (),
    facts: dict[str, Any] | None = None,
    status: Status | None = None,
    error: str | None = None,
) -> CheckResult:
    import dataclasses

    fs = [dataclasses.replace(f, check=check) for f in findings]
    return CheckResult(
        check,
        check.title(),
        status or status_for(fs),
        fs,
        [] if fs else [Healthy(f"{check} is fine")],
        facts or {},
        [],
        0.012,
        error,
    )


def make_report(
    findings_by_check: dict[str, list[Finding]] | None = None,
    facts: dict[str, Any] | None = None,
    generated_at: str = "2024-05-01T12:00:00+00:00",
    unknown: tuple[str, ...] = (),
    workspace: str = "/data/ws",
) -> Report:
    findings_by_check = (
        {"daemon": [DEAD], "checkpoints": [BLOAT], "validation": [NO_VAL], "disk": []}
        if findings_by_check is None
        else findings_by_check
    )
    facts = FACTS if facts is None else facts
    results = [result(c, fs) for c, fs in findings_by_check.items()]
    results += [result(c, status=Status.UNKNOWN, error="did not finish within 10s") for c in unknown]
    if results and facts:
        first = results[0]
        results[0] = CheckResult(
            first.check,
            first.title,
            first.status,
            first.findings,
            first.healthy,
            dict(facts),
            first.notes,
            first.duration_s,
            first.error,
        )
    return Report(
        workspace=workspace,
        generated_at=generated_at,
        version="0.1.0",
        results=results,
        duration_s=0.05,
        hostname="gpu-box",
    )


# --- a workspace whose one check reports what state.json says, for CLI and cron tests ---------------

STATE_CHECK = """
import json
from healthkit import CheckOutput, Evidence, Finding, Severity, check


@check("state", title="State file")
def state(ws):
    data = json.loads((ws.base / "state.json").read_text(encoding="utf-8"))
    if data.get("unknown"):
        return CheckOutput(unknown=data["unknown"])
    findings = [Finding(code=f["code"], severity=Severity(f["severity"]), title=f["title"], problem=[f["title"]],
                        evidence=[Evidence("cat state.json", f["title"])], data=f.get("data", {}))
                for f in data.get("findings", [])]
    return CheckOutput(findings=findings, facts=data.get("facts", {}))
"""


def write_state(
    ws: Path, findings: list[dict[str, Any]], facts: dict[str, Any] | None = None, unknown: str | None = None
) -> None:
    import json

    (ws / "state.json").write_text(
        json.dumps({"findings": findings, "facts": facts or {}, "unknown": unknown}), encoding="utf-8"
    )


def state_registry(ws: Path):
    from healthkit.core.registry import Registry

    reg = Registry()
    reg.load_plugin("hk_state_check.py", ws)
    assert not reg.errors, reg.errors
    return reg
