"""Do the docs (CLAUDE.md, AGENTS.md, README.md) state the config values that config.json really has?"""

from __future__ import annotations

import json
import re
import shlex
from typing import Any

from healthkit import CheckOutput, CodeDoc, Evidence, Finding, FixRef, Healthy, Severity, check
from healthkit.docvalues import KeyIndex, line_fingerprint, parse_doc_value, same_value, statements
from healthkit.redact import is_secret_name, redact_text
from healthkit.workspace import Workspace

from ._common import q

DRIFT = CodeDoc(
    "config.doc-drift", "warning", "A doc states a config value that differs from config.json",
    what="A documentation file (CLAUDE.md, AGENTS.md, README.md by default) states a value for a config key, and config.json "
         "says otherwise. Values are compared by meaning: 2e-5 equals 0.00002, `/a/b/` equals `/a/b`.",
    why="People and coding agents act on the docs: they expect evaluation every 10 steps when it runs every 500, and make "
        "decisions on wrong expectations.",
    fix="Rewrite the stale value in the doc to config.json's value, touching only that value (a backup is kept).",
    fix_safety="Safe: config.json is the source of truth for what runs; only the doc changes.",
)
_JQ_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
SYNC = FixRef("sync-doc-value", "Rewrite the doc's stale value to match config.json", "safe")


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
            parts.append(f"{json.dumps(key)}: ." + ".".join(seg if _JQ_IDENT.match(seg) else f"[{json.dumps(seg)}]" for seg in path))
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
        drifts = []
        for st in statements(doc.text, index):
            if is_secret_name(st.key):
                continue
            actual = index.values[st.key]
            if isinstance(actual, (dict, list)):
                continue
            if st.partial and (isinstance(actual, (str, bool)) or actual is None):
                continue  # "Base model: see below" is prose, not a value
            ok, doc_value = parse_doc_value(st.text, actual)
            if not ok:
                continue
            checked += 1
            same, note = same_value(doc_value, actual)
            if same:
                if note:
                    notes.append(f"{ws.rel(doc.path)}:{st.line}: `{st.key}` {note} (`{st.text}` vs `{actual}`): same value")
                continue
            drifts.append((st, actual))
        if not drifts:
            continue
        rel = ws.rel(doc.path)
        keys = sorted({st.key for st, _ in drifts})
        problem = []
        for st, actual in drifts:
            problem.append(f"{rel}:{st.line} says: `{st.key}: {st.text}`")
            problem.append(f"Actual {ws.rel(ws.config_path)}: `{st.key}: {json.dumps(actual)}`")
        jq, picked = _jq_pick(cfg.data, keys)
        findings.append(Finding(
            code=DRIFT.code, severity=Severity.WARNING, title=f"Config drift in {rel}",
            problem=problem,
            impact=["Confusion for whoever reads the doc next (people and coding agents)",
                    "Wrong expectations about system behavior: the docs don't match reality"],
            evidence=[
                Evidence("grep -n -F " + " ".join(f"-e {shlex.quote(t)}" for t in dict.fromkeys(st.line_text.strip() for st, _ in drifts))
                         + f" {q(ws, doc.path)}",
                         redact_text("\n".join(f"{n}:{t}" for n, t in sorted({st.line: st.line_text for st, _ in drifts}.items())))),
                Evidence(f"jq {shlex.quote(jq)} {q(ws, ws.config_path)}", json.dumps(picked, indent=2)),
            ],
            root_cause=["Docs updated by hand while the config changed separately; nothing keeps them in sync"],
            recommendations=[f"Update {rel} to the values in config.json (or change config.json if the doc is what you meant)",
                             "Let the daemon check drift at start (`drift_policy` in config.json)"],
            fixes=[SYNC], urgency="short-term",
            data={"doc": str(doc.path), "drifts": [
                {"key": st.key, "line": st.line, "start": st.start, "end": st.end, "doc_value": st.text, "config_value": actual,
                 "line_text": st.line_text, "line_fingerprint": line_fingerprint(st.line_text)}
                for st, actual in drifts]},
        ))
    healthy = [] if findings else ([Healthy("Docs match config.json", [f"{checked} stated value(s) checked in {len(ws.docs)} doc(s)"])] if checked else [])
    return CheckOutput(findings=findings, healthy=healthy, notes=notes)
