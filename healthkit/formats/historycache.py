"""A cache of a long run's parsed loss history, so that an audit's cost does not grow with the run's length.

HF rewrites no checkpoint's trainer_state.json once the checkpoint is saved, and the newest one holds the
whole `log_history`: 1.5 MB at 100k steps, 3 MB at 200k. A cron audit every few minutes would parse the same
file and rebuild the same four series again and again, each time a little longer as the run grows. Here the
series (and the file's other, small keys) are kept beside the user's other caches (`$XDG_CACHE_HOME/healthkit/
history/`, as the entry-point cache), keyed by the file's path, device, inode, size and mtime: a file that
changed in any way is parsed again. A hit costs a compact JSON parse of the series alone (about a quarter of the
cold parse and series together).

Only files of CACHE_FROM bytes or more, only when the audit reads as itself (no other user's Reader: their cache
is theirs), never a file that is not a regular file. Unreadable, stale or foreign cache files are ignored, and the
newest MAX_FILES are kept. `HEALTHKIT_NO_HISTORY_CACHE=1` turns it off (the bench's cold numbers).
"""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

VERSION = 1
CACHE_FROM = 512 * 1024  # ~3,500 logs: below this a parse costs less than keeping it
MAX_FILES = 16  # a few workspaces' newest checkpoints
Series4 = tuple[list, list, list, list]


class CachedHistory:
    """Stands where `log_history` stood in a state read from the cache: its series, and the file to read it from
    when the entries themselves are needed (a finding's evidence prints a few of them)."""

    __slots__ = ("path", "series")

    def __init__(self, path: Path, series: Series4):
        self.path = path
        self.series = series


def _folder() -> Path | None:
    from healthkit.system.entrypoints import user_cache_dir

    home = None if os.environ.get("HEALTHKIT_NO_HISTORY_CACHE") == "1" else user_cache_dir()
    return home / "history" if home is not None else None


def _identity(path: Path) -> str | None:
    """path, device, inode, size and mtime of a regular file of CACHE_FROM bytes or more; None for anything else."""
    try:
        st = os.stat(path, follow_symlinks=False)
    except OSError:
        return None
    if not stat.S_ISREG(st.st_mode) or st.st_size < CACHE_FROM:
        return None
    return f"{os.path.abspath(path)}\0{st.st_dev}\0{st.st_ino}\0{st.st_size}\0{st.st_mtime_ns}"


def _file(folder: Path, ident: str) -> Path:
    return folder / f"{hashlib.sha1(ident.encode('utf-8', 'surrogateescape')).hexdigest()}.json"


def load_with_cache(
    path: Path, load: Callable[[Path], tuple[dict | None, str | None]], series: Callable[[dict], Series4]
) -> tuple[dict | None, str | None]:
    """``load(path)``'s (data, why), the history as a CachedHistory when the cache holds this very file; a file
    read whole is put in the cache (when it is large enough and did not change while it was read)."""
    folder, ident = _folder(), _identity(path)
    if folder is None or ident is None:
        return load(path)
    hit = _read(folder, ident, path)
    if hit is not None:
        return hit, None
    data, why = load(path)
    if data is not None and _identity(path) == ident:
        _write(folder, ident, data, series(data))
    return data, why


def _read(folder: Path, ident: str, path: Path) -> dict | None:
    import orjson

    try:
        got = orjson.loads(_file(folder, ident).read_bytes())
    except (OSError, orjson.JSONDecodeError):
        return None
    if not isinstance(got, dict) or got.get("v") != VERSION or got.get("id") != ident:
        return None
    head, series = got.get("head"), got.get("series")
    if not isinstance(head, dict) or not isinstance(series, list) or len(series) != 4:
        return None
    if not all(isinstance(s, list) for s in series):
        return None
    return {**head, "log_history": CachedHistory(path, (series[0], series[1], series[2], series[3]))}


def _write(folder: Path, ident: str, data: dict, series: Series4) -> None:
    """Atomically, then the oldest beyond MAX_FILES go; any failure leaves the audit as it was (no cache)."""
    import orjson

    head = {k: v for k, v in data.items() if k != "log_history"}
    try:
        if b"null" in orjson.dumps(list(series)) or orjson.loads(orjson.dumps(head)) != head:
            return  # orjson writes a NaN or an infinity as null: such a run is parsed each time, exactly
        blob = orjson.dumps({"v": VERSION, "id": ident, "head": head, "series": list(series)})
    except (TypeError, orjson.JSONEncodeError):
        return
    try:
        folder.mkdir(parents=True, exist_ok=True)
        target = _file(folder, ident)
        tmp = target.with_name(f".{target.name}.{os.getpid()}")
        tmp.write_bytes(blob)
        os.replace(tmp, target)
        kept = sorted(folder.glob("*.json"), key=lambda p: p.stat().st_mtime, reverse=True)
        for old in kept[MAX_FILES:]:
            old.unlink(missing_ok=True)
    except OSError:
        return


def history_of(data: dict) -> Any:
    """``data``'s `log_history` as entries: read again from its file when the state came from the cache."""
    got = data.get("log_history")
    if isinstance(got, CachedHistory):
        from healthkit.formats.hf_checkpoints import load_state

        full, _ = load_state(got.path)
        return full.get("log_history") if full is not None else None
    return got
