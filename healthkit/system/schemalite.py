"""Validation on the audit's hot path without pydantic or jsonschema imports.

A cron audit has a budget of about twice `python -c "import pydantic, psutil"`; building
pydantic models costs more than that budget, and importing jsonschema alone costs twice
it. So the audit validates:

- config.json against the JSON Schema exported from the pydantic model
  (schemas/config.schema.json) with `validate()`, which implements exactly the keywords
  that schema uses and refuses any other (`UnsupportedSchema`), so nothing is silently
  skipped. tests/test_schemalite.py checks it agrees with the jsonschema reference
  implementation on a corpus of good and bad configs (with one deliberate difference:
  `integer` refuses 3.0, as the trainer's strict pydantic validation does);
- healthkit.toml into frozen dataclasses with `build()`, driven by the annotations and
  the bounds in field metadata.

The trainer validates with the pydantic model itself (strict mode, same schema).
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from typing import Any, Literal, Union, cast, get_args, get_origin

SUPPORTED = {
    "type",
    "enum",
    "const",
    "minimum",
    "maximum",
    "exclusiveMinimum",
    "exclusiveMaximum",
    "minLength",
    "maxLength",
    "required",
    "properties",
    "additionalProperties",
    "anyOf",
    "items",
    "$ref",
    "$defs",
    # annotations, ignored by validation:
    "title",
    "description",
    "default",
    "$schema",
    "$id",
    "examples",
}


class UnsupportedSchema(ValueError):
    """The schema uses a keyword this validator does not implement."""


def _pointer(path: tuple[Any, ...]) -> str:
    return "".join("/" + str(p).replace("~", "~0").replace("/", "~1") for p in path)


def _is_type(value: Any, t: str) -> bool:
    if t == "null":
        return value is None
    if t == "boolean":
        return isinstance(value, bool)
    if t == "integer":
        # Stricter than JSON Schema (which accepts 3.0): the trainer validates in pydantic's strict mode.
        return isinstance(value, int) and not isinstance(value, bool)
    if t == "number":
        return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if t == "string":
        return isinstance(value, str)
    if t == "array":
        return isinstance(value, list)
    if t == "object":
        return isinstance(value, dict)
    raise UnsupportedSchema(f"unknown type {t!r}")


def check_supported(schema: Any) -> None:
    if isinstance(schema, dict):
        unknown = set(schema) - SUPPORTED
        if unknown:
            raise UnsupportedSchema(f"schema keywords not supported: {', '.join(sorted(unknown))}")
        for key in ("properties", "$defs"):
            for sub in schema.get(key, {}).values():
                check_supported(sub)
        for sub in schema.get("anyOf", []):
            check_supported(sub)
        for key in ("items", "additionalProperties"):
            if isinstance(schema.get(key), dict):
                check_supported(schema[key])


def validate(schema: dict[str, Any], data: Any) -> list[tuple[str, str]]:
    """All violations as (JSON pointer, message), in document order."""
    check_supported(schema)
    errors: list[tuple[str, str]] = []
    _validate(schema, data, (), schema, errors)
    return errors


def _validate(
    s: dict[str, Any], v: Any, path: tuple[Any, ...], root: dict[str, Any], errors: list[tuple[str, str]]
) -> None:
    if "$ref" in s:
        ref = s["$ref"]
        if not ref.startswith("#/$defs/"):
            raise UnsupportedSchema(f"$ref {ref!r}")
        _validate(root["$defs"][ref.split("/")[-1]], v, path, root, errors)
    ptr = _pointer(path)
    if "anyOf" in s:
        branch_errors = []
        for sub in s["anyOf"]:
            errs: list[tuple[str, str]] = []
            _validate(sub, v, path, root, errs)
            if not errs:
                break
            branch_errors.append(errs)
        else:
            msgs = [e[0][1] for e in branch_errors if e]
            errors.append((ptr, " or ".join(dict.fromkeys(msgs)) or "matches none of the allowed forms"))
            return
    if "type" in s:
        types_ = s["type"] if isinstance(s["type"], list) else [s["type"]]
        if not any(_is_type(v, t) for t in types_):
            errors.append((ptr, f"must be {' or '.join(types_)}, not {_json_type(v)}"))
            return
    if "const" in s and v != s["const"]:
        errors.append((ptr, f"must be {s['const']!r}"))
    if "enum" in s and v not in s["enum"]:
        errors.append((ptr, f"must be one of {', '.join(repr(x) for x in s['enum'])}"))
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        if "minimum" in s and v < s["minimum"]:
            errors.append((ptr, f"must be >= {s['minimum']}"))
        if "maximum" in s and v > s["maximum"]:
            errors.append((ptr, f"must be <= {s['maximum']}"))
        if "exclusiveMinimum" in s and v <= s["exclusiveMinimum"]:
            errors.append((ptr, f"must be > {s['exclusiveMinimum']}"))
        if "exclusiveMaximum" in s and v >= s["exclusiveMaximum"]:
            errors.append((ptr, f"must be < {s['exclusiveMaximum']}"))
    if isinstance(v, str):
        if "minLength" in s and len(v) < s["minLength"]:
            errors.append((ptr, f"must have at least {s['minLength']} character(s)"))
        if "maxLength" in s and len(v) > s["maxLength"]:
            errors.append((ptr, f"must have at most {s['maxLength']} character(s)"))
    if isinstance(v, list) and isinstance(s.get("items"), dict):
        for i, item in enumerate(v):
            _validate(s["items"], item, (*path, i), root, errors)
    if isinstance(v, dict):
        for key in s.get("required", []):
            if key not in v:
                errors.append((_pointer((*path, key)), "is required"))
        props = s.get("properties", {})
        for key, item in v.items():
            if key in props:
                _validate(props[key], item, (*path, key), root, errors)
            elif s.get("additionalProperties") is False:
                errors.append((_pointer((*path, key)), "is not an allowed key"))
            elif isinstance(s.get("additionalProperties"), dict):
                _validate(s["additionalProperties"], item, (*path, key), root, errors)


def _json_type(v: Any) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "boolean"
    if isinstance(v, (int, float)):
        return "number"
    if isinstance(v, str):
        return "string"
    if isinstance(v, list):
        return "array"
    return "object" if isinstance(v, dict) else type(v).__name__


# dataclasses from TOML ------------------------------------------------------------


class BuildError(ValueError):
    def __init__(self, problems: list[str]):
        super().__init__("; ".join(problems))
        self.problems = problems


def build(cls: type, data: Any, where: str = "") -> Any:
    """Instantiate a frozen dataclass tree from parsed TOML, rejecting unknown keys and wrong types."""
    problems: list[str] = []
    obj = _build(cls, data, where, problems)
    if problems:
        raise BuildError(problems)
    return obj


def _build(cls: type, data: Any, where: str, problems: list[str]) -> Any:
    if not isinstance(data, dict):
        problems.append(f"{where or 'settings'}: must be a table")
        return cls()
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        loc = f"{where}.{key}" if where else key
        if key not in fields:
            close = [n for n in fields if n.replace("_", "")[:4] == key.replace("_", "")[:4]]
            problems.append(f"{loc}: unknown setting" + (f" (did you mean {close[0]}?)" if close else ""))
            continue
        kwargs[key] = _coerce(hints[key], value, loc, fields[key].metadata, problems)
    return cls(**kwargs)


def _coerce(tp: Any, value: Any, loc: str, meta: Any, problems: list[str]) -> Any:
    origin = get_origin(tp)
    if dataclasses.is_dataclass(tp):
        return _build(cast(type, tp), value, loc, problems)  # a type hint: the class, never an instance
    if origin in (Union, types.UnionType):
        args = get_args(tp)
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _coerce(inner[0], value, loc, meta, problems)
    if origin is Literal:
        if value not in get_args(tp):
            problems.append(f"{loc}: must be one of {', '.join(repr(a) for a in get_args(tp))}")
        return value
    if origin is list:
        (item,) = get_args(tp)
        if not isinstance(value, list):
            problems.append(f"{loc}: must be a list")
            return []
        return [_coerce(item, v, f"{loc}[{i}]", meta, problems) for i, v in enumerate(value)]
    ok = {
        bool: isinstance(value, bool),
        int: isinstance(value, int) and not isinstance(value, bool),
        float: isinstance(value, (int, float)) and not isinstance(value, bool),
        str: isinstance(value, str),
    }.get(tp)
    if ok is None:
        raise TypeError(f"unsupported settings type {tp!r}")
    if not ok:
        problems.append(f"{loc}: must be {tp.__name__}, not {_json_type(value)}")
        return value
    if tp is float:
        value = float(value)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if "ge" in meta and value < meta["ge"]:
            problems.append(f"{loc}: must be >= {meta['ge']}")
        if "gt" in meta and value <= meta["gt"]:
            problems.append(f"{loc}: must be > {meta['gt']}")
        if "le" in meta and value > meta["le"]:
            problems.append(f"{loc}: must be <= {meta['le']}")
    return value
