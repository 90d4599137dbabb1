"""The fleet page, `DIR/index.html`: one row per workspace history folder under DIR, worst verdict first.

It is rebuilt from each `DIR/<workspace>/latest.json` on every run, so a workspace that left
the job (or whose job stopped) keeps its row and shows how old its newest report is, instead
of silently disappearing from the page.
"""

from __future__ import annotations

import os
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from healthkit.reporting.htmlindex import INDEX, SEVERITIES, read_summary
from healthkit.reporting.render.html import _badge, _e, page
from healthkit.system.fsutil import atomic_write, utf8

_RANK = {"critical": 0, "unknown": 1, "warning": 2, "ok": 3}
_STYLE = "table.fleet td:nth-child(n+6){white-space:nowrap} table.fleet td:first-child small{color:#555}"


def age_text(seconds: float) -> str:
    """`45s`, `12m`, `3h 5m`, `2d 4h`: how old a report is, at a glance."""
    s = max(0, int(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m"
    if s < 86400:
        return f"{s // 3600}h {s % 3600 // 60}m"
    return f"{s // 86400}d {s % 86400 // 3600}h"


def _epoch(text: Any) -> float | None:
    try:
        return datetime.fromisoformat(str(text).replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def rows(folder: Path, now: float | None = None) -> list[dict[str, Any]]:
    """One summary per subfolder holding a readable `latest.json`, worst verdict first, then by workspace."""
    now = time.time() if now is None else now
    out = []
    try:
        names = sorted(os.listdir(folder))
    except OSError:
        names = []
    for name in names:
        if (read := read_summary(folder / name / "latest.json")) is None:
            continue
        data, counts = read
        errors = [r.get("error") for r in data.get("checks") or [] if isinstance(r, dict) and r.get("error")]
        when = _epoch(data.get("generated_at"))
        out.append(
            {
                "folder": name,
                "workspace": str(data.get("workspace") or name),
                "status": str(data.get("status") or "unknown"),
                "counts": counts,
                "time": str(data.get("generated_at") or ""),
                "age_s": None if when is None else now - when,
                "error": str(errors[0]) if errors else None,
                "goodput": _goodput(data),
            }
        )
    return sorted(out, key=lambda r: (_RANK.get(r["status"], 1), r["workspace"]))


def _goodput(data: dict[str, Any]) -> str:
    g = data.get("goodput")
    ratio = g.get("ratio") if isinstance(g, dict) else None
    if not isinstance(ratio, (int, float)) or not isinstance(g, dict):  # a ratio only comes from a table
        return "?"
    return f"{ratio:.0%}" + (" (est.)" if g.get("estimate") else "")


def render_fleet_page(folder: Path, now: float | None = None) -> str:
    rs = rows(folder, now)
    head = (
        "<tr><th>workspace</th><th>verdict</th><th>critical</th><th>warning</th><th>info</th>"
        "<th>goodput</th><th>newest report</th><th>age</th><th>history</th></tr>"
    )
    body = []
    for r in rs:
        counts = "".join(f"<td>{r['counts'][s]}</td>" for s in SEVERITIES)
        why = f"<br><small>{_e(r['error'])}</small>" if r["error"] else ""
        age = "?" if r["age_s"] is None else age_text(r["age_s"])
        link = f"{r['folder']}/{INDEX}"
        body.append(
            f"<tr><td><code>{_e(r['workspace'])}</code>{why}</td><td>{_badge(r['status'])}</td>{counts}"
            f"<td>{_e(r['goodput'])}</td><td>{_e(r['time'].replace('T', ' ').replace('+00:00', 'Z'))}</td><td>{_e(age)}</td>"
            f'<td><a href="{_e(link)}">{_e(r["folder"])}</a></td></tr>'
        )
    table = (
        f'<table class="fleet">{head}{"".join(body)}</table>'
        if rs
        else "<p>No workspace reports in this folder yet.</p>"
    )
    stamp = time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime(time.time() if now is None else now))
    body_html = (
        f'<h1>healthkit fleet</h1><p class="meta">{len(rs)} workspace(s); page written {_e(stamp)} '
        f"(ages are as of then).</p>{table}"
    )
    return page("healthkit fleet", body_html, extra_style=_STYLE)


def write_fleet_page(folder: Path) -> Path:
    """Rebuild `folder/index.html` from the workspace folders under it."""
    target = folder / INDEX
    atomic_write(target, utf8(render_fleet_page(folder)))
    return target
