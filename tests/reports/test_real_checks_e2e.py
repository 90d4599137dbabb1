"""The built-in checks over a small HF-Trainer workspace, written by cron into a folder: every format stays valid."""

from __future__ import annotations

import json
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hkreports import DATA


def make_workspace(base: Path, steps: tuple[int, ...]) -> None:
    (base / "status").mkdir(parents=True, exist_ok=True)
    (base / "config.json").write_text(
        json.dumps(
            {"base_model": "tiny", "eval_steps": 100, "save_steps": 100, "max_steps": 1000, "save_total_limit": 3}
        )
    )
    for step in steps:
        d = base / "current_model" / f"checkpoint-{step}"
        d.mkdir(parents=True, exist_ok=True)
        hist = [{"step": s, "loss": 2.5 - 0.002 * s} for s in range(10, step + 1, 10)]
        hist += [{"step": s, "eval_loss": 2.6 - 0.0015 * s} for s in range(100, step + 1, 100)]
        (d / "trainer_state.json").write_text(json.dumps({"global_step": step, "log_history": hist}))
        (d / "model.safetensors").write_bytes(b"0" * 1000)
    # The host's own disk is not under test.
    (base / "healthkit.toml").write_text(
        "[thresholds]\ndisk_min_free_percent = 0\ndisk_min_free_bytes = 0\ndisk_critical_free_percent = 0\n"
    )
    (base / "status" / "training_status.json").write_text(
        json.dumps(
            {
                "state": "training",
                "step": steps[-1],
                "total_steps": 1000,
                "loss": 1.9,
                "val_loss": 2.15,
                "val_train_gap": 0.25,
                "updated_at": datetime.now(UTC).isoformat(),
            }
        )
    )


SELECT = "training,checkpoints,disk,validation,daemon"
CHECKS = {"training", "checkpoints", "disk", "validation", "daemon"}


def break_workspace(base: Path) -> None:
    """A newest checkpoint without weights (also one over the trainer's default limit of 3) and queued work, no daemon."""
    d = base / "current_model" / "checkpoint-400"
    d.mkdir()
    (d / "trainer_state.json").write_text(json.dumps({"global_step": 400, "log_history": []}))
    (base / "queue" / "inbox").mkdir(parents=True)
    (base / "queue" / "inbox" / "a.jsonl").write_text("{}\n")


def prom_samples(path: Path) -> dict[tuple[str, tuple], float]:
    from prometheus_client.parser import text_string_to_metric_families

    return {
        (s.name, tuple(sorted((k, v) for k, v in s.labels.items() if k != "workspace"))): s.value
        for fam in text_string_to_metric_families(path.read_text(encoding="utf-8"))
        for s in fam.samples
    }


def test_cron_run_with_the_builtin_checks(tmp_path, cli):
    """Healthy, then broken: exit codes, findings, what changed since the last run, the textfile, JUnit."""
    ws = tmp_path / "ws"
    make_workspace(ws, (100, 200, 300))
    out = tmp_path / "reports"
    res = cli("audit", ws, "--output", out, "--format", "prom", "--select", SELECT)
    assert res.exit_code == 0, res.output
    data = json.loads((out / "latest.json").read_text(encoding="utf-8"))
    assert (data["status"], data["exit_code"], data["findings"]) == ("ok", 0, [])
    assert data["since_last"]["previous"] is None
    assert {c["check"]: c["status"] for c in data["checks"]} == dict.fromkeys(CHECKS, "ok")
    assert {h["title"] for h in data["healthy"]} >= {
        "Training is progressing",
        "Validation is running",
        "Disk space OK",
    }
    samples = prom_samples(out / "latest.prom")
    assert samples[("healthkit_status", ())] == 0
    assert {dict(k[1])["check"] for k in samples if k[0] == "healthkit_check_status"} == CHECKS

    break_workspace(ws)
    res = cli("audit", ws, "--output", out, "--format", "prom", "--select", SELECT)
    assert res.exit_code == 1, res.output
    data = json.loads((out / "latest.json").read_text(encoding="utf-8"))
    assert data["status"] == "warning"
    assert {c["check"]: c["status"] for c in data["checks"]} == {
        "checkpoints": "warning",
        "daemon": "warning",
        "disk": "ok",
        "training": "ok",
        "validation": "ok",
    }
    assert sorted(f["code"] for f in data["findings"]) == [
        "checkpoints.bloat",
        "checkpoints.incomplete",
        "daemon.not-running",
    ]
    incomplete = next(f for f in data["findings"] if f["code"] == "checkpoints.incomplete")
    assert incomplete["data"]["checkpoint"] == "checkpoint-400" and incomplete["urgency"] == "immediate"
    assert data["since_last"]["previous"] is not None
    assert sorted(n["code"] for n in data["since_last"]["new"]) == sorted(f["code"] for f in data["findings"])
    samples = prom_samples(out / "latest.prom")
    assert samples[("healthkit_status", ())] == 1
    assert samples[("healthkit_check_status", (("check", "checkpoints"),))] == 1
    assert samples[("healthkit_check_status", (("check", "daemon"),))] == 1
    assert samples[("healthkit_check_status", (("check", "training"),))] == 0

    xmlschema = pytest.importorskip("xmlschema", reason="xmlschema validates the JUnit XSD (dev extra)")
    junit = tmp_path / "junit.xml"
    assert cli("audit", ws, "--format", "junit", "--output", junit, "--select", SELECT).exit_code == 1
    xmlschema.XMLSchema(str(DATA / "junit.xsd")).validate(str(junit))
    assert '<testsuites name="healthkit" tests="5" failures="2"' in junit.read_text(encoding="utf-8")


def test_cron_textfile_passes_promtool(tmp_path, cli, promtool):
    ws = tmp_path / "ws"
    make_workspace(ws, (100, 200, 300))
    break_workspace(ws)
    out = tmp_path / "reports"
    assert cli("audit", ws, "--output", out, "--format", "prom", "--select", SELECT).exit_code == 1
    proc = subprocess.run(
        [promtool, "check", "metrics"],
        input=(out / "latest.prom").read_text(),
        text=True,
        capture_output=True,
        timeout=30,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_cron_run_draws_the_loss_chart(tmp_path, cli):
    pytest.importorskip("matplotlib", reason="the chart needs matplotlib (extra `charts`)")
    ws = tmp_path / "ws"
    make_workspace(ws, (100, 200, 300))
    out = tmp_path / "reports"
    assert cli("audit", ws, "--output", out, "--format", "prom", "--select", SELECT).exit_code == 0
    data = json.loads((out / "latest.json").read_text(encoding="utf-8"))
    assert data["facts"]["log_history"]["train"]
    assert data["chart"]["file"] and (out / data["chart"]["file"]).stat().st_size > 1000
