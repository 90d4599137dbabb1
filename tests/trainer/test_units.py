"""Fast tests of the daemon's parts that need no torch: queue, control, PID lock, hooks, GPU, monitor, preflight."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from types import SimpleNamespace

import pytest

from healthkit.contract.config_model import SCHEMA_PATH, export_schema
from healthkit.system.procs import read_pid_file
from healthkit.trainer import checkpoints as ck
from healthkit.trainer import control as ctl
from healthkit.trainer import queue as q
from healthkit.trainer.data import DataError, read_texts, split
from healthkit.trainer.hooks import Background, HookCosts, write_costs
from healthkit.trainer.layout import Layout
from healthkit.trainer.pidfile import DaemonLock, is_locked, running_daemon
from healthkit.trainer.tiny import write_jsonl

from .conftest import REPO


def _src(tmp_path: Path, name: str, lines: list[str] | None = None) -> Path:
    return write_jsonl(tmp_path / "src" / name, lines or ["hello world", "second line"])


def test_queue_priority_then_arrival_then_name(lay: Layout, tmp_path: Path) -> None:
    q.add(lay, _src(tmp_path, "b.jsonl"))
    time.sleep(0.02)
    q.add(lay, _src(tmp_path, "a.jsonl"))
    q.add(lay, _src(tmp_path, "urgent.jsonl"), priority=0)
    q.add(lay, _src(tmp_path, "later.jsonl"), priority=9)
    assert [e.name for e in q.pending(lay)] == ["p0-urgent.jsonl", "b.jsonl", "a.jsonl", "p9-later.jsonl"]
    with pytest.raises(FileExistsError):
        q.add(lay, _src(tmp_path, "a.jsonl"))
    with pytest.raises(ValueError):
        q.add(lay, write_jsonl(tmp_path / "x.txt", ["x"]))


def test_queue_claim_fail_and_done(lay: Layout, tmp_path: Path) -> None:
    q.add(lay, _src(tmp_path, "a.jsonl"))
    entry = q.pending(lay)[0]
    claimed = q.claim(lay, entry)
    assert claimed == lay.processing / "a.jsonl" and q.claim(lay, entry) is None  # claimed once only
    assert q.record_failure(lay, "a.jsonl", "boom") == 1
    assert q.record_failure(lay, "a.jsonl", "boom again") == 2
    dest = q.finish_failed(lay, claimed, "gave up")
    info = json.loads((lay.failed / "a.jsonl.error.json").read_text())
    assert dest.exists() and info["error"] == "gave up" and info["attempts"] == 2
    assert q.listing(lay) == {"inbox": [], "processing": [], "done": [], "failed": ["a.jsonl"]}
    assert not list(lay.processing.iterdir())  # the attempts sidecar went too


def test_control_pause_resume_never_sticky(lay: Layout) -> None:
    ctl.request_pause(lay, "disk maintenance")
    r = ctl.read(lay)
    assert r.pause and r.pause_reason == "disk maintenance" and r.paused_at and not r.stop
    ctl.request_resume(lay)
    r = ctl.read(lay)
    assert not r.pause and r.resume and r.pause_reason is None and r.paused_at is None
    (lay.control / "pause").write_text("hand written\n")
    assert ctl.read(lay).pause_reason == "hand written"
    ctl.request_stop(lay)
    assert ctl.read(lay).stop


def test_pid_file_lock_format_and_release(lay: Layout) -> None:
    lock = DaemonLock(lay)
    assert lock.acquire()
    pf = read_pid_file(lay.pid_file)
    assert pf.state == "ok" and pf.pid == os.getpid() and pf.start_time is not None
    assert is_locked(lay) and running_daemon(lay) == os.getpid()
    assert not DaemonLock(lay).acquire()  # a second daemon is refused
    # flock on the PID file itself is held too (what `flock -n .daemon.pid true` sees)
    probe = subprocess.run(["flock", "-n", str(lay.pid_file), "true"], capture_output=True)
    assert probe.returncode != 0
    lock.release()
    assert not lay.pid_file.exists() and not is_locked(lay)


def test_dead_daemon_leaves_no_live_lock(lay: Layout) -> None:
    code = (
        f"import sys,os; sys.path.insert(0, {str(REPO)!r}); from healthkit.trainer.pidfile import DaemonLock; from healthkit.trainer.layout import Layout;"
        f"assert DaemonLock(Layout.of({str(lay.base)!r})).acquire(); os._exit(0)"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
    assert lay.pid_file.exists()  # left behind by a process that died without cleaning up...
    assert not is_locked(lay) and running_daemon(lay) is None  # ...but no live lock
    assert DaemonLock(lay).acquire()


LINGERING_DAEMON = """\
import os, sys, time
sys.path.insert(0, {repo!r})
from healthkit.trainer.layout import Layout
from healthkit.trainer.pidfile import DaemonLock
lay = Layout.of({base!r})
lock = DaemonLock(lay)
assert lock.acquire()
while not (lay.control / "stop").exists():
    time.sleep(0.02)
