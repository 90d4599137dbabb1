"""The CLI in real subprocesses and through CliRunner: formats, outputs, exit codes, bad input, imports."""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

import jsonschema
import pytest
from typer.testing import CliRunner

from healthkit.cli import app

from .conftest import REPO, heavy_modules_after_audit, make_healthy_workspace, run_cli, write_json

SCHEMA = json.loads((REPO / "healthkit" / "schemas" / "report.schema.json").read_text())
runner = CliRunner()


@pytest.fixture
def healthy(tmp_path):
    return make_healthy_workspace(tmp_path / "ws")


def test_healthy_workspace_exits_0_with_no_finding(healthy):
    r = run_cli("audit", str(healthy), "--format", "json")
    assert r.returncode == 0, r.stderr.decode()
    data = json.loads(r.stdout)
    jsonschema.validate(data, SCHEMA)
    assert data["findings"] == [] and data["status"] == "ok"
    assert b"healthkit OK" in r.stderr


def test_markdown_is_the_default(healthy):
    result = runner.invoke(app, ["audit", str(healthy)])
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("# SYSTEM HEALTH REPORT")
    assert "## ✅ NO ISSUES FOUND" in result.stdout


def test_output_dir_writes_timestamped_and_latest(healthy, tmp_path):
    out = tmp_path / "reports"
    r = run_cli("audit", str(healthy), "--output", str(out) + "/")
    assert r.returncode == 0, r.stderr.decode()
    names = sorted(p.name for p in out.iterdir())
    assert "latest.md" in names and "latest.json" in names
    assert any(n.startswith("report-") and n.endswith(".md") for n in names)
    assert any(n.startswith("report-") and n.endswith(".json") for n in names)
    jsonschema.validate(json.loads((out / "latest.json").read_text()), SCHEMA)


def test_output_file(healthy, tmp_path):
    target = tmp_path / "r.json"
    r = run_cli("audit", str(healthy), "-f", "json", "-o", str(target))
    assert r.returncode == 0 and json.loads(target.read_text())["status"] == "ok"


def test_utf8_whatever_the_locale(tmp_path):
    from healthkit.demo import build_example

    ex = build_example(tmp_path / "ex", checkpoints=12, ckpt_bytes=4096)
    try:
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith("LC_") and k not in ("LANG", "LANGUAGE", "PYTHONIOENCODING", "PYTHONUTF8")
        }
        env["LANG"] = "C"
        env["LC_ALL"] = "C"
        r = run_cli("audit", str(ex.base), env=env)
        assert r.returncode == 2, r.stderr.decode()
        assert "🚨 CRITICAL ISSUES FOUND".encode() in r.stdout
        r = run_cli("audit", str(ex.base), "--ascii", env=env)
        r.stdout.decode("ascii")  # nothing but ASCII
        assert b"[!!] CRITICAL ISSUES FOUND" in r.stdout
    finally:
        ex.cleanup()


def test_usage_errors_exit_64_not_2(healthy):
    assert run_cli("audit", str(healthy), "--format", "yaml").returncode == 64
    assert run_cli("audit", str(healthy), "--no-such-flag").returncode == 64
    assert run_cli("explain", "no.such-code").returncode == 64
    assert run_cli("audit", str(healthy), "--fail-level", "bogus").returncode == 64


@pytest.mark.parametrize(
    "make,message",
    [
        (lambda p: p / "missing", "does not exist"),
        (lambda p: (p / "file").write_text("x") and p / "file", "not a directory"),
        (lambda p: (p / "healthkit.toml").write_text("[paths\n") and p, "invalid TOML"),
        (lambda p: (p / "healthkit.toml").write_text("[paths]\nconfgi = 'x'\n") and p, "paths.confgi"),
    ],
)
def test_unusable_workspace_exits_3_with_a_message(tmp_path, make, message):
    r = run_cli("audit", str(make(tmp_path)))
    assert r.returncode == 3
    assert message in r.stderr.decode() and b"Traceback" not in r.stderr


@pytest.mark.parametrize(
    "config,status",
    [
        ("{not json", "critical"),
        ("[1, 2, 3]", "critical"),
        (
            '{"$schema": "https://healthkit.dev/schemas/config.schema.json", "base_model": "m", "eval_steps": "ten", "save_total_limit": 0}',
            "critical",
        ),
        ('"just a string"', "critical"),
    ],
)
def test_corrupt_or_wrong_typed_config_is_a_finding(tmp_path, config, status):
    (tmp_path / "config.json").write_text(config)
    write_json(tmp_path / "status" / "training_status.json", ["not", "an", "object"])
    r = run_cli("audit", str(tmp_path), "--format", "json")
    assert b"Traceback" not in r.stderr, r.stderr.decode()
    data = json.loads(r.stdout)
    jsonschema.validate(data, SCHEMA)
    inv = [f for f in data["findings"] if f["code"] == "config.invalid"]
    assert inv and inv[0]["severity"] == status
    if "eval_steps" in config:
        pointers = {v["pointer"] for v in inv[0]["data"]["violations"]}
        assert pointers == {"/eval_steps", "/save_total_limit"}
    training = next(c for c in data["checks"] if c["check"] == "training")
    assert training["status"] == "unknown"  # a status file that is a list: cannot judge, says so


