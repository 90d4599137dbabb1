"""Simulated hosts for the multi-host tests: sibling PID, UTS and mount namespaces over one shared folder.

A `Host` runs a command as PID 1 of its own PID namespace with its own host name (`unshare --pid --uts --fork
--mount-proc`, which needs root): a process there is invisible to an auditor in another such namespace, and killing
the namespace's first process kills all of it at once, as a power cut would. The namespaces share one kernel, so its
flock is shared; `HOST_LOCAL_LOCKS` (the trainer's test hook) makes the daemon lock per host, as it is where flock is
node-local.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil
import pytest

from ..conftest import require_tool

REPO = Path(__file__).resolve().parents[2]
FAKE_DAEMON = Path(__file__).with_name("fake_daemon.py")
HOST_LOCAL_LOCKS = {"HEALTHKIT_TEST_HOST_LOCAL_LOCKS": "1"}


def require_namespaces() -> str:
    """unshare, as root: a skip outside CI when either is missing, a failure under CI=true."""
    path = require_tool("unshare", "util-linux")
    if os.geteuid() != 0:
        if os.environ.get("CI", "").lower() in ("true", "1", "yes"):
            pytest.fail("the multi-host tests need root for unshare --pid --uts, and CI=true", pytrace=False)
        pytest.skip("the multi-host tests need root (unshare --pid --uts)")
    return path


def wait_for(pred: Callable[[], Any], timeout: float = 30.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(0.02)
    raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")


class Host:
    """One simulated host: commands it runs live in a namespace of their own, named ``name``."""

    def __init__(self, name: str):
        self.name = name
        self.runs: list[subprocess.Popen] = []
        self.scripts: list[str] = []
        self.lines: dict[int, list[str]] = {}

    def _argv(self, argv: list[str]) -> list[str]:
        # The command goes in a script, not in unshare's own argv: a process there whose argv names the daemon and the
        # workspace would count as a daemon to an auditor on this host (no such wrapper exists on a real node).
        import shlex
        import tempfile

        fd, script = tempfile.mkstemp(prefix=f"host-{self.name}-", suffix=".sh")
        os.write(fd, f"hostname {shlex.quote(self.name)} && exec {shlex.join(argv)}\n".encode())
        os.close(fd)
        self.scripts.append(script)
        return ["unshare", "--pid", "--uts", "--fork", "--mount-proc", "--", "sh", script]

    def spawn(self, argv: list[str], cwd: Path, env: dict[str, str] | None = None) -> subprocess.Popen:
        """Start ``argv`` there; its output lines are collected (``output``)."""
        p = subprocess.Popen(
            self._argv(argv),
            cwd=cwd,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env={**os.environ, **(env or {})},
            start_new_session=True,
        )
        self.runs.append(p)
        lines: list[str] = []
        self.lines[p.pid] = lines

        def pump() -> None:
            assert p.stdout is not None
            for line in p.stdout:
                lines.append(line.rstrip("\n"))

        threading.Thread(target=pump, daemon=True).start()
        return p

    def output(self, p: subprocess.Popen) -> list[str]:
        return list(self.lines.get(p.pid, []))

    def run(self, argv: list[str], cwd: Path, timeout: float = 60) -> subprocess.CompletedProcess:
        return subprocess.run(self._argv(argv), cwd=cwd, capture_output=True, text=True, timeout=timeout)

    def power_cut(self) -> None:
        """SIGKILL to each namespace's first process: the kernel kills everything in it at once."""
        for p in self.runs:
            try:
                for child in psutil.Process(p.pid).children():
                    os.kill(child.pid, signal.SIGKILL)
            except (psutil.Error, ProcessLookupError):
                pass
        for p in self.runs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
        for script in self.scripts:
            try:
                os.unlink(script)
            except OSError:
                pass
        self.scripts.clear()


@pytest.fixture
def hosts():
    require_namespaces()
    made: list[Host] = []

    def make(name: str) -> Host:
        h = Host(name)
        made.append(h)
        return h

    yield make
    for h in made:
        h.power_cut()


def audit_from(host: Host, ws: Path, *select: str) -> dict[str, Any]:
    """`healthkit audit --format json` run on ``host`` (it cannot see the other hosts' processes)."""
    argv = [sys.executable, "-m", "healthkit.cli", "audit", str(ws), "--format", "json"]
    for s in select:
        argv += ["--select", s]
    out = host.run(argv, cwd=REPO)
    assert out.returncode in (0, 1, 2, 3), out.stderr
    return json.loads(out.stdout)


def lease_ws(base: Path, lease_s: float = 2.0, margin_s: float = 0.5) -> Path:
    """A workspace for the fake daemon: a queue, our pattern for it, a short lease and margin."""
    (base / "queue" / "inbox").mkdir(parents=True)
    (base / "queue" / "processing").mkdir(parents=True)
    (base / "status").mkdir()
    (base / "queue" / "inbox" / "next.jsonl").write_text('{"text": "x"}\n')
    (base / "config.json").write_text(json.dumps({"base_model": "m"}))
    (base / "healthkit.toml").write_text(
        f'[processes]\ndaemon = ["fake_daemon.py"]\ntraining = ["train.py"]\n'
        f"[daemon]\nlease_seconds = {lease_s}\n[thresholds]\nclock_skew_seconds = {margin_s}\n"
    )
    return base
