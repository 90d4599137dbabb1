"""The facade is the plugin author's surface, and moving the modules behind it broke nothing that used the old paths."""

from __future__ import annotations

import importlib
import json
import sys

import psutil
import pytest

import healthkit
from healthkit._moved import MOVED
from healthkit.core.api import audit

from .conftest import run_cli, wait_for, write_json

OLD_PATH_PLUGIN = """
from healthkit.models import Finding, Severity, Evidence
from healthkit.registry import CodeDoc, check
from healthkit.workspace import Workspace
from healthkit.fsutil import read_text

BIG = CodeDoc("legacy.note-present", "warning", "A NOTE file is present", what="w", why="y", fix="f")


@check("legacy", title="Written against healthkit 0.1's module paths", codes=[BIG])
def legacy(ws: Workspace):
    note = ws.base / "NOTE"
    if not note.exists():
        return []
    return [Finding(code=BIG.code, severity=Severity.WARNING, title="NOTE present", problem=[read_text(note)],
                    evidence=[Evidence("cat NOTE", read_text(note))])]
"""

FACADE_PLUGIN = """
import healthkit

BIG = healthkit.CodeDoc("facade.note-present", "warning", "A NOTE file is present", what="w", why="y", fix="f")


@healthkit.check("facade", title="Written against the facade only", codes=[BIG])
def facade(ws: healthkit.Workspace):
    if not (ws.base / "NOTE").exists():
        return healthkit.Healthy("no NOTE")
    return [healthkit.Finding(code=BIG.code, severity=healthkit.Severity.WARNING, title="NOTE present",
                              problem=["a NOTE"], evidence=[healthkit.Evidence("ls NOTE", "NOTE")])]
"""


@pytest.mark.parametrize("old", sorted(MOVED))
def test_every_old_module_path_still_imports_as_the_moved_module(old):
    assert importlib.import_module(old) is importlib.import_module(MOVED[old])


def test_the_old_state_vocabulary_module_still_names_its_states():
    from healthkit.contract import DAEMON_LIVENESS, DAEMON_STATES, TRAINING_STATES

    assert "running" in DAEMON_STATES and "training" in TRAINING_STATES and "dead" in DAEMON_LIVENESS


def test_the_facade_names_the_whole_plugin_surface():
    for name in (
        "audit",
        "check",
        "CodeDoc",
        "CheckOutput",
        "Evidence",
        "Finding",
        "FixRef",
        "Healthy",
        "Severity",
        "Workspace",
        "Report",
        "render",
        "fixer",
        "Safety",
    ):
        assert name in healthkit.__all__ and getattr(healthkit, name) is not None
    assert healthkit.Workspace is importlib.import_module("healthkit.workspace").Workspace


@pytest.mark.parametrize(
    ("source", "code"), [(OLD_PATH_PLUGIN, "legacy.note-present"), (FACADE_PLUGIN, "facade.note-present")]
)
def test_a_third_party_check_loads_through_the_cli(tmp_path, source, code):
    write_json(tmp_path / "config.json", {"base_model": "m"})
    (tmp_path / "my_check.py").write_text(source)
    (tmp_path / "healthkit.toml").write_text('[checks]\nplugins = ["my_check.py"]\n')
    (tmp_path / "NOTE").write_text("hello")
    done = run_cli("audit", str(tmp_path), "--format", "json", "--select", code.split(".")[0])
    assert done.returncode == 1, done.stderr
    (only,) = json.loads(done.stdout)["findings"]
    assert only["code"] == code


def test_a_daemon_started_by_the_old_code_is_still_our_running_daemon(tmp_path, procs):
    """0.1 started `python -m healthkit.trainer.daemon --workspace WS` and wrote `PID START`: both unchanged."""
    write_json(tmp_path / "config.json", {"base_model": "m"})
    (tmp_path / "queue" / "inbox").mkdir(parents=True)
    (tmp_path / "queue" / "inbox" / "a.jsonl").write_text('{"text": "x"}\n')
    argv = [
        sys.executable,
        "-c",
        "import time\nwhile True: time.sleep(1)",
        "-m",
        "healthkit.trainer.daemon",
        "--workspace",
        str(tmp_path),
    ]
    d = procs.popen(argv, cwd=tmp_path)
    assert wait_for(lambda: "healthkit.trainer.daemon" in psutil.Process(d.pid).cmdline())
    (tmp_path / ".daemon.pid").write_text(f"{d.pid} {psutil.Process(d.pid).create_time():.2f}\n")
    report = audit(tmp_path, select=["daemon"], record_costs=False)
    assert [f.code for f in report.findings] == []
    assert report.facts["daemon"]["state"] == "running" and report.facts["daemon"]["pid"] == d.pid
