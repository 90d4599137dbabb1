"""Processes: a PID file naming an unrelated process never leads to a signal; an orphan is killed only by its verified PID."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil

from healthkit.fix import Safety
from healthkit.fix.journal import read_journal
from healthkit.system.procs import probe, read_pid_file

from ..conftest import wait_for
from .conftest import fix

# Records every catchable signal it gets, so a test can prove nobody signalled it.
WITNESS = """\
import signal, sys, time
log = sys.argv[1]
def note(sig, frame):
    with open(log, "a") as fh:
        fh.write(f"{sig}\\n")
for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2, signal.SIGQUIT):
    signal.signal(s, note)
open(log + ".ready", "w").close()
time.sleep(60)
"""


def start_witness(where: Path, script_name: str = "witness.py") -> tuple[subprocess.Popen, Path]:
    where.mkdir(parents=True, exist_ok=True)
    (where / script_name).write_text(WITNESS)
    log = where / "signals.log"
    proc = subprocess.Popen([sys.executable, script_name, str(log)], cwd=where, stdin=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while not (where / "signals.log.ready").exists():
        assert time.monotonic() < deadline, "the witness never installed its signal handlers"
        time.sleep(0.02)
    assert (where / "signals.log.ready").exists(), "the witness did not start"
    return proc, log


def signals_received(proc: subprocess.Popen, log: Path) -> list[str]:
    """The signals the witness got before now: a SIGUSR2 of our own is a positive signal that any earlier one was
    handled too (pending signals run their handlers before or with ours), so the list is not read too early."""
    os.kill(proc.pid, signal.SIGUSR2)
    assert wait_for(lambda: log.exists() and f"{int(signal.SIGUSR2)}\n" in log.read_text(), 10), (
        "the witness is not answering"
    )
    got = log.read_text().splitlines()
    log.unlink()
    return [s for s in got if s != str(int(signal.SIGUSR2))]


def test_pid_file_naming_an_unrelated_process_is_never_signalled(make_example, tmp_path):
    ex = make_example(start_processes=False)
    proc, log = start_witness(tmp_path / "elsewhere")
    try:
        (ex.base / ".daemon.pid").write_text(f"{proc.pid}\n")
        time.sleep(0.05)
        run, out = fix(ex.base, Safety.UNSAFE, only=("daemon",))
        assert proc.poll() is None, out
        assert signals_received(proc, log) == []
        assert read_pid_file(ex.base / ".daemon.pid").pid != proc.pid, (
            out
        )  # the stale file is removed, the process untouched
        signalled = [e for e in read_journal(ex.base / "logs/healthkit-fix.jsonl") if e["action"] == "signal"]
        assert signalled == []
        # An unsafe run of everything still never signals it.
        run, out = fix(ex.base, Safety.UNSAFE, keep=3)
        assert proc.poll() is None and signals_received(proc, log) == [], out
    finally:
        proc.kill()
        proc.wait()


def test_kill_orphan_signals_only_the_verified_pid(make_example, tmp_path):
    ex = make_example()
    # A decoy that a `pkill -f train.py` would hit: same script name, another folder.
    decoy, decoy_log = start_witness(tmp_path / "other-setup", "train.py")
    try:
        run, out = fix(ex.base, Safety.UNSAFE, only=("kill-orphan",))
        outcome = {p.fix_id: o for p, o in run.outcomes}
        assert outcome["kill-orphan"].status == "applied", out
        assert "SIGTERM" in outcome["kill-orphan"].message
        assert not probe(ex.orphan_pid).alive
        assert decoy.poll() is None and signals_received(decoy, decoy_log) == []
        assert f"kill -TERM {ex.orphan_pid}" in out
        entries = [e for e in read_journal(ex.base / "logs/healthkit-fix.jsonl") if e["fix"] == "kill-orphan"]
        assert [e["result"] for e in entries] == ["started", "applied"] and entries[0][
            "target"
        ] == f"PID {ex.orphan_pid}"
    finally:
        decoy.kill()
        decoy.wait()


def test_unsafe_run_prefers_adopting_over_killing(make_example):
    ex = make_example()
    run, out = fix(ex.base, Safety.UNSAFE, only=("daemon.orphaned-training",), dry_run=True)
    assert [p.fix_id for p in run.chosen] == ["adopt-orphan"]
    assert any(p.fix_id == "kill-orphan" and "alternative to adopt-orphan" in why for p, why in run.not_applied)


def test_kill_orphan_skips_a_process_that_changed_since_plan(make_example):
    """The plan names PID + start time; if that PID is now another process, nothing is signalled."""
    from healthkit.core.api import audit
    from healthkit.core.workspace import Workspace
    from healthkit.fix.engine import FixOptions, FixRun, build_plans
    from healthkit.fix.journal import Journal
    from healthkit.fix.plan import ApplyContext, PlanContext

    ex = make_example()
    ws = Workspace.open(ex.base)
    report = audit(ws, record_costs=False)
    finding = next(f for f in report.findings if f.code == "daemon.orphaned-training")
    finding.data["orphans"][0]["create_time"] -= 100.0  # as if the PID had been reused since the audit
    opts = FixOptions(level=Safety.UNSAFE, only=("kill-orphan",))
    run = FixRun(before=report)
    build_plans(PlanContext(ws, report), report, opts, run)
    (plan,) = run.chosen
    outcome = plan.apply(ApplyContext(ws, Journal(ex.base / "logs/j.jsonl"), plan))
    assert outcome.status == "skipped" and "not signalled" in outcome.message
    assert psutil.Process(ex.orphan_pid).is_running()
