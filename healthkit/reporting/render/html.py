"""HTML renderer: one self-contained page with everything the Markdown report has, for a browser.

Self-contained means no request leaves the page: the styles are inline, there is no script,
and the loss chart is inline SVG drawn by ``healthkit.reporting.svgchart``. Every value that comes from
the workspace goes through ``html.escape`` (the ``_e`` helper), so a doc line or file name
holding markup shows as text. Each finding has an anchor named after its code
(``#daemon.dead``; a second finding with the same code gets ``#daemon.dead-2``).
"""

from __future__ import annotations

import re
from html import escape
from typing import TYPE_CHECKING, Any

from healthkit.core.findings import Finding, Severity, Status
from healthkit.reporting.render.markdown import URGENCY, _training_block, assessment, fix_command

if TYPE_CHECKING:
    from healthkit.core.report import Report

SEVERITY_COLORS = {
    "critical": "#c62828",
    "warning": "#b26a00",
    "info": "#1565c0",
    "ok": "#2e7d32",
    "unknown": "#6a1b9a",
}
_TICKS = re.compile(r"`([^`\n]+)`")
TRAIN_COLOR = "#1f77b4"
EVAL_COLOR = "#d62728"

STYLE = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0 auto;max-width:980px;padding:16px 24px;color:#222;line-height:1.45}
h1{font-size:1.6em;margin-bottom:.2em}h2{border-bottom:2px solid #eee;padding-bottom:.2em;margin-top:1.6em}
.meta{color:#555;font-size:.9em}.verdict{display:inline-block;padding:.3em .8em;border-radius:6px;color:#fff;font-weight:bold}
.badge{display:inline-block;padding:0 .5em;border-radius:4px;color:#fff;font-size:.8em;font-weight:bold;text-transform:uppercase}
.finding{border-left:6px solid #999;background:#fafafa;margin:1em 0;padding:.5em 1em;border-radius:4px}
.finding.critical{border-color:#c62828;background:#fdecea}.finding.warning{border-color:#b26a00;background:#fff8e1}
.finding.info{border-color:#1565c0;background:#e8f0fe}.finding h3{margin:.3em 0}
code{background:#eee;padding:0 .25em;border-radius:3px;font-size:.92em}
pre{background:#1e1e1e;color:#eee;padding:.7em;border-radius:4px;overflow-x:auto;white-space:pre-wrap;word-break:break-word}
details>summary{cursor:pointer;font-weight:bold}table{border-collapse:collapse}td,th{border:1px solid #ddd;padding:.2em .6em;text-align:left}
.counts span{margin-right:1em}svg.chart{max-width:100%;height:auto;background:#fff}a.anchor{color:inherit;text-decoration:none}
@media print{body{max-width:none;padding:0;font-size:10.5pt}details::details-content{display:block;content-visibility:visible}
pre{background:#f4f4f4;color:#000;border:1px solid #ccc}.finding{break-inside:avoid}a{color:inherit;text-decoration:none}
h2{break-after:avoid}.verdict,.badge{color:#000;border:1px solid #000;background:none!important}}
"""


def _e(value: Any) -> str:
    """Escaped text of any value (quotes too: the result may land in an attribute)."""
    return escape(str(value), quote=True)


def _t(value: Any) -> str:
    """Escaped prose, with the `backtick` spans our checks write shown as code."""
    return _TICKS.sub(r"<code>\1</code>", _e(value))


def _list(items: list[str]) -> str:
    return "<ul>" + "".join(f"<li>{_t(x)}</li>" for x in items) + "</ul>"


def _badge(sev: str) -> str:
    return f'<span class="badge" style="background:{SEVERITY_COLORS.get(sev, "#666")}">{_e(sev)}</span>'


def anchors(findings: list[Finding]) -> list[str]:
    """One anchor per finding: its code, then ``code-2``, ``code-3`` for repeats."""
    seen: dict[str, int] = {}
    out = []
    for f in findings:
        n = seen[f.code] = seen.get(f.code, 0) + 1
        out.append(f.code if n == 1 else f"{f.code}-{n}")
    return out


def _finding(anchor: str, f: Finding) -> list[str]:
    sev = f.severity.value
    out = [
        f'<section class="finding {sev}" id="{_e(anchor)}">',
        f'<h3><a class="anchor" href="#{_e(anchor)}">{_e(f.title)}</a> {_badge(sev)}</h3>',
        f"<p><code>{_e(f.code)}</code> · check <code>{_e(f.check)}</code></p>",
    ]
    for label, items in (("Problem", f.problem), ("Impact", f.impact)):
        if items:
            out.append(f"<p><strong>{label}:</strong></p>{_list(items)}")
    if f.evidence:
        body = "\n\n".join(f"$ {e.command}\n{e.observed}".rstrip() for e in f.evidence)
        out.append(f"<details><summary>Evidence ({len(f.evidence)})</summary><pre>{_e(body)}</pre></details>")
    if f.root_cause:
        out.append(f"<p><strong>Root cause:</strong></p>{_list(f.root_cause)}")
    if f.fixes:
        fixes = ", ".join(f"<code>{_e(x.id)}</code> ({_e(x.safety)}): {_e(x.title)}" for x in f.fixes)
        out.append(f"<p><strong>Fixes:</strong> {fixes}</p>")
    return out + ["</section>"]


def _since(since: dict[str, Any]) -> list[str]:
    out = ["<h2>Since last report</h2>"]
    prev = since.get("previous")
    if prev:
        change = since.get("status_change")
        verdict = (
            f"verdict {_e(str(change['from']).upper())} → {_e(str(change['to']).upper())}"
            if change
            else f"verdict unchanged ({_e(str(prev.get('status') or '?').upper())})"
        )
        out.append(
            f"<p>Compared with <code>{_e(prev.get('file'))}</code> ({_e(prev.get('generated_at'))}): {verdict}.</p>"
        )
        for key, label in (("new", "New"), ("resolved", "Resolved"), ("still_open", "Still open")):
            items = since.get(key) or []
            rows = "".join(
                f"<li>{_badge(str(i.get('severity')))} <code>{_e(i.get('code'))}</code>: {_e(i.get('title'))}"
                + (f" (was {_e(i['severity_was'])})" if i.get("severity_was") else "")
                + "</li>"
                for i in items
            )
            out.append(
                f"<p><strong>{label} ({len(items)}):</strong>{'' if items else ' none'}</p>"
                + (f"<ul>{rows}</ul>" if rows else "")
            )
    if since.get("note"):
        out.append(f"<p>{_e(since['note'])}</p>")
    return out


def _chart(report: Report) -> list[str]:
    from healthkit.reporting.chart import caption, loss_series, no_chart_reason
    from healthkit.reporting.svgchart import Series, line_chart

    train, evals = loss_series(report.facts)
    out = ['<h2 id="loss-chart">Loss curve</h2>']
    if not train and not evals:
        return out + [f"<p>{_e(no_chart_reason(report.facts))}</p>"]
    svg = line_chart(
        [Series("training loss", TRAIN_COLOR, train), Series("validation loss", EVAL_COLOR, evals, dots=True)],
        title="Training and validation loss",
        x_label="step",
        y_label="loss",
    )
    return out + [f"<figure>{svg}<figcaption>{_e(caption(train, evals))}</figcaption></figure>"]


def _findings(report: Report) -> list[str]:
    findings = report.findings
    ids = dict(zip(map(id, findings), anchors(findings)))
    serious = [f for f in findings if f.severity is not Severity.INFO]
    infos = [f for f in findings if f.severity is Severity.INFO]
    crit = any(f.severity is Severity.CRITICAL for f in serious)
    out = ["<h2>" + ("Critical issues found" if crit else "Issues found" if serious else "No issues found") + "</h2>"]
    for f in serious:
        out += _finding(ids[id(f)], f)
    if infos:
        out.append("<h2>Notes</h2>")
        for f in infos:
            out += _finding(ids[id(f)], f)
    return out


def _unknown(report: Report) -> list[str]:
    unknown = [r for r in report.sorted_results if r.status is Status.UNKNOWN]
    if not unknown and not report.load_errors:
        return []
    items = [
        f"<li><code>{_e(r.check)}</code> ({_e(r.title)}): {_e(r.error or '; '.join(r.notes) or 'no verdict')}</li>"
        for r in unknown
    ]
    items += [f"<li>{_e(e.source)}: {_e(e.message)}</li>" for e in report.load_errors]
    return ["<h2>Could not check</h2>", "<ul>" + "".join(items) + "</ul>"]


def _working(report: Report) -> list[str]:
    if not report.healthy:
        return []
    items = "".join(
        f"<li><strong>{_e(h.title)}</strong>{_list(h.details) if h.details else ''}</li>" for h in report.healthy
    )
    return ["<h2>What's working</h2>", f"<ol>{items}</ol>"]


def _not_judged(report: Report) -> list[str]:
    items = report.facts.get("not_judged") or {}
    if not isinstance(items, dict) or not items:
        return []
    lis = "".join(f"<li><strong>{_e(what)}</strong>: {_e(why)}</li>" for what, why in sorted(items.items()))
    return ["<h2>Not judged</h2>", f"<ul>{lis}</ul>"]


def _recommendations(report: Report) -> list[str]:
    findings = report.findings
    if not findings:
        return []
    ids = dict(zip(map(id, findings), anchors(findings)))
    out = ["<h2>Recommendations</h2>"]
    ws = report.workspace
    for key, label in URGENCY:
        group = [f for f in findings if f.urgency == key]
        if not group:
            continue
        out.append(f"<h3>{_e(label)}</h3><ol>")
        for f in group:
            items = [_t(r) for r in f.recommendations]
            safe = [x for x in f.fixes if x.safety == "safe"]
            unsafe = [x for x in f.fixes if x.safety != "safe"]
            if safe:
                items.append(
                    f"Fix: <code>{_e(fix_command(ws, f.code, safe, 'safe'))}</code> "
                    f"({_e(', '.join(x.title for x in safe))})"
                )
            if unsafe:
                items.append(
                    f"Unsafe fix, only if you accept the risk: <code>{_e(fix_command(ws, f.code, unsafe, 'unsafe'))}"
                    f"</code> ({_e(', '.join(x.title for x in unsafe))})"
                )
            sub = "".join(f"<li>{i}</li>" for i in items)
            out.append(
                f'<li><a href="#{_e(ids[id(f)])}"><strong>{_e(f.title)}</strong></a> (<code>{_e(f.code)}</code>)'
                f"<ul>{sub}</ul></li>"
            )
        out.append("</ol>")
    return out


def _root_causes(report: Report) -> list[str]:
    if not report.findings:
        return []
    out = ["<h2>Root cause analysis</h2>"]
    seen: set[str] = set()
    for f in report.findings:
        if f.code in seen:
            continue
        seen.add(f.code)
        doc = report.code_docs.get(f.code)
        items = ([f"Why it matters: {doc.why}"] if doc else []) + list(f.root_cause)
        out.append(
            f"<p><strong>Pattern:</strong> {_e(doc.title if doc else f.title)} (<code>{_e(f.code)}</code>)</p>"
            + (_list(items) if items else "")
        )
    return out


def _training(report: Report) -> list[str]:
    t = report.facts.get("training")
    block = _training_block(t) if isinstance(t, dict) else []
    if not block or not isinstance(t, dict):  # no block without a training table
        return []
    out = ["<h2>Current training status</h2>", f"<pre>{_e(chr(10).join(block))}</pre>"]
    if t.get("verdict"):
        out.append(f"<p><strong>Assessment:</strong> {_t(assessment(t, report.findings))}</p>")
    return out


def _checks(report: Report) -> list[str]:
    rows = "".join(
        f"<tr><td><code>{_e(r.check)}</code></td><td>{_badge(r.status.value)}</td>"
        f"<td>{r.duration_s * 1000:.1f} ms</td></tr>"
        for r in report.sorted_results
    )
    out = [
        "<h2>Checks run</h2>",
        f"<table><tr><th>check</th><th>status</th><th>time</th></tr>{rows}</table>",
        f"<p>Audit took {report.duration_s * 1000:.0f} ms.</p>",
    ]
    if report.settings_file:
        out.append(f"<p>Settings: <code>{_e(report.settings_file)}</code>.</p>")
    out += [f"<p>Note: {_e(n)}</p>" for n in report.notes]
    return out


def _inferred(report: Report) -> list[str]:
    """Each detected setting with its evidence (as in the Markdown report), so a wrong guess can be seen and pinned."""
    if not report.settings_inferred:
        return []
    items = "".join(
        f"<li><code>{_e(i['setting'])}</code>: <code>{_e(i['value'])}</code> ({_e(i['evidence'])})</li>"
        for i in report.settings_inferred
    )
    return [
        '<h2 id="settings-inferred">Settings inferred</h2>',
        "<p>Not stated in healthkit.toml, so detected from the workspace (<code>healthkit init --detect</code> "
        "writes them there):</p>",
        f"<ul>{items}</ul>",
    ]


def _header(report: Report) -> list[str]:
    status = report.status.value
    counts = report.counts()
    spans = "".join(f"<span>{_badge(k)} {v}</span>" for k, v in counts.items())
    return [
        f"<h1>System health report · {_e(report.generated_at[:10])}</h1>",
        f'<p class="meta">Workspace <code>{_e(report.workspace)}</code> · host <code>{_e(report.hostname)}</code> · '
        f"{_e(report.generated_at)} · healthkit {_e(report.version)}</p>",
        f'<p><span class="verdict" id="verdict" style="background:{SEVERITY_COLORS.get(status, "#666")}">Verdict: '
        f"{_e(status.upper())}</span> {_e(report.summary_line())}</p>",
        f'<p class="counts">{spans}</p>',
    ]


def render(report: Report, since: dict[str, Any] | None = None, **_: Any) -> str:
    body = _header(report)
    if since is not None:
        body += _since(since)
    # The run at a glance first (a page is looked at before it is read), then the Markdown report's order.
    body += _training(report) + _chart(report)
    body += (
        _findings(report)
        + _unknown(report)
        + _working(report)
        + _not_judged(report)
        + _recommendations(report)
        + _root_causes(report)
    )
    body += _inferred(report) + _checks(report)
    title = f"healthkit {report.status.value.upper()}: {report.workspace}"
    return page(title, "\n".join(body))


def page(title: str, body: str, extra_style: str = "") -> str:
    """A whole document: doctype, charset, a Content-Security-Policy that allows nothing from elsewhere, inline style."""
    csp = "default-src 'none'; style-src 'unsafe-inline'; img-src data:"
    return (
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{csp}">'
        f'<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{_e(title)}</title><style>{STYLE}{extra_style}</style></head>\n<body>\n{body}\n</body></html>\n"
    )
