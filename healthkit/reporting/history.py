"""A reports folder for cron: timestamped Markdown and JSON, `latest.*` replaced atomically, a retention limit,
and what changed since the previous report (new, resolved, still open).

The comparison reads the previous JSON in the folder, so it survives restarts and needs
no state of its own. A finding is the same finding across runs when its code and its
identity (the stable facts in ``data``: doc, path, key, ...) match; counts and PIDs in the
title may change without making it "new". Retention deletes only files this module names
(`report-<stamp>.<ext>`, `loss-<stamp>.png`), never `latest.*`, never anything else.
"""

from __future__ import annotations

import os
import re
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from healthkit.core.findings import finding_identity
from healthkit.reporting.render import EXTENSIONS, render
from healthkit.system.fsutil import ReadProblem, atomic_write, read_json, utf8
from healthkit.system.jsonio import dumps

if TYPE_CHECKING:
    from healthkit.core.report import Report

DEFAULT_KEEP = 50
_REPORT_RE = re.compile(r"^report-(\d{8}T\d{6}Z)(?:-(\d+))?\.([a-z]+)$")
_CHART_RE = re.compile(r"^loss-(\d{8}T\d{6}Z)(?:-(\d+))?\.png$")
_TMP_RE = re.compile(r"^\.(?:report-|loss-|latest|index)[^/]*\.tmp-\d+-\d+$")
_STALE_TMP_S = 3600


def stamp_of(generated_at: str) -> str:
    """`20240501T120000Z` from an ISO time, in UTC, so file names sort in time order."""
    try:
        dt = datetime.fromisoformat(generated_at.replace("Z", "+00:00"))
    except ValueError:
        dt = datetime.now(UTC)
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")


def _order(m: re.Match[str]) -> tuple[str, int]:
    return m.group(1), int(m.group(2) or 1)


def finding_identities(findings: list[dict[str, Any]]) -> list[str]:
    """A stable key per finding: its code plus the identifying facts in ``data`` (unique within one report)."""
    base = [finding_identity(str(f.get("code")), f.get("data")) for f in findings]
    out: list[str] = []
    seen: dict[str, int] = {}
    for ident, f in zip(base, findings):
        if base.count(ident) > 1:
            ident = f"{ident}|{f.get('title', '')}"
        n = seen[ident] = seen.get(ident, 0) + 1
        out.append(ident if n == 1 else f"{ident}#{n}")
    return out


def _item(ident: str, f: dict[str, Any]) -> dict[str, Any]:
    return {
        "identity": ident,
        "code": f.get("code"),
        "severity": f.get("severity"),
        "check": f.get("check"),
        "title": f.get("title"),
    }


def since_last(
    previous: dict[str, Any] | None, current: dict[str, Any], previous_file: str | None = None
) -> dict[str, Any]:
    """New, resolved and still-open findings between two report dicts (the JSON report's shape)."""
    cur = current.get("findings") or []
    cur_ids = dict(zip(finding_identities(cur), cur))
    if previous is None:
        return {
            "previous": None,
            "status_change": None,
            "new": [_item(i, f) for i, f in cur_ids.items()],
            "resolved": [],
            "still_open": [],
            "note": "First report in this folder: nothing to compare with.",
        }
    prev = [f for f in previous.get("findings") or [] if isinstance(f, dict)]
    prev_ids = dict(zip(finding_identities(prev), prev))
    still = []
    for i, f in cur_ids.items():
        if i in prev_ids:
            item = _item(i, f)
            if prev_ids[i].get("severity") != f.get("severity"):
                item["severity_was"] = prev_ids[i].get("severity")
            still.append(item)
    was, now = previous.get("status"), current.get("status")
    return {
        "previous": {"file": previous_file, "generated_at": previous.get("generated_at"), "status": was},
        "status_change": {"from": was, "to": now} if was != now else None,
        "new": [_item(i, f) for i, f in cur_ids.items() if i not in prev_ids],
        "resolved": [_item(i, f) for i, f in prev_ids.items() if i not in cur_ids],
        "still_open": still,
        "note": None,
    }


def read_previous(folder: Path, workspace: str) -> tuple[dict[str, Any] | None, str | None, str | None]:
    """The newest earlier JSON report in ``folder``: (report, file name, note about why none was usable)."""
    candidates = sorted(
        ((m, p) for p in _list(folder) if (m := _REPORT_RE.match(p.name)) and m.group(3) == "json"),
        key=lambda mp: _order(mp[0]),
        reverse=True,
    )
    paths = [p for _, p in candidates] + [folder / "latest.json"]
    problems = []
    for p in paths:
        try:
            data = read_json(p)
        except ReadProblem as exc:
            if exc.kind != "missing":
                problems.append(exc.message)
            continue
        if not isinstance(data, dict) or not isinstance(data.get("findings"), list):
            problems.append(f"{p} is not a healthkit JSON report")
            continue
        if data.get("workspace") not in (None, workspace):
            return (
                None,
                None,
                f"The previous report in this folder is for another workspace ({data.get('workspace')}); nothing compared.",
            )
        return data, p.name, None
    return None, None, ("Previous report unreadable: " + "; ".join(problems[:2])) if problems else None


def _list(folder: Path) -> list[Path]:
    try:
        return [folder / n for n in os.listdir(folder)]
    except OSError:
        return []


