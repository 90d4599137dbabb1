"""JUnit XML for CI dashboards: one testcase per check; findings at or above the fail level are failures.

The shape is the one Jenkins, GitLab and GitHub test reporters read (Ant's
`testsuites/testsuite/testcase` with `failure`, `error`, `system-out`); tests validate
it against tests/reports/data/junit.xsd. A check that could not run (`unknown`) is an
`error`, a plugin that failed to load is an errored testcase of its own.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from typing import TYPE_CHECKING, Any

from healthkit.core.findings import FailLevel, Finding, Status, fails_at

if TYPE_CHECKING:
    from healthkit.core.findings import CheckResult
    from healthkit.core.report import Report

# Characters XML 1.0 cannot carry (terminal escapes in evidence, NULs): dropped, never a broken file.
_INVALID_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def finding_text(f: Finding) -> str:
    """A finding as plain text for a CI log: what, why it matters, the evidence to re-run, what to do."""
    lines = [f"[{f.severity.value}] {f.code}: {f.title}"]
    for label, items in (
        ("Problem", f.problem),
        ("Impact", f.impact),
        ("Root cause", f.root_cause),
        ("Recommendation", f.recommendations),
    ):
        lines += [f"  {label}: {x}" for x in items]
    for e in f.evidence:
        lines.append(f"  $ {e.command}")
        lines += [f"    {line}" for line in e.observed.splitlines() or [""]]
    for x in f.fixes:
        lines.append(
            f"  Fix ({x.safety}): {x.title} [healthkit fix --{'safe' if x.safety == 'safe' else 'unsafe'} --only {f.code}]"
        )
    return "\n".join(lines)


def fails(result: CheckResult, fail_level: FailLevel | str = FailLevel.WARNING) -> bool:
    """Whether a check's status fails a CI run at this level: the CLI's exit-code rule (models.fails_at)."""
    return fails_at(result.status, fail_level)


def _clean(text: str) -> str:
    return _INVALID_XML.sub("", text)


def render(report: Report, fail_level: str = "warning", **_: Any) -> str:
    fail_level = FailLevel(fail_level)  # ValueError names the bad level
    cases: list[ET.Element] = []
    failures = errors = 0
    for r in report.sorted_results:
        case = ET.Element("testcase", {"classname": "healthkit", "name": r.check, "time": f"{r.duration_s:.3f}"})
        text = "\n\n".join(finding_text(f) for f in r.findings)
        if r.status is Status.UNKNOWN:
            errors += 1
            why = r.error or "; ".join(r.notes) or "the check gave no verdict"
            ET.SubElement(
                case, "error", {"type": "unknown", "message": _clean(f"{r.title}: could not check: {why}")}
            ).text = _clean(why)
        elif fails(r, fail_level):
            failures += 1
            codes = ", ".join(f"{f.code} ({f.severity.value})" for f in r.findings)
            message = f"{r.title}: {r.findings[0].title}" if len(r.findings) == 1 else f"{r.title}: {codes}"
            ET.SubElement(case, "failure", {"type": r.status.value, "message": _clean(message)}).text = _clean(text)
        out = [text] if text and not fails(r, fail_level) else []
        out += [f"OK: {h.title}" + "".join(f"\n  {d}" for d in h.details) for h in r.healthy]
        out += [f"Note: {n}" for n in r.notes]
        if out:
            ET.SubElement(case, "system-out").text = _clean("\n".join(out))
        cases.append(case)
    for e in report.load_errors:
        errors += 1
        case = ET.Element("testcase", {"classname": "healthkit.plugins", "name": e.source, "time": "0.000"})
        ET.SubElement(case, "error", {"type": "load-error", "message": _clean(e.message)}).text = _clean(e.message)
        cases.append(case)

    counts = {
        "tests": str(len(cases)),
        "failures": str(failures),
        "errors": str(errors),
        "skipped": "0",
        "time": f"{report.duration_s:.3f}",
    }
    root = ET.Element("testsuites", {"name": "healthkit", **counts})
    suite = ET.SubElement(
        root,
        "testsuite",
        {
            "name": f"healthkit {report.workspace}",
            **counts,
            "timestamp": report.generated_at,
            "hostname": report.hostname,
        },
    )
    props = ET.SubElement(suite, "properties")
    for name, value in (
        ("workspace", report.workspace),
        ("status", report.status.value),
        ("exit_code", str(report.exit_code_at(fail_level))),
        ("fail_level", fail_level.value),
        ("healthkit_version", report.version),
        ("summary", report.summary_line()),
    ):
        ET.SubElement(props, "property", {"name": name, "value": _clean(value)})
    suite.extend(cases)
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"
