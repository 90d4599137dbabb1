"""Is config.json there, parseable, and valid against the training config schema?"""

from __future__ import annotations

import json
import os

from healthkit import CheckOutput, CodeDoc, Evidence, Finding, Healthy, Severity, check
from healthkit.contract.configschema import unknown_keys
from healthkit.core.workspace import Workspace

from ._common import q

INVALID = CodeDoc(
    "config.invalid",
    "critical",
    "config.json missing, unparsable or failing its schema",
    what="The training config cannot be used: the file is missing (in healthkit's trainer's workspace, or where healthkit.toml "
    "sets `[run] config_required`), is not JSON, is not an object, or violates the schema (each violation is named by "
    "its JSON pointer). Other stacks (a Lightning or Accelerate run) need no config.json.",
    why="The daemon refuses to start (or a foreign training script crashes at its next start); every check that reads the "
    "config works blind.",
    fix="Edit config.json by hand: healthkit never guesses training settings. `healthkit init` shows a valid example.",
)

NOT_LOCAL = CodeDoc(
    "config.base-model-not-local",
    "critical",
    "base_model is a hub id, not a local folder",
    what="config.json's base_model names no folder in the workspace or on this machine and reads like a Hugging Face hub "
    "id (`gpt2`, `org/model`).",
    why="The trainer runs offline and downloads nothing: its start-up check refuses to start (exit 78). A trainer that "
    "did start would crash reaching for the network in the training child.",
    fix="Download the model once (e.g. `huggingface-cli download ORG/MODEL --local-dir models/base`) and set base_model "
    "to that folder. No automatic fix: healthkit never downloads models or edits training settings. While base_model "
    "is still the placeholder folder `healthkit init` made (it holds only PUT_YOUR_MODEL_HERE.txt), the finding is a "
    "warning that says so: a step not taken yet.",
)


DUPLICATE_KEY = CodeDoc(
    "config.duplicate-key",
    "warning",
    "config.json states a key twice",
    what="An object in config.json states the same key more than once. JSON parsers keep the last one silently, so the "
    "first is dead text that a person (or a doc) may take for the value in force.",
    why="The value a reader sees first is not the one training uses; a doc fix that rewrites docs from config.json would "
    "write the value the person did not mean.",
    fix="Edit config.json by hand and keep one of the two (the last one is the value in force). No automatic fix: "
    "healthkit never guesses training settings.",
)

SEQ_TOO_LONG = CodeDoc(
    "config.seq-longer-than-model",
    "critical",
    "max_seq_length is more than the base model's positions",
    what="config.json's max_seq_length is larger than the position table of the local base model (`n_positions` or "
    "`max_position_embeddings` in the model folder's config.json).",
    why="A sequence longer than the model's positions has nothing to embed its tail with: the training child dies at its "
    "first long batch (`IndexError: index out of range in self`), max_failures times, and the file goes to failed/. "
    "Our trainer's start-up check refuses such a config (exit 78), and so does `healthkit queue add`.",
    fix="Set max_seq_length to the model's positions or less (or use a model with more positions). No automatic fix: "
    "healthkit never changes training settings.",
)


UNKNOWN_KEY = CodeDoc(
    "config.unknown-key",
    "warning",
    "config.json has a key the trainer does not know",
    what="healthkit's training config (config.json of our trainer's workspace) has a top-level key that is not one of the "
    "trainer's settings, such as a misspelling (`save_totl_limit`); the finding names the key it most likely meant. "
    "More transformers TrainingArguments belong under `training_args`, where any name is allowed.",
    why="The trainer ignores the key and uses the default of the setting that was meant: a limit, an interval or a rate "
    "you believe is set is not (a misspelled `save_total_limit` keeps the default number of checkpoints).",
    fix="Rename the key to the setting it was meant to be, or move a TrainingArguments name under `training_args`. "
    "No automatic fix: healthkit never edits training settings. A warning, not config.invalid: the daemon still starts.",
)


def _unknown_key_finding(ws: Workspace, found: list[tuple[str, str | None]]) -> Finding:
    lines = [f"`{k}`" + (f": did you mean `{m}`?" if m else ": not a setting of the trainer") for k, m in found]
    return Finding(
        code=UNKNOWN_KEY.code,
        severity=Severity.WARNING,
        title=f"config.json has {len(found)} key{'s' if len(found) != 1 else ''} the trainer does not know",
        problem=["The trainer ignores these keys of config.json:"] + lines,
        impact=["A setting you believe is set is not: the trainer uses its default"],
        evidence=[
            Evidence(f"jq -c 'keys' {q(ws, ws.config.path)}", json.dumps(sorted(ws.config.data), separators=(",", ":")))
        ],
        recommendations=[f"Rename `{k}` to `{m}`" for k, m in found if m]
        + (
            ["Move other transformers TrainingArguments under `training_args`"]
            if any(m is None for _, m in found)
            else []
        ),
        urgency="short-term",
        data={"keys": [{"key": k, "did_you_mean": m} for k, m in found]},
    )