lock.release()  # the lock goes first; the process lives on (atexit, interpreter teardown, a slow flush)
while not (lay.base / "go").exists():
    time.sleep(0.02)
"""


def test_stop_returns_only_once_the_daemon_pid_has_exited(lay: Layout) -> None:
    from healthkit.trainer.daemon import stop_daemon

    proc = subprocess.Popen([sys.executable, "-c", LINGERING_DAEMON.format(repo=str(REPO), base=str(lay.base))])
    try:
        deadline = time.monotonic() + 60
        while not (is_locked(lay) and lay.pid_file.exists()):  # as start_daemon returns: locked, PID written
            assert proc.poll() is None and time.monotonic() < deadline, "the stand-in daemon did not start"
            time.sleep(0.02)
        result: list[bool] = []
        stopper = threading.Thread(target=lambda: result.append(stop_daemon(lay.base, wait_s=60)))
        stopper.start()
        while is_locked(lay):
            assert time.monotonic() < deadline, "the stand-in daemon never released its lock"
            time.sleep(0.02)
        stopper.join(1.0)  # a stop that trusted the lock would return within its 0.1 s poll
        assert stopper.is_alive() and proc.poll() is None, "stop returned while the daemon process still ran"
        (lay.base / "go").write_text("")
        stopper.join(60)
        assert result == [True]
        assert proc.poll() is not None or proc.wait(5) is not None
    finally:
        proc.kill()
        proc.wait()


def test_data_errors_name_the_lines(tmp_path: Path) -> None:
    p = tmp_path / "bad.jsonl"
    p.write_text('{"text": "fine"}\n{oops\n[1, 2]\n{"other": 1}\n\n{"text": ""}\n')
    with pytest.raises(DataError) as e:
        read_texts(p)
    msg = str(e.value)
    assert "4 bad line(s)" in msg and "line 2: invalid JSON" in msg and "line 3: a JSON list" in msg
    assert "line 4: no string field 'text'" in msg and "line 6: 'text' is empty" in msg
    (tmp_path / "empty.jsonl").write_text("\n")
    with pytest.raises(DataError, match="no examples"):
        read_texts(tmp_path / "empty.jsonl")
    with pytest.raises(DataError, match="does not exist"):
        read_texts(tmp_path / "missing.jsonl")


def test_split_is_deterministic_and_never_empty() -> None:
    texts = [f"t{i}" for i in range(10)]
    a, b = split(texts, 0.2, 42), split(texts, 0.2, 42)
    assert a == b and len(a[1]) == 2 and sorted(a[0] + a[1]) == sorted(texts)
    assert split(["a", "b"], 0.01, 0) == (["b"], ["a"]) or len(split(["a", "b"], 0.01, 0)[1]) == 1
    assert split(["only"], 0.5, 0) == (["only"], [])


def test_hung_hook_is_cut_off_not_waited_for() -> None:
    costs = HookCosts()
    bg = Background(costs, timeout_s=0.2)
    release, hanging = threading.Event(), threading.Event()
    done = []
    bg.submit("gpu_query", lambda: (hanging.set(), release.wait(30)))  # an NVML call that hangs
    assert hanging.wait(30)
    t0 = time.perf_counter()
    bg.submit("status_write", lambda: done.append(1))
    assert time.perf_counter() - t0 < 5  # the training thread never waits (waiting would take the hang's 30 s)
    time.sleep(0.3)  # past the 0.2 s timeout (a sleep never returns early)
    bg.check_hung()  # past the timeout: abandoned, a new worker takes over
    assert bg.flush(2.0) and done == [1]
    assert costs.hooks["gpu_query"]["timeouts"] == 1 and costs.hooks["status_write"]["calls"] == 1
    release.set()


def test_costs_training_section(tmp_path: Path) -> None:
    costs = HookCosts()
    costs.record("status_write", 0.01)
    costs.record("status_write", 0.03)
    costs.record_evaluation(0.5)
    path = tmp_path / "monitoring_costs.json"
    path.write_text(json.dumps({"audit_runs": [{"at": "x", "total_s": 0.1, "checks": {}}]}))
    write_costs(path, costs, step=7, train_time_s=2.0)
    data = json.loads(path.read_text())
    t = data["training"]
    assert data["audit_runs"]  # the audit's section is left alone
    assert t["step"] == 7 and t["hooks"]["status_write"] == {"calls": 2, "total_s": 0.04, "max_s": 0.03, "timeouts": 0}
    assert t["hook_share"] == pytest.approx(0.02) and t["evaluation"]["share"] == pytest.approx(0.25)


def test_gpu_stats_through_a_fake_nvml(monkeypatch: pytest.MonkeyPatch) -> None:
    from healthkit.system import gpu

    class FakeNVML:
        NVML_TEMPERATURE_GPU = 0

        def nvmlInit(self) -> None: ...
        def nvmlDeviceGetCount(self) -> int:
            return 1

        def nvmlDeviceGetHandleByIndex(self, i: int) -> str:
            return "h0"

        def nvmlDeviceGetMemoryInfo(self, h: str) -> SimpleNamespace:
            return SimpleNamespace(used=716 * 1024**2, total=24 * 1024**3)

        def nvmlDeviceGetTemperature(self, h: str, kind: int) -> int:
            return 44

        def nvmlDeviceGetName(self, h: str) -> bytes:
            return b"Fake GPU"

    gpu.reset()
    monkeypatch.setattr(gpu, "_load_nvml", lambda: FakeNVML())
    try:
        s = gpu.read_gpu_stats()
        assert s == {
            "index": 0,
            "memory_used_mb": 716.0,
            "memory_total_mb": 24576.0,
            "temperature_c": 44.0,
            "name": "Fake GPU",
        }
        assert gpu.read_gpu_stats(3) is None
    finally:
        gpu.reset()
    monkeypatch.setattr(gpu, "_load_nvml", lambda: None)  # no pynvml: "not available", never an error
    try:
        assert gpu.read_gpu_stats() is None and gpu.read_all_gpu_stats() == []
        assert "not installed" in (gpu.unavailable_reason() or "")
    finally:
        gpu.reset()


def test_monitor_serves_health_status_metrics() -> None:
    from healthkit.trainer.health_server import Monitor

    snap = {
        "healthy": True,
        "reason": None,
        "daemon": {"state": "running", "restarts": 2},
        "training": {"step": 5, "total_steps": 20, "loss": 1.5, "val_loss": 1.7, "gpu": None},
        "queue": {"inbox": 1, "done": 2},
        "costs": {"hook_share": 0.01},
    }
    m = Monitor(lambda: snap, 0).start()
    try:
        base = f"http://127.0.0.1:{m.port}"
        assert urllib.request.urlopen(base + "/health", timeout=5).status == 200
        assert json.loads(urllib.request.urlopen(base + "/status", timeout=5).read())["training"]["step"] == 5
        metrics = urllib.request.urlopen(base + "/metrics", timeout=5).read().decode()
        assert "healthkit_training_step 5.0" in metrics and 'healthkit_queue_files{folder="inbox"} 1.0' in metrics
        assert 'healthkit_daemon_state{state="running"} 1.0' in metrics
        snap["healthy"], snap["reason"] = False, "daemon loop stalled"
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(base + "/health", timeout=5)
        assert e.value.code == 503
    finally:
        m.stop()
    try:
        from prometheus_client.parser import text_string_to_metric_families
    except ImportError:
        return
    from healthkit.trainer.health_server import render_metrics

    names = {f.name for f in text_string_to_metric_families(render_metrics(snap))}
    assert {"healthkit_training_step", "healthkit_daemon_up"} <= names


def _ckpt(lay: Layout, step: int, complete: bool = True, owner: str | None = None) -> Path:
    d = lay.checkpoints / f"checkpoint-{step}"
    d.mkdir(parents=True)
    for f in ("model.safetensors", "optimizer.pt", "scheduler.pt"):
        (d / f).write_bytes(b"x" * step)
    if complete:
        (d / "trainer_state.json").write_text(json.dumps({"global_step": step}))
    if owner:
        ck.mark(d, owner, step)
    return d


def test_checkpoints_prepare_resumes_by_step_and_drops_only_its_own_cut_short_save(lay: Layout) -> None:
    (
        _ckpt(lay, 900, owner="a.jsonl"),
        _ckpt(lay, 2600, owner="a.jsonl"),
        _ckpt(lay, 3000, complete=False, owner="a.jsonl"),
    )
    resume, done = ck.prepare(lay, "a.jsonl")
    assert resume is not None and resume.name == "checkpoint-2600"  # by step, not name; the killed save skipped
    assert [d.split(" (")[0] for d in done] == ["deleted checkpoint-3000"]
    assert [p.name for _, p in ck.checkpoints(lay.checkpoints)] == ["checkpoint-900", "checkpoint-2600"]


def test_checkpoints_prepare_deletes_only_a_finished_files_own_and_moves_the_rest_aside(lay: Layout) -> None:
    """Ours and finished with (its file is in done/ or failed/): deleted. Not provably ours, or of a file still queued: moved."""
    (lay.done / "old.jsonl").write_text("{}\n")
    (lay.inbox / "later.jsonl").write_text("{}\n")
    _ckpt(lay, 5, owner="old.jsonl")
    _ckpt(lay, 6, owner="later.jsonl")
    foreign = _ckpt(lay, 100)
    killed = _ckpt(lay, 200, complete=False)
    before = {p.name: sorted((f.name, f.read_bytes()) for f in p.iterdir()) for p in (foreign, killed)}
    predicted = ck.plan_prepare(lay, "b.jsonl").lines()
    resume, done = ck.prepare(lay, "b.jsonl")
    assert resume is None and not ck.checkpoints(lay.checkpoints)
    assert [d.split(" (")[0].split(" to ")[0] for d in done] == [
        "moved checkpoint-6",
        "moved checkpoint-100",
        "moved checkpoint-200",
        "deleted checkpoint-5",
    ]
    assert len(predicted) == len(done)  # the plan the fix shows is what prepare does
    (aside,) = ck.set_aside(lay.checkpoints)
    assert {
        p.name: sorted((f.name, f.read_bytes()) for f in p.iterdir())
        for p in (aside / "checkpoint-100", aside / "checkpoint-200")
    } == {"checkpoint-100": before["checkpoint-100"], "checkpoint-200": before["checkpoint-200"]}
    info = json.loads((aside / ck.ASIDE_INFO).read_text())
    assert info["before_training"] == "b.jsonl" and "no healthkit marker" in info["checkpoints"]["checkpoint-100"]


def test_checkpoints_clear_deletes_only_the_finished_files_own(lay: Layout) -> None:
    _ckpt(lay, 5, owner="a.jsonl")
    stranger = _ckpt(lay, 7)
    ck.clear(lay, "a.jsonl")
    assert [p for _, p in ck.checkpoints(lay.checkpoints)] == [stranger]


def test_schema_file_is_exported_from_the_model() -> None:
    assert json.loads(SCHEMA_PATH.read_text()) == json.loads(json.dumps(export_schema()))


def test_daemon_side_modules_do_not_import_torch() -> None:
    code = (
        "import sys; import healthkit.trainer.daemon, healthkit.trainer.queue, healthkit.trainer.control, healthkit.trainer.state, healthkit.trainer.supervise, "
        "healthkit.trainer.commands, healthkit.trainer.health_server, healthkit.system.gpu, healthkit.cli; "
        "bad = [m for m in ('torch', 'transformers', 'pynvml') if m in sys.modules]; assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60, cwd=REPO)


def test_systemd_unit_restarts_on_failure_and_never_kills_training(tmp_path: Path) -> None:
    from healthkit.trainer.supervise import systemd_unit

    unit = systemd_unit(tmp_path)
    assert "Restart=on-failure" in unit and "KillMode=process" in unit
    assert f"-m healthkit.trainer.daemon --workspace {tmp_path}" in unit and f"WorkingDirectory={tmp_path}" in unit


def test_launcher_commands_use_torchrun_and_accelerate(lay: Layout) -> None:
    from healthkit.contract.config_model import TrainingConfig
    from healthkit.system.procs import argv_matches
    from healthkit.trainer.launch import child_command

    f = lay.processing / "a.jsonl"
    cmd = child_command(lay, TrainingConfig(base_model="m", launcher="torchrun", nproc_per_node=2), f, 1, None)
    assert cmd[1:4] == ["-m", "torch.distributed.run", "--nproc-per-node=2"] and "--standalone" in cmd
    assert argv_matches(cmd, ["healthkit.trainer.train_file"]) and "--workspace" in cmd
    multi = child_command(
        lay, TrainingConfig(base_model="m", launcher="torchrun", nnodes=2, rdzv_endpoint="h:29400"), f, 1, None
    )
    assert "--rdzv-endpoint=h:29400" in multi and "--standalone" not in multi
    acc = child_command(lay, TrainingConfig(base_model="m", launcher="accelerate", nproc_per_node=2), f, 1, None)
    assert acc[1:3] == ["-m", "accelerate.commands.launch"] and argv_matches(acc, ["healthkit.trainer.train_file"])


def test_init_tiny_model_without_the_trainer_extra_says_so_and_writes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import healthkit.trainer.commands as commands
    import healthkit.trainer.preflight as preflight

    monkeypatch.setattr(preflight, "missing_deps", lambda: ["torch", "accelerate"])
    assert commands.init(tmp_path / "ws", tiny_model=True) == 1
    assert "pip install 'healthkit[trainer]'" in capsys.readouterr().err
    assert not (tmp_path / "ws").exists()
