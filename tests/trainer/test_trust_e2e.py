"""Issue 25 with a real training: root's `fix --safe` on hk_eve's workspace starts our daemon as hk_eve, and so its
training child; nothing of hers runs as root. (`init --tiny-model` as hk_eve, a queued file, a tiny CPU run.)"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import psutil
import pytest

from healthkit.contract.trust import TRUST_FILE_ENV

from ..trust_env import REPO, User, ensure_user, kill_workspace_processes, open_folder, python_for
from .conftest import wait_for

pytestmark = pytest.mark.slow


@pytest.fixture
def shared():
    d = open_folder("hk-trust-e2e-")
    yield d
    kill_workspace_processes(d)
    shutil.rmtree(d, ignore_errors=True)


def as_eve(eve: User, python: str, *args: str) -> subprocess.CompletedProcess:
    """healthkit run by hk_eve herself (setgid/setuid before exec, as `runuser -u hk_eve --` does)."""
    return subprocess.run(
        [python, "-m", "healthkit.cli", *args],
        capture_output=True,
        text=True,
        timeout=300,
        cwd="/",
        env={**os.environ, "HOME": "/tmp", "USER": eve.name},
        **eve.popen(),
    )


def uids(pid: int) -> tuple[int, int, int]:
    return tuple(psutil.Process(pid).uids())  # type: ignore[return-value]


def test_root_fix_starts_eve_daemon_and_training_as_eve(shared: Path) -> None:
    eve = ensure_user()
    python = python_for(eve, shared)
    ws = shared / "ws"
    ws.mkdir()
    os.chown(ws, eve.uid, eve.gid)
    r = as_eve(eve, python, "init", str(ws), "--tiny-model")
    assert r.returncode == 0, r.stdout + r.stderr
    r = as_eve(eve, python, "queue", "add", str(ws), str(ws / "data" / "sample.jsonl"))
    assert r.returncode == 0, r.stdout + r.stderr
    assert (ws / "config.json").stat().st_uid == eve.uid

    def root(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [python, "-m", "healthkit.cli", *args],
            capture_output=True,
            text=True,
            timeout=300,
            cwd=REPO,
            env={**os.environ, TRUST_FILE_ENV: str(shared / "trusted.toml")},
        )

    refused = root("fix", str(ws), "--safe")  # another user's workspace: nothing starts until root trusts it
    assert "not trusted" in refused.stdout and "[1] applied" not in refused.stdout, refused.stdout
    assert root("trust", str(ws)).returncode == 0
    fixed = root("fix", str(ws), "--safe")
    assert "[1] applied  start-daemon" in fixed.stdout, fixed.stdout[-3000:] + fixed.stderr[-3000:]
    assert f"as {eve.name} (uid {eve.uid}" in fixed.stdout

    def ours(module: str) -> list[psutil.Process]:
        found = []
        for p in psutil.process_iter(["cmdline"]):
            cmd = p.info["cmdline"] or []
            if module in cmd and str(ws) in cmd:
                found.append(p)
        return found

    daemon = wait_for(lambda: ours("healthkit.trainer.daemon"), 60, what="the daemon")[0]
    assert uids(daemon.pid) == (eve.uid,) * 3, f"the daemon runs with uids {uids(daemon.pid)}, not {eve.name}'s"
    assert psutil.Process(daemon.pid).gids().real == eve.gid
    child = wait_for(lambda: ours("healthkit.trainer.train_file"), 120, what="the training child")[0]
    assert uids(child.pid) == (eve.uid,) * 3, f"the training child runs with uids {uids(child.pid)}, not {eve.name}'s"
    # and what it writes is hers: the run finishes, as hk_eve, in her workspace
    done = ws / "queue" / "done"
    wait_for(lambda: any(done.glob("*.jsonl")), 300, what="the queued file to finish training")
    assert (ws / "status" / "training_status.json").stat().st_uid == eve.uid
    assert all(p.stat().st_uid == eve.uid for p in (ws / "current_model").rglob("*") if not p.is_symlink())


def test_root_daemon_start_on_eve_workspace_runs_as_eve(shared: Path) -> None:
    """`healthkit daemon start` by root, by hand, for hk_eve's workspace: the daemon is hers too."""
    eve = ensure_user()
    python = python_for(eve, shared)
    ws = shared / "ws"
    ws.mkdir()
    os.chown(ws, eve.uid, eve.gid)
    assert as_eve(eve, python, "init", str(ws), "--tiny-model").returncode == 0
    r = subprocess.run(
        [python, "-m", "healthkit.cli", "daemon", "start", str(ws)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO,
    )
    assert r.returncode == 0 and f"as {eve.name}" in r.stdout, r.stdout + r.stderr
    pid = int(r.stdout.split("PID ")[1].split()[0].rstrip(";"))
    assert uids(pid) == (eve.uid,) * 3
    assert (ws / ".daemon.pid").stat().st_uid == eve.uid
    stop = as_eve(eve, python, "daemon", "stop", str(ws), "--wait", "60")  # and she can stop it herself
    assert stop.returncode == 0, stop.stdout + stop.stderr
