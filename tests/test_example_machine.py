"""The machine of the hand-written report, built for real: each finding with code, severity and evidence; nothing false."""

from __future__ import annotations

import json

import jsonschema
import psutil
import pytest

from healthkit.core.api import audit
from healthkit.demo import build_example
from healthkit.reporting.render.markdown import render as render_md

from .conftest import REPO, run_cli


@pytest.fixture
def example(tmp_path):
    ex = build_example(tmp_path / "training", checkpoints=26, ckpt_bytes=64 * 1024)
    yield ex
    ex.cleanup()


def by_code(report):
    out = {}
    for f in report.findings:
        out.setdefault(f.code, []).append(f)
    return out


def test_findings_are_exactly_the_reports(example):
    report = audit(example.base, record_costs=False)
    codes = sorted(f.code for f in report.findings)
    assert codes == sorted(
        [
            "daemon.dead",
            "daemon.orphaned-training",
            "checkpoints.no-retention",
            "checkpoints.bloat",
            "config.doc-drift",
            "validation.not-running",
        ]
    ), [f.title for f in report.findings]
    sev = {f.code: f.severity.value for f in report.findings}
    assert sev["daemon.dead"] == "critical"
    assert {sev[c] for c in codes if c != "daemon.dead"} == {"warning"}
    assert report.exit_code == 2


def test_daemon_dead_evidence_names_the_real_pid(example):
    f = by_code(audit(example.base, record_costs=False))["daemon.dead"][0]
    commands = {e.command: e.observed for e in f.evidence}
    assert commands["cat .daemon.pid"] == str(example.dead_pid)
    ps = next(o for c, o in commands.items() if c.startswith("ps ") and str(example.dead_pid) in c)
    assert "does not exist" in ps
    assert any(f"orphaned process (PID {example.orphan_pid:d})" in p for p in f.problem)
    assert any("2 queued files" in i for i in f.impact)
    assert any("Recovered from crash" in r for r in f.root_cause)
    assert [x.id for x in f.fixes] == ["remove-stale-pid-file", "start-daemon"]


def test_orphan_is_the_real_process_and_not_its_starter(example):
    f = by_code(audit(example.base, record_costs=False))["daemon.orphaned-training"][0]
    orphans = f.data["orphans"]
    assert [o["pid"] for o in orphans] == [example.orphan_pid]
    proc = psutil.Process(example.orphan_pid)
    assert abs(orphans[0]["create_time"] - proc.create_time()) < 0.01
    assert proc.ppid() != 0 and proc.parent().pid != __import__("os").getpid()  # the starter is gone: re-parented
    assert {x.id: x.safety for x in f.fixes} == {"adopt-orphan": "safe", "kill-orphan": "unsafe"}


def test_bloat_counts_by_step_and_measures_like_du(example):
    import subprocess

    f = by_code(audit(example.base, record_costs=False))["checkpoints.bloat"][0]
    assert "26 checkpoints exist (checkpoint-100 through checkpoint-2600, ordered by step)" in f.problem
    du = int(
        subprocess.run(
            ["du", "-s", "-B1", str(example.base / "current_model")], capture_output=True, text=True
        ).stdout.split()[0]
    )
    rep = audit(example.base, record_costs=False)
    assert rep.facts["checkpoints"]["bytes"] == du
    assert rep.facts["checkpoints"]["count"] == 26


def test_drift_is_eval_steps_only_trailing_slash_is_not_a_warning(example):
    report = audit(example.base, record_costs=False)
    drift = by_code(report)["config.doc-drift"]
    assert len(drift) == 1
    keys = [d["key"] for d in drift[0].data["drifts"]]
    assert keys == ["eval_steps"]
    d = drift[0].data["drifts"][0]
    assert (d["doc_value"], d["config_value"]) == ("10", 500)
    assert any(e.observed.startswith(f"{d['line']}:- Eval steps: 10") for e in drift[0].evidence)
    notes = [n for r in report.results if r.check == "drift" for n in r.notes]
    assert any("base_model" in n and "trailing slash" in n for n in notes)


def test_validation_null_is_reported_as_null_not_missing(example):
    f = by_code(audit(example.base, record_costs=False))["validation.not-running"][0]
    assert f.problem[0] == "`status/training_status.json` shows `val_loss: null`"
    ev = f.evidence[0]
    assert json.loads(ev.observed) == {"val_loss": None, "val_train_gap": None}


def test_whats_working_and_training_status(example):
    report = audit(example.base, record_costs=False)
    titles = [h.title for h in report.healthy]
    assert "Training is progressing" in titles
    assert "Web monitors running" in titles
    assert "Checkpoints being saved" in titles
    t = report.facts["training"]
    assert (t["step"], t["total_steps"], t["percent"]) == (2693, 4980, 54.1)
    md = render_md(report)
    assert "Step: 2693 / 4980 (54%)" in md and "GPU: 716 MB / 24576 MB" in md and "Temperature: 44°C" in md
    for heading in (
        "## 🚨 CRITICAL ISSUES FOUND",
        "## ✅ WHAT'S WORKING",
        "## 📋 RECOMMENDATIONS",
        "### IMMEDIATE (Do Now)",
        "## 🎯 ROOT CAUSE ANALYSIS",
        "## 📊 CURRENT TRAINING STATUS",
    ):
        assert heading in md
    assert md.index("DAEMON IS DEAD") < md.index("WHAT'S WORKING")


def test_json_report_validates_against_the_shipped_schema(example):
    schema = json.loads((REPO / "healthkit" / "schemas" / "report.schema.json").read_text())
    report = audit(example.base, record_costs=False)
    jsonschema.validate(json.loads(report.to_json()), schema)


def test_cli_json_on_stdout(example):
    r = run_cli("audit", str(example.base), "--format", "json")
    assert r.returncode == 2, r.stderr
    data = json.loads(r.stdout)
    assert {(f["code"], f["severity"]) for f in data["findings"]} >= {
        ("daemon.dead", "critical"),
        ("config.doc-drift", "warning"),
    }
    assert b"healthkit CRITICAL" in r.stderr


def test_audit_changes_nothing_but_its_cost_log(example):
    import hashlib
    import os

    def snapshot():
        out = {}
        for root, _, files in os.walk(example.base):
            for name in files:
                p = os.path.join(root, name)
                if "status" in p or "monitoring_costs" in name:
                    continue  # the orphan keeps writing its status; the audit appends its costs
                with open(p, "rb") as fh:
                    out[p] = hashlib.sha256(fh.read()).hexdigest()
        return out

    before = snapshot()
    audit(example.base, record_costs=True)
    assert snapshot() == before
    costs = json.loads((example.base / "monitoring_costs.json").read_text())
    assert set(costs["audit_runs"][-1]["checks"]) >= {"daemon", "checkpoints", "drift", "validation", "disk"}
    assert psutil.pid_exists(example.orphan_pid)
