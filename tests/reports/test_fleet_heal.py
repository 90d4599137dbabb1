"""`healthkit fix WS1 WS2 ... --safe --scheduled --output DIR/`: the healing job `healthkit schedule WS1 WS2 --heal`
prints. One process heals each workspace as it would alone (its own flap and notification state), writes its
history in the fleet layout, then the fleet page and one textfile; a workspace that cannot be healed hides no other.

Real CLI in subprocesses (as cron and systemd run it), real files, a PID file naming a process that really exited.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

from test_fleet_cmd import by_workspace, make_ws

from healthkit.scheduled.fleet import folder_name

HK = [sys.executable, "-m", "healthkit.cli"]


def hk(*args: str | Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*HK, *map(str, args)],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "HEALTHKIT_NOTIFY_URLS": ""},
    )


def latest(reports: Path, ws: Path) -> dict:
    return json.loads((reports / folder_name(ws) / "latest.json").read_text(encoding="utf-8"))


def report_count(reports: Path, ws: Path) -> int:
    return len([n for n in os.listdir(reports / folder_name(ws)) if n.startswith("report-") and n.endswith(".json")])


def fleet_rows(reports: Path) -> dict[str, str]:
    """The fleet page's rows: history folder linked -> the row's HTML."""
    html = (reports / "index.html").read_text(encoding="utf-8")
    rows = html.split("<tr>")[2:]  # the first split part is before the table, the second the header row
    return {row.split('<a href="')[1].split("/")[0]: row for row in rows}


def test_one_process_heals_each_workspace_and_writes_one_fleet_page_and_one_textfile(tmp_path, dead_pid):
    ok, dead = make_ws(tmp_path / "a" / "run.v2"), make_ws(tmp_path / "b" / "ws", dead_pid)  # run.v2: not a file name
    gone = make_ws(tmp_path / "c" / "ws")
    shutil.rmtree(gone)  # removed before the job ran
    reports, prom = tmp_path / "reports", tmp_path / "textfiles" / "healthkit-fleet.prom"
    cmd = (
        "fix",
        ok,
        dead,
        gone,
        "--safe",
        "--scheduled",
        "--every",
        "1m",
        "--output",
        f"{reports}/",
        "--textfile",
        prom,
    )

    r = hk(*cmd)
    assert r.returncode == 3, r.stdout + r.stderr  # the removed workspace is UNKNOWN; the healed one is OK now
    assert "Traceback" not in r.stderr
    assert "applied  remove-stale-pid-file" in r.stdout
    assert not (dead / ".daemon.pid").exists()
    assert f"{gone}: workspace {gone} does not exist" in r.stderr

    # Each workspace's history in the fleet audit's layout, from the audit its fix ended with.
    assert sorted(os.listdir(reports)) == sorted([folder_name(ok), folder_name(dead), folder_name(gone), "index.html"])
    assert [f["code"] for f in latest(reports, dead)["findings"]] == []
    assert latest(reports, ok)["status"] == "ok" and latest(reports, dead)["status"] == "ok"
    gone_results = latest(reports, gone)["checks"]
    assert [(x["check"], x["status"]) for x in gone_results] == [("workspace", "unknown")]
    # Flap protection state stays with the workspace that was healed; the healthy one got none.
    heal_state = json.loads((dead / "logs" / "healthkit-heal.json").read_text(encoding="utf-8"))
    assert "daemon.dead" in json.dumps(heal_state)
    assert not (ok / "logs" / "healthkit-heal.json").exists()

    # The fleet page: one row per workspace, worst first, each linking to its history.
    rows = fleet_rows(reports)
    assert set(rows) == {folder_name(ok), folder_name(dead), folder_name(gone)}
    assert list(rows)[0] == folder_name(gone) and "does not exist" in rows[folder_name(gone)]
    assert ">ok</span>" in rows[folder_name(dead)] and ">ok</span>" in rows[folder_name(ok)]

    # One textfile for all, atomically replaced (nothing else in its folder), a workspace label on every series.
    assert os.listdir(prom.parent) == [prom.name]
    text = prom.read_text(encoding="utf-8")
    assert by_workspace(text, "healthkit_status") == {str(ok): 0, str(dead): 0, str(gone): 3}
    assert by_workspace(text, "healthkit_check_status", check="workspace") == {str(gone): 3}
    assert by_workspace(text, "healthkit_check_status", check="daemon") == {str(ok): 0, str(dead): 0}

    # Next run: the fault is back on one workspace only; nothing else is touched, every history grows by one.
    (ok / ".daemon.pid").write_text(f"{dead_pid}\n")
    r2 = hk(*cmd)
    assert r2.returncode == 3, r2.stdout + r2.stderr
    assert r2.stdout.count("applied  remove-stale-pid-file") == 1 and not (ok / ".daemon.pid").exists()
    assert [report_count(reports, w) for w in (ok, dead, gone)] == [2, 2, 2]
    assert (ok / "logs" / "healthkit-heal.json").exists()


def test_a_workspace_whose_heal_is_refused_does_not_stop_the_others(tmp_path, dead_pid):
    refused = make_ws(tmp_path / "x" / "ws", dead_pid)
    (refused / "healthkit.toml").write_text(
        '[processes]\ndaemon = ["training_daemon.py"]\n[paths]\njournal = "../j.jsonl"\n'
    )
    dead = make_ws(tmp_path / "y" / "ws", dead_pid)
    reports, prom = tmp_path / "r", tmp_path / "t" / "f.prom"
    r = hk("fix", refused, dead, "--safe", "--scheduled", "--output", f"{reports}/", "--textfile", prom)
    assert r.returncode == 3, r.stdout + r.stderr
    assert "Traceback" not in r.stderr
    assert "not healed:" in r.stderr and "journal" in r.stderr
    assert (refused / ".daemon.pid").exists() and not (dead / ".daemon.pid").exists()  # the next one was still healed
    assert latest(reports, dead)["status"] == "ok"
    assert "not healed:" in latest(reports, refused)["checks"][0]["error"]
    assert by_workspace(prom.read_text(encoding="utf-8"), "healthkit_status") == {str(refused): 3, str(dead): 0}


def test_several_workspaces_without_scheduled_or_without_a_folder_are_usage_errors(tmp_path, dead_pid):
    a, b = make_ws(tmp_path / "a", dead_pid), make_ws(tmp_path / "b", dead_pid)
    plain = hk("fix", a, b, "--safe")
    assert plain.returncode == 64 and "one workspace at a time (2 given)" in plain.stderr, plain.stderr
    no_dir = hk("fix", a, b, "--safe", "--scheduled")
    assert no_dir.returncode == 64 and "several workspaces need --output DIR/" in no_dir.stderr, no_dir.stderr
    assert (a / ".daemon.pid").exists() and (b / ".daemon.pid").exists()  # nothing was touched
    one = hk("fix", a, "--safe")  # one workspace without --scheduled: as before
    assert one.returncode == 0, one.stdout + one.stderr
    assert not (a / ".daemon.pid").exists()


def test_the_printed_heal_job_for_several_workspaces_runs_as_printed(tmp_path, dead_pid):
    ok, dead = make_ws(tmp_path / "a" / "ws"), make_ws(tmp_path / "b" / "ws", dead_pid)
    reports, textdir = tmp_path / "reports", tmp_path / "prom"
    printed = hk("schedule", ok, dead, "--heal", "--every", "5m", "--output", reports, "--textfile-dir", textdir)
    assert printed.returncode == 0, printed.stderr
    exec_start = next(line for line in printed.stdout.splitlines() if line.startswith("ExecStart="))
    argv = shlex.split(exec_start[len("ExecStart=") :])
    assert argv[argv.index("fix") + 1 : argv.index("fix") + 3] == [str(ok), str(dead)]
    r = subprocess.run(
        argv, capture_output=True, text=True, timeout=300, env={**os.environ, "HEALTHKIT_NOTIFY_URLS": ""}
    )
    assert r.returncode == 0, r.stdout + r.stderr
    assert not (dead / ".daemon.pid").exists()
    assert set(fleet_rows(reports)) == {folder_name(ok), folder_name(dead)}
    text = (textdir / "healthkit-fleet.prom").read_text(encoding="utf-8")
    assert by_workspace(text, "healthkit_status") == {str(ok): 0, str(dead): 0}


def test_a_workspace_whose_fix_lock_stays_held_is_unknown_and_the_next_is_still_healed(tmp_path, dead_pid):
    from io import StringIO

    from healthkit.scheduled.unattended import heal_many

    busy, dead = make_ws(tmp_path / "busy", dead_pid), make_ws(tmp_path / "dead", dead_pid)
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys; from pathlib import Path; from healthkit.fix.lock import FixLock; "
            f"FixLock(Path({str(busy)!r})).acquire(); print('held', flush=True); sys.stdin.read()",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline() == "held\n"
        done = heal_many([busy, dead], tmp_path / "r", textfile=tmp_path / "t.prom", out=StringIO(), lock_wait_s=0.2)
    finally:
        holder.communicate("")
    assert f"PID {holder.pid}" in done.errors[busy] and done.errors[busy].startswith("not healed: ")
    assert (busy / ".daemon.pid").exists() and not (dead / ".daemon.pid").exists()
    assert list(done.runs) == [dead] and done.exit_code == 3
    text = (tmp_path / "t.prom").read_text(encoding="utf-8")
    assert by_workspace(text, "healthkit_status") == {str(busy): 3, str(dead): 0}
    assert set(fleet_rows(tmp_path / "r")) == {folder_name(busy), folder_name(dead)}


def test_each_workspace_tells_its_own_channel_from_its_own_state(tmp_path, dead_pid):
    from tests.receivers import JsonReceiver

    rx = JsonReceiver()
    ok, dead = make_ws(tmp_path / "ok"), make_ws(tmp_path / "dead", dead_pid)
    for ws in (ok, dead):  # each workspace its own [notify] URL (a path naming it)
        with (ws / "healthkit.toml").open("a") as f:
            f.write(f'[notify]\nurls = ["json://127.0.0.1:{rx.port}/hook/{ws.name}"]\n')
    env = {k: v for k, v in os.environ.items() if k != "HEALTHKIT_NOTIFY_URLS"}
    cmd = [*HK, "fix", str(ok), str(dead), "--safe", "--scheduled", "--output", f"{tmp_path / 'r'}/"]
    try:
        first = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
        (ok / ".daemon.pid").write_text(f"{dead_pid}\n")  # now the other one breaks
        second = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    finally:
        rx.close()
    assert first.returncode == 0 and second.returncode == 0, first.stderr + second.stderr
    assert rx.paths == ["/hook/dead", "/hook/ok"]  # one message per heal, each to its workspace's channel, nothing else
    assert [
        f"Workspace: {w}" in m["message"] and "daemon.dead" in m["message"] and "healed" in m["title"]
        for m, w in zip(rx.got, (dead, ok))
    ] == [True, True]
    assert f"{dead}: notify json://127.0.0.1:{rx.port}/…: sent" in first.stderr  # named per workspace, no token
    assert f"{ok}: notify" not in first.stderr
