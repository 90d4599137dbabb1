"""The browser side of a reports folder: `report-<stamp>.html`, `latest.html` and `index.html`.

`index.html` is rebuilt from the JSON reports in the folder on every run (one row per report:
time, verdict, counts by severity, what is new and resolved since the one before, a link),
with a small inline-SVG chart of findings over time. It reads only files the history
module names (`report-<stamp>.json`), so retention keeps the index and the folder in step.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from healthkit.reporting.render.html import SEVERITY_COLORS, _badge, _e, page
from healthkit.reporting.svgchart import Series, line_chart
from healthkit.system.fsutil import ReadProblem, atomic_write, read_json, utf8

if TYPE_CHECKING:
    from healthkit.core.report import Report

INDEX = "index.html"
SEVERITIES = ("critical", "warning", "info")


def write_html_pages(report: Report, folder: Path, name: str, since: dict[str, Any], fmt: str) -> list[Path]:
    """The HTML report beside the Markdown and JSON ones and `latest.html` (nothing when ``fmt`` already wrote them)."""
    from healthkit.reporting.render import render

    if fmt == "html":
        return []
    text = utf8(render(report, "html", since=since))
    for path in (folder / f"{name}.html", folder / "latest.html"):
        atomic_write(path, text)
    return [folder / f"{name}.html", folder / "latest.html"]


def write_index(folder: Path, json_reports: list[Path]) -> Path:
    """Rebuild `index.html` from the folder's JSON reports (``json_reports``, oldest first, as history lists them)."""
    index = folder / INDEX
    atomic_write(index, utf8(render_index(folder, json_reports)))
    return index


def read_summary(path: Path) -> tuple[dict[str, Any], dict[str, int]] | None:
    """A JSON report and its findings counted by severity; None when it is unreadable or not a report."""
    try:
        data = read_json(path)
    except ReadProblem:
        return None
    if not isinstance(data, dict) or not isinstance(data.get("findings"), list):
        return None
    counts = dict.fromkeys(SEVERITIES, 0)
    for f in data["findings"]:
        if isinstance(f, dict) and f.get("severity") in counts:
            counts[f["severity"]] += 1
    return data, counts


def _rows(json_reports: list[Path]) -> list[dict[str, Any]]:
    """One summary per readable JSON report, in the order given (oldest first)."""
    rows = []
    for p in json_reports:
        if (read := read_summary(p)) is None:
            continue
        data, counts = read
        since = got if isinstance(got := data.get("since_last"), dict) else {}
        html = p.with_suffix(".html")
        rows.append(
            {
                "file": p.name,
                "link": html.name if html.exists() else p.with_suffix(".md").name,
                "time": str(data.get("generated_at") or ""),
                "status": str(data.get("status") or "unknown"),
                "counts": counts,
                "new": since.get("new") or [],
                "resolved": since.get("resolved") or [],
            }
        )
    return rows


def _codes(items: list[Any]) -> str:
    codes = [f"<code>{_e(i.get('code'))}</code>" for i in items if isinstance(i, dict)]
    return f"{len(codes)}: " + ", ".join(codes) if codes else "0"


def _table(rows: list[dict[str, Any]]) -> str:
    head = "<tr><th>time</th><th>verdict</th><th>critical</th><th>warning</th><th>info</th><th>new</th><th>resolved</th><th>report</th></tr>"
    body = []
    for r in reversed(rows):  # newest first
        counts = "".join(f"<td>{r['counts'][s]}</td>" for s in SEVERITIES)
        when = r["time"].replace("T", " ").replace("+00:00", "Z")
        body.append(
            f"<tr><td>{_e(when)}</td><td>{_badge(r['status'])}</td>{counts}<td>{_codes(r['new'])}</td>"
            f'<td>{_codes(r["resolved"])}</td><td><a href="{_e(r["link"])}" title="{_e(r["link"])}">'
            f"{_e(Path(r['link']).suffix[1:])}</a></td></tr>"
        )
    return f'<table class="history">{head}{"".join(body)}</table>'


def render_index(folder: Path, json_reports: list[Path]) -> str:
    """The history page of ``folder``, newest report first."""
    rows = _rows(json_reports)
    chart = line_chart(
        [
            Series(
                s, SEVERITY_COLORS[s], [(float(i + 1), float(r["counts"][s])) for i, r in enumerate(rows)], dots=True
            )
            for s in SEVERITIES
        ],
        title="Findings per report",
        x_label="report (oldest to newest)",
        y_label="findings",
        width=560,
        height=200,
        y_from_zero=True,
        integer_x=True,
    )
    latest = '<p><a href="latest.html">Latest report</a></p>' if (folder / "latest.html").exists() else ""
    body = (
        f'<h1>healthkit reports</h1><p class="meta">{len(rows)} report(s) in this folder.</p>{latest}'
        f"<figure>{chart}</figure>{_table(rows)}"
    )
    return page("healthkit reports", body)