def test_binary_doc_and_symlink_loop_checkpoints(healthy):
    (healthy / "AGENTS.md").write_bytes(b"\x00\x01\x02binary\xff" * 100)
    (healthy / "current_model" / "loop").symlink_to(healthy / "current_model")
    (healthy / "current_model" / "checkpoint-999").symlink_to(healthy / "current_model" / "checkpoint-999")  # self-loop
    r = run_cli("audit", str(healthy), "--format", "json")
    assert b"Traceback" not in r.stderr
    data = json.loads(r.stdout)
    drift = next(c for c in data["checks"] if c["check"] == "drift")
    assert any("AGENTS.md" in n and "binary" in n for n in drift["notes"])
    # A checkpoint entry that cannot be read (a symlink loop) is never OK: the check is UNKNOWN, naming errno and path.
    ck = next(c for c in data["checks"] if c["check"] == "checkpoints")
    assert r.returncode == 3 and ck["status"] == "unknown"
    assert "ELOOP" in " ".join(ck["notes"]) and "checkpoint-999" in " ".join(ck["notes"])


@pytest.mark.skipif(
    os.geteuid() != 0 or not shutil.which("setpriv"), reason="needs root and setpriv to drop DAC capabilities"
)
def test_unreadable_folders(tmp_path):
    """Root reads everything, so the audit runs without CAP_DAC_* over folders owned by someone else."""
    import subprocess

    ws = make_healthy_workspace(tmp_path / "ws")
    for p in (ws / "current_model", ws / "status"):
        for dirpath, _, files in os.walk(p):
            os.chown(dirpath, 65534, 65534)
            for f in files:
                os.chown(os.path.join(dirpath, f), 65534, 65534)
        os.chmod(p, 0o700)
    drop = ["setpriv", "--inh-caps=-dac_override,-dac_read_search", "--bounding-set=-dac_override,-dac_read_search"]
    r = subprocess.run(
        [*drop, sys.executable, "-m", "healthkit.cli", "audit", str(ws), "--format", "json"],
        capture_output=True,
        timeout=60,
    )
    assert b"Traceback" not in r.stderr, r.stderr.decode()
    data = json.loads(r.stdout)
    checks = {c["check"]: c for c in data["checks"]}
    assert checks["checkpoints"]["status"] == "unknown"
    assert "permission denied" in " ".join(checks["checkpoints"]["notes"])
    assert checks["training"]["status"] == "unknown"
    assert r.returncode == 3


def test_checks_and_explain(healthy):
    r = run_cli("checks")
    assert r.returncode == 0
    out = r.stdout.decode()
    assert "daemon.orphaned-training" in out and "checkpoints.bloat" in out
    r = run_cli("explain", "daemon.dead")
    assert r.returncode == 0
    text = r.stdout.decode()
    for section in ("What it means", "Why it matters", "How it is fixed", "Fix safety"):
        assert section in text


def test_select_and_ignore_flags(tmp_path):
    (tmp_path / "config.json").write_text("{broken")
    r = run_cli("audit", str(tmp_path), "--select", "config,drift", "-f", "json")
    assert sorted(c["check"] for c in json.loads(r.stdout)["checks"]) == ["config", "drift"]
    r = run_cli("audit", str(tmp_path), "--select", "config", "--ignore", "config.invalid", "-f", "json")
    assert json.loads(r.stdout)["findings"] == [] and r.returncode == 0


def test_audit_imports_neither_torch_nor_transformers(healthy):
    assert heavy_modules_after_audit(healthy, 0) == []


def test_secrets_in_config_never_reach_the_report(tmp_path):
    write_json(
        tmp_path / "config.json",
        {"base_model": "m", "hf_token": "hf_" + "Z" * 34, "wandb_api_key": "k" * 40, "eval_steps": "ten"},
    )
    (tmp_path / "README.md").write_text("hf_token: hf_" + "Y" * 34 + "\n- Eval steps: 10\n")
    r = run_cli("audit", str(tmp_path), "-f", "json")
    r2 = run_cli("audit", str(tmp_path))
    for out in (r.stdout, r2.stdout, r.stderr):
        assert b"Z" * 34 not in out and b"k" * 40 not in out and b"Y" * 34 not in out


