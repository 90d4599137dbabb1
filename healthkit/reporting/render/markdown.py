"""Markdown renderer in the shape of the hand-written health report: issues, what works, what to do."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from healthkit.core.findings import Finding, Progress, Severity, Status
from healthkit.system.safetext import md_code, md_document
from healthkit.system.shellcmd import command

if TYPE_CHECKING:
    from healthkit.core.report import Report

# Findings that mean nothing supervises a training that may still be running.
UNSUPERVISED = ("daemon.dead", "daemon.orphaned-training", "daemon.pid-reused")
URGENCY = [
    ("immediate", "IMMEDIATE (Do Now)"),
    ("short-term", "SHORT-TERM (Next Session)"),
    ("long-term", "LONG-TERM (Future Improvements)"),
]
_ASCII = {
    "🚨": "[!!]",
    "🔴": "[CRIT]",
    "🟡": "[WARN]",
    "🔵": "[INFO]",
    "✅": "[OK]",
    "📋": "",
    "🎯": "",
    "📊": "",
    "⏱": "",
    "🔎": "",
    "⚠️": "[!]",
    "❓": "[?]",
    "…": "...",
    "→": "->",
    "×": "x",
    "°": " deg",
    "≥": ">=",
    "≤": "<=",
}


def _fence(text: str) -> str:
    """A code fence longer than any backtick run inside (evidence may contain ```)."""
    longest = run = 0
    for ch in text:
        run = run + 1 if ch == "`" else 0
        longest = max(longest, run)
    return "`" * max(3, longest + 1)


def _finding(n: int, f: Finding) -> list[str]:
    out = [
        f"### {n}. **{f.title.upper()}** ({f.severity.emoji} {f.severity.value.upper()})",
        "",
        f"`{f.code}` · check `{f.check}`",
        "",
    ]
    for label, items in (("Problem", f.problem), ("Impact", f.impact)):
        if items:
            out += [f"**{label}:**"] + [f"- {x}" for x in items] + [""]
    if f.evidence:
        body = "\n\n".join(f"$ {e.command}\n{e.observed}".rstrip() for e in f.evidence)
        fence = _fence(body)
        out += ["**Evidence:**", f"{fence}bash", body, fence, ""]
    if f.root_cause:
        out += ["**Root Cause:**"] + [f"- {x}" for x in f.root_cause] + [""]
    if f.fixes:
        fixes = ", ".join(f"`{x.id}` ({x.safety}): {x.title}" for x in f.fixes)
        out += [f"**Fixes:** {fixes}", ""]
    out += ["---", ""]
    return out


def _training_block(t: dict[str, Any]) -> list[str]:
    lines = []
    if t.get("state") is not None:
        lines.append(f"State: {t['state']}")
    if t.get("step") is not None:
        total = t.get("total_steps")
        pct = f" ({t['percent']:.0f}%)" if t.get("percent") is not None else ""
        lines.append(f"Step: {t['step']} / {total if total is not None else '?'}{pct}")
    for key, label in (("loss", "Loss"), ("val_loss", "Validation loss"), ("val_train_gap", "Val/train gap")):
        if key in t:
            v = t[key]
            lines.append(
                f"{label}: {v:.4g}" if isinstance(v, (int, float)) else f"{label}: {'null' if v is None else v}"
            )
    if t.get("eta"):
        lines.append(f"ETA: {t['eta']}")
    gpu = t.get("gpu") or {}
    if gpu.get("memory_used_mb") is not None:
        total = gpu.get("memory_total_mb")
        lines.append(
            f"GPU: {gpu['memory_used_mb']:.0f} MB / {total:.0f} MB" if total else f"GPU: {gpu['memory_used_mb']:.0f} MB"
        )
    if gpu.get("temperature_c") is not None:
        lines.append(f"Temperature: {gpu['temperature_c']:.0f}°C")
    if t.get("current_file"):
        lines.append(f"File: {t['current_file']}")
    if t.get("updated_ago"):
        lines.append(f"Status updated: {t['updated_ago']} ago")
    return lines


def assessment(training: dict[str, Any], findings: list[Finding]) -> str:
    """The training verdict, corrected when nothing supervises a run that progresses."""
    verdict = str(training["verdict"])
    if training.get("progress") == Progress.PROGRESSING and any(f.code in UNSUPERVISED for f in findings):
        verdict = (
            "Training is progressing, but nothing supervises it. Let it finish; start the daemon so that it adopts it."
        )
    return verdict


def _since_block(since: dict[str, Any]) -> list[str]:
    """ "Since last report": what is new, what was resolved, what is still open (from the previous JSON)."""
    out = ["## 🔄 SINCE LAST REPORT", ""]
    prev = since.get("previous")
    if prev:
        change = since.get("status_change")
        verdict = (
            f"verdict {change['from'].upper()} → {change['to'].upper()}"
            if change and change.get("from") and change.get("to")
            else f"verdict unchanged ({str(prev.get('status') or '?').upper()})"
        )
        out += [f"Compared with `{prev.get('file')}` ({prev.get('generated_at')}): {verdict}.", ""]
        emoji = {"critical": "🔴", "warning": "🟡", "info": "🔵"}
        for key, label in (("new", "New"), ("resolved", "Resolved"), ("still_open", "Still open")):
            items = since.get(key) or []
            out.append(f"**{label} ({len(items)}):**" + ("" if items else " none"))
            for i in items:
                mark = "✅" if key == "resolved" else emoji.get(str(i.get("severity")), "")
                was = f" (was {i['severity_was']})" if i.get("severity_was") else ""
                out.append(f"- {mark} `{i.get('code')}`: {i.get('title')}{was}")
            out.append("")
    if since.get("note"):
        out += [since["note"], ""]
    return out + ["---", ""]


def _chart_block(chart: dict[str, Any]) -> list[str]:
    out = ["## 📈 LOSS CURVE", ""]
    if chart.get("file"):
        out += [f"![Training and validation loss over steps]({chart['file']})", ""]
    if chart.get("caption"):
        out += [chart["caption"], ""]
    if chart.get("note"):
        out += [f"_{chart['note']}_", ""]
    return out + ["---", ""]


def _inferred_block(inferred: list[dict[str, Any]]) -> list[str]:
    """Each detected setting with its evidence, so a wrong guess can be seen and pinned in healthkit.toml."""
    if not inferred:
        return []
    out = [
        "## 🔎 Settings inferred",
        "",
        "Not stated in healthkit.toml, so detected from the workspace (`healthkit init --detect` writes them there):",
        "",
    ]
    for i in inferred:
        value = i["value"]
        shown = (
            ", ".join(f"`{v}`" for v in value)
            if isinstance(value, list)
            else f"`{str(value).lower() if isinstance(value, bool) else value}`"
        )
        out.append(f"- {i['setting']}: {shown} ({i['evidence']})")
    return out + ["", "---", ""]


def _header(report: Report) -> list[str]:
    return [
        f"# SYSTEM HEALTH REPORT - {report.generated_at[:10]}",
        "",
        f"Workspace: `{report.workspace}` · host `{report.hostname}` · {report.generated_at} · healthkit {report.version}",
        "",
        f"**Verdict: {report.status.value.upper()}** ({report.summary_line()})",
        "",
    ]


def _findings_blocks(findings: list[Finding]) -> list[str]:
    serious = [f for f in findings if f.severity is not Severity.INFO]
    infos = [f for f in findings if f.severity is Severity.INFO]
    out: list[str] = []
    if serious:
        crit = any(f.severity is Severity.CRITICAL for f in serious)
        out += ["## 🚨 CRITICAL ISSUES FOUND" if crit else "## ⚠️ ISSUES FOUND", ""]
        for i, f in enumerate(serious, 1):
            out += _finding(i, f)
    else:
        out += ["## ✅ NO ISSUES FOUND", ""]
    if infos:
        out += ["## 🔵 NOTES", ""]
        for i, f in enumerate(infos, 1):
            out += _finding(i, f)
    return out


def _unknown_block(report: Report) -> list[str]:
    unknown = [r for r in report.sorted_results if r.status is Status.UNKNOWN]
    if not unknown and not report.load_errors:
        return []
    out = ["## ❓ COULD NOT CHECK", ""]
    out += [f"- `{r.check}` ({r.title}): {r.error or '; '.join(r.notes) or 'no verdict'}" for r in unknown]
    out += [f"- {e.source}: {e.message}" for e in report.load_errors]
    return out + ["", "---", ""]


def _healthy_block(report: Report) -> list[str]:
    if not report.healthy:
        return []
    out = ["## ✅ WHAT'S WORKING", ""]
    for i, h in enumerate(report.healthy, 1):
        out += [f"{i}. **{h.title}**", *[f"   - {d}" for d in h.details], ""]
    return out + ["---", ""]


def _not_judged_block(report: Report) -> list[str]:
    """What a check could not judge and why (facts `not_judged`: {what: why}): silence would read as healthy."""
    items = report.facts.get("not_judged") or {}
    if not isinstance(items, dict) or not items:
        return []
    return ["## ➖ NOT JUDGED", ""] + [f"- **{what}**: {why}" for what, why in sorted(items.items())] + ["", "---", ""]


def fix_command(workspace: str, code: str, refs: list, level: str) -> str:
    """`healthkit fix WS --LEVEL --only CODE`, quoted, with the arguments the fixes need when every one of them needs
    some (a prune with no declared limit needs `--keep N`: without it the command would do nothing)."""

    extra = list(refs[0].args) if refs and all(r.args for r in refs) else []
    return command("healthkit", "fix", workspace, f"--{level}", "--only", code, *extra)


def _recommendations_block(report: Report, findings: list[Finding]) -> list[str]:
    out, n = ["## 📋 RECOMMENDATIONS", ""], 0
    for key, label in URGENCY:
        group = [f for f in findings if f.urgency == key]
        if group:
            out += [f"### {label}", ""]
        for f in group:
            n += 1
            out.append(f"{n}. **{f.title}** (`{f.code}`)")
            out += [f"   - {r}" for r in f.recommendations]
            safe = [x for x in f.fixes if x.safety == "safe"]
            unsafe = [x for x in f.fixes if x.safety != "safe"]
            if safe:
                cmd = md_code(fix_command(report.workspace, f.code, safe, "safe"))
                out.append(f"   - Fix: {cmd} ({', '.join(x.title for x in safe)})")
            if unsafe:
                cmd = md_code(fix_command(report.workspace, f.code, unsafe, "unsafe"))
                out.append(
                    f"   - Unsafe fix, only if you accept the risk: {cmd} ({', '.join(x.title for x in unsafe)})"
                )
            out.append("")
    return out + ["---", ""]


def _root_cause_block(report: Report, findings: list[Finding]) -> list[str]:
    out, seen = ["## 🎯 ROOT CAUSE ANALYSIS", ""], set()
    for f in findings:
        if f.code in seen:
            continue
        seen.add(f.code)
        doc = report.code_docs.get(f.code)
        out.append(f"**Pattern:** {doc.title if doc else f.title}")
        if doc:
            out.append(f"- Why it matters: {doc.why}")
        out += [f"- {x}" for x in f.root_cause] + [""]
    return out + ["---", ""]


def _status_block(report: Report, findings: list[Finding]) -> list[str]:
    training = report.facts.get("training")
    block = _training_block(training) if training else None
    if not block or not training:  # no block without a training fact
        return []
    out = ["## 📊 CURRENT TRAINING STATUS", "", "```", *block, "```", ""]
    if training.get("verdict"):
        out += [f"**Assessment:** {assessment(training, findings)}", ""]
    return out + ["---", ""]


def _goodput_block(report: Report) -> list[str]:
    g = report.facts.get("goodput")
    if not isinstance(g, dict) or not g.get("wall_seconds"):
        return []
    ratio = g.get("ratio")
    span = f"between the first and the last timed point ({g.get('basis')})" if g.get("estimate") else "with work queued"
    out = [
        "## ⏳ GOODPUT",
        "",
        f"{'?' if ratio is None else f'{ratio:.1%}'} of {g['wall_seconds']:.0f} s {span} trained (since {g.get('since')}).",
        "",
        "| cause | seconds | steps |",
        "|---|---|---|",
        f"| productive | {g['productive_seconds']:.0f} | |",
    ]
    for lost in g.get("lost") or []:
        steps = "" if lost.get("steps") is None else str(lost["steps"])
        out.append(f"| {lost['cause']} | {lost['seconds']:.0f} | {steps} |")
    return out + ["", "---", ""]


def _checks_block(report: Report) -> list[str]:
    out = ["## ⏱ CHECKS RUN", "", "| check | status | time |", "|---|---|---|"]
    out += [f"| `{r.check}` | {r.status.value} | {r.duration_s * 1000:.1f} ms |" for r in report.sorted_results]
    out += ["", f"Audit took {report.duration_s * 1000:.0f} ms."]
    if report.settings_file:
        out.append(f"Settings: {md_code(report.settings_file)}.")
    return out + [f"Note: {note}" for note in report.notes]


def render(
    report: Report,
    ascii: bool = False,
    since: dict[str, Any] | None = None,
    chart: dict[str, Any] | None = None,
    **_: Any,
) -> str:
    findings = report.findings
    out = _header(report) + (_since_block(since) if since is not None else [])
    out += _findings_blocks(findings) + _unknown_block(report) + _healthy_block(report) + _not_judged_block(report)
    if findings:
        out += _recommendations_block(report, findings) + _root_cause_block(report, findings)
    out += _status_block(report, findings) + (_chart_block(chart) if chart is not None else []) + _goodput_block(report)
    out += _inferred_block(report.settings_inferred) + _checks_block(report)
    text = (
        md_document("\n".join(out).rstrip()) + "\n"
    )  # names are hostile: no raw control, escape or HTML reaches a reader
    return to_ascii(text) if ascii else text


def to_ascii(text: str) -> str:
    import unicodedata  # only for --ascii

    for k, v in _ASCII.items():
        text = text.replace(k, v)
    text = unicodedata.normalize("NFKD", text)
    return text.encode("ascii", "ignore").decode("ascii").replace("\ufe0f", "")
