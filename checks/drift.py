"""Do the docs (CLAUDE.md, AGENTS.md, README.md) state the config values that config.json really has?"""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path
from typing import Any

from healthkit import CheckOutput, CodeDoc, Evidence, Finding, FixRef, Healthy, Severity, check
from healthkit.contract.docvalues import (
    Ambiguous,
    KeyIndex,
    Statement,
    argues_for_itself,
    history_marker,
    line_fingerprint,
    parse_doc_value,
    same_value,
    statements,
)
from healthkit.core.workspace import Workspace
from healthkit.system.records import record
from healthkit.system.redact import is_secret_name, redact_text

from ._common import q

SYNC = FixRef("sync-doc-value", "Rewrite the doc's stale value to match config.json", "safe")
SYNC_UNSAFE = FixRef("sync-doc-value", "Rewrite the doc's stale value to match config.json", "unsafe")

DRIFT = CodeDoc(
    "config.doc-drift",
    "warning",
    "A doc states a config value that differs from config.json",
    what="A documentation file (CLAUDE.md, AGENTS.md, README.md by default) states a value for a config key, and config.json "
    "says otherwise. Values are compared by meaning: 2e-5 equals 0.00002, `/a/b/` equals `/a/b`.",
    why="People and coding agents act on the docs: they expect the value the doc states, not the one that runs, and make "
    "decisions on wrong expectations (each finding's impact quotes the doc's own value).",
    fix="Rewrite the stale value in the doc to config.json's value, touching only that value (a backup is kept). "
    'Only current-state statements: history ("Earlier we tried ...") is not compared, and a line that argues for its '
    'value ("REQUIRED", "causes OOM", or config.json\'s value stated beside it) is left for a person to decide.',
    fix_safety="Safe for current-state statements in prose: config.json is the source of truth for what runs; only the doc "
    "changes. Unsafe for values in fenced code blocks and lines a person must decide.",
    fixes=(SYNC, SYNC_UNSAFE),
)
_JQ_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# Every drift of the doc is in a fenced block or argues for its value: only --unsafe rewrites it.


def _jq_pick(config: dict[str, Any], keys: list[str]) -> tuple[str, dict[str, Any]]:
    """The jq filter that prints exactly these (possibly nested) keys, and what it prints.

    Only the drifted leaves: printing a whole parent object could show a secret that sits next to them.
    """
    parts: list[str] = []
    picked: dict[str, Any] = {}
    for key in keys:
        path = key.split(".")
        value: Any = config
        for seg in path:
            value = value.get(seg) if isinstance(value, dict) else None
        if len(path) == 1 and _JQ_IDENT.match(key):
            parts.append(key)
        else:
            parts.append(
                f"{json.dumps(key)}: ."
                + ".".join(seg if _JQ_IDENT.match(seg) else f"[{json.dumps(seg)}]" for seg in path)
            )
        picked[key] = value
    return "{" + ", ".join(parts) + "}", picked


@check("drift", title="Docs versus config.json", codes=[DRIFT], tags=["config"])
def drift_check(ws: Workspace) -> CheckOutput:
    cfg = ws.config
    if not cfg.is_object:
        return CheckOutput(notes=["config.json unavailable; drift not checked (see the config check)"])
    if not ws.docs:
        return CheckOutput(notes=[f"no docs found ({', '.join(ws.settings.paths.docs)})"])
    index = KeyIndex(cfg.data)
    findings: list[Finding] = []
    notes: list[str] = []
    checked = 0
    for doc in ws.docs:
        if doc.text is None:
            notes.append(f"{ws.rel(doc.path)} not read: {doc.problem.message if doc.problem else 'unreadable'}")
            continue
        drifts, n = _doc_drifts(ws, doc.path, doc.text, index, notes)
        checked += n
        if drifts:
            findings.append(_finding(ws, doc.path, drifts))
    healthy = (
        []
        if findings
        else (
            [Healthy("Docs match config.json", [f"{checked} stated value(s) checked in {len(ws.docs)} doc(s)"])]
            if checked
            else []
        )
    )
    return CheckOutput(findings=findings, healthy=healthy, notes=notes)


@record
class _Drift:
    st: Statement
    actual: Any
    guard: str | None = None  # None: a current-state statement; "fenced"; "decide" (a person must decide)
    why: str | None = None