def test_early_prefetch_knows_every_value_option_of_audit():
    """healthkit.console finds PATH before typer loads; its option list must match the command's."""
    import typer.main

    from healthkit.console import AUDIT_VALUE_OPTIONS, FIX_VALUE_OPTIONS, early_workspace_path

    for name, options in (("audit", AUDIT_VALUE_OPTIONS), ("fix", FIX_VALUE_OPTIONS)):
        cmd = typer.main.get_command(app).commands[name]
        taking_values = {
            o for p in cmd.params if getattr(p, "param_type_name", "") == "option" and not p.is_flag for o in p.opts
        }
        assert taking_values == set(options), name
    assert early_workspace_path(["healthkit", "audit", "-f", "json", "/ws", "--select", "disk"]) == "/ws"
    assert early_workspace_path(["healthkit", "audit", "--format=json"]) == "."
    assert early_workspace_path(["healthkit", "fix", "/ws"]) is None  # a real fix opens the workspace after its lock
    assert early_workspace_path(["healthkit", "fix", "--only", "disk", "/ws", "--safe", "--dry-run"]) == "/ws"
    assert early_workspace_path(["healthkit", "audit", "a", "b"]) is None


def test_a_dry_run_audits_the_workspace_it_was_given_once(healthy, monkeypatch):
    """`fix --dry-run` plans from one audit of the workspace the console entry opened early: it opens no second
    Workspace (each file read once), which is what kept it within 1.5x of an audit on a long run (issue 24 item 7)."""
    import io

    from healthkit.core.workspace import Workspace
    from healthkit.fix import FixOptions, Safety, run_fix

    ws = Workspace.open(healthy)
    opened = []
    real_open = Workspace.open
    monkeypatch.setattr(Workspace, "open", classmethod(lambda cls, *a, **k: opened.append(a) or real_open(*a, **k)))
    out = io.StringIO()
    run = run_fix(ws, FixOptions(level=Safety.SAFE, dry_run=True), out)
    assert opened == [] and run.before.workspace == str(ws.base)
    assert "Dry run: nothing was changed." in out.getvalue()


def test_console_script_entry_runs_the_audit(healthy):
    import subprocess

    r = subprocess.run(
        [sys.executable, "-m", "healthkit.console", "audit", str(healthy), "-f", "json"],
        capture_output=True,
        timeout=60,
    )
    assert r.returncode == 0, r.stderr.decode()
    assert json.loads(r.stdout)["status"] == "ok"


def _du_processes_of(path: Path) -> list[int]:
    import psutil

    out = []
    for p in psutil.process_iter(["cmdline"]):
        cmd = p.info["cmdline"] or []
        if cmd and os.path.basename(cmd[0]) == "du" and str(path) in cmd:
            out.append(p.pid)
    return out


def test_the_early_du_is_the_one_the_audit_uses_and_a_wrong_guess_is_ended(tmp_path, monkeypatch):
    """launch.py starts `du` on WS/current_model before importing the audit; a workspace whose checkpoints are
    elsewhere gets its own du, and the guessed one does not outlive the audit."""
    import subprocess

    from healthkit.console import DEFAULT_CHECKPOINTS
    from healthkit.contract.settings import PathSettings
    from healthkit.system import fsutil

    assert PathSettings().checkpoints == DEFAULT_CHECKPOINTS
    root = tmp_path / "current_model" / "checkpoint-1"
    root.mkdir(parents=True)
    (root / "w").write_bytes(os.urandom(20_000))
    fsutil.start_du_early(tmp_path / "current_model")
    early = fsutil._EARLY_DU[str(tmp_path / "current_model")]
    children, total = fsutil.disk_usage_children(tmp_path / "current_model")
    assert early.returncode is not None and fsutil._EARLY_DU == {}  # taken, not run twice
    assert children["checkpoint-1"].bytes >= 20_000 and total.bytes >= children["checkpoint-1"].bytes
    import signal

    monkeypatch.setattr(fsutil, "_du_argv", lambda root: ["sleep", "30"])  # a du that would outlive the audit
    fsutil.start_du_early(tmp_path / "current_model")
    unused = fsutil._EARLY_DU[str(tmp_path / "current_model")]
    fsutil.end_early_du()
    assert unused.wait(10) == -signal.SIGKILL and fsutil._EARLY_DU == {}
    monkeypatch.undo()

    (tmp_path / "config.json").write_text(json.dumps({"output_dir": "runs", "base_model": "m"}))
    (tmp_path / "healthkit.toml").write_text('[paths]\nconfig_schema = "none"\ncheckpoints_config_key = "output_dir"\n')
    (tmp_path / "runs" / "checkpoint-5").mkdir(parents=True)
    (tmp_path / "runs" / "checkpoint-5" / "model.safetensors").write_bytes(os.urandom(30_000))
    r = subprocess.run(
        [sys.executable, "-m", "healthkit.console", "audit", str(tmp_path), "-f", "json", "--select", "checkpoints"],
        capture_output=True,
        timeout=60,
    )
    facts = json.loads(r.stdout)["facts"]["checkpoints"]
    assert facts["dir"] == str(tmp_path / "runs") and facts["bytes"] >= 30_000, facts
    assert _du_processes_of(tmp_path / "current_model") == []
