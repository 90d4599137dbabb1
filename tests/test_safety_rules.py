"""Issue 11 "safe must mean safe", the fast half: a stop on request, a failed queue file, --keep N, checkpoints set aside.

Real files in tmp_path and real processes; the trainer end-to-end half is tests/trainer/test_safe_fix_e2e.py.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from healthkit.core.api import audit
from healthkit.fix import Safety

from .conftest import make_checkpoint, wait_for, write_json
from .fix.conftest import fix, set_checkpoint_mtimes_past

REPO = Path(__file__).resolve().parents[1]
SLEEPER = "import time\ntime.sleep(120)\n"


def _codes(base: Path, *select: str) -> list[str]:
    return sorted(f.code for f in audit(base, select=list(select), record_costs=False).findings)


def _stopped_ws(base: Path) -> Path:
    """Our trainer's layout after `healthkit daemon stop` mid-file: the state the daemon writes, a file in processing/."""
    write_json(base / "config.json", {"base_model": "models/base"})
    for d in ("queue/inbox", "queue/processing", "queue/done", "queue/failed", "logs", "control"):
        (base / d).mkdir(parents=True, exist_ok=True)
    (base / "queue/processing/a.jsonl").write_text('{"text": "x"}\n')
    (base / "queue/inbox/b.jsonl").write_text('{"text": "y"}\n')
    write_json(
        base / "status/daemon_state.json",
        {
            "state": "stopped",
            "pid": None,
            "stopped_at": "2026-11-30T12:00:05+00:00",
            "current_file": None,
            "stop_request": {
                "at": "2026-11-30T12:00:00+00:00",
                "by": "ana with `healthkit daemon stop` (PID 42)",
                "reason": "maintenance",
                "waiting": ["a.jsonl"],
            },
        },
    )
    write_json(base / "status/training_status.json", {"state": "idle", "current_file": "a.jsonl", "step": 7})
    return base


def test_a_stop_on_request_is_info_not_a_fault(tmp_path: Path) -> None:
    base = _stopped_ws(tmp_path)
    report = audit(base, select=["daemon", "queue"], record_costs=False)
    assert sorted(f.code for f in report.findings) == ["daemon.stopped"]  # no daemon.not-running, no queue.stuck
    f = report.findings[0]
    assert f.severity.value == "info" and f.fixes == []
    text = " ".join(f.problem)
    assert "stopped on request at 2026-11-30T12:00:00+00:00 by ana" in text and "maintenance" in text
    assert "1 file waits in processing/ and resumes on `healthkit daemon start`" in text
    assert report.exit_code == 0


def test_a_daemon_that_died_is_still_a_fault(tmp_path: Path) -> None:
    """Without the stop record (a crash, a kill) the same files are daemon.not-running and queue.stuck."""
    base = _stopped_ws(tmp_path)
    write_json(base / "status/daemon_state.json", {"state": "running", "pid": None})
    assert _codes(base, "daemon", "queue") == ["daemon.not-running", "queue.stuck"]


def test_no_fix_restarts_a_daemon_stopped_on_request(tmp_path: Path) -> None:
    base = _stopped_ws(tmp_path)
    run, out = fix(base, Safety.SAFE)
    assert not (base / ".daemon.pid").exists() and not any(
        p.fix_id in ("start-daemon", "adopt-orphan") for p in run.chosen
    ), out
    # Even with an orphaned training beside it, the safe adopt-orphan start is refused, saying why.
    (base / "train.py").write_text(SLEEPER)
    p = subprocess.Popen([sys.executable, "train.py"], cwd=base, start_new_session=True)
    try:
        wait_for(lambda: "train.py" in " ".join(psutil.Process(p.pid).cmdline()))
        assert "daemon.orphaned-training" in _codes(base, "daemon")
        run, out = fix(base, Safety.SAFE)
        blocked = [why for plan, why in run.not_applied if plan.fix_id == "adopt-orphan"]
        assert blocked and "stopped on request" in blocked[0] and "no fix restarts it" in blocked[0], out
        assert not (base / ".daemon.pid").exists() and p.poll() is None
    finally:
        p.kill()
        p.wait()


