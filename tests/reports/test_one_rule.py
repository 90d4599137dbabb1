"""Rules held once: the fail level (exit code, JUnit, pytest plugin agree) and strict JSON in every file written."""

from __future__ import annotations

import json
import math
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from hkreports import write_state

from healthkit.core.findings import FailLevel, Finding, Severity, Status, fails_at, finding_identity
from healthkit.system.jsonio import dumps, loads_strict

STATES = {
    "ok": ([], None),
    "warning": ([{"code": "x.warn", "severity": "warning", "title": "a warning"}], None),
    "critical": (
        [
            {"code": "x.crit", "severity": "critical", "title": "a fire"},
            {"code": "x.warn", "severity": "warning", "title": "a warning"},
        ],
        None,
    ),
    "unknown": ([], "could not read the disk"),
}


def junit_fails(xml_text: str) -> int:
    suite = ET.fromstring(xml_text).find("testsuite")
    return int(suite.get("failures")) + int(suite.get("errors"))


@pytest.mark.parametrize("level", [lv.value for lv in FailLevel])
@pytest.mark.parametrize("state", list(STATES))
def test_junit_and_exit_code_agree_under_every_fail_level(workspace, cli, tmp_path, state, level):
    findings, unknown = STATES[state]
    write_state(workspace, findings, unknown=unknown)
    out = tmp_path / "out" / "h.xml"
    res = cli("audit", workspace, "--format", "junit", "--fail-level", level, "--output", out)
    failed = junit_fails(out.read_text(encoding="utf-8"))
    assert (res.exit_code != 0) == (failed > 0), (state, level, res.exit_code, failed)
    prop = {p.get("name"): p.get("value") for p in ET.fromstring(out.read_text()).iter("property")}
    assert prop["exit_code"] == str(res.exit_code) and prop["fail_level"] == level
    # stdout carries the same verdict as the file
    res2 = cli("audit", workspace, "--format", "junit", "--fail-level", level)
    assert res2.exit_code == res.exit_code and junit_fails(res2.stdout) == failed


def test_fails_at_is_ordered():
    """A higher level never fails what a lower level passes; unknown fails at every level."""
    order = [FailLevel.WARNING, FailLevel.CRITICAL, FailLevel.UNKNOWN]
    for s in Status:
        got = [fails_at(s, lv) for lv in order]
        assert got == sorted(got, reverse=True), (s, got)
    assert all(fails_at(Status.UNKNOWN, lv) for lv in order)
    assert not any(fails_at(Status.OK, lv) for lv in order)
    assert [fails_at(Status.WARNING, lv) for lv in order] == [True, False, False]
    assert [fails_at(Status.CRITICAL, lv) for lv in order] == [True, True, False]


def test_bad_fail_level_is_a_usage_error(workspace, cli):
    res = cli("audit", workspace, "--fail-level", "fatal")
    assert res.exit_code != 0 and "fail-level" in res.output


def test_strict_json_writer():
    text = dumps({"loss": float("nan"), "hi": [float("inf"), -math.inf], "path": Path("/x"), "ok": 1.5})
    assert loads_strict(text) == {"loss": "nan", "hi": ["inf", "-inf"], "path": "/x", "ok": 1.5}
    line = dumps({"a": [1, 2]}, line=True)
    assert line == '{"a":[1,2]}\n'
    with pytest.raises(ValueError):
        loads_strict('{"loss": NaN}')


def test_every_json_file_of_a_reports_folder_is_strict(workspace, cli, tmp_path):
    """latest.json once held a bare NaN where stdout printed "nan": history now writes through jsonio."""
    write_state(
        workspace,
        [
            {
                "code": "validation.non-finite",
                "severity": "warning",
                "title": "NaN loss",
                "data": {"val_loss": float("nan")},
            }
        ],
    )
    # write_state uses json.dumps, which writes a bare NaN: the check reads it back as a float NaN
    out = tmp_path / "reports"
    res = cli("audit", workspace, "--output", out)
    assert res.exit_code in (1, 2), res.output
    files = sorted(out.glob("*.json"))
    assert {p.name for p in files} >= {"latest.json"}
    for p in files:
        data = loads_strict(p.read_text(encoding="utf-8"))
        assert data["findings"][0]["data"]["val_loss"] == "nan"
    stdout = cli("audit", workspace, "--format", "json")
    assert loads_strict(stdout.stdout)["findings"][0]["data"]["val_loss"] == "nan"


def test_finding_identity_is_one_rule():
    """The fix engine and the history call the same function: same code + same identifying data = same finding."""
    a = Finding(
        code="config.doc-drift",
        severity=Severity.WARNING,
        title="3 values drift",
        problem=[],
        data={"doc": "CLAUDE.md", "count": 3},
    )
    b = Finding(
        code="config.doc-drift",
        severity=Severity.CRITICAL,
        title="4 values drift",
        problem=[],
        data={"doc": "CLAUDE.md", "count": 4},
    )
    c = Finding(
        code="config.doc-drift",
        severity=Severity.WARNING,
        title="3 values drift",
        problem=[],
        data={"doc": "README.md"},
    )
    assert a.identity == b.identity != c.identity
    assert a.identity == finding_identity("config.doc-drift", json.loads(json.dumps(a.to_dict()))["data"])
    from healthkit.reporting.history import finding_identities

    ids = finding_identities([a.to_dict(), c.to_dict()])
    assert ids == [a.identity, c.identity]
