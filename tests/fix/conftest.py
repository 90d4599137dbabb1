"""Fixtures for the fix engine's tests: the example machine built for real, a fake daemon that adopts, cleanup by PID."""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from healthkit.demo import Example, build_example
from healthkit.fix import FixOptions, Safety, run_fix

REPO = Path(__file__).resolve().parents[2]

# A stand-in for the setup's own training_daemon.py: it adopts a running train.py of its
# workspace (records it in daemon_state.json as the daemon's child), writes "PID START"
# to .daemon.pid and stays alive until its workspace disappears.
FAKE_DAEMON = """\
import json, os, sys, time
import psutil
base = sys.argv[sys.argv.index("--base-dir") + 1]
time.sleep({delay})
me = psutil.Process()
child = None
for p in psutil.process_iter(["pid", "cmdline", "cwd", "create_time"]):
    cmd = p.info["cmdline"] or []
    if len(cmd) > 1 and os.path.basename(cmd[1]) == "train.py" and p.info["cwd"] == base:
        child = p
state = {{"state": "training" if child else "idle", "pid": me.pid, "started_at": me.create_time(),
         "child_pid": child.pid if child else None, "child_started_at": child.info["create_time"] if child else None}}
def put(path, text):
    tmp = path + ".tmp"
    with open(tmp, "w") as fh:
        fh.write(text)
    os.replace(tmp, path)
put(os.path.join(base, "status", "daemon_state.json"), json.dumps(state))
put(os.path.join(base, ".daemon.pid"), f"{{me.pid}} {{me.create_time():.2f}}\\n")
print("fake daemon up", me.pid, flush=True)
while os.path.isdir(base):
    time.sleep(0.3)
"""


def tree_hashes(root: Path, skip: tuple[str, ...] = ()) -> dict[str, str]:
    """Every entry under root (symlinks as their target text, never followed) -> content hash."""
    out: dict[str, str] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            rel = str(p.relative_to(root))
            if any(rel == s or rel.startswith(s + "/") for s in skip):
                continue
            if p.is_symlink():
                out[rel] = "link:" + os.readlink(p)
            elif p.is_file():
                out[rel] = hashlib.sha256(p.read_bytes()).hexdigest()
            else:
                out[rel] = "dir"
    return out


def kill_tree_processes(root: Path) -> None:
    """End every process this test started under ``root``, by PID (never by a name pattern)."""
    mine = []
    for p in psutil.process_iter(["pid", "cwd", "cmdline"]):
        try:
            cwd = p.info["cwd"] or ""
            cmd = " ".join(p.info["cmdline"] or [])
        except (psutil.Error, TypeError):
            continue
        if p.pid != os.getpid() and (cwd.startswith(str(root)) or str(root) in cmd):
            mine.append(p)
    for p in mine:
        try:
            p.terminate()
        except psutil.Error:
            pass
    deadline = time.monotonic() + 3
    while mine and time.monotonic() < deadline:
        mine = [p for p in mine if _running(p)]
        time.sleep(0.05)
    for p in mine:
        try:
            p.kill()
        except psutil.Error:
            pass


def _running(p: psutil.Process) -> bool:
    """Alive and not a zombie (an exited process waits for its reaper, which may be slow here)."""
    try:
        return p.is_running() and p.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def write_fake_daemon(base: Path, delay: float = 0.0) -> None:
    """The fake daemon adopts a running train.py, and healthkit.toml says so (daemon_adopts)."""
    (base / "training_daemon.py").write_text(FAKE_DAEMON.format(delay=delay), encoding="utf-8")
    toml = base / "healthkit.toml"
    text = toml.read_text(encoding="utf-8")
    if "daemon_adopts" not in text:
        toml.write_text(text.replace("[processes]\n", "[processes]\ndaemon_adopts = true\n", 1), encoding="utf-8")


def set_checkpoint_mtimes_past(base: Path, hours: float = 5.0) -> None:
    """Checkpoints younger than two minutes are never pruned (they may be being written): age them."""
    t = time.time() - hours * 3600
    for d in sorted((base / "current_model").glob("checkpoint-*")):
        if d.is_symlink():
            continue
        for p in [*d.iterdir(), d]:
            os.utime(p, (t, t), follow_symlinks=False)
        t += 60


def set_best(base: Path, best: str) -> None:
    """Record ``best`` as best_model_checkpoint in every checkpoint's trainer_state.json (as an old absolute path)."""
    for d in (base / "current_model").glob("checkpoint-*"):
        ts = d / "trainer_state.json"
        if d.is_symlink() or not ts.exists():
            continue
        st = json.loads(ts.read_text())
        st["best_model_checkpoint"] = f"/old/location/current_model/{best}"
        st["best_metric"] = 0.5
        ts.write_text(json.dumps(st))


def set_config(base: Path, **values: object) -> None:
    cfg = json.loads((base / "config.json").read_text())
    cfg.update(values)
    (base / "config.json").write_text(json.dumps(cfg, indent=2) + "\n")


def fix(base: Path, level: Safety = Safety.SAFE, **kw) -> tuple[object, str]:
    out = io.StringIO()
    kw.setdefault("daemon_confirm_s", 2.0)
    kw.setdefault("kill_grace_s", 3.0)
    run = run_fix(base, FixOptions(level=level, **kw), out)
    return run, out.getvalue()


def cli(base: Path, *args: str, env: dict[str, str] | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
    e = dict(os.environ)
    e.pop("HEALTHKIT_FIX_CRASH_AT", None)
    e.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "healthkit.cli", "fix", str(base), *args],
        capture_output=True,
        text=True,
        env=e,
        cwd=REPO,
        timeout=timeout,
    )


@pytest.fixture
def make_example(tmp_path: Path) -> Iterator:
    """Build the example machine for real (``start_processes`` starts the orphaned train.py); ends everything after."""
    made: list[Example] = []

    def make(name: str = "training", **kw) -> Example:
        kw.setdefault("ckpt_bytes", 8192)
        ex = build_example(tmp_path / name, **kw)
        made.append(ex)
        return ex

    yield make
    kill_tree_processes(tmp_path)  # the orphan, daemons the fixes started: everything whose cwd or argv is in tmp_path
