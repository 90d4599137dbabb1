"""The audit report: check results gathered into one value with a verdict and an exit code.

Rendering is `healthkit.reporting.render.render(report, fmt)`: the renderers depend on the report, never the other way.
"""

from __future__ import annotations

from dataclasses import field
from typing import Any

from healthkit.core.findings import CheckResult, FailLevel, Finding, Healthy, Status, fails_at, worst_status
from healthkit.core.registry import CodeDoc, LoadError
from healthkit.system.records import record

REPORT_SCHEMA_VERSION = 1


def _hostname() -> str:
    import socket  # at first use: the socket module's import is a measurable share of an audit's start-up

    return socket.gethostname()


@record
class Report:
    """Everything one audit learned. ``exit_code`` follows the monitoring-plugin convention (0-3)."""

    workspace: str
    generated_at: str
    version: str
    results: list[CheckResult]
    load_errors: list[LoadError] = field(default_factory=list)
    settings_file: str | None = None
    duration_s: float = 0.0
    notes: list[str] = field(default_factory=list)
    settings_inferred: list[dict[str, Any]] = field(
        default_factory=list
    )  # healthkit.core.detect guesses, with evidence
    code_docs: dict[str, CodeDoc] = field(default_factory=dict)
    hostname: str = field(default_factory=_hostname)

    @property
    def status(self) -> Status:
        return worst_status(self.statuses())

    @property
    def exit_code(self) -> int:
        return self.status.exit_code

    def statuses(self) -> list[Status]:
        """Every check's status, and UNKNOWN for each plugin that failed to load."""
        return [r.status for r in self.results] + [Status.UNKNOWN for _ in self.load_errors]

    def exit_code_at(self, fail_level: FailLevel | str = FailLevel.WARNING) -> int:
        """The exit code under `--fail-level`: the worst verdict that fails at that level, else 0."""
        failing = [s for s in self.statuses() if fails_at(s, fail_level)]
        return worst_status(failing).exit_code if failing else 0

    @property
    def findings(self) -> list[Finding]:
        """All findings, worst first, then by code, so output is stable."""
        fs = [f for r in self.results for f in r.findings]
        return sorted(fs, key=lambda f: (-f.severity.rank, f.code))

    @property
    def healthy(self) -> list[Healthy]:
        return [h for r in self.sorted_results for h in r.healthy]

    @property
    def sorted_results(self) -> list[CheckResult]:
        return sorted(self.results, key=lambda r: r.check)

    @property
    def facts(self) -> dict[str, Any]:
        merged: dict[str, Any] = {}
        for r in self.sorted_results:
            merged.update(r.facts)
        return merged

    def counts(self) -> dict[str, int]:
        c = {"critical": 0, "warning": 0, "info": 0}
        for f in self.findings:
            c[f.severity.value] += 1
        return c

    def summary_line(self) -> str:
        c = self.counts()
        unknown = [r.check for r in self.results if r.status is Status.UNKNOWN]
        parts = [f"{c['critical']} critical", f"{c['warning']} warning", f"{c['info']} info"]
        text = f"healthkit {self.status.value.upper()}: " + ", ".join(parts)
        fixable = sum(1 for f in self.findings if any(x.safety == "safe" for x in f.fixes))
        unsafe_more = sum(1 for f in self.findings if f.fixes and not any(x.safety == "safe" for x in f.fixes))
        if fixable or unsafe_more:
            text += f"; {fixable} fixable with `healthkit fix --safe`"
            if unsafe_more:
                text += f" ({unsafe_more} more with --unsafe)"
        if unknown:
            text += f"; could not check: {', '.join(unknown)}"
        return text

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema_version": REPORT_SCHEMA_VERSION,
            "tool": "healthkit",
            "version": self.version,
            "workspace": self.workspace,
            "hostname": self.hostname,
            "generated_at": self.generated_at,
            "duration_s": round(self.duration_s, 6),
            "settings_file": self.settings_file,
            "settings_inferred": list(self.settings_inferred),
            "status": self.status.value,
            "exit_code": self.exit_code,
            "summary": self.summary_line(),
            "counts": self.counts(),
            "findings": [f.to_dict() for f in self.findings],
            "checks": [r.to_dict() for r in self.sorted_results],
            "healthy": [h.to_dict() for h in self.healthy],
            "facts": self.facts,
            "goodput": self.facts.get("goodput"),
            "load_errors": [{"source": e.source, "message": e.message} for e in self.load_errors],
            "notes": list(self.notes),
        }

    def to_json(self) -> str:
        """Strict JSON: a NaN or infinite figure (a diverged loss) is written as a string, which jq can read."""
        from healthkit.system.jsonio import dumps

        return dumps(self.to_dict())