def _seq_length_problem(ws: Workspace, data: object) -> Finding | None:
    """max_seq_length over a local base model's positions, read from the model's config.json as JSON (no torch)."""
    from healthkit.contract.modelinfo import model_positions, seq_length_problem

    if not isinstance(data, dict):
        return None
    base, length = data.get(ws.settings.config_keys.base_model), data.get("max_seq_length")
    if not isinstance(base, str) or not base or not ws.path(base).is_dir():
        return None
    folder = ws.path(base)
    problem = seq_length_problem(length, folder)
    if problem is None:
        return None
    positions, key = model_positions(folder)  # type: ignore[misc]
    return Finding(
        code=SEQ_TOO_LONG.code,
        severity=Severity.CRITICAL,
        title=f"max_seq_length {length} is more than the base model's {positions} positions",
        problem=[problem],
        impact=[
            "`healthkit daemon start` refuses this config (exit 78); a trainer that started anyway would fail every file "
            "whose lines are longer than the model's positions"
        ],
        evidence=[
            Evidence(f"jq .max_seq_length {q(ws, ws.config.path)}", json.dumps(length)),
            Evidence(f"jq .{key.split('.')[-1]} {q(ws, folder / 'config.json')}", json.dumps(positions)),
        ],
        recommendations=[f"Set max_seq_length to {positions} or less in config.json"],
        urgency="immediate",
        data={"max_seq_length": length, "positions": positions, "key": key, "model": str(folder)},
    )


def _hub_id_problem(ws: Workspace, data: object) -> Finding | None:
    """A base_model that is neither a folder nor written as a path: what our trainer's preflight refuses (exit 78)."""
    value = data.get(ws.settings.config_keys.base_model) if isinstance(data, dict) else None
    if isinstance(value, str) and value and ws.path(value).is_dir():
        return _placeholder_problem(ws, value)
    if not isinstance(value, str) or not value or value.startswith(("/", ".", "~")):
        return None  # a missing path is said by the daemon's own start-up check; a path is not a hub id
    if ws.path(value).exists():
        return None
    return Finding(
        code=NOT_LOCAL.code,
        severity=Severity.CRITICAL,
        title=f"base_model {value!r} is not a local folder",
        problem=[
            f"`base_model: {value}` names no folder ({ws.path(value)} does not exist); it reads like a hub id",
            "The trainer runs offline and downloads nothing: `healthkit daemon start` refuses it (exit 78)",
        ],
        impact=["The daemon does not start; the queue waits"],
        evidence=[Evidence(f"jq .{ws.settings.config_keys.base_model} {q(ws, ws.config.path)}", json.dumps(value))],
        recommendations=[
            f"Download {value} once into a folder of the workspace (e.g. models/base) and set base_model to it"
        ],
        urgency="immediate",
        data={"base_model": value},
    )


def _placeholder_problem(ws: Workspace, value: str) -> Finding | None:
    """The base_model folder is still the placeholder `healthkit init` made (a warning: a step not taken yet, not a
    hub id); None for a folder with anything else in it."""
    from healthkit.contract.modelinfo import PLACEHOLDER, placeholder_unfilled

    folder = ws.path(value)
    if not placeholder_unfilled(folder):
        return None
    return Finding(
        code=NOT_LOCAL.code,
        severity=Severity.WARNING,
        title=f"base_model {value!r} is a placeholder not filled in yet",
        problem=[
            f"`{value}/` is the folder `healthkit init` made for the base model: it holds only {PLACEHOLDER}, no model",
            "`healthkit daemon start` refuses to start until a model is there (exit 78)",
        ],
        impact=["Nothing can train yet; queued files wait"],
        evidence=[Evidence(f"ls {q(ws, folder)}", "\n".join(sorted(os.listdir(folder))))],
        recommendations=[
            f"Put the base model in {folder}/ (e.g. `huggingface-cli download ORG/MODEL --local-dir "
            f"{q(ws, folder)}`), or set base_model to a model's folder; `healthkit init --tiny-model` "
            "puts a tiny model there to try everything on a CPU"
        ],
        urgency="short-term",
        data={"base_model": value, "placeholder": True},
    )


def _schema_errors(ws: Workspace, data: object) -> list[tuple[str, str]]:
    mode = ws.settings.paths.config_schema
    if mode == "none":
        return []
    if mode == "healthkit":
        from healthkit.contract.configschema import schema_violations

        return schema_violations(data)
    import jsonschema  # a user-supplied schema: validated by the reference implementation

    schema = json.loads(ws.path(mode).read_text(encoding="utf-8"))
    validator = jsonschema.Draft202012Validator(schema)
    return [
        ("/" + "/".join(str(p) for p in e.absolute_path), e.message)
        for e in sorted(validator.iter_errors(data), key=str)
    ]


def _unreadable(ws: Workspace) -> Finding:
    """config.invalid for a config.json that is missing, not JSON or unreadable."""
    cfg = ws.config
    kind = cfg.problem.kind
    what = {"missing": "is missing", "json": "is not valid JSON"}.get(kind, "cannot be read")
    return Finding(
        code=INVALID.code,
        severity=Severity.CRITICAL,
        title=f"config.json {what}",
        problem=[cfg.problem.message],
        impact=[
            "The daemon cannot start a training run",
            "Checks that read the config (drift, retention, validation) work blind",
        ],
        evidence=[Evidence(f"python3 -m json.tool {q(ws, cfg.path)}", cfg.problem.message)],
        recommendations=["Restore config.json from your backup or version control, or fix it by hand"],
        urgency="immediate",
        data={"kind": kind},
    )


