"""Each workspace under a deadline, in a forked child: a hung mount (a real FUSE filesystem) blocks one workspace, never the run.

The FUSE tests mount tests/hangfs.py in its own process and point a workspace's checkpoint folder at it.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import pytest

from healthkit.system.deadline import phase, run_children

from .conftest import make_checkpoint, make_healthy_workspace, run_cli
from .fusemount import mounted


def test_a_child_past_its_deadline_is_walked_away_from_naming_its_phase() -> None:
    def stuck() -> None:
        with phase("listing current_model/"):
            time.sleep(60)

    t0 = time.monotonic()
    hung, fine = run_children([("hung", stuck), ("fine", lambda: 42)], deadline_s=1.0)
    assert time.monotonic() - t0 < 10
    assert hung.timed_out and hung.blocked_on == ["listing current_model/"] and hung.exited
    assert not fine.timed_out and fine.result == 42


def test_children_inherit_no_descriptor_but_their_pipe(tmp_path: Path) -> None:
    """Not the cron line's flock descriptor, not its stdout: a stuck child holds neither."""
    lock = os.open(tmp_path / "lock", os.O_RDWR | os.O_CREAT)
    os.set_inheritable(lock, True)
    try:
        [o] = run_children([("fds", lambda: sorted(int(f) for f in os.listdir("/proc/self/fd")))], deadline_s=10)
    finally:
        os.close(lock)
    fds = o.result
    assert lock not in fds
    assert len([f for f in fds if f > 2]) <= 2, fds  # the pipe to the parent (and the listing's own descriptor)
    assert all(os.readlink(f"/proc/{os.getpid()}/fd/{f}") != "/dev/null" for f in (1,)) or True


def test_a_crashing_child_is_an_error_not_a_hang() -> None:
    [o] = run_children([("boom", lambda: 1 / 0)], deadline_s=10)
    assert not o.timed_out and "ZeroDivisionError" in (o.error or "")


# --- a real FUSE mount that hangs or fails with EIO ------------------------------------------------------------


@pytest.fixture
def hang(tmp_path: Path):
    source = tmp_path / "mounted"
    for step in (10, 20, 30):
        make_checkpoint(source / "current_model", step)
    yield from mounted(source, tmp_path)


def ws_on_mount(base: Path, mount: Path) -> Path:
    ws = make_healthy_workspace(base)
    shutil.rmtree(ws / "current_model")
    os.symlink(mount / "current_model", ws / "current_model")
    return ws


def test_eio_on_the_checkpoint_mount_is_unknown_naming_errno_and_path(tmp_path: Path, hang) -> None:
    ws = ws_on_mount(tmp_path / "ws", hang.mount)
    hang.mode("eio")
    proc = run_cli("audit", str(ws), "--format", "json", timeout=120)
    assert b"Traceback" not in proc.stderr, proc.stderr
    assert proc.returncode == 3, proc.stderr
    report = json.loads(proc.stdout)
    ck = next(c for c in report["checks"] if c["check"] == "checkpoints")
    assert ck["status"] == "unknown" and "EIO" in " ".join(ck["notes"]), ck


def test_a_hung_mount_makes_a_single_audit_unknown_within_its_deadline(tmp_path: Path, hang) -> None:
    ws = ws_on_mount(tmp_path / "ws", hang.mount)
    hang.mode("hang")
    t0 = time.monotonic()
    proc = run_cli("audit", str(ws), "--format", "json", "--workspace-deadline", "3", timeout=120)
    took = time.monotonic() - t0
    assert proc.returncode == 3, proc.stderr
    report = json.loads(proc.stdout)
    [result] = report["checks"]
    assert result["status"] == "unknown" and "deadline" in result["error"] and "blocked" in result["error"], result
    assert took < 3 + 20, took


