"""Text from a workspace made harmless for where it is shown: terminals, Markdown, JSON (names are hostile input).

A file or queue name may hold ESC sequences (ESC[2J clears a screen, OSC 8 forges links), raw HTML, backticks or
bytes that are not UTF-8. Shown raw they act on whoever reads the report. Here a control character or an
undecodable byte becomes the visible text ``\\xNN``, `<` outside Markdown code becomes ``&lt;``, and a code span's
fence is longer than any backtick run inside it.
"""

from __future__ import annotations

import re
from typing import Any, TextIO

# C0 controls except newline and tab, DEL, C1 controls, and the surrogates os.fsdecode makes of undecodable bytes.
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\ud800-\udfff]")
_SURROGATE = re.compile("[\ud800-\udfff]")


def _hex(m: re.Match[str]) -> str:
    c = ord(m.group())
    if 0xDC80 <= c <= 0xDCFF:  # one undecodable byte, as surrogateescape keeps it
        return f"\\x{c - 0xDC00:02x}"
    return f"\\x{c:02x}" if c < 0x100 else f"\\u{c:04x}"


def _redecoded(text: str) -> str:
    """Surrogate-escaped bytes that form valid UTF-8 as their characters (a path decoded under a C locale)."""
    try:
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "surrogateescape")
    except UnicodeError:
        return text


def visible(text: str) -> str:
    """Control characters and undecodable bytes as the visible text ``\\xNN`` (newlines and tabs stay)."""
    if not _CONTROL.search(text):
        return text
    if _SURROGATE.search(text):
        text = _redecoded(text)
    return _CONTROL.sub(_hex, text)


def unsurrogate(text: str, json_string: bool = False) -> str:
    """Only the undecodable bytes as ``\\xNN``: what remains encodes as valid UTF-8 (JSON, Prometheus).

    ``json_string``: ``text`` is JSON (the surrogates stand inside its strings), so the backslash is written escaped and
    the string decodes to the four characters ``\\xe9``.
    """
    if not _SURROGATE.search(text):
        return text
    text = _redecoded(text)
    return _SURROGATE.sub((lambda m: "\\" + _hex(m)) if json_string else _hex, text)


def md_code(text: str) -> str:
    """``text`` as one Markdown code span: a fence longer than any backtick run inside, padded where it touches one."""
    text = visible(text).replace("\n", " ")
    longest = max((len(r) for r in re.findall("`+", text)), default=0)
    fence = "`" * (longest + 1)
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{fence}{pad}{text}{pad}{fence}"


_SPAN = re.compile(r"(`+)(.+?)(?<!`)\1(?!`)", re.S)


def md_line(line: str) -> str:
    """A Markdown line with raw HTML outside its code spans escaped (`<` as ``&lt;``), controls made visible."""
    line = visible(line)
    if "<" not in line:
        return line
    out, pos = [], 0
    for m in _SPAN.finditer(line):
        out.append(line[pos : m.start()].replace("<", "&lt;"))
        out.append(m.group())
        pos = m.end()
    out.append(line[pos:].replace("<", "&lt;"))
    return "".join(out)


def md_document(text: str) -> str:
    """A whole Markdown document made safe: fenced blocks keep their text (controls made visible), other lines pass md_line."""
    out, fence = [], ""
    for line in text.split("\n"):
        stripped = line.lstrip()
        if fence:
            out.append(visible(line))
            if stripped.startswith(fence) and stripped.strip("`") == "":
                fence = ""
            continue
        m = re.match("`{3,}", stripped)
        if m:
            fence = m.group()
            out.append(visible(line))
            continue
        out.append(md_line(line))
    return "\n".join(out)


class SafeWriter:
    """A text stream that writes control characters and undecodable bytes as visible ``\\xNN`` (a terminal's output)."""

    def __init__(self, inner: TextIO):
        self.inner = inner

    def write(self, text: str) -> int:
        return self.inner.write(visible(text))

    def flush(self) -> None:
        self.inner.flush()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)
