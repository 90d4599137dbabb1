"""Start-up checks that fail loudly, the `trainer` extra, and the init/queue commands."""

from __future__ import annotations

import json
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from typer.testing import CliRunner

from healthkit.cli import app
from healthkit.trainer.layout import Layout
from healthkit.trainer.preflight import run_preflight

from .conftest import FAST_CONFIG, REPO


def _ws(tmp_path: Path, tiny_model_dir: Path, **over) -> Layout:
    import shutil

    from healthkit.trainer.scaffold import init_workspace

    init_workspace(tmp_path / "ws", **{**FAST_CONFIG, **over})
    shutil.copytree(tiny_model_dir, tmp_path / "ws" / "models" / "base")
    return Layout.of(tmp_path / "ws")


def test_preflight_ok_for_a_fresh_workspace(tmp_path: Path, tiny_model_dir: Path) -> None:
    pf = run_preflight(_ws(tmp_path, tiny_model_dir))
    assert pf.ok and not pf.warnings, pf.errors + pf.warnings  # init's README states config.json: no drift


def test_preflight_says_validation_would_not_run(tmp_path: Path, tiny_model_dir: Path) -> None:
    lay = _ws(tmp_path, tiny_model_dir, validation_split=0.0)
    pf = run_preflight(lay, drift=False)
    assert any("validation_split is 0" in e for e in pf.errors)
    lay = _ws(tmp_path / "2", tiny_model_dir, eval_steps=500, max_steps=100)
    pf = run_preflight(lay, drift=False)
    assert pf.ok and any("eval_steps=500 is more than max_steps=100" in w for w in pf.warnings)


def test_preflight_drift_policy_fail_or_warn(tmp_path: Path, tiny_model_dir: Path) -> None:
    lay = _ws(tmp_path, tiny_model_dir, drift_policy="fail")
    readme = lay.base / "README.md"
    # init states the config as prose lines; a JSON block stating another value must be read too
    readme.write_text(readme.read_text() + '\n```json\n{"eval_steps": 10}\n```\n')
    pf = run_preflight(lay)
    # No skip here: a drift check that stopped reading JSON blocks is the regression this test exists for.
    assert any("config.doc-drift" in e for e in pf.errors), pf.errors + pf.warnings
    cfg = json.loads(lay.config.read_text())
    cfg["drift_policy"] = "warn"
    lay.config.write_text(json.dumps(cfg))
    pf = run_preflight(lay)
    assert pf.ok and any("config.doc-drift" in w for w in pf.warnings)


def test_preflight_reports_missing_accelerate(
    tmp_path: Path, tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import importlib.util

    import healthkit.trainer.preflight as pfm

    real = importlib.util.find_spec
    monkeypatch.setattr(
        pfm.importlib.util, "find_spec", lambda name, *a: None if name == "accelerate" else real(name, *a)
    )
    pf = run_preflight(_ws(tmp_path, tiny_model_dir), drift=False)
    assert any("accelerate" in e and "healthkit[trainer]" in e for e in pf.errors)


def test_trainer_extra_declares_what_trainer_needs() -> None:
    extra = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]["trainer"]
    names = {d.split(">")[0].split("=")[0].split("[")[0].strip() for d in extra}
    assert {"torch", "transformers", "accelerate", "tokenizers", "peft"} <= names
    # ...and Trainer really refuses to run without accelerate:
    # Hide accelerate the way transformers looks for it (its availability probe), not by poisoning
    # sys.modules: that breaks transformers' own import differently once peft is installed.
    code = (
        "import transformers.training_args as ta\n"
        "ta.is_accelerate_available = lambda *a, **k: False\n"
        "try:\n    ta.TrainingArguments(output_dir='/tmp/x', use_cpu=True)\nexcept ImportError as e:\n    print('REFUSED', e)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert "REFUSED" in out.stdout and "accelerate" in out.stdout, out.stdout + out.stderr[-2000:]


def test_init_tiny_model_and_queue_commands(tmp_path: Path) -> None:
    runner = CliRunner()
    base = tmp_path / "ws"
    r = runner.invoke(app, ["init", str(base), "--tiny-model"])
    assert r.exit_code == 0, r.output
    assert (base / "models" / "base" / "model.safetensors").exists() and (
        base / "models" / "base" / "tokenizer.json"
    ).exists()
    cfg = json.loads((base / "config.json").read_text())
    assert cfg["base_model"] == "models/base" and cfg["save_total_limit"] == 3
    assert "- `eval_steps`: 10" in (base / "README.md").read_text()
    for d in ("inbox", "processing", "done", "failed"):
        assert (base / "queue" / d).is_dir()
    r = runner.invoke(app, ["queue", "add", str(base), str(base / "data" / "sample.jsonl"), "--priority", "1"])
    assert r.exit_code == 0 and "queued queue/inbox/p1-sample.jsonl" in r.output, r.output
    r = runner.invoke(app, ["queue", "list", str(base), "--json"])
    assert json.loads(r.output)["inbox"] == ["p1-sample.jsonl"]
    r = runner.invoke(app, ["daemon", "status", str(base)])
    assert r.exit_code == 3 and "not running" in r.output
    r = runner.invoke(app, ["daemon", "systemd-unit", str(base)])
    assert r.exit_code == 0 and "Restart=on-failure" in r.output


def test_a_hub_id_base_model_fails_the_start_with_78_and_the_audit_says_why(tmp_path: Path) -> None:
    """trainer/README.md: a base model that is not a local folder fails the start (exit 78); it used to be a warning."""
    from healthkit.trainer.scaffold import init_workspace

    base = tmp_path / "ws"
    init_workspace(base, **{**FAST_CONFIG, "base_model": "gpt2"})
    (base / "README.md").unlink()  # no drift to report: only the base model is wrong
    r = subprocess.run(
        [sys.executable, "-m", "healthkit.cli", "daemon", "start", str(base)],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=180,
    )
    assert r.returncode == 78, r.stdout + r.stderr
    assert "base_model 'gpt2' is not a local folder" in r.stderr and "Traceback" not in r.stderr
    assert not list((base / "queue" / "processing").iterdir())
    r = subprocess.run(
        [sys.executable, "-m", "healthkit.cli", "daemon", "start", str(base), "--supervise"],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=180,
    )
    assert r.returncode == 78 and "base_model 'gpt2' is not a local folder" in r.stderr, r.stdout + r.stderr
    a = subprocess.run(
        [sys.executable, "-m", "healthkit.cli", "audit", str(base), "--format", "json"],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
    )
    codes = {f["code"]: f for f in json.loads(a.stdout)["findings"]}
    assert a.returncode == 2 and "config.base-model-not-local" in codes
    assert "downloads nothing" in " ".join(codes["config.base-model-not-local"]["problem"])
