"""The training config's JSON Schema (exported from healthkit.contract.config_model), read without importing pydantic."""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

SCHEMA_PATH = Path(__file__).parent.parent / "schemas" / "config.schema.json"
# The `$schema` id by which an audit knows a config.json was written for our trainer.
HEALTHKIT_SCHEMA_ID = "https://healthkit.dev/schemas/config.schema.json"
# config.json key where `healthkit init` records the defaults it wrote ({key: value}): a key still holding that value
# was chosen by healthkit, not declared by the user.
DEFAULTS_KEY = "$healthkit_defaults"


@functools.lru_cache(maxsize=1)
def config_schema() -> dict[str, Any]:
    return json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))


def default(key: str) -> Any:
    """The default the trainer applies when config.json omits ``key`` (None when it has none)."""
    return config_schema().get("properties", {}).get(key, {}).get("default")


def schema_violations(data: Any) -> list[tuple[str, str]]:
    """The audit's reading of config.json: violations of the exported schema as (JSON pointer, message), no pydantic."""
    from healthkit.system.schemalite import validate

    return validate(config_schema(), data)


def unknown_keys(data: Any) -> list[tuple[str, str | None]]:
    """(key, the known key it most likely meant or None) for each top-level key of our trainer's config.json that is
    not one of its settings (the audit's `config.unknown-key`, the daemon's start and `queue add` warn alike)."""
    import difflib

    if not isinstance(data, dict):
        return []
    known = sorted(config_schema().get("properties", {}))
    out = []
    for key in data:
        if not isinstance(key, str) or key in known or key in ("$schema", DEFAULTS_KEY):
            continue
        close = difflib.get_close_matches(key, known, n=1, cutoff=0.75)
        out.append((key, close[0] if close else None))
    return out


def unknown_key_lines(data: Any) -> list[str]:
    """One sentence per unknown key, for a person (the daemon's start-up warnings, `queue add`)."""
    return [
        f"config.json key `{k}` is not a setting of the trainer and is ignored"
        + (f": did you mean `{m}`?" if m else " (more TrainingArguments go under `training_args`)")
        for k, m in unknown_keys(data)
    ]