def _violations(errors: list[tuple[str, str]]) -> Finding:
    """config.invalid for a config.json that fails its schema, each violation by JSON pointer."""
    shown = [f"`{ptr or '/'}`: {msg}" for ptr, msg in errors[:20]]
    return Finding(
        code=INVALID.code,
        severity=Severity.CRITICAL,
        title="config.json fails its schema",
        problem=[f"{len(errors)} violation{'s' if len(errors) != 1 else ''} of the training config schema:"] + shown,
        impact=["The daemon refuses to start with this config", "A training run may use values it cannot honour"],
        evidence=[
            Evidence(
                "healthkit audit . --select config --format json | jq '.findings[0].data.violations'",
                "\n".join(f"{p or '/'}: {m}" for p, m in errors[:20]),
            )
        ],
        recommendations=["Fix each listed value in config.json"],
        urgency="immediate",
        data={"violations": [{"pointer": p, "message": m} for p, m in errors]},
    )


def _valid_detail(ws: Workspace) -> str:
    """What "valid" meant here: the schema passed, or only parsing (and whether the file or detection said so)."""
    rel = ws.rel(ws.config_path)
    schema = ws.settings.paths.config_schema
    if schema != "none":
        return f"{rel} passes the {schema} schema"
    guessed = next((i for i in ws.inferred if i.setting == "paths.config_schema"), None)
    if guessed is not None:
        return f"{rel} parses; it is not healthkit's training config, so it is not validated against healthkit's schema"
    return f"{rel} parses (schema validation off in healthkit.toml)"


def _config_required(ws: Workspace) -> bool:
    """A config.json must exist for our trainer's workspace (its schema applies), or when healthkit.toml says so."""
    return ws.settings.run.config_required or ws.settings.paths.config_schema != "none"


@check(
    "config",
    title="Training config",
    codes=[INVALID, NOT_LOCAL, SEQ_TOO_LONG, UNKNOWN_KEY, DUPLICATE_KEY],
    tags=["config"],
)
def config_check(ws: Workspace) -> CheckOutput:
    cfg = ws.config
    if cfg.problem is not None and cfg.problem.kind == "missing" and not _config_required(ws):
        return CheckOutput(
            notes=[
                f"no {ws.rel(ws.config_path)}: not needed here (not healthkit's trainer's workspace, "
                "and healthkit.toml does not require one)"
            ]
        )
    if cfg.problem is not None:
        return CheckOutput(findings=[_unreadable(ws)])
    dupes = [_duplicates(ws)] if cfg.duplicates else []
    out = _judged(ws)
    out.findings[:0] = dupes
    if dupes:
        out.healthy[:] = []
    return out


def _duplicates(ws: Workspace) -> Finding:
    keys = ws.config.duplicates
    rel = q(ws, ws.config_path)
    shown = ", ".join(f"`{k}`" for k in keys[:10])
    return Finding(
        code=DUPLICATE_KEY.code,
        severity=Severity.WARNING,
        title=f"config.json states {len(keys)} key{'s' if len(keys) != 1 else ''} twice ({shown})",
        problem=[
            f"{shown} appear{'s' if len(keys) == 1 else ''} more than once in one object; the last one is the value in force"
        ],
        impact=[
            "The first value is dead text a person may read as the setting",
            "A doc fix from config.json would write the last value",
        ],
        evidence=[
            Evidence(f"grep -n {command_word(chr(34) + keys[0] + chr(34))} {rel}", f"{keys[0]} stated more than once")
        ],
        recommendations=["Keep one of each in config.json (the last one is the value training uses)"],
        data={"keys": list(keys)},
    )


def command_word(text: str) -> str:
    from healthkit.system.shellcmd import quote_arg

    return quote_arg(text)


def _judged(ws: Workspace) -> CheckOutput:
    cfg = ws.config
    try:
        errors = _schema_errors(ws, cfg.data)
    except (OSError, ValueError) as exc:
        return CheckOutput(unknown=f"the config schema {ws.settings.paths.config_schema} could not be loaded: {exc}")
    ours = ws.settings.paths.config_schema == "healthkit"
    unknown = (
        unknown_keys(cfg.data) if ours else []
    )  # healthkit.contract.configschema: the trainer's start says the same
    warned = [_unknown_key_finding(ws, unknown)] if unknown else []
    if errors:
        return CheckOutput(findings=[_violations(errors)] + warned)
    hub = _hub_id_problem(ws, cfg.data) if ours else None
    if hub is not None:
        return CheckOutput(findings=[hub] + warned)
    too_long = _seq_length_problem(ws, cfg.data) if ours else None
    if too_long is not None:
        return CheckOutput(findings=[too_long] + warned)
    return CheckOutput(findings=warned, healthy=[] if warned else [Healthy("Config is valid", [_valid_detail(ws)])])
