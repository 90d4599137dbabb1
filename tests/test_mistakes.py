"""Mistakes get errors, not green results: exit codes, one clear line, and no path created (issue 11)."""

from __future__ import annotations

import json
import os
import pty
import select
import subprocess
import sys
import time
from pathlib import Path

import pytest

from healthkit import __version__

from .conftest import REPO, make_checkpoint, make_healthy_workspace, run_cli, write_json


def tree(base: Path) -> list[str]:
    return sorted(str(p.relative_to(base)) for p in base.rglob("*"))


MISSING_PATH_COMMANDS = [
    ("audit", "{ws}"),
    ("fix", "{ws}", "--safe"),
    ("fix", "{ws}", "--safe", "--dry-run"),
    ("daemon", "pause", "{ws}"),
    ("daemon", "resume", "{ws}"),
    ("daemon", "stop", "{ws}"),
    ("daemon", "status", "{ws}"),
    ("daemon", "start", "{ws}"),
    ("daemon", "systemd-unit", "{ws}"),
    ("queue", "add", "{ws}", "{file}"),
    ("queue", "list", "{ws}"),
]


@pytest.mark.parametrize("argv", MISSING_PATH_COMMANDS, ids=lambda a: " ".join(x for x in a if "{" not in x))
def test_a_workspace_that_does_not_exist_is_an_error_and_nothing_is_created(tmp_path, argv):
    (tmp_path / "f.jsonl").write_text('{"text": "x"}\n')
    before = tree(tmp_path)
    ws = tmp_path / "nope"
    r = run_cli(*[a.format(ws=ws, file=tmp_path / "f.jsonl") for a in argv], cwd=tmp_path)
    err = r.stderr.decode()
    assert r.returncode in (3, 64), (r.returncode, err)
    assert str(ws) in err and "does not exist" in err and "Traceback" not in err
    assert tree(tmp_path) == before


def test_init_is_the_one_command_that_creates_a_workspace(tmp_path):
    ws = tmp_path / "new"
    assert run_cli("init", str(ws)).returncode == 0
    assert (ws / "config.json").is_file()
    readme = (ws / "README.md").read_text()
    assert "healthkit queue add WORKSPACE FILE" in readme and "queue add FILE" not in readme
    assert "record_cost = true" in (ws / "healthkit.toml").read_text()


@pytest.mark.parametrize(
    "argv,suggest",
    [
        (("audit", "{ws}", "--select", "daemon.ded"), "daemon.dead"),
        (("audit", "{ws}", "--ignore", "checkpionts"), "checkpoints"),
        (("fix", "{ws}", "--safe", "--only", "bogus"), None),
        (("fix", "{ws}", "--safe", "--only", "sync-doc-valu"), "sync-doc-value"),
    ],
)
def test_a_selector_matching_nothing_is_a_usage_error_with_did_you_mean(tmp_path, argv, suggest):
    ws = make_healthy_workspace(tmp_path / "ws")
    before = tree(ws)
    r = run_cli(*[a.format(ws=ws) for a in argv])
    err = r.stderr.decode()
    assert r.returncode == 64, err
    assert "matches nothing" in err and "Traceback" not in err
    if suggest:
        assert f"did you mean: {suggest}" in err
    assert tree(ws) == before


def test_output_takes_the_format_from_the_extension(tmp_path):
    ws = make_healthy_workspace(tmp_path / "ws")
    out = tmp_path / "rep" / "x.json"
    assert run_cli("audit", str(ws), "--output", str(out)).returncode == 0
    assert json.loads(out.read_text())["status"] == "ok"
    r = run_cli("audit", str(ws), "--output", str(tmp_path / "rep" / "y.json"), "--format", "md")
    assert r.returncode == 64 and "y.json" in r.stderr.decode() and "--format" in r.stderr.decode()
    assert not (tmp_path / "rep" / "y.json").exists()


def _bloated(base: Path) -> Path:
    ws = make_healthy_workspace(base)
    cfg = json.loads((ws / "config.json").read_text())
    cfg["save_total_limit"] = None
    cfg["base_model"] = "gpt2"  # critical (exit 2): an Abort's exit 1 or 130 cannot pass for the verdict
    write_json(ws / "config.json", cfg)
    (ws / "CLAUDE.md").write_text("# Notes\n")
    for s in range(40, 40 + 10 * 12, 10):
        make_checkpoint(ws / "current_model", s)
    return ws


