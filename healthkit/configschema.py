"""The training config's JSON Schema (exported from healthkit.config_model), read without importing pydantic."""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

SCHEMA_PATH = Path(__file__).parent / "schemas" / "config.schema.json"


@functools.lru_cache(maxsize=1)
def config_schema() -> dict[str, Any]:
    return json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))


def default(key: str) -> Any:
    """The default the trainer applies when config.json omits ``key`` (None when it has none)."""
    return config_schema().get("properties", {}).get(key, {}).get("default")


def validate_config(data: Any) -> list[tuple[str, str]]:
    """Violations of the training config schema as (JSON pointer, message)."""
    from .schemalite import validate

    return validate(config_schema(), data)
