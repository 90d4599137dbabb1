"""Fixtures for the trainer tests: one tiny model per session, workspaces in tmp_path, processes always killed."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil
import pytest

from healthkit.trainer.layout import Layout
from healthkit.trainer.scaffold import init_workspace
from healthkit.trainer.tiny import sample_texts, write_jsonl

REPO = Path(__file__).resolve().parents[2]

# Small enough to train 20 steps in well under a second on a CPU, real enough to exercise everything.
FAST_CONFIG: dict[str, Any] = {
    "base_model": "models/base",
    "max_seq_length": 32,
    "max_steps": 20,
    "eval_steps": 5,
    "save_steps": 5,
    "save_total_limit": 2,
    "logging_steps": 1,
    "per_device_train_batch_size": 4,
    "per_device_eval_batch_size": 8,
    "learning_rate": 1e-3,
    "validation_split": 0.2,
    "monitor_port": 0,
    "max_failures": 3,
    "hook_timeout_s": 2.0,
}


def wait_for(pred: Callable[[], Any], timeout: float = 60.0, interval: float = 0.05, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")


def read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from healthkit.trainer.tiny import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny") / "base", vocab_size=300, n_positions=64)


def _kill_workspace_processes(base: Path) -> None:
    """Kill every process whose argv names this workspace, by process group (launchers and their ranks)."""
    me = os.getpid()
    needle = str(base)
    for p in psutil.process_iter(["pid", "cmdline"]):
        try:
            cmd = p.info["cmdline"] or []
            if p.pid != me and any(needle == c or c.startswith(needle + "/") for c in cmd):
                try:
                    os.killpg(os.getpgid(p.pid), signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass
                try:
                    p.kill()
                except psutil.Error:
                    pass
        except psutil.Error:
            continue


@pytest.fixture
def make_ws(tmp_path: Path, tiny_model_dir: Path):
    """Factory: a workspace with the tiny model copied in and FAST_CONFIG (plus overrides)."""
    made: list[Path] = []

    def make(name: str = "ws", **overrides: Any) -> Layout:
        base = tmp_path / name
        cfg = {**FAST_CONFIG, **overrides}
        init_workspace(base, **cfg)
        shutil.copytree(tiny_model_dir, base / "models" / "base")
        made.append(base)
        return Layout.of(base)

    yield make
    for base in made:
        _kill_workspace_processes(base)


@pytest.fixture
def lay(tmp_path: Path) -> Layout:
    """An empty workspace laid out for the trainer."""
    lay = Layout.of(tmp_path / "ws")
    lay.base.mkdir()
    lay.ensure()
    return lay


def queue_file(lay: Layout, name: str, n: int = 40, seed: int = 0) -> Path:
    src = write_jsonl(lay.base / "data" / name, sample_texts(n, seed=seed, words=8))
    from healthkit.trainer import queue as q

    return q.add(lay, src)


def hk(*args: str, timeout: float = 120, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """Run the real `healthkit` CLI in a subprocess."""
    return subprocess.run(
        [sys.executable, "-m", "healthkit.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=REPO,
        env=env,
    )


def daemon_log(lay: Layout) -> str:
    try:
        return (lay.logs / "daemon.log").read_text(encoding="utf-8")
    except OSError:
        return ""


def all_logs(lay: Layout) -> str:
    out = []
    for p in sorted(lay.logs.glob("*")):
        try:
            out.append(f"==== {p.name}\n" + p.read_text(encoding="utf-8", errors="replace")[-6000:])
        except OSError:
            pass
    return "\n".join(out)
