"""The daemon end to end: real processes, real SIGKILL, real tiny Trainer runs on the CPU."""

from __future__ import annotations

import json
import os
import re
import signal
import threading
import time
import urllib.error
import urllib.request

import psutil
import pytest

from healthkit.trainer.daemon import start_daemon
from healthkit.trainer.layout import Layout

from .conftest import all_logs, daemon_log, hk, queue_file, read_json, wait_for

pytestmark = pytest.mark.slow

STATUS_KEYS = {
    "state",
    "step",
    "total_steps",
    "loss",
    "val_loss",
    "val_train_gap",
    "current_file",
    "started_at",
    "updated_at",
    "eta_seconds",
    "gpu",
}
STATES = {"training", "paused", "completed", "crashed", "idle", "stopping"}


def queue_drained(lay: Layout, n_done: int, n_failed: int = 0) -> bool:
    done = list(lay.done.glob("*.jsonl"))
    failed = list(lay.failed.glob("*.jsonl"))
    return (
        len(done) == n_done
        and len(failed) == n_failed
        and not list(lay.inbox.glob("*.jsonl"))
        and not list(lay.processing.glob("*.jsonl"))
    )


def spawns(lay: Layout, name: str) -> int:
    return len(re.findall(rf"spawn file={re.escape(name)} ", daemon_log(lay)))


class Watcher(threading.Thread):
    """Reads the status file and counts checkpoints as fast as it can while training runs."""

    def __init__(self, lay: Layout, limit: int):
        super().__init__(daemon=True)
        self.lay, self.limit = lay, limit
        self.reads = self.bad = self.max_ckpts = self.max_at_rest = 0
        self.problems: list[str] = []
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                text = self.lay.status.read_text(encoding="utf-8")
            except FileNotFoundError:
                text = None
            if text is not None:
                self.reads += 1
                try:
                    st = json.loads(text)
                    assert set(st) >= STATUS_KEYS, f"missing {STATUS_KEYS - set(st)}"
                    assert st["state"] in STATES, st["state"]
                    assert st["step"] is None or isinstance(st["step"], int)
                    self.max_at_rest = max(self.max_at_rest, st.get("checkpoints") or 0)
                except (ValueError, AssertionError) as exc:
                    self.bad += 1
                    self.problems.append(f"{exc}: {text[:200]!r}")
            n = len(list(self.lay.checkpoints.glob("checkpoint-*")))
            self.max_ckpts = max(self.max_ckpts, n)
            time.sleep(0.005)


def test_two_files_train_bad_file_fails_queue_continues(make_ws) -> None:
    lay = make_ws()
    queue_file(lay, "a.jsonl", seed=1)
    (lay.inbox / "p1-broken.jsonl").write_text('{"text": "fine"}\n{"text": oops}\n')  # priority 1: claimed first
    queue_file(lay, "b.jsonl", seed=2)
    watcher = Watcher(lay, limit=2)
    watcher.start()
    pid = start_daemon(lay.base)
    try:
        port = read_json(lay.daemon_state)["monitor_port"]
        assert urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5).status == 200
        wait_for(lambda: queue_drained(lay, 2, 1), 150, 0.2, "two files done, one failed\n" + all_logs(lay))
        metrics = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
        assert 'healthkit_queue_files{folder="done"} 2.0' in metrics
        status = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{port}/status", timeout=5).read())
        assert status["daemon"]["pid"] == pid
    finally:
        watcher.stop.set()
        watcher.join(5)
    assert watcher.reads > 20 and watcher.bad == 0, watcher.problems[:3]
    # At rest (after each save's rotation) never more than save_total_limit; while a save runs HF writes the
    # new checkpoint before deleting the oldest, so a kill mid-save still leaves `limit` complete ones.
    assert 1 <= watcher.max_at_rest <= 2 and watcher.max_ckpts <= 2 + 1
    err = json.loads((lay.failed / "p1-broken.jsonl.error.json").read_text())
    assert "line 2: invalid JSON" in err["error"]
    finals = {p.parent.name: json.loads(p.read_text()) for p in lay.models.glob("*/healthkit_final.json")}
    assert set(finals) == {"a", "b"} and all(isinstance(f["val_loss"], float) for f in finals.values())
    assert finals["a"]["global_step"] == 20
    assert (lay.models / "LATEST").read_text().strip() == "b" and finals["b"]["started_from"].endswith("models/a")
    assert not list(lay.checkpoints.glob("checkpoint-*"))  # a finished file's checkpoints are gone (final model kept)
    st = read_json(lay.status)
    assert isinstance(st["val_loss"], float)
    costs = read_json(lay.monitoring_costs)["training"]
    assert costs["hooks"]["status_write"]["calls"] > 0 and costs["hook_share"] is not None
    wait_for(lambda: read_json(lay.daemon_state).get("state") == "idle", 30, what="daemon idle")
    r = hk("daemon", "status", str(lay.base))
    assert r.returncode == 0 and "daemon: idle" in r.stdout, r.stdout + r.stderr
    r = hk("daemon", "stop", str(lay.base))
    assert r.returncode == 0, r.stderr
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    assert read_json(lay.daemon_state)["state"] == "stopped" and not lay.pid_file.exists()


