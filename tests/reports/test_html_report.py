"""`--format html`: a self-contained page with everything the Markdown report has; escaped; the index of a reports folder.

The browser half (tests/chromium.py) loads the pages in headless Chromium: the DOM holds
every finding code and the SVG chart, a screenshot is not blank, the console has no error,
and hostile text stays text.
"""

from __future__ import annotations

import dataclasses
import json
import re
import shutil
from html import escape
from pathlib import Path

from hkreports import BLOAT, DEAD, FACTS, make_report, write_state

from healthkit.core.findings import Evidence
from healthkit.reporting.render import render
from healthkit.reporting.svgchart import nice_ticks
from tests import chromium

REPO = Path(__file__).resolve().parents[2]
EXAMPLE_HTML = REPO / "reports" / "example-machine.html"
HOSTILE = '<img src=x onerror="document.title=\'pwned\'"><script>document.title="pwned"</script>'
_URL = re.compile(r"""(?:src|href|url)\s*[=(]\s*["']?\s*(?:https?:)?//""", re.I)


def _hostile_report():
    dead = dataclasses.replace(
        DEAD,
        title=f"Daemon {HOSTILE}",
        problem=[f"doc line: {HOSTILE}"],
        evidence=[Evidence(f"cat '{HOSTILE}'", HOSTILE)],
        data={"pid": 4242, "file": HOSTILE},
    )
    return make_report({"daemon": [dead], "checkpoints": [BLOAT]}, workspace=f"/data/{HOSTILE}")


def test_html_has_what_markdown_has(report) -> None:
    html = render(report, "html")
    md = render(report, "md")
    for f in report.findings:
        assert f'id="{f.code}"' in html and f.code in md
        for line in f.problem + f.impact + f.root_cause + f.recommendations:
            assert line in md and escape(line) in html, line
        for e in f.evidence:
            assert e.command in html
    for section in (
        "What's working",
        "Recommendations",
        "Root cause analysis",
        "Current training status",
        "Checks run",
    ):
        assert f"<h2>{section}</h2>" in html, section
    assert "<details><summary>Evidence" in html  # collapsible evidence
    assert "@media print" in html
    assert "#c62828" in html and 'class="finding critical"' in html  # severity colours


def test_loss_chart_is_inline_svg_of_the_log_history(report) -> None:
    html = render(report, "html")
    svg = html[html.index("<svg") : html.index("</svg>")]
    lines = re.findall(r'<polyline class="series" data-label="([^"]+)"[^>]* points="([^"]+)"', svg)
    assert [label for label, _ in lines] == ["training loss", "validation loss"]
    counts = [len(points.split()) for _, points in lines]
    assert counts == [len(FACTS["log_history"]["train"]), len(FACTS["log_history"]["eval"])]
    assert "matplotlib" not in html and "<script" not in html


def test_no_network_no_script_everything_escaped() -> None:
    html = render(_hostile_report(), "html")
    assert "<img" not in html and "<script" not in html and 'onerror="' not in html
    assert "&lt;img src=x onerror=" in html
    assert not _URL.search(html), _URL.search(html)
    assert "default-src 'none'" in html


def test_nice_ticks_are_round_and_cover_the_range() -> None:
    assert nice_ticks(0.0, 1.0) == [0.0, 0.2, 0.4, 0.6, 0.8, 1.0]
    assert nice_ticks(13, 988, 5)[:2] == [200.0, 400.0]
    assert nice_ticks(1.0, 1.0)  # a flat series still gets an axis


def test_output_folder_writes_latest_html_and_an_index(workspace, cli, tmp_path) -> None:
    out = tmp_path / "reports"
    write_state(
        workspace,
        [{"code": "daemon.dead", "severity": "critical", "title": "dead", "data": {"pid_file": "/ws/.daemon.pid"}}],
        facts={"log_history": FACTS["log_history"]},
    )
    assert cli("audit", workspace, "--output", out).exit_code == 2
    write_state(workspace, [{"code": "checkpoints.bloat", "severity": "warning", "title": "12 checkpoints"}])
    assert cli("audit", workspace, "--output", out).exit_code == 1
    # oldest first; `-2` is a second report within the same second
    htmls = sorted((p.name for p in out.glob("report-*.html")), key=lambda n: (n[7:23], int(n[24:-5] or 1)))
    assert len(htmls) == 2 and (out / "latest.html").read_text() == (out / htmls[-1]).read_text()
    assert not list(out.glob(".*tmp*"))  # atomic writes leave nothing behind
    index = (out / "index.html").read_text(encoding="utf-8")
    rows = re.findall(r"<tr><td>(.*?)</tr>", index)
    assert len(rows) == 2
    assert htmls[-1] in rows[0] and htmls[0] in rows[1]  # newest first, each linking its report
    assert "<code>checkpoints.bloat</code>" in rows[0].split("</td>")[5]  # new since the one before
    assert "<code>daemon.dead</code>" in rows[0].split("</td>")[6]  # resolved since the one before
    assert "Findings per report" in index and index.count('class="series"') == 3


