"""Is config.json there, parseable, and valid against the training config schema?"""

from __future__ import annotations

import json

from healthkit import CheckOutput, CodeDoc, Evidence, Finding, Healthy, Severity, check
from healthkit.workspace import Workspace

from ._common import q

INVALID = CodeDoc(
    "config.invalid", "critical", "config.json missing, unparsable or failing its schema",
    what="The training config cannot be used: the file is missing, is not JSON, is not an object, or violates the schema "
         "(each violation is named by its JSON pointer).",
    why="The daemon refuses to start (or a foreign training script crashes at its next start); every check that reads the "
        "config works blind.",
    fix="Edit config.json by hand: healthkit never guesses training settings. `healthkit init` shows a valid example.",
)


def _schema_errors(ws: Workspace, data: object) -> list[tuple[str, str]]:
    mode = ws.settings.paths.config_schema
    if mode == "none":
        return []
    if mode == "healthkit":
        from healthkit.configschema import validate_config

        return validate_config(data)
    import jsonschema  # a user-supplied schema: validated by the reference implementation

    schema = json.loads(ws.path(mode).read_text(encoding="utf-8"))
    validator = jsonschema.Draft202012Validator(schema)
    return [("/" + "/".join(str(p) for p in e.absolute_path), e.message) for e in sorted(validator.iter_errors(data), key=str)]


@check("config", title="Training config", codes=[INVALID], tags=["config"])
def config_check(ws: Workspace) -> CheckOutput:
    cfg = ws.config
    rel = q(ws, cfg.path)
    if cfg.problem is not None:
        kind = cfg.problem.kind
        what = {"missing": "is missing", "json": "is not valid JSON"}.get(kind, "cannot be read")
        return CheckOutput(findings=[Finding(
            code=INVALID.code, severity=Severity.CRITICAL, title=f"config.json {what}",
            problem=[cfg.problem.message],
            impact=["The daemon cannot start a training run", "Checks that read the config (drift, retention, validation) work blind"],
            evidence=[Evidence(f"python3 -m json.tool {rel}", cfg.problem.message)],
            recommendations=["Restore config.json from your backup or version control, or fix it by hand"],
            urgency="immediate", data={"kind": kind},
        )])
    try:
        errors = _schema_errors(ws, cfg.data)
    except (OSError, ValueError) as exc:
        return CheckOutput(unknown=f"the config schema {ws.settings.paths.config_schema} could not be loaded: {exc}")
    if errors:
        shown = [f"`{ptr or '/'}`: {msg}" for ptr, msg in errors[:20]]
        return CheckOutput(findings=[Finding(
            code=INVALID.code, severity=Severity.CRITICAL, title="config.json fails its schema",
            problem=[f"{len(errors)} violation{'s' if len(errors) != 1 else ''} of the training config schema:"] + shown,
            impact=["The daemon refuses to start with this config", "A training run may use values it cannot honour"],
            evidence=[Evidence("healthkit audit . --select config --format json | jq '.findings[0].data.violations'",
                               "\n".join(f"{p or '/'}: {m}" for p, m in errors[:20]))],
            recommendations=["Fix each listed value in config.json"],
            urgency="immediate", data={"violations": [{"pointer": p, "message": m} for p, m in errors]},
        )])
    schema = ws.settings.paths.config_schema
    detail = f"{ws.rel(cfg.path)} parses (schema validation off in healthkit.toml)" if schema == "none" else f"{ws.rel(cfg.path)} passes the {schema} schema"
    return CheckOutput(healthy=[Healthy("Config is valid", [detail])])
