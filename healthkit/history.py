"""A reports folder for cron: timestamped Markdown and JSON, `latest.*` replaced atomically."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from .fsutil import atomic_write
from .render import EXTENSIONS, render

if TYPE_CHECKING:
    from .report import Report


def write_history(report: "Report", folder: Path, fmt: str = "md", ascii: bool = False) -> list[Path]:
    from .output import stamp

    folder.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    formats = ["md", "json"] + ([fmt] if fmt not in ("md", "json") else [])
    for f in formats:
        text = render(report, f, ascii=ascii)
        ext = EXTENSIONS[f]
        path = folder / f"report-{stamp(report)}.{ext}"
        atomic_write(path, text)
        atomic_write(folder / f"latest.{ext}", text)
        written += [path, folder / f"latest.{ext}"]
    return written
