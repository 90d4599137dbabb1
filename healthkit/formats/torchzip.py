"""A `torch.save` file (a zip archive) judged and read without torch and without reading its tensors.

Whether the archive is whole is read from its END: the end-of-central-directory record and
the central directory it points to (what `zipfile` reads first, in bounded time). A save cut
short has no end record, or a central directory that names data past where the file stops.
The pickled object (`<archive>/data.pkl`) is read only where its fields are needed, through
`safepickle`, which imports no class and builds no tensor.
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path
from typing import Any

from healthkit.formats.safepickle import PickleRefused, safe_loads

MAX_PICKLE_BYTES = 64 * 1024 * 1024
LOCAL_HEADER = 30


def size_of(path: Path) -> int | None:
    try:
        return os.stat(path).st_size
    except OSError:
        return None


def zip_problem(path: Path) -> str | None:
    """Why ``path`` is not a whole zip archive (None: whole), read from its end only."""
    from healthkit.system.fsutil import ReadProblem, open_regular

    try:
        with open_regular(path) as fh, zipfile.ZipFile(fh) as zf:  # a FIFO never blocks: it is not a regular file
            infos = zf.infolist()
            start = getattr(zf, "start_dir", None)
    except ReadProblem as exc:
        return f"{path.name} cannot be read ({exc.message.replace(str(path) + ' ', '', 1)})"
    except zipfile.BadZipFile as exc:
        if size_of(path) == 0:
            return f"{path.name} is empty"
        return f"{path.name} is cut short or not a torch.save file ({exc}; {size_of(path)} bytes)"
    except OSError as exc:
        return f"{path.name} cannot be read ({exc.strerror or exc})"
    if not infos:
        return f"{path.name} is an empty archive"
    end = max(i.header_offset + LOCAL_HEADER + len(i.filename.encode()) + len(i.extra) + i.compress_size for i in infos)
    if isinstance(start, int) and end > start:
        return f"{path.name}'s directory names data past its own start ({end} > {start} bytes): the file is damaged"
    if not any(i.filename.endswith("/data.pkl") or i.filename == "data.pkl" for i in infos):
        return f"{path.name} holds no data.pkl: not a torch.save file"
    return None


def read_pickle(path: Path, max_bytes: int = MAX_PICKLE_BYTES) -> tuple[Any, str | None]:
    """(the object of a torch.save zip's data.pkl with stand-ins for every class and tensor, None) or (None, why not)."""
    from healthkit.system.fsutil import ReadProblem, open_regular

    try:
        with open_regular(path) as fh, zipfile.ZipFile(fh) as zf:
            member = next(
                (i for i in zf.infolist() if i.filename.endswith("/data.pkl") or i.filename == "data.pkl"), None
            )
            if member is None:
                return None, "no data.pkl"
            if member.file_size > max_bytes:
                return None, f"data.pkl is {member.file_size} bytes (more than {max_bytes} are not read)"
            raw = zf.read(member)
    except (zipfile.BadZipFile, OSError, RuntimeError, ReadProblem) as exc:
        return None, f"unreadable ({exc})"
    try:
        return safe_loads(raw), None
    except PickleRefused as exc:
        return None, str(exc)
