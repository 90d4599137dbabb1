"""Cron runs into a reports folder: timestamped history, `latest.*`, retention, and "since last report"."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hkreports import FACTS, make_report, write_state

from healthkit.reporting.history import finding_identities, prune, since_last, write_history

DEAD = {
    "code": "daemon.dead",
    "severity": "critical",
    "title": "Daemon dead (PID 4242)",
    "data": {"pid_file": "/ws/.daemon.pid"},
}
BLOAT = {
    "code": "checkpoints.bloat",
    "severity": "warning",
    "title": "12 checkpoints",
    "data": {"dir": "/ws/current_model"},
}
DRIFT_CLAUDE = {
    "code": "config.doc-drift",
    "severity": "warning",
    "title": "CLAUDE.md drifts",
    "data": {"doc": "CLAUDE.md"},
}
DRIFT_README = {
    "code": "config.doc-drift",
    "severity": "warning",
    "title": "README.md drifts",
    "data": {"doc": "README.md"},
}
STALLED = {"code": "training.stalled", "severity": "critical", "title": "No status update for 2h"}


def reports(folder: Path, ext: str) -> list[str]:
    """Report files of one format, oldest first (`-2` is a second run within the same second)."""
    names = [p.name for p in folder.iterdir() if p.name.startswith("report-") and p.name.endswith(f".{ext}")]
    return sorted(names, key=lambda n: (n.split(".")[0].split("-")[1], int((n.split(".")[0].split("-") + ["1"])[2])))


def codes(items: list[dict]) -> list[tuple[str, str]]:
    return sorted((i["code"], i["title"]) for i in items)


def test_two_cron_runs_report_exactly_what_changed(workspace, cli, tmp_path):
    out = tmp_path / "reports"
    write_state(workspace, [DEAD, BLOAT, DRIFT_CLAUDE, DRIFT_README])
    first = cli("audit", workspace, "--output", f"{out}/")
    assert first.exit_code == 2, first.output
    one = json.loads((out / "latest.json").read_text(encoding="utf-8"))
    assert one["since_last"]["previous"] is None
    assert "First report in this folder" in (out / "latest.md").read_text(encoding="utf-8")

    # Between the runs: the daemon was restarted, README fixed, training stalled, and the
    # checkpoint count (in the title) changed without the problem going away.
    write_state(workspace, [dict(BLOAT, title="14 checkpoints"), DRIFT_CLAUDE, STALLED])
    second = cli("audit", workspace, "--output", f"{out}/")
    assert second.exit_code == 2, second.output

    two = json.loads((out / "latest.json").read_text(encoding="utf-8"))
    since = two["since_last"]
    assert since["previous"]["file"] == reports(out, "json")[0]
    assert codes(since["new"]) == [("training.stalled", "No status update for 2h")]
    assert codes(since["resolved"]) == [
        ("config.doc-drift", "README.md drifts"),
        ("daemon.dead", "Daemon dead (PID 4242)"),
    ]
    assert codes(since["still_open"]) == [
        ("checkpoints.bloat", "14 checkpoints"),
        ("config.doc-drift", "CLAUDE.md drifts"),
    ]

    md = (out / "latest.md").read_text(encoding="utf-8")
    section = md[md.index("## 🔄 SINCE LAST REPORT") :].split("\n---\n")[0]
    assert "**New (1):**\n- 🔴 `training.stalled`: No status update for 2h" in section
    assert (
        "**Resolved (2):**\n- ✅ `daemon.dead`: Daemon dead (PID 4242)\n- ✅ `config.doc-drift`: README.md drifts"
        in section
    )
    assert "**Still open (2):**" in section
    assert md == (out / f"{reports(out, 'md')[-1]}").read_text(encoding="utf-8")  # latest.md is the newest report
    assert len(reports(out, "md")) == len(reports(out, "json")) == 2


def test_retention_keeps_the_newest_n_and_never_latest(workspace, cli, tmp_path):
    out = tmp_path / "reports"
    out.mkdir()
    (out / "notes.txt").write_text("mine")  # not ours: never touched
    for i in range(5):
        (out / f"report-2020010{i + 1}T000000Z.md").write_text("old")
        (out / f"report-2020010{i + 1}T000000Z.json").write_text("{}")
        (out / f"loss-2020010{i + 1}T000000Z.png").write_bytes(b"")
    write_state(workspace, [BLOAT], facts={"log_history": FACTS["log_history"]})
    for _ in range(2):
        res = cli("audit", workspace, "--output", out, "--keep", "3")
        assert res.exit_code == 1, res.output
    md, js = reports(out, "md"), reports(out, "json")
    assert len(md) == len(js) == 3
    assert md[0] == "report-20200105T000000Z.md"  # the two newest old ones plus... the runs are newer
    assert not any(n.startswith("report-2020010") for n in md[1:])
    pngs = sorted(p.name for p in out.glob("loss-*.png"))
    assert len(pngs) == 3 and pngs[0] == "loss-20200105T000000Z.png"
    assert {"latest.md", "latest.json", "latest-loss.png", "notes.txt"} <= set(os.listdir(out))
    assert not [n for n in os.listdir(out) if ".tmp-" in n]


def test_same_second_runs_do_not_overwrite_each_other(tmp_path):
    r = make_report()
    write_history(r, tmp_path)
    write_history(r, tmp_path)
    assert reports(tmp_path, "json") == ["report-20240501T120000Z.json", "report-20240501T120000Z-2.json"]
    since = json.loads((tmp_path / "latest.json").read_text())["since_last"]
    assert since["previous"]["file"] == "report-20240501T120000Z.json"
    assert since["new"] == [] and since["resolved"] == [] and len(since["still_open"]) == 3
    prune(tmp_path, keep=1)
    assert reports(tmp_path, "json") == ["report-20240501T120000Z-2.json"]  # -2 is the newer one


def test_keep_must_be_positive(workspace, cli, tmp_path):
    res = cli("audit", workspace, "--output", tmp_path / "r", "--keep", "0")
    assert res.exit_code != 0 and "--keep" in res.output
    with pytest.raises(ValueError):
        write_history(make_report(), tmp_path, keep=0)


def test_identity_is_code_plus_stable_data_not_title():
    a = [
        {"code": "x.y", "title": "3 things", "data": {"path": "/a", "count": 3}},
        {"code": "x.y", "title": "4 things", "data": {"path": "/b", "count": 4}},
        {"code": "z.z", "title": "once"},
    ]
    assert finding_identities(a) == ["x.y[path=/a]", "x.y[path=/b]", "z.z"]
    twice = [{"code": "q.q", "title": "one"}, {"code": "q.q", "title": "two"}]
    assert finding_identities(twice) == ["q.q|one", "q.q|two"]
    prev = {
        "status": "warning",
        "findings": [{"code": "x.y", "severity": "warning", "title": "3", "data": {"path": "/a"}}],
    }
    cur = {
        "status": "critical",
        "findings": [{"code": "x.y", "severity": "critical", "title": "9", "data": {"path": "/a"}}],
    }
    s = since_last(prev, cur, "report-1.json")
    assert s["new"] == [] and s["resolved"] == []
    assert s["still_open"][0]["severity_was"] == "warning"
    assert s["status_change"] == {"from": "warning", "to": "critical"}


def test_a_corrupt_previous_report_is_skipped_with_a_note(tmp_path):
    (tmp_path / "report-20240101T000000Z.json").write_text("{not json")
    write_history(make_report(), tmp_path)
    since = json.loads((tmp_path / "latest.json").read_text())["since_last"]
    assert since["previous"] is None
    assert "not valid JSON" in since["note"]


def test_another_workspaces_report_is_not_compared(tmp_path):
    write_history(make_report(workspace="/other"), tmp_path)
    write_history(make_report(generated_at="2024-05-01T13:00:00+00:00"), tmp_path)
    since = json.loads((tmp_path / "latest.json").read_text())["since_last"]
    assert since["previous"] is None and "another workspace" in since["note"]


def test_non_default_format_is_kept_too(tmp_path):
    write_history(make_report(), tmp_path, fmt="prom", keep=1)
    write_history(make_report(generated_at="2024-05-01T13:00:00+00:00"), tmp_path, fmt="prom", keep=1)
    assert reports(tmp_path, "prom") == ["report-20240501T130000Z.prom"]
    assert (tmp_path / "latest.prom").read_text().startswith("# HELP healthkit_info")


SCRIPT = """
import sys, healthkit.core.api as api
from healthkit.core.registry import Registry, check
from healthkit import Finding, Severity
@check('x', title='X')
def x(ws): return [Finding('disk.low-space', Severity.WARNING, 'Pl\\u00e4tze knapp \\u2013 95% voll \\U0001f6a8', ['p'])]
reg = Registry(); reg.add(x)
api.default_registry = lambda plugins=(), base=None: reg
from healthkit.cli import main
sys.argv = ['healthkit', 'audit', sys.argv[1], '--output', sys.argv[2]]
main()
"""


@pytest.mark.parametrize(
    "env_extra",
    [
        {},  # what cron gives: no LANG, no LC_* at all
        {"LC_ALL": "C", "PYTHONCOERCECLOCALE": "0", "PYTHONUTF8": "0"},  # plain ASCII locale, Python's UTF-8 mode off
    ],
    ids=["no-locale", "ascii-locale"],
)
def test_cron_without_a_locale_still_writes_utf8(tmp_path, env_extra):
    """Emoji, a non-ASCII title and a non-ASCII workspace path are written as UTF-8 whatever the locale."""
    ws = tmp_path / "w\u00f6rkspace"
    ws.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LC_", "LANG", "PYTHONIOENCODING", "PYTHONUTF8"))}
    env.update(env_extra)
    out = tmp_path / "reports"
    proc = subprocess.run([sys.executable, "-c", SCRIPT, str(ws), f"{out}/"], env=env, capture_output=True, timeout=60)
    assert proc.returncode == 1, proc.stderr.decode("utf-8", "replace")
    md = (out / "latest.md").read_bytes().decode("utf-8")
    assert "PL\u00c4TZE KNAPP \u2013 95% VOLL \U0001f6a8" in md and "w\u00f6rkspace" in md
    data = json.loads((out / "latest.json").read_bytes().decode("utf-8"))
    assert data["findings"][0]["title"] == "Pl\u00e4tze knapp \u2013 95% voll \U0001f6a8"


def test_folder_json_matches_the_published_report_schema(tmp_path):
    jsonschema = pytest.importorskip("jsonschema", reason="jsonschema not installed (dev extra)")
    schema = json.loads(
        (Path(__file__).resolve().parents[2] / "healthkit" / "schemas" / "report.schema.json").read_text()
    )
    write_history(make_report(), tmp_path)
    write_history(make_report(generated_at="2024-05-01T13:00:00+00:00"), tmp_path)
    data = json.loads((tmp_path / "latest.json").read_text(encoding="utf-8"))
    jsonschema.validate(data, schema)
    assert set(data["since_last"]) == {"previous", "status_change", "new", "resolved", "still_open", "note"}
    assert data["chart"]["file"] == "loss-20240501T130000Z.png"