def test_a_failed_queue_file_is_a_finding_with_its_reason(tmp_path: Path) -> None:
    write_json(tmp_path / "config.json", {"base_model": "m"})
    (tmp_path / "queue/failed").mkdir(parents=True)
    (tmp_path / "queue/done").mkdir(parents=True)
    (tmp_path / "queue/done/ok.jsonl").write_text("{}\n")
    (tmp_path / "queue/failed/bad.jsonl").write_text("not json\n")
    write_json(tmp_path / "queue/failed/bad.jsonl.error.json", {"file": "bad.jsonl", "error": "line 1: not valid JSON"})
    report = audit(tmp_path, select=["queue"], record_costs=False)
    (f,) = report.findings
    assert f.code == "queue.failed" and f.severity.value == "warning"
    assert "line 1: not valid JSON" in f.problem[0]
    assert [e.observed for e in f.evidence] == ["line 1: not valid JSON"]
    assert f.evidence[0].command == "jq . queue/failed/bad.jsonl.error.json"
    assert report.healthy == [] or all(h.title != "Queue" for h in report.healthy)  # not under WHAT'S WORKING
    assert report.exit_code == 1


def _six_checkpoints(base: Path) -> None:
    write_json(base / "config.json", {"base_model": "m", "save_steps": 10})
    for s in range(10, 70, 10):
        make_checkpoint(base / "current_model", s)
    set_checkpoint_mtimes_past(base)


def test_keep_n_prunes_six_checkpoints_with_no_limit_and_says_what_it_keeps(tmp_path: Path) -> None:
    """6 < the unlimited-retention threshold (10): --keep 2 is still the user's explicit choice."""
    _six_checkpoints(tmp_path)
    r = subprocess.run(
        [sys.executable, "-m", "healthkit.cli", "fix", str(tmp_path), "--unsafe", "--keep", "2", "--yes"],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
    )
    left = sorted(p.name for p in (tmp_path / "current_model").iterdir())
    assert left == ["checkpoint-50", "checkpoint-60"], r.stdout + r.stderr
    for s in (10, 20, 30, 40):
        assert f"delete current_model/checkpoint-{s}/" in r.stdout
    assert "keep   current_model/checkpoint-60/  (one of the newest 2)" in r.stdout
    assert "kept checkpoint-50, checkpoint-60" in r.stdout


def test_keep_n_wins_over_the_trainer_default_and_the_report_does_not_invent_a_declared_limit(tmp_path: Path) -> None:
    """Our trainer's workspace with no save_total_limit: its default (3) applies, nothing is declared."""
    _six_checkpoints(tmp_path)
    for s in (70, 80):
        make_checkpoint(tmp_path / "current_model", s)
    set_checkpoint_mtimes_past(tmp_path)
    (tmp_path / "status").mkdir()
    write_json(tmp_path / "status/daemon_state.json", {"state": "stopped"})
    report = audit(tmp_path, select=["checkpoints"], record_costs=False)
    text = json.dumps([f.to_dict() if hasattr(f, "to_dict") else f.__dict__ for f in report.findings], default=str)
    assert "The declared limit (3)" not in text
    run, out = fix(tmp_path, Safety.UNSAFE, keep=2, only=("checkpoints",))
    left = sorted(p.name for p in (tmp_path / "current_model").iterdir())
    assert left == ["checkpoint-70", "checkpoint-80"], out


def test_checkpoints_set_aside_are_reported(tmp_path: Path) -> None:
    write_json(tmp_path / "config.json", {"base_model": "m"})
    aside = tmp_path / "current_model/.foreign-20261130T120000Z"
    make_checkpoint(aside, 100)
    write_json(
        aside / "healthkit_aside.json",
        {
            "moved_at": "2026-11-30T12:00:00+00:00",
            "before_training": "a.jsonl",
            "checkpoints": {"checkpoint-100": "no healthkit marker"},
        },
    )
    report = audit(tmp_path, select=["checkpoints.set-aside"], record_costs=False)
    (f,) = report.findings
    assert f.code == "checkpoints.set-aside" and "checkpoint-100: no healthkit marker" in f.problem
    assert f.evidence[0].observed == "checkpoint-100"


@pytest.mark.parametrize("code", ["queue.failed", "daemon.stopped", "checkpoints.set-aside"])
def test_new_codes_are_documented_in_the_readme(code: str) -> None:
    assert f"| `{code}` |" in (REPO / "README.md").read_text(encoding="utf-8")
