"""The shipped Prometheus alerting rules: valid (promtool check), firing when they should (promtool test),
and written against metrics the prom renderer really emits."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from hkreports import make_report

from healthkit.reporting.render import prom

ALERTS = Path(__file__).resolve().parents[2] / "alerts"
RULES = ALERTS / "healthkit.rules.yml"
RULE_TESTS = ALERTS / "healthkit.rules.test.yml"
STABLE_CODES = {  # the public contract (docs/architecture.md)
    "daemon.dead",
    "daemon.pid-reused",
    "daemon.not-running",
    "daemon.orphaned-training",
    "checkpoints.bloat",
    "checkpoints.no-retention",
    "checkpoints.incomplete",
    "config.doc-drift",
    "config.invalid",
    "validation.not-running",
    "validation.overfitting",
    "disk.low-space",
    "disk.forecast-full",
    "training.stalled",
    "queue.stuck",
    "monitor.down",
    "gpu.unhealthy",
    "monitoring.over-budget",
}


def test_promtool_check_rules(promtool):
    proc = subprocess.run([promtool, "check", "rules", str(RULES)], capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SUCCESS: 6 rules found" in proc.stdout


def test_promtool_rule_unit_tests_fire_and_stay_quiet_as_expected(promtool):
    proc = subprocess.run(
        [promtool, "test", "rules", str(RULE_TESTS)], capture_output=True, text=True, timeout=60, cwd=ALERTS
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_rules_use_only_metrics_and_codes_that_exist():
    text = RULES.read_text(encoding="utf-8")
    exprs = "\n".join(re.findall(r"expr: \|?\n?((?:.*\n)+?)\s+for:", text))
    used = set(re.findall(r"\bhealthkit_[a-z_]+\b", exprs))
    facts_report = make_report({"daemon": [], "training": [], "disk": []})
    emitted = {f.name for f in prom.families(facts_report)} | {"healthkit_finding_active"}
    assert used and used <= emitted, used - emitted
    codes = set(re.findall(r'code="([^"]+)"', exprs))
    assert codes and codes <= STABLE_CODES, codes - STABLE_CODES
    assert {
        "HealthkitDaemonDead",
        "HealthkitTrainingStalled",
        "HealthkitDiskForecastFull",
        "HealthkitValidationNotRunning",
        "HealthkitReportStale",
    } <= set(re.findall(r"alert: (\w+)", text))
