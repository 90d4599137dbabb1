"""docs/fleet.md quotes the config files the end-to-end test runs, whole; the configs and the dashboard are valid."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

from tests.conftest import require_tool

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = ("prometheus.yml", "prometheus-federate.yml", "alertmanager.yml")


def test_every_config_in_the_doc_is_a_file_the_e2e_test_runs_word_for_word():
    doc = (ROOT / "docs" / "fleet.md").read_text(encoding="utf-8")
    quoted = re.findall(r"`alerts/([\w.-]+)`:\n\n```yaml\n(.*?)```\n", doc, flags=re.S)
    assert sorted(name for name, _ in quoted) == sorted(CONFIGS)
    for name, text in quoted:
        assert text == (ROOT / "alerts" / name).read_text(encoding="utf-8"), f"docs/fleet.md's copy of {name} drifted"
    assert not re.findall(r"```ya?ml\n", re.sub(r"`alerts/[\w.-]+`:\n\n```yaml\n", "", doc)), (
        "a YAML block no test runs"
    )
    e2e = (ROOT / "tests" / "reports" / "test_fleet_e2e.py").read_text(encoding="utf-8")
    for name in CONFIGS + ("healthkit.rules.yml", "grafana-dashboard.json"):
        assert f'ALERTS / "{name}"' in e2e, name


def test_promtool_and_amtool_accept_the_shipped_configs(promtool):
    for name in ("prometheus.yml", "prometheus-federate.yml"):
        proc = subprocess.run(
            [promtool, "check", "config", name], cwd=ROOT / "alerts", capture_output=True, text=True, timeout=60
        )
        assert proc.returncode == 0, proc.stdout + proc.stderr
    amtool = require_tool("amtool", "prometheus-alertmanager")
    proc = subprocess.run(
        [amtool, "check-config", "alertmanager.yml"], cwd=ROOT / "alerts", capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_dashboard_is_import_ready_and_covers_the_issue():
    dash = json.loads((ROOT / "alerts" / "grafana-dashboard.json").read_text(encoding="utf-8"))
    assert dash["__inputs"][0]["name"] == "DS_PROMETHEUS" and dash["uid"] and dash["schemaVersion"] >= 36
    titles = [p["title"] for p in dash["panels"]]
    assert titles == [
        "Verdict per workspace",
        "Findings over time",
        "Age of the newest report",
        "Training progress",
        "Loss",
        "Disk free and forecast",
        "Goodput and lost time by cause",
    ]
    assert len({p["id"] for p in dash["panels"]}) == len(titles)
    for p in dash["panels"]:
        assert p["datasource"]["uid"] == "${DS_PROMETHEUS}" and p["targets"], p["title"]
        for t in p["targets"]:
            assert re.search(
                r"\bhealthkit_[a-z_]+\{instance=~\"\$instance\",workspace=~\"\$workspace\"\}", t["expr"]
            ), t["expr"]
