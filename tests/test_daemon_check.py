"""The daemon check against real processes: dead, zombie, reused PID, a live daemon, orphans, shells that only mention train.py."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import psutil
import pytest

from healthkit.core.api import audit
from healthkit.system.procs import argv_matches, probe, read_pid_file, scan_processes

from .conftest import wait_for, write_json

DAEMON_SCRIPT = "import time\nwhile True: time.sleep(1)\n"


def codes(base):
    return sorted(f.code for f in audit(base, select=["daemon"], record_costs=False).findings)


def finding(base, code):
    return next(f for f in audit(base, select=["daemon"], record_costs=False).findings if f.code == code)


@pytest.fixture
def ws(tmp_path):
    write_json(tmp_path / "config.json", {"base_model": "m"})
    (tmp_path / "training_daemon.py").write_text(DAEMON_SCRIPT)
    (tmp_path / "train.py").write_text(DAEMON_SCRIPT)
    (tmp_path / "queue" / "inbox").mkdir(parents=True)
    (tmp_path / "healthkit.toml").write_text('[processes]\ndaemon = ["training_daemon.py"]\ntraining = ["train.py"]\n')
    return tmp_path


def dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    assert not psutil.pid_exists(p.pid)
    return p.pid


def test_dead_pid_is_daemon_dead(ws):
    pid = dead_pid()
    (ws / ".daemon.pid").write_text(f"{pid}\n")
    assert codes(ws) == ["daemon.dead"]
    f = finding(ws, "daemon.dead")
    assert f.data == {"pid": pid, "pid_file": str(ws / ".daemon.pid"), "state": "dead"}


def test_zombie_is_dead(ws, procs):
    z = procs.popen([sys.executable, "-c", "pass"])
    assert wait_for(lambda: psutil.Process(z.pid).status() == psutil.STATUS_ZOMBIE)  # exited, not reaped
    (ws / ".daemon.pid").write_text(f"{z.pid}\n")
    assert probe(z.pid).state == "zombie"
    f = finding(ws, "daemon.dead")
    assert "zombie" in " ".join(f.problem)


def test_live_unrelated_process_is_pid_reused_and_never_touched(ws, procs):
    sleeper = procs.popen(["sleep", "60"])
    (ws / ".daemon.pid").write_text(f"{sleeper.pid}\n")
    f = finding(ws, "daemon.pid-reused")
    assert f.severity.value == "critical"
    assert "not this workspace's daemon" in " ".join(f.problem)
    assert sleeper.poll() is None


def test_daemon_cmdline_but_wrong_start_time_is_pid_reused(ws, procs):
    d = procs.popen([sys.executable, "training_daemon.py"], cwd=ws)
    assert wait_for(lambda: "training_daemon.py" in " ".join(psutil.Process(d.pid).cmdline()))
    (ws / ".daemon.pid").write_text(f"{d.pid} {psutil.Process(d.pid).create_time() - 3600:.2f}\n")
    assert codes(ws) == ["daemon.pid-reused"]


def test_live_daemon_with_matching_start_time_is_healthy(ws, procs):
    d = procs.popen([sys.executable, "training_daemon.py"], cwd=ws)
    assert wait_for(lambda: "training_daemon.py" in " ".join(psutil.Process(d.pid).cmdline()))
    (ws / ".daemon.pid").write_text(f"{d.pid} {psutil.Process(d.pid).create_time():.2f}\n")
    report = audit(ws, select=["daemon"], record_costs=False)
    assert report.findings == []
    assert report.facts["daemon"] == {"state": "running", "pid": d.pid}


def test_pidfile_written_before_process_started_is_reuse(ws, procs):
    (ws / ".daemon.pid").write_text("0\n")
    d = procs.popen([sys.executable, "training_daemon.py"], cwd=ws)
    assert wait_for(lambda: "training_daemon.py" in " ".join(psutil.Process(d.pid).cmdline()))
    (ws / ".daemon.pid").write_text(f"{d.pid}\n")
    old = time.time() - 3600
    os.utime(ws / ".daemon.pid", (old, old))
    assert codes(ws) == ["daemon.pid-reused"]


def test_orphan_with_dead_daemon(ws, procs):
    (ws / ".daemon.pid").write_text(f"{dead_pid()}\n")
    t = procs.popen([sys.executable, "train.py", "--file", "x.jsonl"], cwd=ws, start_new_session=True)
    assert wait_for(lambda: "train.py" in " ".join(psutil.Process(t.pid).cmdline()))
    assert codes(ws) == ["daemon.dead", "daemon.orphaned-training"]
    f = finding(ws, "daemon.orphaned-training")
    assert [o["pid"] for o in f.data["orphans"]] == [t.pid]


def test_shell_that_mentions_train_py_is_not_training(ws, procs):
    """`pgrep -f train.py` would match the shell too: we count the python process once, never the shell."""
    sh = procs.popen(["bash", "-c", f"{sys.executable} train.py; true"], cwd=ws, start_new_session=True)
    assert wait_for(lambda: any("train.py" in " ".join(c.cmdline()) for c in psutil.Process(sh.pid).children()))
    child = psutil.Process(sh.pid).children()[0]
    procs.track(child.pid)
    f = finding(ws, "daemon.orphaned-training") if "daemon.orphaned-training" in codes(ws) else None
    assert f is not None
    assert [o["pid"] for o in f.data["orphans"]] == [child.pid]


def test_training_of_another_workspace_is_not_ours(ws, tmp_path_factory, procs):
    other = tmp_path_factory.mktemp("other")
    (other / "train.py").write_text(DAEMON_SCRIPT)
    p = procs.popen([sys.executable, "train.py"], cwd=other)
    # Seen by the audit's own process scan first, as a training: only then does its absence from the findings mean anything.
    assert wait_for(
        lambda: any(
            i.pid == p.pid and i.cwd == str(other) and argv_matches(i.cmdline, ["train.py"]) for i in scan_processes()
        ),
        60,
    )
    assert "daemon.orphaned-training" not in codes(ws)


def test_training_under_live_daemon_is_supervised(ws, procs):
    launcher = (
        "import subprocess, sys, time\nsubprocess.Popen([sys.executable, 'train.py'])\nwhile True: time.sleep(1)\n"
    )
    (ws / "training_daemon.py").write_text(launcher)
    d = procs.popen([sys.executable, "training_daemon.py"], cwd=ws, start_new_session=True)
    assert wait_for(lambda: len(psutil.Process(d.pid).children()) == 1)
    procs.track(psutil.Process(d.pid).children()[0].pid)
    (ws / ".daemon.pid").write_text(f"{d.pid} {psutil.Process(d.pid).create_time():.3f}\n")
    report = audit(ws, select=["daemon"], record_costs=False)
    assert report.findings == []
    assert "Training is supervised" in [h.title for h in report.healthy]


def test_no_pid_file_with_queued_work_is_not_running(ws):
    (ws / "queue" / "inbox" / "a.jsonl").write_text("{}\n")
    f = finding(ws, "daemon.not-running")
    assert f.data == {"queued": 1}


def test_no_pid_file_and_nothing_to_do_is_fine(ws):
    assert codes(ws) == []


@pytest.mark.parametrize(
    "content,reason",
    [
        (b"", "empty"),
        (b"garbage\n", "does not hold a number"),
        (b"-5\n", "not a valid PID"),
        (b"99999999999999999999\n", "pid_max"),
        (b"12 34 56\n", "more than a PID"),
        (b"1" * (10 * 1024 * 1024), "far too large"),
    ],
)
def test_malformed_pid_files(ws, content, reason):
    (ws / ".daemon.pid").write_bytes(content)
    f = finding(ws, "daemon.pid-malformed")
    assert reason in f.problem[0]


def test_pid_file_symlink_and_fifo_never_block(ws, tmp_path_factory):
    target = tmp_path_factory.mktemp("t") / "pid"
    target.write_text(f"{os.getpid()}\n")
    (ws / ".daemon.pid").symlink_to(target)
    assert read_pid_file(ws / ".daemon.pid").reason == "it is a symbolic link, not a PID file"
    (ws / ".daemon.pid").unlink()
    os.mkfifo(ws / ".daemon.pid")
    t0 = time.monotonic()
    assert codes(ws) == ["daemon.pid-malformed"]
    assert time.monotonic() - t0 < 5


def test_argv_matching_is_by_element_not_substring():
    pats = ["train.py", "healthkit.trainer.train_file"]
    assert argv_matches(["python3", "/x/train.py", "--f", "a"], pats) == "train.py"
    assert (
        argv_matches(["python", "-m", "healthkit.trainer.train_file", "--workspace", "/w"], pats)
        == "healthkit.trainer.train_file"
    )
    assert argv_matches(["bash", "-c", "python train.py"], pats) is None
    assert argv_matches(["pgrep", "-f", "train.py"], pats) is None
    assert argv_matches(["python", "retrain.py"], pats) is None
    assert argv_matches(["python", "train.py.bak"], pats) is None
    assert argv_matches(["vim", "train.py"], pats) is None


def test_secret_in_orphan_argv_never_reaches_the_report(ws, procs):
    (ws / ".daemon.pid").write_text(f"{dead_pid()}\n")
    secret = "hf_" + "A" * 30
    t = procs.popen([sys.executable, "train.py", "--hf-token", secret, "--api_key=sk-" + "b" * 24], cwd=ws)
    assert wait_for(lambda: "train.py" in " ".join(psutil.Process(t.pid).cmdline()))
    text = audit(ws, record_costs=False).to_json()
    from healthkit.reporting.render.markdown import render

    md = render(audit(ws, record_costs=False))
    for out in (text, md):
        assert secret not in out and "b" * 24 not in out
    assert "--hf-token '***'" in md
