"""The scheduled healing job without a trainer: flap protection, notifications that fail, and tokens that never leak.

Real processes throughout: the real CLI in a subprocess (as cron runs it), real receivers on
127.0.0.1 (tests/receivers.py), a PID file that a "killer" writes back after every run.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

import pytest

from .receivers import HangingServer, JsonReceiver, free_port

TOKEN_A = "tokAAA7f3c9e21"
TOKEN_B = "tokBBB0d4e5f66"
TOKEN_C = "tokCCC5a6b7c88"


def hk(*args: str, env: dict[str, str] | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "healthkit.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )


def malformed_pid(ws: Path) -> None:
    """The fault that keeps coming back: a PID file no process could own (what the heal removes)."""
    (ws / ".daemon.pid").write_text("999999999 1.0\n")


def workspace(tmp_path: Path, toml: str = "") -> Path:
    ws = tmp_path / "ws"
    ws.mkdir()
    # a missing config.json is a finding (config.invalid) only where one is required: here it is the fault to tell of
    (ws / "healthkit.toml").write_text("[run]\nconfig_required = true\n\n" + toml)
    return ws


def scheduled(
    ws: Path, reports: Path, env: dict[str, str] | None = None, every: str = "1m"
) -> subprocess.CompletedProcess:
    return hk("fix", str(ws), "--safe", "--scheduled", "--every", every, "--output", str(reports), env=env)


def latest(reports: Path) -> dict:
    return json.loads((reports / "latest.json").read_text())


def codes(report: dict) -> list[str]:
    return [f["code"] for f in report["findings"]]


def all_text_under(*roots: Path) -> str:
    out = []
    for root in roots:
        for p in root.rglob("*"):
            if p.is_file() and p.name != "healthkit.toml":
                out.append(p.read_bytes().decode("utf-8", "replace"))
    return "\n".join(out)


def test_a_refusing_and_a_hanging_channel_cost_the_job_its_bound_and_show_as_notify_failed(tmp_path: Path) -> None:
    hanging = HangingServer()
    refused = free_port()
    urls = (
        f"json://127.0.0.1:{refused}/hook/{TOKEN_A} json://127.0.0.1:{hanging.port}/hook/{TOKEN_B} "
        f"nosuchscheme://{TOKEN_C}/x"
    )  # refused, hanging, and a bad URL
    ws = workspace(tmp_path, "[notify]\ntimeout_seconds = 2\n")
    reports = tmp_path / "reports"
    try:
        t0 = time.monotonic()
        r = scheduled(ws, reports, env={"HEALTHKIT_NOTIFY_URLS": urls})
        took = time.monotonic() - t0
    finally:
        hanging.close()
    assert r.returncode == 2, r.stdout[-2000:] + r.stderr[-2000:]  # the verdict (config.invalid), not a failed job
    assert took < 2 + 15, took  # the sends' bound plus the job's own time, however long the channel would hang
    assert "Traceback" not in r.stderr
    rep = latest(reports)
    failed = [f for f in rep["findings"] if f["code"] == "notify.failed"]
    assert len(failed) == 1 and failed[0]["severity"] == "warning", codes(rep)
    text = " ".join(failed[0]["problem"])
    assert f"json://127.0.0.1:{refused}/…" in text and f"json://127.0.0.1:{hanging.port}/…" in text, text
    assert "no answer within 2s" in text and "nosuchscheme://…: not a valid Apprise URL" in text, text
    assert "FAILED" in (ws / "logs" / "healthkit-notify.log").read_text()
    # the tokens: in no file under the workspace or the reports, in no line the job printed
    everything = all_text_under(ws, reports) + r.stdout + r.stderr
    assert TOKEN_A not in everything and TOKEN_B not in everything and TOKEN_C not in everything
    assert hk("explain", "notify.failed").returncode == 0


def test_what_a_channel_missed_is_sent_with_the_next_run_and_notify_failed_clears(tmp_path: Path) -> None:
    port = free_port()
    ws = workspace(tmp_path, "[notify]\ntimeout_seconds = 2\n")
    reports = tmp_path / "reports"
    env = {"HEALTHKIT_NOTIFY_URLS": f"json://127.0.0.1:{port}/hook/{TOKEN_A}"}
    scheduled(ws, reports, env=env)  # nobody listens: refused
    assert "notify.failed" in codes(latest(reports))
    rx = JsonReceiver(port)  # the channel is back
    try:
        r = scheduled(ws, reports, env=env)
    finally:
        rx.close()
    got = rx.got
    assert len(got) == 1, (got, r.stderr)
    body = got[0]["message"]
    assert "Not delivered earlier (sent again now)" in body and "config.invalid" in body, body
    assert body.rstrip().endswith(".html") and str(reports) in body.splitlines()[-1]
    assert "notify.failed" not in codes(latest(reports))
    assert TOKEN_A not in all_text_under(ws, reports) + r.stdout + r.stderr


@pytest.mark.slow
def test_a_heal_that_does_not_hold_backs_off_then_gives_up_with_every_attempt_and_one_message(tmp_path: Path) -> None:
    rx = JsonReceiver()
    ws = workspace(tmp_path, "[heal]\nmax_attempts = 3\nwindow_seconds = 3600\nbackoff_seconds = 1\n")
    reports = tmp_path / "reports"
    env = {"HEALTHKIT_NOTIFY_URLS": f"json://127.0.0.1:{rx.port}/hook/{TOKEN_A}"}
    heals, held, runs = 0, 0, 0
    try:
        scheduled(ws, reports, env=env)  # the baseline: what is wrong before the fault
        while runs < 12:
            malformed_pid(ws)  # the fault comes back after every run, as an OOM kill would
            r = scheduled(ws, reports, env=env)
            runs += 1
            heals += r.stdout.count("applied  remove-malformed-pid-file")
            rep = latest(reports)
            if "heal.gave-up" in codes(rep):
                break
            held_back = [f for f in rep["findings"] if f["code"] == "heal.held-back"]
            if held_back:
                held += 1
                until = held_back[0]["data"]["until"]
                assert "backing off" in r.stdout and until in r.stdout
                deadline = time.time() + 30  # wait for the time the report names, as the next cron run would
                from datetime import datetime

                while datetime.now().astimezone() < datetime.fromisoformat(until) and time.time() < deadline:
                    time.sleep(0.1)
        # more scheduled runs after the give-up: nothing is healed, and nothing new is told
        for _ in range(2):
            malformed_pid(ws)
            r = scheduled(ws, reports, env=env)
            heals += r.stdout.count("applied  remove-malformed-pid-file")
            assert "gave up" in r.stdout
    finally:
        rx.close()
    assert heals == 3, (heals, runs)  # max_attempts, no storm
    rep = latest(reports)
    (gave,) = [f for f in rep["findings"] if f["code"] == "heal.gave-up"]
    assert gave["severity"] == "critical" and len(gave["evidence"]) == 3
    for ev in gave["evidence"]:
        assert "remove-malformed-pid-file applied" in ev["observed"] and "came back at" in ev["observed"], ev
    held_msgs = [m["message"] for m in rx.got if "not healed this run: backing off" in m["message"]]
    assert len(held_msgs) == held and all("next heal not before" in m for m in held_msgs), [
        m["message"] for m in rx.got
    ]
    gave_msgs = [m for m in rx.got if "Healing gave up:" in m["message"]]
    assert len(gave_msgs) == 1, [m["message"] for m in rx.got]
    assert "heal.gave-up" in gave_msgs[0]["message"] and "what to do:" in gave_msgs[0]["message"]
    # a person's own fix always applies, and clears the give-up
    r = hk("fix", str(ws), "--safe")
    assert "applied  remove-malformed-pid-file" in r.stdout, r.stdout
    assert not (ws / "logs" / "healthkit-heal.json").exists()
    assert "heal.gave-up" not in [
        f["code"] for f in json.loads(hk("audit", str(ws), "--format", "json").stdout)["findings"]
    ]


def test_backing_off_holds_the_heal_and_the_report_says_until_when(tmp_path: Path) -> None:
    ws = workspace(tmp_path, "[heal]\nbackoff_seconds = 3600\n")
    reports = tmp_path / "reports"
    rx = JsonReceiver()
    env = {"HEALTHKIT_NOTIFY_URLS": f"json://127.0.0.1:{rx.port}/hook/{TOKEN_A}"}
    try:
        malformed_pid(ws)
        r1 = scheduled(ws, reports, env=env)
        assert "applied  remove-malformed-pid-file" in r1.stdout
        malformed_pid(ws)
        r2 = scheduled(ws, reports, env=env)
    finally:
        rx.close()
    last = rx.got[-1]["message"]
    assert (
        "daemon.pid-malformed" in last and "not healed this run: backing off" in last and "next heal not before" in last
    ), last
    assert "applied  remove-malformed-pid-file" not in r2.stdout and "next heal not before" in r2.stdout
    (held,) = [f for f in latest(reports)["findings"] if f["code"] == "heal.held-back"]
    assert held["title"].startswith("Healing daemon.pid-malformed is backing off until ") and held["data"]["until"]
    assert "daemon.pid-malformed" in codes(latest(reports))  # still open, and reported as such


def test_schedule_heal_prints_one_command_what_it_heals_and_whom_it_tells_without_tokens(tmp_path: Path) -> None:
    ws = workspace(tmp_path, f'[notify]\nurls = ["mailto://ops:{TOKEN_B}@smtp.example.com?to=a@example.com"]\n')
    env = {"HEALTHKIT_NOTIFY_URLS": f"tgram://{TOKEN_A}/1234"}
    r = hk("schedule", str(ws), "--heal", "--every", "1m", "--textfile-dir", str(tmp_path / "tf"), env=env)
    assert r.returncode == 0, r.stderr
    out = r.stdout
    assert TOKEN_A not in out and TOKEN_B not in out
    assert "tells mailto://smtp.example.com/…, tgram://… of changes at or above warning" in out, out
    assert "# heals (safe fixes only, under the fix lock): " in out and "start-daemon (daemon.dead" in out
    assert "stops healing a finding after 3 heals in 3600s" in out and "KillMode=process" in out
    line = next(x for x in out.splitlines() if x.startswith("* * * * * "))
    inner = shlex.split(line.split(" sh -c ", 1)[1].rsplit(" >/dev/null", 1)[0])[0]
    argv = shlex.split(inner)
    assert argv[1:5] == ["fix", str(ws), "--safe", "--scheduled"] and "--textfile" in argv
    assert out.count("ExecStart=") == 1  # one command, one audit
    ro = hk("schedule", str(ws), "--every", "1m").stdout
    assert "--scheduled" not in ro and "read-only: heals nothing, tells nobody" in ro


def test_heal_and_notify_settings_refuse_unknown_keys_and_bad_levels(tmp_path: Path) -> None:
    ws = workspace(tmp_path, "[heal]\nmax_attempt = 3\n")
    r = hk("audit", str(ws))
    assert r.returncode == 3 and "heal.max_attempt" in r.stderr, r.stderr
    (ws / "healthkit.toml").write_text('[notify]\nlevel = "loud"\n')
    r = hk("audit", str(ws))
    assert r.returncode == 3 and "notify.level" in r.stderr, r.stderr
    r = hk("fix", str(ws), "--safe", "--output", str(tmp_path / "r"))
    assert r.returncode == 64 and "go with --scheduled" in r.stderr
    assert re.search(r"--scheduled heals with --safe only", hk("fix", str(ws), "--unsafe", "--scheduled").stderr)


def test_only_changes_are_told_an_open_critical_again_after_repeat_seconds_and_a_resolved_one_once(
    tmp_path: Path,
) -> None:
    rx = JsonReceiver()
    ws = workspace(tmp_path, "[notify]\nrepeat_seconds = 3600\n")
    reports = tmp_path / "reports"
    env = {"HEALTHKIT_NOTIFY_URLS": f"json://127.0.0.1:{rx.port}/hook/{TOKEN_A}"}
    try:
        scheduled(ws, reports, env=env)  # config.json missing: a new CRITICAL
        scheduled(ws, reports, env=env)  # still open, told a moment ago: silence
        assert len(rx.got) == 1 and "New:" in rx.got[0]["message"] and "config.invalid" in rx.got[0]["message"]
        (ws / "healthkit.toml").write_text("[run]\nconfig_required = true\n\n[notify]\nrepeat_seconds = 0.5\n")
        time.sleep(0.6)  # (the repeat interval itself is what is under test)
        scheduled(ws, reports, env=env)
        assert len(rx.got) == 2 and "Still open (reminder):" in rx.got[1]["message"], [m["message"] for m in rx.got]
        (ws / "healthkit.toml").write_text('[paths]\nconfig_schema = "none"\n')
        (ws / "config.json").write_text("{}")
        scheduled(ws, reports, env=env)
        scheduled(ws, reports, env=env)
    finally:
        rx.close()
    assert len(rx.got) == 3, [m["message"] for m in rx.got]
    msg = rx.got[2]["message"]
    assert "Resolved:" in msg and "config.invalid" in msg and "Verdict: OK" in msg, msg
    assert rx.paths == [f"/hook/{TOKEN_A}"] * 3
    # Apprise's type follows severity (ntfy, Slack and e-mail priority read it): CRITICAL is failure, resolved success
    assert [m["type"] for m in rx.got] == ["failure", "failure", "success"]


def test_the_notify_type_is_the_worst_of_the_message() -> None:
    from healthkit.scheduled.notify import Event, notify_type

    def ev(kind: str, severity: str) -> Event:
        return Event(kind, "x.y", severity, "t", "todo", kind + severity)

    assert notify_type([ev("healed", "warning"), ev("resolved", "critical")]) == "success"
    assert notify_type([ev("healed", "warning"), ev("new", "warning")]) == "warning"
    assert notify_type([ev("new", "warning"), ev("reminder", "critical"), ev("resolved", "warning")]) == "failure"
    assert notify_type([ev("stopped", "info")]) == "info"
    assert notify_type([{"kind": "new", "severity": "critical"}]) == "failure"  # a pending line sent again


def test_a_catch_up_message_states_the_verdict_its_run_ends_with(tmp_path: Path) -> None:
    """Issue 31 item 8: the run that delivers what a channel missed clears notify.failed; its message must not say
    WARNING (the failed delivery it is itself repairing) while the run ends OK."""
    port = free_port()
    ws = workspace(tmp_path, "[notify]\ntimeout_seconds = 2\n")
    reports = tmp_path / "reports"
    env = {"HEALTHKIT_NOTIFY_URLS": f"json://127.0.0.1:{port}/hook/{TOKEN_A}"}
    scheduled(ws, reports, env=env)  # config.json missing (CRITICAL), nobody listens: notify.failed
    assert "notify.failed" in codes(latest(reports))
    (ws / "healthkit.toml").write_text('[paths]\nconfig_schema = "none"\n\n[notify]\ntimeout_seconds = 2\n')
    (ws / "config.json").write_text("{}")
    rx = JsonReceiver(port)
    try:
        r = scheduled(ws, reports, env=env)
    finally:
        rx.close()
    assert r.returncode == 0 and latest(reports)["status"] == "ok", r.stdout
    (msg,) = rx.got
    assert "Verdict: OK" in msg["message"] and "Not delivered earlier" in msg["message"], msg["message"]
    assert msg["title"].startswith("healthkit OK:"), msg["title"]


def test_a_persons_fix_reaudits_after_clearing_the_heal_state(tmp_path: Path) -> None:
    """Issue 31 item 8: `fix --safe` by a person clears the scheduled job's backoff; its re-audit must not print
    heal.held-back as still open, nor its exit code count a give-up it has just cleared."""
    ws = workspace(tmp_path, "[heal]\nbackoff_seconds = 3600\n")
    reports = tmp_path / "reports"
    malformed_pid(ws)
    scheduled(ws, reports)
    malformed_pid(ws)
    scheduled(ws, reports)
    assert "heal.held-back" in codes(latest(reports))
    malformed_pid(ws)
    r = hk("fix", str(ws), "--safe")
    assert "applied  remove-malformed-pid-file" in r.stdout, r.stdout
    assert "still open  heal.held-back" not in r.stdout and "resolved    heal.held-back" in r.stdout, r.stdout
    # With nothing to apply, clearing the state is still a change the re-audit sees.
    malformed_pid(ws)
    scheduled(ws, reports)
    malformed_pid(ws)
    scheduled(ws, reports)
    assert "heal.held-back" in codes(latest(reports))
    (ws / ".daemon.pid").unlink()
    r = hk("fix", str(ws), "--safe", "--only", "heal")
    assert "resolved    heal.held-back" in r.stdout, r.stdout
