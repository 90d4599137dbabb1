"""The one JSON writer: every JSON file and line healthkit writes goes through `dumps`, so all parse strictly.

Python's `json` writes a bare `NaN` or `Infinity` for a diverged loss, which jq, browsers
and every strict parser refuse. Here a non-finite number becomes the string "nan", "inf"
or "-inf" (readable by jq and by a person) and anything not JSON-native is written as
its `str()`, so no report, journal or state file is ever half-valid.
"""

from __future__ import annotations

import json
import math
from typing import Any


def finite(value: Any) -> Any:
    """A copy of ``value`` with NaN and infinities as strings, at any depth."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)  # "nan", "inf", "-inf"
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite(v) for v in value]
    return value


def dumps(value: Any, *, indent: int | None = 2, sort_keys: bool = False, line: bool = False) -> str:
    """Strict JSON text ending in a newline; ``line=True`` gives one compact line (JSON Lines)."""
    text = json.dumps(
        finite(value),
        indent=None if line else indent,
        sort_keys=sort_keys,
        ensure_ascii=False,
        default=str,
        allow_nan=False,
        separators=(",", ":") if line else None,
    )
    from healthkit.system.safetext import unsurrogate

    return (
        unsurrogate(text, json_string=True) + "\n"
    )  # an undecodable byte of a name is the text \xe9: the output is always valid UTF-8


def _refuse(constant: str) -> Any:
    raise ValueError(f"not strict JSON: {constant}")


def loads_strict(text: str | bytes) -> Any:
    """Parse JSON refusing `NaN`, `Infinity` and `-Infinity`, as jq and browsers do (tests hold our files to it)."""
    return json.loads(text, parse_constant=_refuse)
