"""Which run formats exist, and which one a checkpoint folder is written in.

Formats register through the `healthkit.formats` entry-point group, the built-ins the same
way a third party would (each entry point names a `RunFormat` instance). A source tree that
was never installed loads the built-ins directly, as fixes do. A format that fails to load
is recorded in LOAD_ERRORS and the others still work.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from healthkit.formats.base import UNKNOWN, Recognised, RunFormat, scan

ENTRY_POINT_GROUP = "healthkit.formats"
BUILTIN = (
    ("hf", "healthkit.formats.hf:FORMAT"),
    ("lightning", "healthkit.formats.lightning:FORMAT"),
    ("accelerate", "healthkit.formats.accelerate:FORMAT"),
)
LOAD_ERRORS: list[str] = []
_FORMATS: list[RunFormat] | None = None
_LOCK = threading.Lock()


def _entry_points() -> list[Any]:
    from healthkit.system.entrypoints import EntryPoint, entry_points

    return entry_points(ENTRY_POINT_GROUP) or [EntryPoint(n, v) for n, v in BUILTIN]


def formats(entry_points: list[Any] | None = None) -> list[RunFormat]:
    """Every registered format, the most specific (lowest priority number) first."""
    global _FORMATS
    with _LOCK:
        if _FORMATS is not None and entry_points is None:
            return _FORMATS
        found: list[RunFormat] = []
        for ep in sorted(entry_points if entry_points is not None else _entry_points(), key=lambda e: e.name):
            try:
                obj = ep.load()
            except Exception as exc:
                msg = f"format plugin {ep.name} = {ep.value} failed to load: {type(exc).__name__}: {exc}"
                if msg not in LOAD_ERRORS:
                    LOAD_ERRORS.append(msg)
                continue
            if isinstance(obj, RunFormat):
                found.append(obj)
            else:
                LOAD_ERRORS.append(f"format plugin {ep.name} = {ep.value} is not a RunFormat")
        found.sort(key=lambda f: (f.priority, f.name))
        if entry_points is None:
            _FORMATS = found
        return found


def by_name(name: str) -> RunFormat | None:
    return next((f for f in formats() if f.name == name), None)


def recognise(
    root: Path,
    entries: list[Any] | None = None,
    declared: str | None = None,
) -> tuple[RunFormat, Recognised | None, list[Any]]:
    """(the format, its evidence, the folder's entries) for checkpoint folder ``root``.

    ``declared`` (healthkit.toml `[run] format`) wins when that format is registered. A folder
    no format claims (empty, missing, or holding no checkpoint any format names) gets the
    default layout, HF's, with no evidence: it lists no checkpoint there, so nothing is judged.
    """
    entries = scan(root) if entries is None else entries
    if declared:
        fmt = by_name(declared)
        if fmt is not None:
            return fmt, Recognised(f"healthkit.toml [run] format = {declared!r}"), entries
    for fmt in formats():
        found = fmt.recognise(root, entries)
        if found is not None:
            return fmt, found, entries
    return by_name("hf") or UNKNOWN, None, entries
