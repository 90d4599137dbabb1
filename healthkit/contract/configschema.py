"""The training config's JSON Schema (exported from healthkit.contract.config_model), read without importing pydantic."""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

SCHEMA_PATH = Path(__file__).parent.parent / "schemas" / "config.schema.json"


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
