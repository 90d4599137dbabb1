"""JUnit XML: valid against a JUnit schema, one testcase per check, failures carry the finding's text."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest
from hkreports import DATA, make_report

from healthkit.core.findings import Evidence, Finding, Severity
from healthkit.core.registry import LoadError
from healthkit.reporting.render import render

xmlschema = pytest.importorskip("xmlschema", reason="xmlschema validates the JUnit XSD (dev extra)")


@pytest.fixture(scope="module")
def schema():
    return xmlschema.XMLSchema(str(DATA / "junit.xsd"))


def cases(text: str) -> dict[str, ET.Element]:
    return {c.get("name"): c for c in ET.fromstring(text).iter("testcase")}


def test_schema_rejects_what_ci_would_choke_on(schema):
    assert not schema.is_valid('<testsuites><testsuite name="x" tests="two" failures="0" errors="0"/></testsuites>')
    assert not schema.is_valid(
        '<testsuites><testsuite name="x" tests="1" failures="0" errors="0">'
        '<testcase name="a"/></testsuite></testsuites>'
    )  # classname missing


def test_valid_and_one_testcase_per_check(schema):
    r = make_report(unknown=("gpu",))
    r = type(r)(
        **{**r.__dict__, "load_errors": [LoadError("entry point broken = x.y", "failed to load: ImportError: x")]}
    )
    text = render(r, "junit")
    schema.validate(text)
    got = cases(text)
    assert set(got) == {"checkpoints", "daemon", "disk", "gpu", "validation", "entry point broken = x.y"}
    suite = ET.fromstring(text).find("testsuite")
    assert (suite.get("tests"), suite.get("failures"), suite.get("errors")) == ("6", "3", "2")
    assert got["disk"].find("failure") is None and got["disk"].find("error") is None
    assert got["gpu"].find("error").get("type") == "unknown"
    assert "did not finish within 10s" in got["gpu"].find("error").get("message")


def test_failure_carries_the_findings_text(schema):
    text = render(make_report(), "junit")
    failure = cases(text)["daemon"].find("failure")
    assert failure.get("type") == "critical"
    assert failure.get("message") == "Daemon: Training daemon is dead"
    body = failure.text
    assert "[critical] daemon.dead: Training daemon is dead" in body
    assert "PID file names process 4242, which does not exist" in body
    assert "$ ps -p 4242" in body and "Remove the stale PID file and start the daemon" in body


def test_fail_level_critical_lets_warnings_pass_but_keeps_their_text(schema):
    text = render(make_report(), "junit", fail_level="critical")
    schema.validate(text)
    got = cases(text)
    assert got["checkpoints"].find("failure") is None
    assert "checkpoints.bloat" in got["checkpoints"].find("system-out").text
    assert got["daemon"].find("failure") is not None


def test_text_that_xml_cannot_carry_is_dropped_not_fatal(schema):
    ugly = Finding(
        "daemon.dead",
        Severity.CRITICAL,
        'bad \x1b[31m"red"\x00 & <tag>',
        ["p"],
        evidence=[Evidence("tail log", "line\x07 with bell\udcff")],
    )
    text = render(make_report({"daemon": [ugly]}), "junit")
    schema.validate(text)
    failure = cases(text)["daemon"].find("failure")
    assert failure.get("message") == 'Daemon: bad [31m"red" & <tag>'
    assert "line with bell" in failure.text


def test_an_all_ok_report_is_valid_with_no_failures(schema):
    text = render(make_report({"daemon": [], "disk": []}, facts={}), "junit")
    schema.validate(text)
    assert ET.fromstring(text).get("failures") == "0"


def test_cli_writes_junit_file(workspace, cli, tmp_path, schema):
    from hkreports import write_state

    write_state(workspace, [{"code": "disk.low-space", "severity": "warning", "title": "Disk 95% full"}])
    out = tmp_path / "junit.xml"
    res = cli("audit", workspace, "--format", "junit", "--output", out)
    assert res.exit_code == 1, res.output
    schema.validate(str(out))
    assert cases(out.read_text(encoding="utf-8"))["state"].find("failure").get("message") == "State file: Disk 95% full"
