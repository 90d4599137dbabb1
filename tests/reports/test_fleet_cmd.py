"""`healthkit audit WS1 WS2 ...` and `healthkit schedule WS1 WS2 ...`: one process, one report per workspace,
one textfile for all, a fleet page, the worst verdict as exit code; an unreadable workspace hides no other."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
from pathlib import Path

import pytest
from test_fmt_prom import samples

from healthkit.reporting.fleetpage import age_text
from healthkit.scheduled.fleet import folder_name
from healthkit.scheduled.schedule import FLEET_NAME, ScheduleError, build


def make_ws(path: Path, dead_pid: int | None = None) -> Path:
    """A small healthy setup (config, an empty queue); with ``dead_pid`` its PID file names an exited process."""
    (path / "queue" / "inbox").mkdir(parents=True)
    (path / "config.json").write_text(json.dumps({"base_model": "tiny", "save_total_limit": 2}))
    (path / "healthkit.toml").write_text('[processes]\ndaemon = ["training_daemon.py"]\n')
    if dead_pid is not None:
        (path / ".daemon.pid").write_text(f"{dead_pid}\n")
    return path


@pytest.fixture
def fleet(tmp_path, dead_pid) -> dict[str, Path]:
    return {
        "ok": make_ws(tmp_path / "a" / "ws"),
        "dead": make_ws(tmp_path / "b" / "ws", dead_pid),
        "gone": tmp_path / "never-made",
    }


def by_workspace(text: str, name: str, **labels: str) -> dict[str, float]:
    return {
        dict(ls)["workspace"]: v for (n, ls), v in samples(text).items() if n == name and set(labels.items()) <= set(ls)
    }


def test_one_textfile_for_all_and_the_unreadable_one_has_its_own_unknown(cli, fleet, tmp_path):
    out = tmp_path / "textfile" / "healthkit.prom"
    res = cli("audit", fleet["ok"], fleet["dead"], fleet["gone"], "--format", "prom", "--output", out)
    assert res.exit_code == 2, res.output  # critical beats unknown, as in one report
    text = out.read_text(encoding="utf-8")
    ok, dead, gone = (str(fleet[k]) for k in ("ok", "dead", "gone"))
    assert by_workspace(text, "healthkit_status") == {ok: 0, dead: 2, gone: 3}
    assert by_workspace(text, "healthkit_check_status", check="workspace") == {gone: 3}
    assert by_workspace(text, "healthkit_finding_active", code="daemon.dead") == {dead: 1}
    assert set(by_workspace(text, "healthkit_check_status", check="daemon")) == {ok, dead}
    assert text.count("# TYPE healthkit_status gauge") == 1  # one family, three samples
    assert os.listdir(out.parent) == ["healthkit.prom"]
    assert f"{gone}: healthkit UNKNOWN" in res.stderr and f"{dead}: healthkit CRITICAL" in res.stderr


def test_prom_to_a_folder_also_writes_the_one_textfile_there(cli, fleet, tmp_path):
    """Issue 31 item 14: `--format prom --output DIR/` keeps each workspace's history and writes the one textfile
    `--help` promises, DIR/healthkit.prom (what node_exporter's collector reads: it does not look in subfolders)."""
    out = tmp_path / "tf"
    res = cli("audit", fleet["ok"], fleet["dead"], "--format", "prom", "--output", f"{out}/")
    assert res.exit_code == 2, res.output
    combined = (out / "healthkit.prom").read_text(encoding="utf-8")
    assert by_workspace(combined, "healthkit_status") == {str(fleet["ok"]): 0, str(fleet["dead"]): 2}
    assert any(p.is_dir() for p in out.iterdir())  # the per-workspace histories stay
    assert "DIR/<name>-<hash>/" in cli("audit", "--help").output
    # a fleet's many files are one line, not one per file (28 for a small fleet)
    wrote = [x for x in res.stderr.splitlines() if x.startswith("wrote ")]
    assert len(wrote) <= 3 and any("more file(s): each workspace's reports in" in x for x in wrote), res.stderr


def test_textfile_passes_promtool(cli, fleet, tmp_path, promtool):
    out = tmp_path / "h.prom"
    cli("audit", fleet["ok"], fleet["dead"], fleet["gone"], "-f", "prom", "-o", out)
    proc = subprocess.run(
        [promtool, "check", "metrics"], input=out.read_text(), capture_output=True, text=True, timeout=30
    )
    assert proc.returncode == 0 and not (proc.stdout + proc.stderr).strip(), proc.stdout + proc.stderr


def test_folder_output_keeps_a_history_per_workspace_and_a_fleet_page(cli, fleet, tmp_path):
    out = tmp_path / "reports"
    res = cli("audit", fleet["ok"], fleet["dead"], "--output", f"{out}/", "--textfile", tmp_path / "t.prom")
    assert res.exit_code == 2, res.output
    assert sorted(os.listdir(out)) == sorted([folder_name(fleet["ok"]), folder_name(fleet["dead"]), "index.html"])
    latest = json.loads((out / folder_name(fleet["dead"]) / "latest.json").read_text())
    assert latest["workspace"] == str(fleet["dead"]) and latest["status"] == "critical"
    assert by_workspace((tmp_path / "t.prom").read_text(), "healthkit_status") == {
        str(fleet["ok"]): 0,
        str(fleet["dead"]): 2,
    }

    # Second run: the "ok" workspace is gone and "dead" left the job; both rows stay, each saying so.
    import shutil

    shutil.rmtree(fleet["ok"])
    res = cli("audit", fleet["ok"], fleet["gone"], "--output", f"{out}/")
    assert res.exit_code == 3, res.output
    page = (out / "index.html").read_text(encoding="utf-8")
    rows = re.findall(r"<tr><td><code>([^<]+)</code>.*?</td><td><span[^>]*>(\w+)</span>", page)
    assert rows == [(str(fleet["dead"]), "critical"), (str(fleet["ok"]), "unknown"), (str(fleet["gone"]), "unknown")]
    assert f"workspace {fleet['ok']} does not exist" in page
    for link in re.findall(r'href="([^"]+/index.html)"', page):
        assert (out / link).is_file(), link  # each row links to that workspace's history page
    assert (
        len([n for n in os.listdir(out / folder_name(fleet["ok"])) if n.endswith(".json") and n.startswith("report-")])
        == 2
    )


def test_registry_is_loaded_once_for_the_whole_fleet(cli, tmp_path, monkeypatch):
    import healthkit.core.registry

    calls = []
    real = healthkit.core.registry.default_registry
    monkeypatch.setattr(healthkit.core.registry, "default_registry", lambda *a, **k: calls.append(a) or real(*a, **k))
    paths = [make_ws(tmp_path / f"ws{i}") for i in range(4)]
    res = cli("audit", *paths, "-f", "json")
    assert res.exit_code == 0, res.output
    assert [r["workspace"] for r in json.loads(res.stdout)] == [str(p) for p in paths]
    assert len(calls) == 1


def test_outputs_that_cannot_hold_several_reports_are_usage_errors(cli, fleet, tmp_path):
    res = cli("audit", fleet["ok"], fleet["dead"], "--output", tmp_path / "x.md")
    assert res.exit_code == 64 and "give --output a folder" in res.stderr
    res = cli("audit", fleet["ok"], fleet["dead"], "--format", "junit")
    assert res.exit_code == 64 and "need a folder" in res.stderr
    assert not (tmp_path / "x.md").exists()


def test_markdown_to_stdout_holds_each_report(cli, fleet):
    res = cli("audit", fleet["ok"], fleet["dead"], fleet["ok"])  # a repeated path is audited once
    assert res.exit_code == 2, res.output
    shown = re.findall(r"(?m)^Workspace: `([^`]+)`", res.stdout)
    assert shown == [str(fleet["ok"]), str(fleet["dead"])]


def test_single_workspace_textfile_comes_from_the_same_audit(cli, fleet, tmp_path):
    res = cli("audit", fleet["dead"], "--output", f"{tmp_path}/r/", "--textfile", tmp_path / "t.prom")
    assert res.exit_code == 2, res.output
    stamp = json.loads((tmp_path / "r" / "latest.json").read_text())["generated_at"]
    from healthkit.reporting.render.prom import _timestamp

    assert by_workspace((tmp_path / "t.prom").read_text(), "healthkit_last_run_timestamp_seconds") == {
        str(fleet["dead"]): _timestamp(stamp)
    }


def test_folder_names_are_stable_readable_and_apart():
    assert folder_name("/srv/a/ws") == folder_name("/srv/a/ws/") and folder_name("/srv/a/ws").startswith("ws-")
    assert folder_name("/srv/a/ws") != folder_name("/srv/b/ws")
    assert re.fullmatch(r"[A-Za-z0-9_.-]+", folder_name("/srv/odd name/ä ws"))
    assert [age_text(s) for s in (5, 125, 3 * 3600 + 300, 2 * 86400 + 7200)] == ["5s", "2m", "3h 5m", "2d 2h"]


def test_schedule_prints_one_job_for_several_workspaces(tmp_path):
    a, b = make_ws(tmp_path / "a"), make_ws(tmp_path / "b")
    s = build([a, b, a], reports=tmp_path / "reports", textfile_dir=tmp_path / "tf", command=["/opt/hk"])
    assert s.name == FLEET_NAME
    (execs,) = [ln for ln in s.service.splitlines() if ln.startswith("ExecStart=")]
    assert execs == (
        f"ExecStart=/opt/hk audit {a} {b} --output {tmp_path}/reports/ --keep 50 "
        f"--textfile {tmp_path}/tf/{FLEET_NAME}.prom"
    )
    assert "WorkingDirectory=" not in s.service  # no one workspace's folder may stop the whole job
    line = next(ln for ln in s.crontab.splitlines() if not ln.startswith("#"))
    assert line.count(" audit ") == 1 and shlex.quote(str(b)) in line
    with pytest.raises(ScheduleError, match="--output DIR"):
        build([a, b])
    with pytest.raises(ScheduleError, match="not a folder"):
        build([a, tmp_path / "missing"], reports=tmp_path / "r")


def test_schedule_cli_several_workspaces(cli, tmp_path):
    a, b = make_ws(tmp_path / "a"), make_ws(tmp_path / "b")
    res = cli("schedule", a, b, "--output", tmp_path / "reports")
    assert res.exit_code == 0, res.output
    assert f"{FLEET_NAME}.service" in res.stdout and f"audit {a} {b} --output" in res.stdout
    res = cli("schedule", a, b)
    assert res.exit_code == 64 and "--output DIR" in res.stderr


def test_the_unreadable_workspace_report_is_a_valid_report_in_every_format(cli, fleet, tmp_path):
    jsonschema = pytest.importorskip("jsonschema")
    from importlib.resources import files

    res = cli("audit", fleet["gone"], fleet["ok"], "--output", f"{tmp_path}/r/", "--format", "junit")
    assert res.exit_code == 3, res.output
    folder = tmp_path / "r" / folder_name(fleet["gone"])
    schema = json.loads((files("healthkit") / "schemas" / "report.schema.json").read_text(encoding="utf-8"))
    report = json.loads((folder / "latest.json").read_text(encoding="utf-8"))
    jsonschema.validate(report, schema)
    assert [(c["check"], c["status"], c["error"]) for c in report["checks"]] == [
        ("workspace", "unknown", f"workspace {fleet['gone']} does not exist")
    ]
    assert "does not exist" in (folder / "latest.xml").read_text(encoding="utf-8")


def test_an_unwritable_target_is_exit_3_with_a_message_not_a_traceback(cli, fleet, tmp_path):
    (tmp_path / "blocker").write_text("a file, not a folder\n")
    res = cli("audit", fleet["ok"], fleet["dead"], "--format", "prom", "--output", tmp_path / "blocker" / "h.prom")
    assert res.exit_code == 3 and "cannot write the reports" in res.stderr and "Traceback" not in res.output
    res = cli("audit", fleet["ok"], fleet["dead"], "-f", "json", "--textfile", tmp_path / "blocker" / "t.prom")
    assert res.exit_code == 3 and "cannot write the reports" in res.stderr, res.output


def test_every_workspaces_slow_reads_start_before_the_first_audit(cli, tmp_path, monkeypatch):
    import healthkit.core.api
    from healthkit.core.workspace import Workspace

    events = []
    real_prefetch, real_audit = Workspace.prefetch, healthkit.core.api.audit
    monkeypatch.setattr(
        Workspace, "prefetch", lambda self: events.append(("prefetch", self.base.name)) or real_prefetch(self)
    )
    monkeypatch.setattr(
        healthkit.core.api, "audit", lambda ws, **k: events.append(("audit", ws.base.name)) or real_audit(ws, **k)
    )
    paths = [make_ws(tmp_path / f"ws{i}") for i in range(3)]
    res = cli(
        "audit", *paths, "-f", "json", "--workspace-deadline", "0"
    )  # in this process (children: tests/test_deadlines.py)
    assert res.exit_code == 0, res.output
    firsts = [e for e in events if e[0] == "prefetch"][:3]
    assert firsts == [("prefetch", "ws0"), ("prefetch", "ws1"), ("prefetch", "ws2")]
    assert events.index(("audit", "ws0")) > events.index(("prefetch", "ws2"))


def test_fleet_page_in_chromium(cli, fleet, tmp_path):
    from tests import chromium

    out = tmp_path / "reports"
    cli("audit", fleet["ok"], fleet["dead"], fleet["gone"], "--output", f"{out}/")
    r = chromium.dump_dom((out / "index.html").as_uri())
    assert r.stdout.count("<tr><td><code>") == 3 and r.script_errors == []
    assert list(re.findall(r'class="badge"[^>]*>(\w+)<', r.stdout)) == ["critical", "unknown", "ok"]
    shot = tmp_path / "fleet.png"
    chromium.screenshot((out / "index.html").as_uri(), shot, size=(1200, 420))
    chromium.assert_not_blank(shot, min_colours=4, max_share=0.99)
    chromium.keep(shot, "fleet.png")
