"""Shared test helpers: real workspaces in tmp_path and real processes that are always cleaned up."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parent.parent
# Hypothesis keeps its example database outside the working tree (no `.hypothesis/` beside the sources); it reads
# this variable on first use, after the conftest is imported.
os.environ.setdefault(
    "HYPOTHESIS_STORAGE_DIRECTORY", os.path.join(os.environ.get("TMPDIR", "/tmp"), "healthkit-hypothesis")
)
# `make mutants` reruns every property test for each surviving mutant: fewer examples there keep it in minutes.
UNDER_MUTMUT = "MUTANT_UNDER_TEST" in os.environ


def examples(n: int) -> int:
    """Hypothesis examples for a property test: ``n``, or at most 25 under mutation testing."""
    return min(n, 25) if UNDER_MUTMUT else n


def require_tool(name: str, debian_package: str) -> str:
    """The path of command ``name``; a skip naming what is missing, or a failure under CI=true.

    CI installs every tool a test needs (.ci/run): a missing one there is a broken CI, never a green skip.
    """
    import shutil

    path = shutil.which(name)
    if path:
        return path
    why = f"{name} not installed (Debian package `{debian_package}`)"
    if os.environ.get("CI", "").lower() in ("true", "1", "yes"):
        pytest.fail(f"{why}, and CI=true: CI must install it", pytrace=False)
    pytest.skip(why)


@pytest.fixture
def promtool() -> str:
    """promtool validates the Prometheus exposition and the alert rules."""
    return require_tool("promtool", "prometheus")


def write_json(path: Path, data: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2), encoding="utf-8")
    return path


def make_checkpoint(
    ckdir: Path,
    step: int,
    *,
    best: str | None = None,
    history: list | None = None,
    weights: bytes = b"w" * 4096,
    extra: dict | None = None,
) -> Path:
    """An HF-Trainer-layout checkpoint (transformers 5: no special_tokens_map.json)."""
    d = ckdir / f"checkpoint-{step}"
    d.mkdir(parents=True)
    state = {
        "global_step": step,
        "max_steps": 100,
        "save_steps": 10,
        "eval_steps": 10,
        "best_model_checkpoint": best,
        "log_history": history if history is not None else [],
    }
    state.update(extra or {})
    write_json(d / "trainer_state.json", state)
    (d / "model.safetensors").write_bytes(weights)
    (d / "config.json").write_text("{}")
    (d / "optimizer.pt").write_bytes(b"o" * 1024)
    (d / "scheduler.pt").write_bytes(b"s" * 64)
    return d


def make_healthy_workspace(base: Path, *, steps: int = 30) -> Path:
    """Our layout, nothing wrong: valid config, docs that agree, validation running, retention respected."""
    base.mkdir(parents=True, exist_ok=True)
    write_json(
        base / "config.json",
        {
            "$schema": "https://healthkit.dev/schemas/config.schema.json",  # our trainer's config, as `healthkit init` writes it
            "base_model": "/models/tiny/",
            "eval_strategy": "steps",
            "eval_steps": 10,
            "save_steps": 10,
            "save_total_limit": 3,
            "logging_steps": 5,
            "max_steps": 100,
            "learning_rate": 2e-5,
            "validation_split": 0.1,
            "monitor_port": None,
        },
    )
    (base / "CLAUDE.md").write_text(
        "# Notes\n\n- Eval steps: 10\n- Learning rate: 0.00002\n- base_model is `/models/tiny`\n\n"
        "| setting | value |\n|---|---|\n| save_total_limit | 3 |\n",
        encoding="utf-8",
    )
    history = []
    for s in range(5, steps + 1, 5):
        history.append({"step": s, "loss": 2.0 - s / 100})
        if s % 10 == 0:
            history.append({"step": s, "eval_loss": 2.1 - s / 100})
    for s in range(steps - 20, steps + 1, 10):
        if s > 0:
            make_checkpoint(
                base / "current_model",
                s,
                history=[h for h in history if h["step"] <= s],
                best=str(base / "current_model" / f"checkpoint-{steps}"),
            )
    now = time.time()
    write_json(
        base / "status" / "training_status.json",
        {
            "state": "training",
            "step": steps,
            "total_steps": 100,
            "loss": 1.7,
            "val_loss": 1.8,
            "val_train_gap": 0.1,
            "current_file": "a.jsonl",
            "started_at": now - 60,
            "updated_at": now,
            "eta_seconds": 140,
        },
    )
    for d in ("queue/inbox", "queue/processing", "queue/done", "queue/failed", "logs", "control"):
        (base / d).mkdir(parents=True, exist_ok=True)
    # The host's own disk is not under test here.
    (base / "healthkit.toml").write_text(
        "[thresholds]\ndisk_min_free_percent = 0\ndisk_min_free_bytes = 0\ndisk_critical_free_percent = 0\n"
    )
    return base


class Procs:
    """Processes a test started; killed (by PID, process group first) at teardown."""

    def __init__(self) -> None:
        self.pids: list[int] = []
        self.popens: list[subprocess.Popen] = []

    def popen(self, argv: list[str], **kw: Any) -> subprocess.Popen:
        kw.setdefault("stdin", subprocess.DEVNULL)
        kw.setdefault("stdout", subprocess.DEVNULL)
        kw.setdefault("stderr", subprocess.DEVNULL)
        p = subprocess.Popen(argv, **kw)
        self.popens.append(p)
        self.pids.append(p.pid)
        return p

    def track(self, pid: int) -> int:
        self.pids.append(pid)
        return pid

    def cleanup(self) -> None:
        for pid in reversed(self.pids):
            try:
                os.kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        for p in self.popens:
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                pass


@pytest.fixture
def procs() -> Any:
    p = Procs()
    yield p
    p.cleanup()


def run_cli(
    *args: str, env: dict[str, str] | None = None, cwd: Path | None = None, timeout: float = 120
) -> subprocess.CompletedProcess:
    """The installed-entry-point behaviour, in a real subprocess (exit codes, encodings, imports)."""
    full_env = dict(os.environ)
    if env is not None:
        full_env = env
    return subprocess.run(
        [sys.executable, "-m", "healthkit.cli", *args], capture_output=True, env=full_env, cwd=cwd, timeout=timeout
    )


def sleeping_in_timer(pid: int) -> bool:
    """Whether process ``pid`` is blocked in a timed sleep (Python's time.sleep): it has reached its wait loop."""
    try:
        wchan = Path(f"/proc/{pid}/wchan").read_text()
        if wchan and wchan != "0":
            return "nanosleep" in wchan
        return Path(f"/proc/{pid}/syscall").read_text().split()[0] in ("35", "230")  # x86-64 nanosleep, clock_nanosleep
    except (OSError, IndexError):
        return False


def wait_for(pred: Callable[[], bool], timeout: float = 10.0, interval: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(interval)
    return pred()


def heavy_modules_after_audit(path: Path, exit_code: int) -> list[str]:
    """The heavy modules (torch, transformers, pydantic models, ...) an in-process `healthkit audit PATH` imported."""
    code = (
        "import sys\n"
        "from typer.testing import CliRunner\n"
        "from healthkit.cli import app\n"
        f"r = CliRunner().invoke(app, ['audit', {str(path)!r}, '--format', 'json'])\n"
        f"assert r.exit_code == {exit_code}, r.output\n"
        "heavy = ('torch', 'transformers', 'accelerate', 'matplotlib', 'jsonschema', 'pydantic')\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in heavy or m == 'healthkit.contract.config_model'))\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout.strip().replace("'", '"'))
