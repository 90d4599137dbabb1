"""The built-in checks over a small HF-Trainer workspace, written by cron into a folder: every format stays valid."""

from __future__ import annotations

import json
import shutil
import subprocess
from datetime import datetime, timezone
from pathlib import Path

import pytest

from hkreports import DATA


def make_workspace(base: Path, steps: tuple[int, ...]) -> None:
    (base / "status").mkdir(parents=True, exist_ok=True)
    (base / "config.json").write_text(json.dumps({"base_model": "tiny", "eval_steps": 100, "save_steps": 100, "max_steps": 1000}))
    for step in steps:
        d = base / "current_model" / f"checkpoint-{step}"
        d.mkdir(parents=True, exist_ok=True)
        hist = [{"step": s, "loss": 2.5 - 0.002 * s} for s in range(10, step + 1, 10)]
        hist += [{"step": s, "eval_loss": 2.6 - 0.0015 * s} for s in range(100, step + 1, 100)]
        (d / "trainer_state.json").write_text(json.dumps({"global_step": step, "log_history": hist}))
        (d / "model.safetensors").write_bytes(b"0" * 1000)
    (base / "status" / "training_status.json").write_text(json.dumps({
        "state": "training", "step": steps[-1], "total_steps": 1000, "loss": 1.9, "val_loss": 2.15,
        "val_train_gap": 0.25, "updated_at": datetime.now(timezone.utc).isoformat()}))


def test_cron_run_with_the_builtin_checks(tmp_path, cli):
    pytest.importorskip("healthkit.checks.training", reason="built-in checks not present")
    ws = tmp_path / "ws"
    make_workspace(ws, (100, 200, 300))
    out = tmp_path / "reports"
    res = cli("audit", ws, "--output", out, "--format", "prom", "--select", "training,checkpoints,disk,validation,daemon")
    assert res.exit_code in (0, 1, 2, 3), res.output
    data = json.loads((out / "latest.json").read_text(encoding="utf-8"))
    assert data["since_last"]["previous"] is None
    if data["facts"].get("log_history", {}).get("train"):
        pytest.importorskip("matplotlib")
        assert data["chart"]["file"] and (out / data["chart"]["file"]).is_file()
    promtool = shutil.which("promtool")
    if promtool:
        proc = subprocess.run([promtool, "check", "metrics"], input=(out / "latest.prom").read_text(), text=True,
                              capture_output=True, timeout=30)
        assert proc.returncode == 0, proc.stdout + proc.stderr
    xmlschema = pytest.importorskip("xmlschema")
    junit = tmp_path / "junit.xml"
    cli("audit", ws, "--format", "junit", "--output", junit)
    xmlschema.XMLSchema(str(DATA / "junit.xsd")).validate(str(junit))
