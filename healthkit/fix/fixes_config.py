"""Config edits (both unsafe: they change training): `set-save-total-limit` and `enable-evaluation`.

The edit is textual where it can be (the value after the key, or a new member before the
closing brace) so the rest of config.json stays byte-identical; it is verified by parsing,
and falls back to re-serialising with the file's own indent.
"""

from __future__ import annotations

import json
import re
from typing import Any

from healthkit.core.findings import Finding, FixRef
from healthkit.fix.fileops import ChangedSincePlan, Refused, edit_target, read_nofollow, replace_file, sha256_hex
from healthkit.fix.fixes_docs import unified_diff
from healthkit.fix.plan import ApplyContext, Outcome, Plan, PlanContext, Safety, applied, failed, fixer, skipped

DEFAULT_LIMIT = 3
_SCALAR = r'(?:"(?:[^"\\]|\\.)*"|-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?|true|false|null)'


def edit_json_text(text: str, changes: dict[str, Any]) -> str:
    """config.json text with top-level ``changes`` applied, other bytes kept where possible."""
    data = json.loads(text)
    if not isinstance(data, dict):
        raise ValueError("config.json is not a JSON object")
    expected = dict(data)
    expected.update(changes)
    out = text
    for key, value in changes.items():
        enc = json.dumps(value)
        pat = re.compile(r'("' + re.escape(key) + r'"\s*:\s*)' + _SCALAR)
        if key in data:
            hits = list(pat.finditer(out))
            if len(hits) != 1:
                out = None  # type: ignore[assignment]
                break
            m = hits[0]
            out = out[: m.start()] + m.group(1) + enc + out[m.end() :]
        else:
            close = out.rstrip().rfind("}")
            body = out[:close].rstrip()
            found = re.search(r'\n([ \t]+)"', out)
            indent = found.group(1) if found else "  "
            sep = "," if not body.endswith("{") else ""
            out = body + f'{sep}\n{indent}"{key}": {enc}' + out[len(body) :]
    if out is not None:
        try:
            if json.loads(out) == expected:
                return out
        except ValueError:
            pass
    lead = re.search(r'\n([ \t]+)"', text)
    width: Any = lead.group(1) if lead else 2
    return json.dumps(expected, indent=width, ensure_ascii=False) + ("\n" if text.endswith("\n") else "")


def plan_config_edit(
    ctx: PlanContext,
    finding: Finding,
    ref: FixRef,
    fix_id: str,
    title: str,
    changes: dict[str, Any],
    order: int,
    note: str = "",
) -> Plan:
    ws = ctx.ws
    path = ws.config_path
    rel = ws.rel(path)
    plan = Plan(fix_id, Safety.UNSAFE, title, "", [finding.code], key=f"{fix_id}:{path}", order=order)
    try:
        target = edit_target(ws.base, path, rel)
    except Refused as exc:
        plan.blocked = str(exc)
        return plan
    try:
        old = read_nofollow(target)
        new = edit_json_text(old.decode("utf-8"), changes).encode("utf-8")
    except (Refused, OSError, ValueError) as exc:
        plan.blocked = f"cannot plan the edit of {rel}: {exc}"
        return plan
    if new == old:
        plan.blocked = f"{rel} already has {json.dumps(changes)}"
        return plan
    plan.preview = (
        unified_diff(old, new, ws.rel(target))
        + (f"\n{note}" if note else "")
        + f"\n(backup: {ws.rel(target)}.bak-<timestamp>)"
    )
    sha = sha256_hex(old)

    def apply(actx: ApplyContext) -> Outcome:
        r = ws.rel(target)
        try:
            actx.record("edit", r, "started", f"set {json.dumps(changes)}")
            backup = replace_file(ws.base, target, new, sha, actx.run_id)
        except ChangedSincePlan as exc:
            actx.record("edit", r, "skipped", f"changed since plan: {exc}")
            return skipped(f"{r} changed since plan; not touched")
        except (Refused, OSError) as exc:
            actx.record("edit", r, "failed", str(exc))
            return failed(f"{r}: {exc}")
        actx.record("edit", r, "applied", f"set {json.dumps(changes)}", backup=ws.rel(backup))
        return applied(f"set {json.dumps(changes)} in {r}; backup {ws.rel(backup)}")

    plan.apply = apply
    return plan


@fixer("set-save-total-limit", order=20, codes=("checkpoints.no-retention",), safety=Safety.UNSAFE)
def plan_limit(ctx: PlanContext, finding: Finding, ref: FixRef) -> list[Plan]:
    key = finding.data.get("config_key") or ctx.ws.settings.config_keys.save_total_limit
    n = ctx.keep or DEFAULT_LIMIT
    return [
        plan_config_edit(
            ctx,
            finding,
            ref,
            "set-save-total-limit",
            f"Set {key} to {n} in config.json",
            {key: n},
            20,
            note=f"From now on training keeps the newest {n} checkpoints (plus the best); "
            "it takes effect when training next starts, if the training code reads this key."
            + ("" if ctx.keep else f" (--keep N chooses another limit than {DEFAULT_LIMIT})"),
        )
    ]


@fixer("enable-evaluation", order=21, codes=("validation.not-running",), safety=Safety.UNSAFE)
def plan_eval(ctx: PlanContext, finding: Finding, ref: FixRef) -> list[Plan]:
    ws = ctx.ws
    if not finding.data.get("has_validation_data"):
        p = Plan(
            "enable-evaluation",
            Safety.UNSAFE,
            "Turn evaluation on in config.json",
            "",
            [finding.code],
            key="enable-evaluation",
            order=21,
            blocked="no validation data exists (validation_file / validation_split)",
        )
        return [p]
    cfg = ws.config.data if ws.config.is_object else {}
    key = ws.settings.config_keys.eval_strategy
    if key not in cfg and "evaluation_strategy" in cfg:
        key = "evaluation_strategy"
    changes: dict[str, Any] = {key: "steps"}
    es_key = ws.settings.config_keys.eval_steps
    if not isinstance(cfg.get(es_key), int) or isinstance(cfg.get(es_key), bool):
        save = cfg.get(ws.settings.config_keys.save_steps)
        changes[es_key] = save if isinstance(save, int) and not isinstance(save, bool) and save > 0 else 500
    return [
        plan_config_edit(
            ctx,
            finding,
            ref,
            "enable-evaluation",
            "Turn evaluation on in config.json",
            changes,
            21,
            note="Evaluation then runs every eval_steps on the validation data (slower steps; "
            "it takes effect when training next starts).",
        )
    ]