def json_reports(folder: Path) -> list[Path]:
    """The folder's `report-<stamp>.json` files, oldest first (for the HTML index)."""
    found = [(m, p) for p in _list(folder) if (m := _REPORT_RE.match(p.name)) and m.group(3) == "json"]
    return [p for _, p in sorted(found, key=lambda mp: _order(mp[0]))]


def _free_suffix(folder: Path, stamp: str, exts: list[str], reserve: bool = False) -> str:
    """`<stamp>` or, when a run in the same second already wrote one, `<stamp>-2`, `<stamp>-3`, ...

    ``reserve``: claim the name by creating its first file (O_EXCL), so that two scheduled runs that overlap
    (the same second, the same folder) never pick one name and overwrite each other's report.
    """
    n = 1
    while True:
        suffix = stamp if n == 1 else f"{stamp}-{n}"
        taken = [folder / f"report-{suffix}.{e}" for e in exts] + [folder / f"loss-{suffix}.png"]
        if not any(os.path.lexists(p) for p in taken):
            if not reserve:
                return suffix
            try:
                os.close(os.open(taken[0], os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o644))
                return suffix
            except FileExistsError:
                pass  # another run claimed it between the look and the claim
        n += 1


def prune(folder: Path, keep: int = DEFAULT_KEEP) -> list[Path]:
    """Delete all but the newest ``keep`` reports of each format and charts; returns what was deleted."""
    groups: dict[str, list[tuple[tuple[str, int], Path]]] = {}
    now = time.time()
    removed: list[Path] = []
    for p in _list(folder):
        if m := _REPORT_RE.match(p.name):
            groups.setdefault(m.group(3), []).append((_order(m), p))
        elif m := _CHART_RE.match(p.name):
            groups.setdefault("png", []).append((_order(m), p))
        elif _TMP_RE.match(p.name):  # left by a run killed mid-write
            try:
                if now - p.lstat().st_mtime > _STALE_TMP_S:
                    p.unlink()
                    removed.append(p)
            except OSError:
                pass
    for items in groups.values():
        for _, p in sorted(items, key=lambda x: x[0], reverse=True)[keep:]:
            try:
                p.unlink()  # a symlink is removed itself, never followed
                removed.append(p)
            except FileNotFoundError:
                pass
    return removed


def _formats(fmt: str) -> list[str]:
    return ["md", "json"] + ([fmt] if fmt not in ("md", "json") else [])


def planned_name(report: Report, folder: Path, fmt: str = "md") -> str:
    """The `report-<stamp>` name `write_history` will give this report (a message can name the file before it exists)."""
    return f"report-{_free_suffix(folder, stamp_of(report.generated_at), [EXTENSIONS[f] for f in _formats(fmt)])}"


def since_previous(report: Report, folder: Path) -> dict[str, Any]:
    """What changed since the folder's previous report (new, resolved, still open), as the history records it."""
    previous, prev_file, problem = read_previous(folder, report.workspace)
    since = since_last(previous, report.to_dict(), prev_file)
    if problem:
        since["note"] = problem
    return since


def write_history(
    report: Report, folder: Path, fmt: str = "md", ascii: bool = False, keep: int | None = None, **options: Any
) -> list[Path]:
    """Write this report into ``folder`` (Markdown, JSON, and ``fmt`` when it is another), update `latest.*`, prune."""
    keep = DEFAULT_KEEP if keep is None else keep
    if keep < 1:
        raise ValueError(f"keep must be at least 1, not {keep}")
    folder.mkdir(parents=True, exist_ok=True)
    formats = _formats(fmt)
    name = (
        f"report-{_free_suffix(folder, stamp_of(report.generated_at), [EXTENSIONS[f] for f in formats], reserve=True)}"
    )
    suffix = name[len("report-") :]

    data = report.to_dict()
    since = since_previous(report, folder)

    from healthkit.reporting.chart import Chart, write_loss_chart
    from healthkit.reporting.htmlindex import write_html_pages, write_index

    try:
        chart = write_loss_chart(report.facts, folder, suffix)
    except Exception as exc:
        chart = Chart(note=f"No loss chart: drawing it failed ({type(exc).__name__}: {exc}).")
    chart_info = {
        "file": chart.link,
        "latest_file": "latest-loss.png" if chart.link else None,
        "note": chart.note,
        "caption": chart.caption,
    }
    data["since_last"] = since
    data["chart"] = chart_info

    written: list[Path] = [chart.path, folder / "latest-loss.png"] if chart.path else []
    texts = {}
    for f in formats:
        if f == "json":
            texts[f] = dumps(data)
        else:
            texts[f] = render(report, f, ascii=ascii, since=since, chart=chart_info, **options)
    for f in formats:
        path = folder / f"{name}.{EXTENSIONS[f]}"
        atomic_write(path, utf8(texts[f]))
        written.append(path)
    written += write_html_pages(report, folder, name, since, fmt)  # report-<stamp>.html and latest.html
    # latest.json last: it is what the next run compares with.
    for f in sorted(formats, key=lambda f: f == "json"):
        latest = folder / f"latest.{EXTENSIONS[f]}"
        atomic_write(latest, utf8(texts[f]))
        written.append(latest)
    prune(folder, keep)
    written.append(write_index(folder, json_reports(folder)))  # after pruning: the index lists what the folder holds
    return written
