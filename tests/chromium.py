"""Headless Chromium for the browser tests: find it (skip outside CI, fail in CI), dump a DOM, take a screenshot,
collect script errors from its console log, and read a PNG's pixels with the stdlib (zlib) alone."""

from __future__ import annotations

import os
import re
import shutil
import struct
import subprocess
import tempfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import pytest

NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--enable-logging=stderr",
    "--v=0",
]
_CONSOLE = re.compile(r":INFO:CONSOLE[^\]]*\] \"(.*)\", source: (.*)$")


def chromium() -> str:
    """The browser's path; a skip with the reason when it is missing, a failure under CI (CI=true)."""
    for name in NAMES:
        path = shutil.which(name)
        if path:
            return path
    reason = "Chromium is not installed (apt-get install chromium); the browser tests need it"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(reason + " and CI must run them")
    pytest.skip(reason)


@dataclass(frozen=True)
class Run:
    stdout: str
    log: str

    @property
    def console(self) -> list[str]:
        """The page's console messages (errors included), from Chromium's log."""
        return [m.group(1) + " @ " + m.group(2) for line in self.log.splitlines() if (m := _CONSOLE.search(line))]

    @property
    def script_errors(self) -> list[str]:
        bad = ("Uncaught", "Refused to", "Content Security Policy", "Failed to load", "TypeError", "ReferenceError")
        return [c for c in self.console if any(b in c for b in bad)]


def run(url: str, *args: str, timeout: float = 90.0) -> Run:
    """One headless Chromium run with a fresh profile, removed afterwards."""
    exe = chromium()
    profile = tempfile.mkdtemp(prefix="hk-chromium-")
    try:
        proc = subprocess.run(
            [exe, *FLAGS, f"--user-data-dir={profile}", *args, url],
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )
    finally:
        shutil.rmtree(profile, ignore_errors=True)
    return Run(proc.stdout, proc.stderr)


def dump_dom(url: str, budget_ms: int | None = None) -> Run:
    """The DOM after load (and after ``budget_ms`` of virtual time, so fetches and timers have run)."""
    extra = [f"--virtual-time-budget={budget_ms}"] if budget_ms else []
    return run(url, "--dump-dom", *extra)


def screenshot(url: str, out: Path, size: tuple[int, int] = (1000, 1400), budget_ms: int | None = None) -> Run:
    extra = [f"--virtual-time-budget={budget_ms}"] if budget_ms else []
    r = run(url, f"--screenshot={out}", f"--window-size={size[0]},{size[1]}", "--hide-scrollbars", *extra)
    assert out.is_file() and out.stat().st_size > 0, f"no screenshot written:\n{r.log[-2000:]}"
    return r


def keep(shot: Path, name: str) -> None:
    """With HEALTHKIT_UPDATE_REPORTS=1, keep this screenshot as reports/<name> (what the repository shows readers)."""
    if os.environ.get("HEALTHKIT_UPDATE_REPORTS") == "1":
        shutil.copyfile(shot, Path(__file__).resolve().parents[1] / "reports" / name)


def png_rows(path: Path) -> tuple[int, int, list[bytes]]:
    """(width, height, rows of RGB(A) bytes) of an 8-bit RGB or RGBA PNG, unfiltered, with zlib alone."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    pos, idat, width = 8, b"", 0
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos : pos + 8])
        chunk = data[pos + 8 : pos + 8 + length]
        if kind == b"IHDR":
            width, height, depth, color = struct.unpack(">IIBB", chunk[:10])
            assert depth == 8 and color in (2, 6), f"unsupported PNG (depth {depth}, colour type {color})"
            bpp = 3 if color == 2 else 4
        elif kind == b"IDAT":
            idat += chunk
        pos += 12 + length
    raw = zlib.decompress(idat)
    stride = width * bpp
    rows, prev = [], bytearray(stride)
    for y in range(height):
        ftype, line = raw[y * (stride + 1)], bytearray(raw[y * (stride + 1) + 1 : (y + 1) * (stride + 1)])
        for i in range(stride):
            a = line[i - bpp] if i >= bpp else 0
            b, c = prev[i], prev[i - bpp] if i >= bpp else 0
            if ftype == 1:
                line[i] = (line[i] + a) & 255
            elif ftype == 2:
                line[i] = (line[i] + b) & 255
            elif ftype == 3:
                line[i] = (line[i] + (a + b) // 2) & 255
            elif ftype == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        rows.append(bytes(line))
        prev = line
    return width, height, rows


def colours(path: Path, step: int = 4) -> dict[bytes, int]:
    """How many sampled pixels have each RGB colour (every ``step``-th pixel of every ``step``-th row).

    Pillow decodes when it is installed (fast); the zlib decoder above is the fallback.
    """
    try:
        from PIL import Image
    except ImportError:
        width, height, rows = png_rows(path)
    else:
        with Image.open(path) as im:
            rgb = im.convert("RGB")
            width, height = rgb.size
            raw = rgb.tobytes()
        rows = [raw[y * width * 3 : (y + 1) * width * 3] for y in range(height)]
    bpp = len(rows[0]) // width
    counts: dict[bytes, int] = {}
    for row in rows[::step]:
        for x in range(0, width, step):
            px = row[x * bpp : x * bpp + 3]
            counts[px] = counts.get(px, 0) + 1
    return counts


def assert_not_blank(path: Path, min_colours: int = 8, max_share: float = 0.97) -> dict[bytes, int]:
    """A page, not a blank: several colours, and no single colour (the background) covers nearly everything."""
    counts = colours(path)
    total = sum(counts.values())
    top = max(counts.values())
    assert len(counts) >= min_colours and top / total <= max_share, (
        f"{path} looks blank: {len(counts)} colours, the commonest covers {top / total:.1%}"
    )
    return counts