def test_keep_prunes_html_and_the_index_follows(workspace, cli, tmp_path) -> None:
    out = tmp_path / "reports"
    write_state(workspace, [{"code": "checkpoints.bloat", "severity": "warning", "title": "12 checkpoints"}])
    for _ in range(3):
        assert cli("audit", workspace, "--output", out, "--keep", "2").exit_code == 1
    assert len(list(out.glob("report-*.html"))) == 2
    assert len(re.findall(r"<tr><td>", (out / "index.html").read_text())) == 2


# --- in a real browser -------------------------------------------------------------------------


def test_example_report_in_chromium(tmp_path: Path) -> None:
    data = json.loads(EXAMPLE_HTML.with_suffix(".json").read_text(encoding="utf-8"))
    codes = {f["code"] for f in data["findings"]}
    assert len(codes) >= 5
    page = tmp_path / "example-machine.html"
    shutil.copyfile(EXAMPLE_HTML, page)
    r = chromium.dump_dom(page.as_uri())
    for code in codes:
        assert f'id="{code}"' in r.stdout, code
    assert "<svg" in r.stdout and r.stdout.count('class="series"') >= 1
    assert r.script_errors == [], r.script_errors
    shot = tmp_path / "shot.png"
    r = chromium.screenshot(page.as_uri(), shot, size=(1000, 2400))  # verdict, training, chart, first findings
    chromium.assert_not_blank(shot)
    chromium.keep(shot, "example-machine.png")
    assert r.script_errors == [], r.script_errors


def test_hostile_text_renders_as_text_in_chromium(tmp_path: Path) -> None:
    page = tmp_path / "hostile.html"
    page.write_text(render(_hostile_report(), "html"), encoding="utf-8")
    r = chromium.dump_dom(page.as_uri())
    title = r.stdout.split("<title>")[1].split("</title>")[0]
    assert "<img" not in r.stdout and "<script" not in r.stdout
    assert title.startswith("healthkit CRITICAL: /data/&lt;img") and title != "pwned"  # no handler ran
    assert "&lt;img src=x onerror=" in r.stdout  # shown, as text
    assert r.script_errors == [], r.script_errors


def test_index_page_in_chromium(workspace, cli, tmp_path: Path) -> None:
    out = tmp_path / "reports"
    dead = {"code": "daemon.dead", "severity": "critical", "title": "dead"}
    bloat = {"code": "checkpoints.bloat", "severity": "warning", "title": "bloat", "data": {"dir": "current_model"}}
    drift = {"code": "config.doc-drift", "severity": "warning", "title": "drift", "data": {"doc": "CLAUDE.md"}}
    for findings in ([dead, bloat, drift], [bloat, drift], [drift], []):
        write_state(workspace, findings)
        cli("audit", workspace, "--output", out)
    r = chromium.dump_dom((out / "index.html").as_uri())
    assert r.stdout.count("<tr><td>") == 4 and "<svg" in r.stdout and r.script_errors == []
    shot = tmp_path / "index.png"
    chromium.screenshot((out / "index.html").as_uri(), shot, size=(1000, 700))
    chromium.assert_not_blank(shot, min_colours=4, max_share=0.99)
    chromium.keep(shot, "index.png")


def test_cli_format_html_to_stdout_and_file(workspace, cli, tmp_path) -> None:
    write_state(workspace, [{"code": "daemon.dead", "severity": "critical", "title": "<b>dead</b>"}])
    res = cli("audit", workspace, "--format", "html")
    assert res.exit_code == 2 and res.output.startswith("<!DOCTYPE html>") and "&lt;b&gt;dead&lt;/b&gt;" in res.output
    target = tmp_path / "one.html"
    assert cli("audit", workspace, "--format", "html", "--output", target).exit_code == 2
    assert 'id="daemon.dead"' in target.read_text(encoding="utf-8")
    implied = tmp_path / "two.html"  # the extension alone picks the format
    assert cli("audit", workspace, "--output", implied).exit_code == 2
    assert implied.read_text(encoding="utf-8").startswith("<!DOCTYPE html>")


def test_settings_inferred_are_shown_with_their_evidence_and_escaped() -> None:
    """The Markdown report lists detected settings; the page does too (a wrong guess must be visible to be pinned)."""
    import dataclasses

    from hkreports import make_report

    report = dataclasses.replace(
        make_report(),
        settings_inferred=[
            {
                "setting": "status_keys.val_loss",
                "value": "validation_loss",
                "evidence": 'status file has "validation_loss": 0.512 and no <val_loss>',
            }
        ],
    )
    page = render(report, "html")
    assert 'id="settings-inferred"' in page and "status_keys.val_loss" in page
    assert "no &lt;val_loss&gt;" in page and "<val_loss>" not in page
    assert "Settings inferred" not in render(make_report(), "html")
