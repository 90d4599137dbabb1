"""Entry points of the `healthkit.checks`, `healthkit.fixes` and `healthkit.formats` groups, cached between runs.

Scanning every installed distribution with importlib.metadata parses each one's metadata
(the email parser) and costs more than a cron audit's whole check phase in a large
environment (torch, transformers...). The result is cached per interpreter and sys.path,
stamped with the modification times of the sys.path folders: installing, upgrading or
removing any distribution rewrites its *.dist-info folder, which changes the folder's
mtime, so the next run scans again. An unreadable or stale cache is simply ignored.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

from healthkit.system.records import record


@record
class EntryPoint:
    """The part of importlib.metadata.EntryPoint the registry uses: name, value, load()."""

    name: str
    value: str

    def load(self) -> Any:
        import importlib

        module, _, attr = self.value.partition(":")
        obj = importlib.import_module(module.strip())
        for part in filter(None, attr.strip().split(".")):
            obj = getattr(obj, part)
        return obj


def user_cache_dir() -> Path | None:
    """healthkit's folder in the user's cache (`$XDG_CACHE_HOME/healthkit`, else `~/.cache/healthkit`); None when the
    user has no home. The entry-point cache and the loss-history cache (healthkit/formats/historycache.py) live here."""
    base = os.environ.get("XDG_CACHE_HOME") or (
        os.path.join(os.path.expanduser("~"), ".cache") if os.path.expanduser("~") != "~" else ""
    )
    return Path(base) / "healthkit" if base else None


def _cache_file() -> Path | None:
    folder = user_cache_dir()
    if folder is None:
        return None
    import zlib  # not hashlib: its OpenSSL start-up costs more than this whole lookup

    raw = "\0".join([sys.executable, *sys.path]).encode()
    key = f"{zlib.crc32(raw):08x}{zlib.adler32(raw):08x}"
    return folder / f"entry-points-{key}.json"


def _stamp() -> list[list[Any]]:
    """Each sys.path folder's mtime; the working directory's (`-c`, `-m`) by the metadata folders it holds instead:
    cron runs in a home folder whose mtime moves with every file written there, which would scan every run."""
    try:
        cwd = os.getcwd()
    except OSError:
        cwd = None
    out: list[list[Any]] = []
    for entry in sys.path:
        try:
            if entry == "" or os.path.abspath(entry) == cwd:
                with os.scandir(entry or ".") as it:
                    out.append([entry, sorted(e.name for e in it if e.name.endswith((".dist-info", ".egg-info")))])
            else:
                out.append([entry, os.stat(entry).st_mtime_ns])
        except OSError:
            out.append([entry, None])
    return out


# Scanned together: one scan costs the same as one group, and a cache per group would thrash.
GROUPS = ("healthkit.checks", "healthkit.fixes", "healthkit.daemons", "healthkit.formats")


def _scan() -> dict[str, list[list[str]]]:
    from importlib.metadata import entry_points as scan

    return {g: [list(x) for x in sorted({(ep.name, ep.value) for ep in scan(group=g)})] for g in GROUPS}


def entry_points(group: str) -> list[EntryPoint]:
    cache = _cache_file()
    stamp = _stamp()
    if cache is not None:
        try:
            data = json.loads(cache.read_text(encoding="utf-8"))
            groups = data.get("groups", {})
            if data.get("stamp") == stamp and all(isinstance(groups.get(g), list) for g in GROUPS):
                return [EntryPoint(n, v) for n, v in groups.get(group, [])]
        except (OSError, ValueError, TypeError, AttributeError):
            pass
    found = _scan()
    if cache is not None:
        try:
            from healthkit.system.fsutil import atomic_write
            from healthkit.system.jsonio import dumps

            cache.parent.mkdir(parents=True, exist_ok=True)
            atomic_write(cache, dumps({"stamp": stamp, "groups": found}, line=True), durable=False)
        except OSError:
            pass
    if group not in found:
        from importlib.metadata import entry_points as scan

        return sorted((EntryPoint(ep.name, ep.value) for ep in scan(group=group)), key=lambda e: (e.name, e.value))
    return [EntryPoint(n, v) for n, v in found[group]]
