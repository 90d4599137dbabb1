"""`sync-doc-value` (safe): rewrite a doc's stale value to config.json's, touching that value and no other byte."""

from __future__ import annotations

import difflib
import json
from pathlib import Path

from healthkit.contract.docvalues import format_for_doc, line_fingerprint
from healthkit.core.findings import Finding, FixRef
from healthkit.fix.fileops import ChangedSincePlan, Refused, edit_target, read_nofollow, replace_file, sha256_hex
from healthkit.fix.plan import ApplyContext, Outcome, Plan, PlanContext, Safety, applied, failed, fixer, skipped
from healthkit.system.redact import redact_text


def unified_diff(old: bytes, new: bytes, rel: str) -> str:
    a = old.decode("utf-8", "replace").splitlines(keepends=True)
    b = new.decode("utf-8", "replace").splitlines(keepends=True)
    lines = list(difflib.unified_diff(a, b, fromfile=f"a/{rel}", tofile=f"b/{rel}", n=1))
    text = "".join(x if x.endswith("\n") else x + "\n\\ No newline at end of file\n" for x in lines).rstrip("\n")
    return redact_text(text)  # a doc line may hold a token beside the value: shown masked, written whole


def rewrite(text: str, drifts: list[dict]) -> tuple[str, list[dict]]:
    """Replace each drift's value span; raises ChangedSincePlan when a line is no longer what the audit saw.

    The line is taken from the file itself and compared with the audit's by hash
    (`line_fingerprint`): the report's `line_text` is redacted for display and may differ.
    """
    original = text.splitlines(keepends=True)
    lines = list(original)
    changes = []
    # Right to left, so that a span's columns still hold after the values right of it were rewritten;
    # each drift is checked against the line as the audit saw it (two values of one line are two drifts).
    for d in sorted(drifts, key=lambda d: (d["line"], d["start"]), reverse=True):
        i = d["line"] - 1
        if i >= len(lines):
            raise ChangedSincePlan(f"line {d['line']} no longer exists")
        content = original[i].rstrip("\r\n")
        ending = original[i][len(content) :]
        expected = d.get("line_fingerprint")
        if expected is not None and line_fingerprint(content) != expected:
            raise ChangedSincePlan(f"line {d['line']} changed since the audit")
        if expected is None and content != d["line_text"]:
            raise ChangedSincePlan(f"line {d['line']} is no longer `{d['line_text'].strip()}`")
        if content[d["start"] : d["end"]] != d["doc_value"]:
            raise ChangedSincePlan(f"line {d['line']} no longer states `{d['doc_value']}` at column {d['start'] + 1}")
        value = format_for_doc(d["config_value"], d["doc_value"])
        current = lines[i][: len(lines[i]) - len(ending)]
        lines[i] = current[: d["start"]] + value + current[d["end"] :] + ending
        changes.append({"line": d["line"], "key": d["key"], "from": d["doc_value"], "to": value})
    return "".join(lines), sorted(changes, key=lambda c: c["line"])


def _guarded_line(rel: str, d: dict) -> str:
    """Why the safe fix leaves this drifting line alone, quoting both values."""
    both = f"{rel}:{d['line']} `{d['key']}: {d['doc_value']}` (config.json: {json.dumps(d['config_value'])})"
    if d.get("guard") == "decide":
        return f"{both}: a person must decide ({d.get('why')})"
    return f"{both}: in a fenced code block (an example or a copy of a file)"