def _answer_prompt(ws: Path, keys: bytes) -> tuple[int, bytes, bytes]:
    """Run `fix --unsafe` on a terminal, type ``keys`` at its prompt; (exit code, terminal text, stdout)."""
    master, slave = pty.openpty()
    p = subprocess.Popen(
        [sys.executable, "-m", "healthkit.cli", "fix", str(ws), "--unsafe", "--keep", "2"],
        stdin=slave,
        stdout=subprocess.PIPE,
        stderr=slave,
        cwd=REPO,
    )
    os.close(slave)
    seen = b""
    deadline = time.monotonic() + 60
    while b"unsafe fix(es)" not in seen and time.monotonic() < deadline:
        if select.select([master], [], [], 1)[0]:
            seen += os.read(master, 4096)
    assert b"unsafe fix(es)" in seen, seen
    os.write(master, keys)
    out, _ = p.communicate(timeout=60)
    while select.select([master], [], [], 0.2)[0]:
        try:
            chunk = os.read(master, 4096)
        except OSError:
            break
        if not chunk:
            break
        seen += chunk
    os.close(master)
    return p.returncode, seen, out


def test_eof_at_the_unsafe_prompt_answers_no_and_exits_cleanly(tmp_path):
    ws = _bloated(tmp_path / "ws")
    before = tree(ws)
    no_code, _, _ = _answer_prompt(ws, b"n\n")
    code, terminal, out = _answer_prompt(ws, b"\x04")  # Ctrl-D
    assert b"Traceback" not in terminal and b"Abort" not in terminal
    assert b"Aborted: nothing was changed" in out
    assert code == no_code == 2  # the verdict of the unchanged workspace, as for "n"; never the Abort's 1 or 130
    assert [
        p for p in tree(ws) if p != ".healthkit-fix.lock"
    ] == before  # a real run keeps its lock file (stable inode)


def test_queue_add_of_a_missing_file_exits_64_with_one_line(tmp_path):
    ws = make_healthy_workspace(tmp_path / "ws")
    before = tree(ws)
    missing = tmp_path / "missing.jsonl"
    r = run_cli("queue", "add", str(ws), str(missing))
    err = r.stderr.decode()
    assert r.returncode == 64, err
    assert len(err.strip().splitlines()) == 1 and err.count(str(missing)) == 1
    assert tree(ws) == before


def test_pause_without_a_daemon_says_it_applies_at_the_next_start(tmp_path):
    ws = make_healthy_workspace(tmp_path / "ws")
    r = run_cli("daemon", "pause", str(ws))
    assert r.returncode == 0
    assert "no daemon is running" in r.stdout.decode() and "next start" in r.stdout.decode()
    assert (ws / "control" / "pause").exists()


def test_version_and_short_help():
    r = run_cli("--version")
    assert r.returncode == 0 and r.stdout.decode().strip() == f"healthkit {__version__}"
    for args in (("-h",), ("audit", "-h"), ("daemon", "status", "-h")):
        r = run_cli(*args)
        assert r.returncode == 0 and "Usage" in r.stdout.decode(), args


def test_daemon_status_is_formatted_for_people(tmp_path):
    ws = make_healthy_workspace(tmp_path / "ws")
    write_json(
        ws / "status" / "training_status.json",
        {
            "state": "training",
            "step": 5,
            "total_steps": 30,
            "loss": 4.900209045410156,
            "val_loss": None,
            "eta_seconds": None,
            "updated_at": "2026-11-30T10:00:00+00:00",
        },
    )
    r = run_cli("daemon", "status", str(ws))
    out = r.stdout.decode()
    assert r.returncode == 3  # no daemon runs
    assert "progress: training, step 5/30, loss 4.9, no validation loss yet (updated 2026-11-30T10:00:00+00:00)" in out
    for bad in ("None", "4.900209045410156", "eta Nones"):
        assert bad not in out
    write_json(
        ws / "status" / "training_status.json",
        {"state": "training", "step": 5, "loss": 0.01823, "val_loss": 1.234567, "eta_seconds": 7500.4},
    )
    out = run_cli("daemon", "status", str(ws)).stdout.decode()
    assert "progress: training, step 5, loss 0.01823, val_loss 1.235, eta 2h 05m" in out


def test_status_text_units():
    from healthkit.trainer.statustext import daemon_line, duration, number

    assert [duration(x) for x in (None, -1, 12.4, 250, 7500)] == [None, None, "12s", "4m 10s", "2h 05m"]
    assert [number(x) for x in (None, "x", True, 4.900209045410156, float("nan"))] == [None, None, None, "4.9", "nan"]
    assert daemon_line(False, None, {}) == "daemon: not running (none has run here: no status/daemon_state.json)"
    assert daemon_line(False, None, {"state": "stopped"}) == "daemon: not running (last state stopped)"
    assert daemon_line(True, 12, {"state": "running", "restarts": 0}) == "daemon: running (PID 12)"
