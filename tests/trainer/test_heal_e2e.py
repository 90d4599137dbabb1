"""Issue 21 with real processes: the job `healthkit schedule --heal` prints, run as cron would run it.

A daemon killed with -9 while its child trains is restarted by the next scheduled run and
adopts the child; a person hears of it by a JSON webhook and by e-mail (local receivers). A
daemon killed after every run backs off and is given up on; a daemon stopped on request is
left alone. No token of any URL reaches a file or a log line.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
from datetime import datetime
from pathlib import Path

import psutil
import pytest

from healthkit.trainer.daemon import start_daemon
from healthkit.trainer.layout import Layout

from ..receivers import receivers
from .conftest import all_logs, hk, queue_file, read_json, wait_for

pytestmark = pytest.mark.slow

TOKEN_J = "jsontok9c1e77ab"
TOKEN_M = "smtppw4d2a9be0"


def urls(json_port: int, smtp_port: int) -> str:
    return (
        f"json://127.0.0.1:{json_port}/hook/{TOKEN_J} "
        f"mailto://ops:{TOKEN_M}@127.0.0.1:{smtp_port}?smtp=127.0.0.1&mode=insecure&from=hk@example.com&to=ops@example.com"
    )


def cron_command(lay: Layout, env: dict[str, str]) -> str:
    """The exact shell command of the crontab line `healthkit schedule --heal --every 1m` prints."""
    r = hk("schedule", str(lay.base), "--heal", "--every", "1m", env=env)
    assert r.returncode == 0, r.stderr
    assert TOKEN_J not in r.stdout and TOKEN_M not in r.stdout
    line = next(x for x in r.stdout.splitlines() if x.startswith("* * * * * "))
    return line[len("* * * * * ") :].rsplit(" >/dev/null 2>&1", 1)[0]


def run_cron(cmd: str, env: dict[str, str], log: list[str]) -> float:
    t0 = time.monotonic()
    r = subprocess.run(["sh", "-c", cmd], capture_output=True, text=True, timeout=240, env=env, cwd="/")
    log.append(r.stdout + r.stderr)
    assert r.returncode in (0, 1, 2), r.stdout[-3000:] + r.stderr[-3000:]
    return time.monotonic() - t0


def assert_no_token(lay: Layout, log: list[str]) -> None:
    for p in lay.base.rglob("*"):
        if p.is_file() and p.suffix not in (".safetensors", ".bin", ".pt"):
            data = p.read_bytes()
            assert TOKEN_J.encode() not in data and TOKEN_M.encode() not in data, p
    for text in log:
        assert TOKEN_J not in text and TOKEN_M not in text


def job_env(json_port: int, smtp_port: int) -> dict[str, str]:
    return {**os.environ, "HEALTHKIT_NOTIFY_URLS": urls(json_port, smtp_port)}


@contextlib.contextmanager
def scheduled_job(make_ws, monkeypatch, *, step_sleep: str, max_steps: int, toml: str | None = None):
    """A workspace with one file queued, the notification receivers, and the job's crontab command.

    Yields (layout, JSON receiver, SMTP receiver, job environment, command, the job's outputs); once the test's
    body is done, no token may have reached a file of the workspace or the job's output."""
    monkeypatch.setenv("HEALTHKIT_TRAINER_STEP_SLEEP_S", step_sleep)
    lay = make_ws(max_steps=max_steps)
    queue_file(lay, "a.jsonl", seed=1)
    if toml is not None:
        (lay.base / "healthkit.toml").write_text(toml)
    log: list[str] = []
    with receivers() as (rx, smtp):
        env = job_env(rx.port, smtp.port)
        yield lay, rx, smtp, env, cron_command(lay, env), log
    assert_no_token(lay, log)


def gone(pid: int) -> bool:
    """The process has ended (a zombie has: nothing reaps an orphan's zombie at once)."""
    return not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE


def test_a_daemon_killed_while_training_is_restarted_by_the_next_scheduled_run_adopts_and_is_told(
    make_ws, monkeypatch
) -> None:
    with scheduled_job(make_ws, monkeypatch, step_sleep="0.15", max_steps=60) as (lay, rx, smtp, env, cmd, log):
        pid = start_daemon(lay.base)
        wait_for(
            lambda: (s := read_json(lay.status)).get("state") == "training" and (s.get("step") or 0) >= 2,
            90,
            what="training\n" + all_logs(lay),
        )
        run_cron(cmd, env, log)  # a healthy run: the baseline report
        child = read_json(lay.daemon_state)["child_pid"]
        os.kill(pid, signal.SIGKILL)
        wait_for(lambda: gone(pid), 10)
        run_cron(cmd, env, log)  # the next scheduled run
        new = int(lay.pid_file.read_text().split()[0])
        state = read_json(lay.daemon_state)
        assert new != pid and psutil.pid_exists(new) and state["child_pid"] == child and state["adopted"] is True, log[
            -1
        ][-3000:]
        assert psutil.Process(child).is_running()
        healed = [m for m in rx.got if "Healed:" in m["message"]]
        assert len(healed) == 1 and "daemon.dead" in healed[0]["message"], [m["message"] for m in rx.got]
        html = Path(healed[0]["message"].rstrip().splitlines()[-1].removeprefix("Report: "))
        assert (
            html.suffix == ".html" and html.read_text() == (lay.base / "reports" / "latest.html").read_text()
        )  # this run's
        wait_for(lambda: any("daemon.dead" in m for m in smtp.got), 10, what="the e-mail")
        mail = next(m for m in smtp.got if "daemon.dead" in m)
        assert "Subject: healthkit" in mail and "To: ops@example.com" in mail
        report = json.loads((lay.base / "reports" / "latest.json").read_text())
        assert "daemon.dead" not in [f["code"] for f in report["findings"]]


def test_a_daemon_killed_after_every_run_backs_off_gives_up_once_and_is_told_once(make_ws, monkeypatch) -> None:
    toml = "[heal]\nmax_attempts = 3\nwindow_seconds = 3600\nbackoff_seconds = 2\n"
    starts = 0
    with scheduled_job(make_ws, monkeypatch, step_sleep="0.2", max_steps=400, toml=toml) as (
        lay,
        rx,
        smtp,
        env,
        cmd,
        log,
    ):
        pid = start_daemon(lay.base)
        for _ in range(14):
            with contextlib.suppress(ProcessLookupError):  # no daemon runs while the job holds its heal back
                os.kill(pid, signal.SIGKILL)  # the OOM killer, after every run
            wait_for(lambda pid=pid: gone(pid), 10)
            run_cron(cmd, env, log)
            starts += log[-1].count("applied  start-daemon") + log[-1].count("applied  adopt-orphan")
            report = json.loads((lay.base / "reports" / "latest.json").read_text())
            found = [f["code"] for f in report["findings"]]
            if "heal.gave-up" in found:
                break
            held = [f for f in report["findings"] if f["code"] == "heal.held-back"]
            if held:  # the next cron run comes at the time the report names
                until = datetime.fromisoformat(held[0]["data"]["until"])
                wait_for(lambda until=until: datetime.now().astimezone() >= until, 30, 0.1, "the backoff to pass")
            if lay.pid_file.exists():
                pid = int(lay.pid_file.read_text().split()[0])
        for _ in range(2):  # given up: later runs start nothing
            run_cron(cmd, env, log)
            assert "applied  start-daemon" not in log[-1] and "applied  adopt-orphan" not in log[-1]
        assert starts == 3, (starts, [x[-1500:] for x in log])
        gave = [m for m in rx.got if "Healing gave up:" in m["message"]]
        assert len(gave) == 1, [m["message"] for m in rx.got]
        report = json.loads((lay.base / "reports" / "latest.json").read_text())
        gave_up = {f["data"]["code"]: f for f in report["findings"] if f["code"] == "heal.gave-up"}
        assert "daemon.dead" in gave_up, list(gave_up)  # one per finding the heal was for (the orphan too)
        for g in gave_up.values():
            assert g["severity"] == "critical" and len(g["evidence"]) == 3
            assert all(
                "start-daemon applied" in e["observed"] or "adopt-orphan applied" in e["observed"]
                for e in g["evidence"]
            )


def test_a_daemon_stopped_on_request_is_neither_started_nor_reported_down(make_ws, monkeypatch) -> None:
    with scheduled_job(make_ws, monkeypatch, step_sleep="0.1", max_steps=60) as (lay, rx, smtp, env, cmd, log):
        start_daemon(lay.base)
        wait_for(lambda: (read_json(lay.status).get("step") or 0) >= 2, 90, what="training\n" + all_logs(lay))
        run_cron(cmd, env, log)
        before = len(rx.got)
        r = hk("daemon", "stop", str(lay.base), "--reason", "maintenance window", "--wait", "60")
        assert r.returncode == 0, r.stderr
        for _ in range(3):
            run_cron(cmd, env, log)
            assert "applied  start-daemon" not in log[-1] and not lay.pid_file.exists(), log[-1][-3000:]
        after = [m["message"] for m in rx.got[before:]]
        assert len(after) == 1, after  # one message on the change, none on the runs after it
        assert (
            "Stopped on request:" in after[0]
            and "maintenance window" in after[0]
            and "healthkit daemon stop" in after[0]
        )
        assert "daemon.dead" not in after[0] and "daemon.not-running" not in after[0]
        assert read_json(lay.daemon_state)["state"] == "stopped"