@fixer("sync-doc-value", order=10, codes=("config.doc-drift",), safety=(Safety.SAFE, Safety.UNSAFE))
def plan_sync(ctx: PlanContext, finding: Finding, ref: FixRef) -> list[Plan]:
    """Safe: current-state statements in prose. Values in fenced blocks and lines a person must decide: --unsafe only."""
    doc = Path(finding.data["doc"])
    drifts = list(finding.data.get("drifts") or [])
    plain = [d for d in drifts if not d.get("guard")]
    guarded = [d for d in drifts if d.get("guard")]
    if ctx.level is Safety.UNSAFE:
        return [_edit_plan(ctx, finding, doc, drifts, Safety.UNSAFE if guarded else Safety.SAFE)]
    plans = [_edit_plan(ctx, finding, doc, plain, Safety.SAFE)] if plain else []
    if guarded:
        rel = ctx.ws.rel(doc)
        plans.append(
            Plan(
                "sync-doc-value",
                Safety.UNSAFE,
                f"Rewrite {len(guarded)} value(s) in {rel} that --safe leaves alone",
                "",
                [finding.code],
                key=f"sync-doc-value-guarded:{doc}",
                order=10,
                blocked="left alone by --safe (`fix --unsafe` rewrites them): "
                + "; ".join(_guarded_line(rel, d) for d in guarded),
            )
        )
    return plans


def _edit_plan(ctx: PlanContext, finding: Finding, doc: Path, drifts: list[dict], safety: Safety) -> Plan:
    ws = ctx.ws
    rel = ws.rel(doc)
    plan = Plan(
        "sync-doc-value",
        safety,
        f"Rewrite {len(drifts)} stale value(s) in {rel} to config.json's",
        "",
        [finding.code],
        key=f"sync-doc-value:{doc}",
        order=10,
    )
    try:
        target = edit_target(ws.base, doc, rel)
    except Refused as exc:
        plan.blocked = str(exc)
        return plan
    if ws.config.duplicates:  # config.duplicate-key: which of the two values the person meant is theirs to say
        plan.blocked = (
            f"config.json states {', '.join(f'`{k}`' for k in ws.config.duplicates)} twice; "
            f"{rel} is not rewritten from it until config.json says each once"
        )
        return plan
    try:
        old = read_nofollow(target)
        cfg = read_nofollow(ws.config_path)
        new_text, changes = rewrite(old.decode("utf-8"), drifts)
    except (Refused, OSError, UnicodeDecodeError, KeyError) as exc:
        plan.blocked = f"cannot plan the edit of {rel}: {exc}"
        return plan
    new = new_text.encode("utf-8")
    if target != doc:
        plan.title += f" (the symlink's target {ws.rel(target)})"
    plan.preview = unified_diff(old, new, ws.rel(target)) + f"\n(backup: {ws.rel(target)}.bak-<timestamp>)"
    if safety is Safety.UNSAFE:
        plan.preview += "\nunsafe: " + "; ".join(_guarded_line(rel, d) for d in drifts if d.get("guard"))
    plan.apply = _applier(ws, target, new, sha256_hex(old), sha256_hex(cfg), changes)
    return plan


def _applier(ws, target: Path, new: bytes, old_sha: str, cfg_sha: str, changes: list[dict]):
    """The apply step: replace the doc (backup kept) unless it or config.json changed since the plan."""

    def apply(actx: ApplyContext) -> Outcome:
        try:
            if sha256_hex(read_nofollow(ws.config_path)) != cfg_sha:
                actx.record("edit", ws.rel(target), "skipped", "config.json changed since the plan was made")
                return skipped("config.json changed since plan; not touched")
            actx.record("edit", ws.rel(target), "started", f"rewrite {len(changes)} value(s)", changes=changes)
            backup = replace_file(ws.base, target, new, old_sha, actx.run_id)
        except ChangedSincePlan as exc:
            actx.record("edit", ws.rel(target), "skipped", f"changed since plan: {exc}")
            return skipped(f"{ws.rel(target)} changed since plan; not touched")
        except (Refused, OSError) as exc:
            actx.record("edit", ws.rel(target), "failed", str(exc))
            return failed(f"{ws.rel(target)}: {exc}")
        what = ", ".join(f"line {c['line']} {c['key']}: {c['from']} -> {c['to']}" for c in changes)
        actx.record("edit", ws.rel(target), "applied", what, backup=ws.rel(backup), changes=changes)
        return applied(f"rewrote {ws.rel(target)} ({what}); backup {ws.rel(backup)}", backup=str(backup))

    return apply