def _doc_drifts(ws: Workspace, path: Path, text: str, index: KeyIndex, notes: list[str]) -> tuple[list[_Drift], int]:
    """The doc's drifting statements (history skipped, each classified for the fix) and how many were compared."""
    rel = ws.rel(path)
    ambiguous: list[Ambiguous] = []
    found = statements(text, index, ambiguous)
    for a in ambiguous:
        if not any(is_secret_name(k) for k in a.keys):
            notes.append(
                f'{rel}:{a.line}: "{a.label}" could be {" or ".join(f"`{k}`" for k in a.keys)}; not compared '
                "(write the key's name to have it checked)"
            )
    drifts: list[_Drift] = []
    checked = 0
    for st in found:
        actual = index.values[st.key]
        if is_secret_name(st.key) or isinstance(actual, (dict, list)):
            continue
        if st.partial and (isinstance(actual, (str, bool)) or actual is None):
            continue  # "Base model: see below" is prose, not a value
        ok, doc_value = parse_doc_value(st.text, actual)
        if not ok:
            continue
        marker = history_marker(st)
        if marker:
            notes.append(f'{rel}:{st.line}: `{st.key}: {st.text}` reads as history ("{marker}"); not compared')
            continue
        checked += 1
        same, note = same_value(doc_value, actual)
        if same:
            if note:
                notes.append(f"{rel}:{st.line}: `{st.key}` {note} (`{st.text}` vs `{actual}`): same value")
            continue
        why = argues_for_itself(st, index, actual)
        drifts.append(_Drift(st, actual, "decide" if why else "fenced" if st.fenced else None, why))
    return drifts, checked


def _problem(rel: str, config_rel: str, d: _Drift) -> list[str]:
    st = d.st
    if d.guard == "decide":
        return [
            f"{rel}:{st.line} says `{st.key}: {st.text}` and {config_rel} says `{json.dumps(d.actual)}`: "
            f"a person must decide which is right ({d.why}); `fix --safe` leaves this line alone"
        ]
    where = " (in a fenced code block: `fix --safe` leaves it; `--unsafe` rewrites it)" if d.guard == "fenced" else ""
    return [
        f"{rel}:{st.line} says: `{st.key}: {st.text}`{where}",
        f"Actual {config_rel}: `{st.key}: {json.dumps(d.actual)}`",
    ]


_EXPECTATIONS_SHOWN = 3


def _expectation(rel: str, d: _Drift) -> str:
    """The wrong expectation in the doc's own words: what a reader of it expects against what runs."""
    return (
        f"Whoever reads {rel} expects `{d.st.key}` to be {redact_text(d.st.text)} while training runs with "
        f"{redact_text(json.dumps(d.actual))}"
    )


def _finding(ws: Workspace, path: Path, drifts: list[_Drift]) -> Finding:
    rel, cfg = ws.rel(path), ws.config
    keys = sorted({d.st.key for d in drifts})
    problem = [line for d in drifts for line in _problem(rel, ws.rel(ws.config_path), d)]
    jq, picked = _jq_pick(cfg.data, keys)
    lines = {d.st.line: d.st.line_text for d in drifts}
    decide = [d for d in drifts if d.guard == "decide"]
    recommendations = [
        f"Update {rel} to the values in config.json (or change config.json if the doc is what you meant)",
        "Let the daemon check drift at start (`drift_policy` in config.json)",
    ]
    if decide:
        recommendations.insert(
            0,
            f"Decide line {', '.join(str(d.st.line) for d in decide)} of {rel} by hand: the doc argues "
            "for its value, so either config.json or the doc's reasoning is wrong",
        )
    return Finding(
        code=DRIFT.code,
        severity=Severity.WARNING,
        title=f"Config drift in {rel}",
        problem=problem,
        impact=[_expectation(rel, d) for d in drifts[:_EXPECTATIONS_SHOWN]]
        + (["…"] if len(drifts) > _EXPECTATIONS_SHOWN else [])
        + ["Confusion for whoever reads the doc next (people and coding agents)"],
        evidence=[
            Evidence(
                "grep -n -F "
                + " ".join(f"-e {shlex.quote(t)}" for t in dict.fromkeys(d.st.line_text.strip() for d in drifts))
                + f" {q(ws, path)}",
                redact_text("\n".join(f"{n}:{t}" for n, t in sorted(lines.items()))),
            ),
            Evidence(f"jq {shlex.quote(jq)} {q(ws, ws.config_path)}", json.dumps(picked, indent=2)),
        ],
        root_cause=["Docs updated by hand while the config changed separately; nothing keeps them in sync"],
        recommendations=recommendations,
        fixes=[SYNC if any(d.guard is None for d in drifts) else SYNC_UNSAFE],
        urgency="short-term",
        data={
            "doc": str(path),
            "drifts": [
                {
                    "key": d.st.key,
                    "line": d.st.line,
                    "start": d.st.start,
                    "end": d.st.end,
                    "doc_value": d.st.text,
                    "config_value": d.actual,
                    "line_text": d.st.line_text,
                    "line_fingerprint": line_fingerprint(d.st.line_text),
                    "guard": d.guard,
                    "why": d.why,
                }
                for d in drifts
            ],
        },
    )
