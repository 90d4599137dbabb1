"""Every command we print for a person to paste, built by one helper that quotes every argument.

`shlex.quote` for printable text; bash's ``$'…'`` for an argument with control characters or bytes that are not
UTF-8 (a path holds bytes, and os.fsdecode turns them into surrogates), so the pasted command names the very same
file and no escape sequence reaches the terminal.
"""

from __future__ import annotations

import os
import shlex
from collections.abc import Iterable
from pathlib import PurePath

_NAMED = {0x07: "\\a", 0x08: "\\b", 0x09: "\\t", 0x0A: "\\n", 0x0B: "\\v", 0x0C: "\\f", 0x0D: "\\r", 0x1B: "\\E"}


def _needs_ansi_c(text: str) -> bool:
    return any(ord(c) < 0x20 or 0x7F <= ord(c) < 0xA0 or 0xDC80 <= ord(c) <= 0xDCFF for c in text)


def _ansi_c(text: str) -> str:
    out = []
    for byte in os.fsencode(text):
        if byte in _NAMED:
            out.append(_NAMED[byte])
        elif byte in (0x27, 0x5C):  # ' and \
            out.append("\\" + chr(byte))
        elif 0x20 <= byte < 0x7F:
            out.append(chr(byte))
        else:
            out.append(f"\\x{byte:02x}")
    return "$'" + "".join(out) + "'"


def quote_arg(arg: str | PurePath | int) -> str:
    """One argument, quoted for a POSIX shell (bash's ``$'…'`` where plain quoting would carry raw bytes)."""
    text = os.fspath(arg) if isinstance(arg, PurePath) else str(arg)
    return _ansi_c(text) if _needs_ansi_c(text) else shlex.quote(text)


def command(*argv: str | PurePath | int | Iterable[str | PurePath | int]) -> str:
    """A command line from its words; an iterable argument is spread (``command("healthkit", "fix", path)``)."""
    words: list[str] = []
    for arg in argv:
        if isinstance(arg, (str, PurePath, int)):
            words.append(quote_arg(arg))
        else:
            words.extend(quote_arg(a) for a in arg)
    return " ".join(words)
