"""`from healthkit import audit` in a CI job: a report with findings, status, exit code and every renderer."""

from __future__ import annotations

import json

from hkreports import state_registry, write_state

from healthkit import audit
from healthkit.reporting.render import render


def test_ci_usage_from_python(workspace):
    write_state(
        workspace,
        [{"code": "disk.low-space", "severity": "warning", "title": "Disk 93% full"}],
        facts={"disk": {"path": "/", "total_bytes": 100, "free_bytes": 7, "free_percent": 7.0}},
    )
    report = audit(workspace, registry=state_registry(workspace), record_costs=False)
    assert report.exit_code == 1 and report.status.value == "warning"
    assert [f.code for f in report.findings] == ["disk.low-space"]
    assert json.loads(render(report, "json"))["findings"][0]["title"] == "Disk 93% full"
    assert render(report, "nagios").startswith("HEALTHKIT WARNING - 0 critical, 1 warning | ")
    assert '<testcase classname="healthkit" name="state"' in render(report, "junit")
    assert "healthkit_disk_free_bytes" in render(report, "prom")
    assert render(report, "md").startswith("# SYSTEM HEALTH REPORT")


def test_output_folder_without_trailing_slash_is_a_folder(workspace, cli, tmp_path):
    """pathlib drops the `/` of `--output reports/`; a new name without an extension is still a folder."""
    res = cli("audit", workspace, "--output", tmp_path / "reports")
    assert res.exit_code == 0, res.output
    assert (tmp_path / "reports" / "latest.md").is_file() and (tmp_path / "reports" / "latest.json").is_file()
    res = cli("audit", workspace, "--output", tmp_path / "one.md")
    assert res.exit_code == 0 and (tmp_path / "one.md").is_file()