def test_daemon_killed_child_survives_audit_sees_it_new_daemon_adopts(make_ws, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HEALTHKIT_TRAINER_STEP_SLEEP_S", "0.15")
    lay = make_ws(max_steps=20)
    queue_file(lay, "a.jsonl", seed=1)
    queue_file(lay, "b.jsonl", seed=2)
    pid = start_daemon(lay.base)
    st = wait_for(
        lambda: (s := read_json(lay.status)).get("state") == "training" and (s.get("step") or 0) >= 2 and s,
        90,
        what="training to run\n" + all_logs(lay),
    )
    child = read_json(lay.daemon_state)["child_pid"]
    os.kill(pid, signal.SIGKILL)
    wait_for(
        lambda: not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE,
        10,
        what="daemon death",
    )
    assert psutil.Process(child).is_running()  # the training child keeps running
    r = hk("audit", str(lay.base), "--format", "json", "--select", "daemon")
    codes = {f["code"] for f in json.loads(r.stdout)["findings"]} if r.stdout.strip().startswith("{") else set()
    assert {"daemon.dead", "daemon.orphaned-training"} <= codes, r.stdout[:2000] + r.stderr[-2000:]
    assert read_json(lay.status)["step"] < 20, "the test must catch training mid-file"
    r = hk("fix", str(lay.base), "--safe", timeout=180)  # the safe fix: never kills the orphan, a daemon adopts it
    assert r.returncode in (0, 1), r.stdout[-3000:] + r.stderr[-2000:]
    assert "daemon.dead" in r.stdout and "resolved" in r.stdout, r.stdout[-3000:]
    assert psutil.Process(child).is_running()
    new = int(lay.pid_file.read_text().split()[0])
    state = read_json(lay.daemon_state)
    assert new != pid and psutil.pid_exists(new) and state["child_pid"] == child and state["adopted"] is True
    journal = [json.loads(line) for line in (lay.base / "logs" / "healthkit-fix.jsonl").read_text().splitlines()]
    assert {e.get("fix") for e in journal} >= {"remove-stale-pid-file"}, journal
    assert "adopting training PID" in daemon_log(lay)
    wait_for(lambda: queue_drained(lay, 2), 150, 0.2, "queue to finish\n" + all_logs(lay))
    assert spawns(lay, "a.jsonl") == 1 and spawns(lay, "b.jsonl") == 1  # no file trained twice, none lost
    final = json.loads((lay.models / "a" / "healthkit_final.json").read_text())
    assert (final["global_step"], final["device"], final["precision"], final["base_quantization"]) == (
        20,
        "cpu",
        "fp32",
        None,
    )
    del st


def test_child_killed_resumes_from_last_complete_checkpoint(make_ws, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HEALTHKIT_TRAINER_STEP_SLEEP_S", "0.1")
    lay = make_ws(max_steps=20)
    queue_file(lay, "a.jsonl", seed=1)
    start_daemon(lay.base)
    wait_for(
        lambda: (read_json(lay.status).get("step") or 0) >= 11 and read_json(lay.status).get("state") == "training",
        90,
        what="step 11\n" + all_logs(lay),
    )
    child = read_json(lay.daemon_state)["child_pid"]
    os.killpg(child, signal.SIGKILL)
    wait_for(lambda: queue_drained(lay, 1), 120, 0.2, "the file to finish\n" + all_logs(lay))
    log = daemon_log(lay)
    assert "killed by signal SIGKILL" in log and spawns(lay, "a.jsonl") == 2
    m = re.findall(r"spawn file=a.jsonl pid=\d+ attempt=2 resume=(checkpoint-\d+)", log)
    assert m and int(m[0].split("-")[1]) >= 10, log
    assert json.loads((lay.models / "a" / "healthkit_final.json").read_text())["global_step"] == 20


def test_pause_resume_stop_through_the_cli_and_restart(make_ws, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HEALTHKIT_TRAINER_STEP_SLEEP_S", "0.1")
    lay = make_ws(max_steps=40)
    queue_file(lay, "a.jsonl", seed=1)
    start_daemon(lay.base)
    wait_for(lambda: (read_json(lay.status).get("step") or 0) >= 2, 90, what="training\n" + all_logs(lay))
    assert hk("daemon", "pause", str(lay.base), "--reason", "cooling down").returncode == 0
    # The request is on disk once the command returns (starting the CLI takes several steps' time);
    # "within one step" itself is measured against step end times in test_inprocess.py.
    requested = read_json(lay.status)["step"]
    st = wait_for(lambda: (s := read_json(lay.status)).get("state") == "paused" and s, 10, what="paused")
    assert st["step"] <= requested + 2 and st["pause_reason"] == "cooling down"  # +1 in flight, +1 for the status lag
    ds = wait_for(lambda: (d := read_json(lay.daemon_state)).get("state") == "paused" and d, 5, what="daemon paused")
    assert ds["pause_reason"] == "cooling down" and ds["paused_at"]
    time.sleep(0.8)
    assert read_json(lay.status)["step"] == st["step"]
    assert hk("daemon", "resume", str(lay.base)).returncode == 0
    wait_for(lambda: (read_json(lay.status).get("step") or 0) > st["step"] + 1, 10, what="steps after resume")
    ds = wait_for(lambda: (d := read_json(lay.daemon_state)).get("state") == "running" and d, 5, what="daemon running")
    assert ds["paused_at"] is None and ds["pause_reason"] is None  # not sticky
    r = hk("daemon", "stop", str(lay.base), "--wait", "60")
    assert r.returncode == 0, r.stdout + r.stderr
    stopped = read_json(lay.last_result)
    assert stopped["outcome"] == "stopped" and stopped["step"] < 40
    assert (lay.checkpoints / f"checkpoint-{stopped['step']}" / "trainer_state.json").exists()  # saved before stopping
    assert (lay.processing / "a.jsonl").exists()
    start_daemon(lay.base)
    wait_for(lambda: queue_drained(lay, 1), 120, 0.2, "the file to finish\n" + all_logs(lay))
    assert f"resume=checkpoint-{stopped['step']}" in daemon_log(lay)


def test_start_refuses_invalid_config_and_unrunnable_validation_loudly(make_ws) -> None:
    lay = make_ws(validation_file="data/missing.jsonl")
    r = hk("daemon", "start", str(lay.base))
    # trainer/README.md: start-up checks fail the start with exit 78 (EX_CONFIG), as the daemon itself exits
    assert r.returncode == 78 and "validation_file" in r.stderr and "does not exist" in r.stderr, r.stderr
    cfg = read_json(lay.config)
    cfg.update(validation_file=None, learning_rate=5)
    lay.config.write_text(json.dumps(cfg))
    r = hk("daemon", "start", str(lay.base))
    assert r.returncode == 78 and "/learning_rate" in r.stderr, r.stderr
    assert read_json(lay.daemon_state)["state"] == "stopped" and not lay.pid_file.exists()


def test_supervisor_restarts_a_killed_daemon_and_gives_up_on_fast_crashes(
    make_ws, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HEALTHKIT_SUPERVISE_BACKOFF_S", "0.2")
    lay = make_ws()
    pid = start_daemon(lay.base, supervise=True)
    os.kill(pid, signal.SIGKILL)
    new = wait_for(
        lambda: (
            (d := read_json(lay.daemon_state)).get("pid") not in (None, pid)
            and d.get("state") in ("idle", "running")
            and d["pid"]
        ),
        30,
        what="a restarted daemon\n" + all_logs(lay),
    )
    assert read_json(lay.daemon_state)["restarts"] == 1
    assert "restart 1" in (lay.logs / "supervisor.log").read_text()
    assert hk("daemon", "stop", str(lay.base)).returncode == 0
    wait_for(
        lambda: (
            not [
                p
                for p in psutil.process_iter(["cmdline"])
                if "healthkit.trainer.supervise" in (p.info["cmdline"] or [])
                and str(lay.base) in (p.info["cmdline"] or [])
            ]
        ),
        15,
        what="supervisor exit",
    )
    del new
    # a daemon that crashes at every start: the supervisor gives up with a clear state
    lay2 = make_ws("ws2")
    (lay2.base / "queue" / "done").rmdir()
    (lay2.base / "queue" / "done").write_text("not a folder")
    from healthkit.trainer.supervise import Supervisor

    rc = Supervisor(lay2, backoff_s=0.05, max_fast_failures=3).run()
    st = read_json(lay2.daemon_state)
    assert rc == 1 and st["state"] == "gave-up" and "crashed 3 times" in st["gave_up_reason"]


def _audit(lay: Layout) -> tuple[int, dict]:
    r = hk("audit", str(lay.base), "--format", "json")
    assert "Traceback" not in r.stderr, r.stderr
    return r.returncode, json.loads(r.stdout)


def test_a_healthy_running_trainer_audits_clean(make_ws, monkeypatch: pytest.MonkeyPatch) -> None:
    """The two halves agree: what our trainer writes while it works normally is no finding, before, during and after."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("HEALTHKIT_TRAINER_STEP_SLEEP_S", "0.05")
    lay = make_ws(max_steps=40, monitor_port=port)
    # The host's own disk is not under test.
    (lay.base / "healthkit.toml").write_text("[thresholds]\ndisk_min_free_percent = 0\ndisk_min_free_bytes = 0\n")
    code, rep = _audit(lay)
    assert (code, rep["findings"]) == (0, []), rep["findings"]  # fresh from `healthkit init`
    queue_file(lay, "a.jsonl", seed=3)
    start_daemon(lay.base)
    wait_for(
        lambda: len(list(lay.checkpoints.glob("checkpoint-*"))) >= 2 and (read_json(lay.status).get("step") or 0) >= 12,
        120,
        0.1,
        "two checkpoints\n" + all_logs(lay),
    )
    code, rep = _audit(lay)
    assert [f["code"] for f in rep["findings"]] == [] and code == 0, json.dumps(rep["findings"], indent=1)[:3000]
    healthy = {h["title"] for h in rep["healthy"]}
    assert {
        "Daemon is running",
        "Training is supervised",
        "Validation is running",
        "Web monitors running",
    } <= healthy, healthy
    assert rep["facts"]["training"]["state"] == "training"
    wait_for(lambda: queue_drained(lay, 1), 120, 0.2, "the file to finish\n" + all_logs(lay))
    wait_for(lambda: read_json(lay.daemon_state).get("state") == "idle", 30, what="daemon idle")
    code, rep = _audit(lay)
    assert (code, [f["code"] for f in rep["findings"]]) == (0, []), rep["findings"]
    assert hk("daemon", "stop", str(lay.base)).returncode == 0
    code, rep = _audit(lay)
    assert (code, [f["code"] for f in rep["findings"]]) == (0, []), rep[
        "findings"
    ]  # stopped on purpose, nothing queued
