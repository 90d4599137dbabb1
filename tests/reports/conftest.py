"""Fixtures for tests/reports: hand-built reports (hkreports.py) and an in-process CLI."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # hkreports.py, also under --import-mode=importlib
from hkreports import STATE_CHECK, make_report, state_registry, write_state

from healthkit.core.report import Report


@pytest.fixture
def dead_pid() -> int:
    """The PID of a process that has exited (test_fleet_cmd.py, test_fleet_heal.py)."""
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


@pytest.fixture
def report() -> Report:
    return make_report()


@pytest.fixture
def report_factory() -> Callable[..., Report]:
    return make_report


@pytest.fixture
def workspace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A workspace audited by the state check only (the installed checks are swapped out)."""
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "hk_state_check.py").write_text(STATE_CHECK, encoding="utf-8")
    write_state(ws, [])
    import healthkit.core.api

    monkeypatch.setattr(healthkit.core.api, "default_registry", lambda plugins=(), base=None: state_registry(ws))
    return ws


@pytest.fixture
def cli():
    """Run the healthkit command in-process; returns click's Result (exit_code, stdout, stderr, output)."""
    from typer.testing import CliRunner

    from healthkit.cli import app

    def run(*args: str) -> Any:
        return CliRunner().invoke(app, [str(a) for a in args])

    return run