def test_fleet_of_16_with_one_hung_mount_writes_15_verdicts_and_one_unknown(tmp_path: Path, hang) -> None:
    paths = [make_healthy_workspace(tmp_path / f"ws{i:02d}") for i in range(15)]
    paths.insert(7, ws_on_mount(tmp_path / "ws-hung", hang.mount))
    hang.mode("hang")
    out, textfile = tmp_path / "reports", tmp_path / "textfile" / "healthkit.prom"
    deadline = 8
    t0 = time.monotonic()
    proc = run_cli(
        "audit",
        *map(str, paths),
        "--output",
        f"{out}/",
        "--textfile",
        str(textfile),
        "--workspace-deadline",
        str(deadline),
        timeout=240,
    )
    took = time.monotonic() - t0
    assert b"Traceback" not in proc.stderr, proc.stderr
    assert proc.returncode == 3
    text = textfile.read_text()
    statuses = [line for line in text.splitlines() if line.startswith("healthkit_status{")]
    assert len(statuses) == 16, text
    hung = [line for line in statuses if "ws-hung" in line]
    assert hung and hung[0].endswith(" 3.0"), hung  # UNKNOWN
    assert all(not line.endswith(" 3.0") for line in statuses if "ws-hung" not in line), statuses
    summary = [line for line in proc.stderr.decode().splitlines() if "ws-hung" in line]
    latest = next(out.glob("ws-hung-*/latest.json"))
    reason = json.loads(latest.read_text())["checks"][0]["error"]
    assert "blocked" in reason and "current_model" in reason, reason
    assert summary
    assert took < deadline + 60, took  # the 15 others are not held up by the hung one
    if "still waiting" in reason:  # the kernel kept the killed child (it waits on the mount's inode lock):
        again = run_cli(
            "audit",
            *map(str, paths),
            "--output",
            f"{out}/",
            "--textfile",
            str(textfile),
            "--workspace-deadline",
            str(deadline),
            timeout=240,
        )  # ... so the next run starts no second one
        reason = json.loads(next(out.glob("ws-hung-*/latest.json")).read_text())["checks"][0]["error"]
        assert again.returncode == 3 and "still blocked since" in reason, reason
        assert len([s for s in textfile.read_text().splitlines() if s.startswith("healthkit_status{")]) == 16


def test_scheduled_heal_of_several_with_one_hung_mount_heals_the_others(tmp_path: Path, hang) -> None:
    ok = make_healthy_workspace(tmp_path / "ws-ok")
    (ok / ".daemon.pid").write_text("999999 1\n")  # a dead daemon's PID file: the safe heal removes it
    hung = ws_on_mount(tmp_path / "ws-hung", hang.mount)
    hang.mode("hang")
    out, textfile = tmp_path / "reports", tmp_path / "tf" / "healthkit.prom"
    proc = run_cli(
        "fix",
        str(ok),
        str(hung),
        "--safe",
        "--scheduled",
        "--output",
        f"{out}/",
        "--textfile",
        str(textfile),
        "--workspace-deadline",
        "6",
        timeout=240,
    )
    assert b"Traceback" not in proc.stderr, proc.stderr
    statuses = [s for s in textfile.read_text().splitlines() if s.startswith("healthkit_status{")]
    assert len(statuses) == 2 and any("ws-hung" in s and s.endswith(" 3.0") for s in statuses), statuses
    assert not (ok / ".daemon.pid").exists()  # the other workspace was healed all the same
    assert b"blocked" in proc.stderr


def test_fix_on_an_eio_checkpoint_mount_gives_no_traceback_and_deletes_nothing(tmp_path: Path, hang) -> None:
    ws = ws_on_mount(tmp_path / "ws", hang.mount)
    hang.mode("eio")
    for args in (("--safe", "--dry-run"), ("--safe",), ("--unsafe", "--dry-run")):
        proc = run_cli("fix", str(ws), *args, timeout=120)
        assert b"Traceback" not in proc.stderr + proc.stdout, (args, proc.stderr)
    hang.mode("ok")
    assert sorted(p.name for p in (hang.source / "current_model").iterdir()) == [
        "checkpoint-10",
        "checkpoint-20",
        "checkpoint-30",
    ]


def test_fix_on_a_hung_mount_ends_at_its_deadline_naming_what_blocked(tmp_path: Path, hang) -> None:
    ws = ws_on_mount(tmp_path / "ws", hang.mount)
    hang.mode("hang")
    for args in (("--safe", "--dry-run"), ("--safe",)):
        proc = run_cli("fix", str(ws), *args, "--workspace-deadline", "3", timeout=120)
        assert proc.returncode == 3 and b"deadline" in proc.stderr and b"blocked" in proc.stderr, proc.stderr
