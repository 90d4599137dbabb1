"""Time from a daemon's SIGKILL to its restart by the job `healthkit schedule --heal --every 1m` prints.

Cron semantics, approximated: a loop fires the crontab line's exact command (`sh -c`, flock
included) at the start of every wall-clock minute, as cron does, and never two at once. A
real daemon (tiny random-init model, CPU) trains; after the first (healthy) run the daemon is
killed with -9 at a random second of the minute; the next run restarts it, and the new daemon
adopts the training child. Local receivers (JSON webhook, SMTP) record what a person is told.

Prints the timeline (each run's start, duration, what was healed or held back, what was sent,
the payloads received) and kill -> restart against the bound: one interval plus the run's time.
With `--flap` the daemon is instead killed right after every run, as the OOM killer would:
the timeline shows the heals backing off (1, 2 intervals) and the give-up after `max_attempts`
(defaults: 3 in an hour), then one more run that starts nothing (about 9 minutes).
Usage: python bench/bench_heal.py [--flap] [--kill-second N]   (2-3 minutes: it waits for real minute boundaries)
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

CONFIG = {
    "base_model": "models/base",
    "max_seq_length": 32,
    "max_steps": 5000,
    "eval_steps": 50,
    "save_steps": 50,
    "save_total_limit": 2,
    "logging_steps": 1,
    "per_device_train_batch_size": 4,
    "per_device_eval_batch_size": 8,
    "learning_rate": 1e-3,
    "validation_split": 0.2,
    "monitor_port": 0,
    "max_failures": 3,
    "hook_timeout_s": 2.0,
}


def utc(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%H:%M:%S.%f")[:-3]


def _print_runs(runs: list[dict]) -> None:
    for i, r in enumerate(runs, 1):
        print(f"run {i}: {utc(r['start'])} -> {utc(r['end'])} ({r['end'] - r['start']:.1f}s), exit {r['rc']}")
        for a in r["applied"]:
            print(f"   applied: {a}")
        for h in r["held_back"]:
            print(f"   held back: {h}")
        for s in r["sent"]:
            print(f"   {s}")
        for p in r["payloads"]:
            print("   received (json):", json.dumps(p)[:1500])


def flap(lay, runs: list[dict], stop: threading.Event, smtp, pid: int, base: Path, tmp: Path) -> int:
    """Kill the daemon after every run until the job gives up, then one run more."""
    import psutil

    kills, done_at = 0, None
    while True:
        n = len(runs)
        try:
            new = int(lay.pid_file.read_text().split()[0])
        except (OSError, ValueError, IndexError):
            new = None
        if new and psutil.pid_exists(new):
            os.kill(new, signal.SIGKILL)
            kills += 1
            print(f"{utc(time.time())} killed daemon PID {new} (after run {n})")
        latest = json.loads((base / "reports" / "latest.json").read_text())
        if done_at is None and any(f["code"] == "heal.gave-up" for f in latest["findings"]):
            done_at = n
        if done_at is not None and n >= done_at + 1:
            break
        while len(runs) == n:
            time.sleep(0.1)
    stop.set()
    _print_runs(runs)
    starts = sum(1 for r in runs for a in r["applied"] if "start-daemon" in a or "adopt-orphan" in a)
    print(f"daemon starts by the job: {starts}; kills: {kills}; e-mails received: {len(smtp.got)}")
    _clean_up(base, tmp)
    return 0


def _clean_up(base: Path, tmp: Path) -> None:
    """Every process of the bench's workspace (daemon, child, watcher) killed by group, then its folder removed."""
    import psutil

    for p in psutil.process_iter(["cmdline"]):
        if any(str(base) in c for c in (p.info["cmdline"] or [])):
            try:
                os.killpg(os.getpgid(p.pid), signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
    shutil.rmtree(tmp, ignore_errors=True)


def main() -> int:
    import psutil

    from healthkit.scheduled.schedule import build
    from healthkit.trainer import queue as q
    from healthkit.trainer.daemon import start_daemon
    from healthkit.trainer.layout import Layout
    from healthkit.trainer.scaffold import init_workspace
    from healthkit.trainer.tiny import build_tiny_model, sample_texts, write_jsonl
    from tests.receivers import receivers

    tmp = Path(tempfile.mkdtemp(prefix="hk-heal-"))
    base = tmp / "ws"
    init_workspace(base, **CONFIG)
    build_tiny_model(base / "models" / "base", vocab_size=300, n_positions=64)
    lay = Layout.of(base)
    q.add(lay, write_jsonl(base / "data" / "a.jsonl", sample_texts(40, seed=1, words=8)))
    os.environ["HEALTHKIT_TRAINER_STEP_SLEEP_S"] = "0.2"
    runs: list[dict] = []
    with receivers() as (rx, smtp):
        os.environ["HEALTHKIT_NOTIFY_URLS"] = (
            f"json://127.0.0.1:{rx.port}/hook/benchtoken "
            f"mailto://ops:benchpw@127.0.0.1:{smtp.port}?smtp=127.0.0.1&mode=insecure&from=hk@example.com&to=ops@example.com"
        )
        line = build(base, every="1m", heal=True).crontab.splitlines()[-1]
        cmd = line.split(" ", 5)[5].rsplit(" >/dev/null 2>&1", 1)[0]
        pid = start_daemon(base)
        stop = threading.Event()

        def cron() -> None:
            while not stop.is_set():
                nxt = (int(time.time()) // 60 + 1) * 60
                while time.time() < nxt and not stop.is_set():
                    time.sleep(0.05)
                if stop.is_set():
                    return
                t0 = time.time()
                seen = len(rx.got)
                r = subprocess.run(["sh", "-c", cmd], capture_output=True, text=True, cwd="/")
                out = r.stdout + r.stderr
                runs.append(
                    {
                        "start": t0,
                        "end": time.time(),
                        "rc": r.returncode,
                        "applied": [x.strip() for x in out.splitlines() if x.startswith("[") and "applied" in x],
                        "held_back": [x.strip() for x in out.splitlines() if "backing off" in x or "gave up" in x],
                        "sent": [x.strip() for x in out.splitlines() if x.startswith("notify ")],
                        "payloads": rx.got[seen:],
                    }
                )

        th = threading.Thread(target=cron, daemon=True)
        th.start()
        while not runs:
            time.sleep(0.1)
        if "--flap" in sys.argv:
            return flap(lay, runs, stop, smtp, pid, base, tmp)
        # `--kill-second N`: kill N seconds into the minute (N just after the first run ends is the worst case)
        second = (
            float(sys.argv[sys.argv.index("--kill-second") + 1])
            if "--kill-second" in sys.argv
            else random.uniform(3, 50)
        )
        while runs[0]["end"] > time.time() or time.time() % 60 < second:
            time.sleep(0.01)
        child = json.loads(lay.daemon_state.read_text())["child_pid"]
        os.kill(pid, signal.SIGKILL)
        killed = time.time()
        restarted = None
        while time.time() - killed < 200:
            try:
                new = int(lay.pid_file.read_text().split()[0])
                if new != pid and psutil.pid_exists(new):
                    restarted = psutil.Process(new).create_time()
                    break
            except (OSError, ValueError, IndexError, psutil.Error):
                pass
            time.sleep(0.05)
        while len(runs) < 2:
            time.sleep(0.1)
        stop.set()
        adopted = json.loads(lay.daemon_state.read_text())
        print(f"killed daemon PID {pid} at {utc(killed)} (child PID {child} training)")
        _print_runs(runs[:2])
        print(f"e-mails received: {len(smtp.got)}")
        if restarted is None:
            print("NOT restarted within 200s")
            return 1
        run_s = runs[1]["end"] - runs[1]["start"]
        gap = restarted - killed
        print(
            f"kill -> restart: {gap:.1f}s (bound: 60s interval + {run_s:.1f}s run = {60 + run_s:.1f}s) "
            f"{'PASS' if gap <= 60 + run_s else 'FAIL'}; adopted child {adopted.get('child_pid')} == {child}: "
            f"{adopted.get('adopted') and adopted.get('child_pid') == child}"
        )
    _clean_up(base, tmp)
    return 0


if __name__ == "__main__":
    sys.exit(main())
