"""Prometheus textfile output: valid exposition (promtool when installed), the facts as gauges, atomic writes."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from hkreports import FACTS, make_report, write_state

from healthkit.reporting.render import prom


def samples(text: str) -> dict[tuple[str, frozenset], float]:
    from prometheus_client.parser import text_string_to_metric_families

    return {
        (s.name, frozenset(s.labels.items())): s.value
        for fam in text_string_to_metric_families(text)
        for s in fam.samples
    }


def value(text: str, name: str, **labels: str) -> float:
    want = {("workspace", "/data/ws"), *labels.items()}
    found = [v for (n, ls), v in samples(text).items() if n == name and want <= set(ls)]
    assert len(found) == 1, (name, labels, found)
    return found[0]


def test_gauges_carry_the_report(report):
    text = prom.render(report)
    assert value(text, "healthkit_status") == 2
    assert value(text, "healthkit_check_status", check="daemon") == 2
    assert value(text, "healthkit_check_status", check="checkpoints") == 1
    assert value(text, "healthkit_check_status", check="disk") == 0
    assert value(text, "healthkit_findings", severity="critical") == 1
    assert value(text, "healthkit_findings", severity="warning") == 2
    assert value(text, "healthkit_finding_active", code="daemon.dead", severity="critical", check="daemon") == 1
    assert value(text, "healthkit_disk_free_bytes", path="/data") == FACTS["disk"]["free_bytes"]
    assert value(text, "healthkit_disk_free_ratio", path="/data") == pytest.approx(0.05)
    assert value(text, "healthkit_checkpoints") == 12
    assert value(text, "healthkit_checkpoint_bytes") == 40 * 1024**3
    assert value(text, "healthkit_training_step") == 1000
    assert value(text, "healthkit_training_loss") == 1.0
    assert value(text, "healthkit_training_val_loss") == pytest.approx(1.4)
    assert value(text, "healthkit_training_state", state="training") == 1
    assert value(text, "healthkit_training_state", state="paused") == 0
    assert value(text, "healthkit_daemon_up") == 0
    assert value(text, "healthkit_daemon_state", state="dead") == 1
    assert value(text, "healthkit_training_status_updated_timestamp_seconds") == 1714564680
    assert value(text, "healthkit_last_run_timestamp_seconds") == 1714564800
    assert value(text, "healthkit_gpu_memory_used_bytes") == 20000 * 1024 * 1024
    assert value(text, "healthkit_training_last_eval_step") == 1000
    assert all(name.startswith("healthkit_") for name, _ in samples(text))


def test_absent_facts_give_no_samples_and_no_crash():
    facts = {"training": {"state": "idle", "step": None, "loss": "n/a", "gpu": None}, "disk": {"path": None}}
    text = prom.render(make_report({"daemon": []}, facts=facts))
    names = {n for n, _ in samples(text)}
    assert "healthkit_training_step" not in names and "healthkit_training_loss" not in names
    assert "healthkit_checkpoints" not in names and "healthkit_gpu_temperature_celsius" not in names
    assert value(text, "healthkit_status") == 0


def test_hand_written_fallback_matches_prometheus_client(report):
    pytest.importorskip("prometheus_client", reason="prometheus_client not installed (extra `prom`)")
    fams = prom.families(report)
    assert samples(prom.render_text(fams)) == samples(prom._with_client(fams))


def test_without_prometheus_client_the_fallback_is_used(report, monkeypatch):
    monkeypatch.setitem(sys.modules, "prometheus_client", None)
    text = prom.render(report)
    assert "# TYPE healthkit_status gauge" in text
    assert 'healthkit_check_status{check="daemon",workspace="/data/ws"} 2.0' in text


def test_label_values_are_escaped():
    r = make_report({"daemon": []}, facts={"disk": {"path": 'C:\\odd "dir"\nx', "free_bytes": 1}})
    text = prom.render_text(prom.families(r))
    assert 'path="C:\\\\odd \\"dir\\"\\nx"' in text
    assert value(text, "healthkit_disk_free_bytes", path='C:\\odd "dir"\nx') == 1


@pytest.mark.parametrize("writer", ["client", "fallback"])
def test_promtool_check_metrics_accepts_it(report, writer, promtool):
    fams = prom.families(make_report(unknown=("gpu",)))
    text = prom._with_client(fams) if writer == "client" else prom.render_text(fams)
    proc = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.strip() == "" and proc.stderr.strip() == "", proc.stdout + proc.stderr  # no lint warnings


def test_cli_writes_the_textfile_atomically(workspace, cli, tmp_path):
    write_state(
        workspace,
        [{"code": "daemon.dead", "severity": "critical", "title": "Daemon dead"}],
        facts={"checkpoints": {"count": 3, "bytes": 1024}},
    )
    textfile = tmp_path / "textfile" / "healthkit.prom"
    textfile.parent.mkdir()
    textfile.write_text("old\n")
    os.chmod(textfile, 0o640)
    res = cli("audit", workspace, "--format", "prom", "--output", textfile)
    assert res.exit_code == 2, res.output
    text = textfile.read_text(encoding="utf-8")
    assert 'healthkit_finding_active{check="state",code="daemon.dead"' in text
    assert os.listdir(textfile.parent) == ["healthkit.prom"]  # no temporary file left for node_exporter to read
    assert oct(textfile.stat().st_mode & 0o777) == oct(0o640)  # replaced, keeping its mode
