"""A full disk for real: a tiny training run fills a small tmpfs; the stack waits, explains, lets `fix` free space, resumes.

The tmpfs is mounted by the test (root, as in CI) and unmounted at teardown; where mounting
is not allowed the tests skip and say why. Set HEALTHKIT_DISKFULL_TIMELINE=PATH to keep the
run's timeline (event, seconds since start, bytes free) as JSON.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import time
from pathlib import Path
from typing import Any

import psutil
import pytest

from healthkit.trainer import checkpoints as ck
from healthkit.trainer.daemon import start_daemon
from healthkit.trainer.diskspace import free_bytes
from healthkit.trainer.layout import Layout
from healthkit.trainer.pidfile import running_daemon
from healthkit.trainer.scaffold import init_workspace

from ..tmpfs import mounted_tmpfs
from .conftest import FAST_CONFIG, _kill_workspace_processes, all_logs, daemon_log, hk, queue_file, wait_for

pytestmark = pytest.mark.slow

SMALL_FS = 12 * 1024 * 1024
# Saves every 2 steps and keeps them all: 30 checkpoints of ~0.5 MB, more than the 12 MB it has (it fills near step 46);
# once the oldest are pruned, the rest of the run fits.
FILLING_CONFIG = {
    **FAST_CONFIG,
    "max_steps": 60,
    "save_steps": 2,
    "eval_steps": 10,
    "save_total_limit": 100,
    "max_failures": 2,
}


@pytest.fixture
def small_fs(tmp_path: Path):
    with mounted_tmpfs(tmp_path / "small-fs", SMALL_FS, kill=_kill_workspace_processes) as where:
        yield where


class Timeline:
    """Events with the seconds since the start and the bytes free on the small filesystem."""

    def __init__(self, fs: Path):
        self.fs = fs
        self.t0 = time.monotonic()
        self.events: list[dict[str, Any]] = []

    def mark(self, event: str) -> None:
        self.events.append(
            {"t_s": round(time.monotonic() - self.t0, 1), "event": event, "free_bytes": free_bytes(self.fs)}
        )

    def save(self, lay: Layout) -> None:
        out = os.environ.get("HEALTHKIT_DISKFULL_TIMELINE")
        if out:
            logs = {p.name: p.read_text(errors="replace") for p in sorted(lay.logs.glob("*")) if p.is_file()}
            Path(out).write_text(json.dumps({"events": self.events, "logs": logs}, indent=2))
        for e in self.events:
            print(f"{e['t_s']:>7.1f}s  {e['free_bytes']:>10} B free  {e['event']}")


def make_ws_on(fs: Path, tiny_model_dir: Path, **cfg: Any) -> Layout:
    base = fs / "ws"
    init_workspace(base, **cfg)
    shutil.copytree(tiny_model_dir, base / "models" / "base")
    return Layout.of(base)


def supervisor_alive(lay: Layout) -> bool:
    return any(
        "healthkit.trainer.supervise" in " ".join(p.info["cmdline"] or [])
        and str(lay.base) in (p.info["cmdline"] or [])
        for p in psutil.process_iter(["cmdline"])
    )


def age_checkpoints(lay: Layout, seconds: float = 3600) -> None:
    t = time.time() - seconds
    for _, d in ck.checkpoints(lay.checkpoints):
        if not ck.is_complete(d):
            continue
        for p in [*d.iterdir(), d]:
            os.utime(p, (t, t))


def state(lay: Layout) -> dict[str, Any]:
    try:
        return json.loads(lay.daemon_state.read_text())
    except (OSError, ValueError):
        return {}


def findings(out: str) -> list[dict[str, Any]]:
    return json.loads(out)["findings"]


def test_full_disk_waits_explains_fixes_and_resumes(small_fs: Path, tiny_model_dir: Path, monkeypatch) -> None:
    monkeypatch.setenv("HEALTHKIT_DISK_CHECK_MAX_S", "2")
    monkeypatch.setenv("HEALTHKIT_SUPERVISE_BACKOFF_S", "0.2")
    tl = Timeline(small_fs)
    lay = make_ws_on(small_fs, tiny_model_dir, **FILLING_CONFIG)
    name = queue_file(lay, "fill.jsonl", n=40).name
    start_daemon(lay.base, supervise=True)
    tl.mark("daemon started under the supervisor, file queued")
    try:
        wait_for(
            lambda: state(lay).get("state") == "waiting", timeout=400, interval=0.2, what="the daemon to wait for disk"
        )
    finally:
        tl.mark("daemon state: waiting")
    st = state(lay)
    assert re.fullmatch(
        rf"disk full: \d+ bytes free on {re.escape(str(small_fs))}, a checkpoint needs ~\d+", st["waiting_reason"]
    ), st
    assert st["waiting_file"] == name and st["disk"]["free_bytes"] < st["disk"]["need_bytes"]
    # The stack is up and waiting: supervisor and daemon alive, the file where it was, no training, no failure counted.
    assert running_daemon(lay) and supervisor_alive(lay), all_logs(lay)
    assert (lay.processing / name).exists() and not list(lay.failed.glob("*.jsonl"))

    out = hk("daemon", "status", str(lay.base))
    assert out.returncode == 0 and "waiting for disk space" in out.stdout and "bytes free" in out.stdout, (
        out.stdout + out.stderr
    )
    tl.mark("`healthkit daemon status` says it waits for disk space")

    audit = hk("audit", str(lay.base), "--format", "json")
    assert "Traceback" not in audit.stderr, audit.stderr
    codes = {f["code"]: f for f in findings(audit.stdout)}
    assert "disk.low-space" in codes, codes
    assert any("waiting" in line for line in codes["disk.low-space"]["root_cause"]), codes["disk.low-space"]
    assert not [c for c in codes if c.startswith("daemon.") or c == "queue.stuck"], sorted(codes)
    tl.mark("audit: disk.low-space names the waiting daemon; no daemon.* or queue.stuck")

    # A daemon killed on the full disk: the supervisor restarts it, and the new one (PID file and state rewritten in the
    # blocks they own) waits again instead of crash-looping.
    old = running_daemon(lay)
    os.kill(old, signal.SIGKILL)
    wait_for(
        lambda: (
            running_daemon(lay) not in (None, old, -1)
            and state(lay).get("state") == "waiting"
            and state(lay).get("pid") == running_daemon(lay)
        ),
        timeout=120,
        interval=0.2,
        what="a restarted daemon waiting",
    )
    assert supervisor_alive(lay) and state(lay)["restarts"] == 1, all_logs(lay)
    tl.mark("daemon SIGKILLed on the full disk; the supervisor restarted it; it waits again")

    # fix never deletes a checkpoint modified in the last two minutes (it may be being written). A real run fills a disk
    # over hours; this one took a minute: age its complete checkpoints (utime needs no space) rather than wait. The
    # incomplete one the failed save left stays young, so the trainer cleans it up itself when it resumes.
    age_checkpoints(lay)
    fixed = hk("fix", str(lay.base), "--unsafe", "--keep", "1", "--yes", timeout=300)
    assert "Traceback" not in fixed.stdout + fixed.stderr, fixed.stdout + fixed.stderr
    tl.mark("`healthkit fix --unsafe --keep 1 --yes` done")
    assert free_bytes(small_fs) > st["disk"]["need_bytes"], fixed.stdout

    wait_for(
        lambda: (lay.done / name).exists() and state(lay).get("state") == "idle",
        timeout=400,
        interval=0.2,
        what="the file to finish after space came back",
    )
    tl.mark("file finished (done/), daemon idle")
    tl.save(lay)
    log = daemon_log(lay)
    train_log = (lay.logs / "train-fill.log").read_text(errors="replace")
    assert re.search(r"ran out of disk space \(exit code 74\)", log), log
    assert re.search(r"removed checkpoint-\d+: the incomplete checkpoint the failed save left", train_log), train_log[
        -3000:
    ]
    assert "disk space is back" in log and len(re.findall(rf"completed {re.escape(name)} ", log)) == 1, log
    assert not list(lay.processing.glob("*.jsonl")) and not list(lay.failed.glob("*.jsonl"))
    assert not ck.checkpoints(lay.checkpoints) and not list(lay.models.glob(".*.saving"))
    assert not [p for p in lay.checkpoints.iterdir() if p.name.startswith(ck.ASIDE_PREFIX)]  # nothing left half-saved
    assert (lay.models / "fill" / ck.FINAL_MARKER).exists()
