"""Findings, check results and the report: the values every other module passes around.

They are frozen dataclasses rather than pydantic models because a cron audit must
start in a fraction of a second; the report's JSON Schema (schemas/report.schema.json)
is the published contract for their serialized form.
"""

from __future__ import annotations

import enum
from dataclasses import field
from typing import Any

from healthkit.system.records import record


class Severity(str, enum.Enum):
    """How bad a finding is; ordered so that max() gives the worst."""

    INFO = "info"
    WARNING = "warning"
    CRITICAL = "critical"

    @property
    def rank(self) -> int:
        return _SEVERITY_RANK[self]

    @property
    def emoji(self) -> str:
        return {"info": "🔵", "warning": "🟡", "critical": "🔴"}[self.value]


_SEVERITY_RANK = {Severity.INFO: 0, Severity.WARNING: 1, Severity.CRITICAL: 2}


class Status(str, enum.Enum):
    """Outcome of one check, in the monitoring-plugin order (exit code = rank)."""

    OK = "ok"
    WARNING = "warning"
    CRITICAL = "critical"
    UNKNOWN = "unknown"

    @property
    def exit_code(self) -> int:
        return {"ok": 0, "warning": 1, "critical": 2, "unknown": 3}[self.value]


class FailLevel(str, enum.Enum):
    """The lowest verdict that fails a run (`--fail-level`); a check that could not run always fails."""

    WARNING = "warning"
    CRITICAL = "critical"
    UNKNOWN = "unknown"


def fails_at(status: Status, level: FailLevel | str = FailLevel.WARNING) -> bool:
    """The one rule for `--fail-level`, used by the exit code, JUnit and the pytest plugin alike.

    A second copy of this rule once let `--format junit --fail-level critical` exit 0 beside an
    XML file that said `failures="1"`.
    """
    level = FailLevel(level)
    if status is Status.UNKNOWN:
        return True
    if status is Status.CRITICAL:
        return level is not FailLevel.UNKNOWN
    if status is Status.WARNING:
        return level is FailLevel.WARNING
    return False


class Progress(str, enum.Enum):
    """The training check's verdict on progress, for renderers to branch on (never on its wording).

    A str enum: it is written to the JSON report as its value, and a value read back from JSON
    compares equal to the member.
    """

    PROGRESSING = "progressing"
    NOT_PROGRESSING = "not-progressing"


def worst_status(statuses: list[Status]) -> Status:
    """Critical beats unknown beats warning beats ok (a known fire outranks a blind spot)."""
    order = [Status.CRITICAL, Status.UNKNOWN, Status.WARNING, Status.OK]
    for s in order:
        if s in statuses:
            return s
    return Status.OK


# Keys of a finding's ``data`` that say *which* thing it is about (a doc, a checkpoint, a port), in order.
IDENTITY_KEYS = (
    "identity",
    "key",
    "doc",
    "checkpoint",
    "path",
    "file",
    "dir",
    "pid_file",
    "config_key",
    "port",
    "name",
)


def finding_identity(code: str, data: Any) -> str:
    """Which problem a finding is, across two audits: its code plus the identifying facts in ``data``.

    Counts, PIDs and wording may change between runs without making it another finding. The
    fix engine (resolved or not after a fix) and the report history (new, resolved, still open)
    both call this, so they agree on what "the same finding" means.
    """
    data = data if isinstance(data, dict) else {}
    parts = [
        f"{k}={data[k]}"
        for k in IDENTITY_KEYS
        if isinstance(data.get(k), (str, int, float)) and not isinstance(data.get(k), bool)
    ]
    return f"{code}[{','.join(parts)}]" if parts else str(code)


@record
class Evidence:
    """One re-runnable observation: the shell command a person can type, and what we saw."""

    command: str
    observed: str

    def to_dict(self) -> dict[str, Any]:
        return {"command": self.command, "observed": self.observed}


@record
class FixRef:
    """A fix that applies to a finding, as the report names it (the engine holds the code)."""

    id: str
    title: str
    safety: str  # "safe" | "unsafe"
    args: tuple[str, ...] = ()  # what `healthkit fix` needs besides --only for this fix to act (`--keep N`)

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "title": self.title, "safety": self.safety}


@record
class Finding:
    """A problem a check observed, written for a person who must act on it.

    ``data`` carries machine-readable facts (PIDs, paths, values) that fixes and
    other renderers use, so nothing has to be parsed back out of the prose.
    """

    code: str
    severity: Severity
    title: str
    problem: list[str]
    impact: list[str] = field(default_factory=list)
    evidence: list[Evidence] = field(default_factory=list)
    root_cause: list[str] = field(default_factory=list)
    recommendations: list[str] = field(default_factory=list)
    fixes: list[FixRef] = field(default_factory=list)
    urgency: str = "short-term"  # immediate | short-term | long-term
    data: dict[str, Any] = field(default_factory=dict)
    check: str = ""

    @property
    def identity(self) -> str:
        return finding_identity(self.code, self.data)

    def to_dict(self) -> dict[str, Any]:
        return {
            "code": self.code,
            "severity": self.severity.value,
            "check": self.check,
            "title": self.title,
            "problem": list(self.problem),
            "impact": list(self.impact),
            "evidence": [e.to_dict() for e in self.evidence],
            "root_cause": list(self.root_cause),
            "recommendations": list(self.recommendations),
            "urgency": self.urgency,
            "fixes": [f.to_dict() for f in self.fixes],
            "data": self.data,
        }


@record
class Healthy:
    """Something a check verified as working, with the figures that show it ("What's working")."""

    title: str
    details: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"title": self.title, "details": list(self.details)}


@record
class CheckOutput:
    """What a check function returns when it has more to say than a list of findings.

    A check may return a plain ``list[Finding]``; it returns this when it also has
    verified-healthy items, facts for the report (``facts``: e.g. training progress),
    or cannot decide (``unknown``: why it could not look).
    """

    findings: list[Finding] = field(default_factory=list)
    healthy: list[Healthy] = field(default_factory=list)
    facts: dict[str, Any] = field(default_factory=dict)
    unknown: str | None = None
    notes: list[str] = field(default_factory=list)


@record
class CheckResult:
    """One check's outcome in a run: status, findings, and what it cost."""

    check: str
    title: str
    status: Status
    findings: list[Finding]
    healthy: list[Healthy]
    facts: dict[str, Any]
    notes: list[str]
    duration_s: float
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "check": self.check,
            "title": self.title,
            "status": self.status.value,
            "duration_s": round(self.duration_s, 6),
            "error": self.error,
            "notes": list(self.notes),
            "findings": [f.code for f in self.findings],
            "healthy": [h.to_dict() for h in self.healthy],
        }


def status_for(findings: list[Finding]) -> Status:
    worst = max((f.severity.rank for f in findings), default=-1)
    if worst == 2:
        return Status.CRITICAL
    if worst == 1:
        return Status.WARNING
    return Status.OK
