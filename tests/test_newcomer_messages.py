"""Small truths a newcomer tripped over (issue 31, item 15): each message says exactly what is so."""

from __future__ import annotations

import subprocess
import sys

from .conftest import make_checkpoint, run_cli


def test_invalid_json_reasons_read_once_and_name_the_file_once(tmp_path):
    base = tmp_path / "ws"
    assert run_cli("init", str(base)).returncode == 0
    bad = tmp_path / "bad.jsonl"
    bad.write_bytes(b'{"text": "a\x01b"}\n{"text": "fine"}\n')
    r = run_cli("queue", "add", str(base), str(bad))
    err = r.stderr.decode()
    assert r.returncode == 65 and "Invalid control character at column" in err and " at at " not in err, err
    assert err.count("bad.jsonl") == 1, err


def test_daemon_status_where_no_daemon_ever_ran(tmp_path):
    base = tmp_path / "ws"
    assert run_cli("init", str(base)).returncode == 0
    out = run_cli("daemon", "status", str(base)).stdout.decode()
    assert out.splitlines()[0] == "daemon: not running (none has run here: no status/daemon_state.json)", out


def test_a_recommended_unsafe_prune_names_the_keep_it_needs(tmp_path):
    for s in range(10, 130, 10):
        make_checkpoint(tmp_path / "run", s)
    md = run_cli("audit", str(tmp_path / "run")).stdout.decode()
    assert f"healthkit fix {tmp_path / 'run'} --unsafe --only checkpoints.no-retention --keep N" in md, md


def test_a_refused_fix_names_the_lock_holder_even_before_it_wrote_its_pid(tmp_path):
    """The holder's PID is written just after the flock (or not at all on a full disk): the kernel still knows it."""
    from healthkit.fix.lock import LOCK_NAME, FixLock, LockBusy

    (tmp_path / LOCK_NAME).touch()
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            (
                "import fcntl, os, sys, time; fd = os.open(sys.argv[1], os.O_RDWR); fcntl.flock(fd, fcntl.LOCK_EX); "
                "print('held', flush=True); time.sleep(60)"
            ),
            str(tmp_path / LOCK_NAME),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        try:
            FixLock(tmp_path).acquire()
            raise AssertionError("the lock was not refused")
        except LockBusy as exc:
            msg = str(exc)
        assert f"(PID {holder.pid}: {sys.executable} -c" in msg and "another process" not in msg, msg
    finally:
        holder.kill()
        holder.wait()
