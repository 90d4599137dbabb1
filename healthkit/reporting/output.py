"""Where a rendered report goes: stdout, a file, or a reports folder with timestamped history and `latest.*`."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from healthkit.reporting.render import EXTENSIONS, render
from healthkit.system.fsutil import atomic_write, utf8

if TYPE_CHECKING:
    from healthkit.core.report import Report


def write_stdout(text: str) -> None:
    """UTF-8 whatever the locale (cron often runs with none)."""
    data = utf8(text)
    try:
        sys.stdout.flush()
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
    except AttributeError:  # captured streams in tests
        sys.stdout.write(text)


class Utf8Stdout:
    """The text stream that fix plans and scheduled runs print to: UTF-8 whatever the locale, like the report."""

    def write(self, text: str) -> int:
        write_stdout(text)
        return len(text)

    def flush(self) -> None:
        """Each write is flushed already."""


def is_dir_target(target: Path | str) -> bool:
    """A folder: one that exists, a name ending in `/`, or a new name without a file extension.

    The last rule matters because pathlib (and so typer) drops the trailing slash of `--output reports/`.
    """
    text = os.fspath(target)
    path = Path(text)
    return path.is_dir() or text.endswith(os.sep) or (not os.path.lexists(path) and not path.suffix)


_BY_SUFFIX = {
    ".md": "md",
    ".markdown": "md",
    ".json": "json",
    ".prom": "prom",
    ".xml": "junit",
    ".html": "html",
    ".htm": "html",
}


def report_format(given: str | None, target: Path | None) -> str:
    """The format of a report: ``--format`` if given, else the one a file ``--output``'s extension names, else Markdown.

    Raises ValueError when both are given and disagree (`-o x.json -f md` would write Markdown into a .json file).
    """
    implied = None
    if target is not None and not is_dir_target(target):
        implied = _BY_SUFFIX.get(target.suffix.lower())
    if given and implied and given != implied:
        raise ValueError(
            f"--output {target} names a {implied} file but --format is {given}: "
            f"drop --format, or give the file a .{EXTENSIONS[given]} name"
        )
    return given or implied or "md"


def write_report(
    report: Report, fmt: str, target: Path, ascii: bool = False, keep: int | None = None, **options: Any
) -> list[Path]:
    """Write to a file, or into a folder as `report-<UTC stamp>.<ext>` plus `latest.*`, keeping the newest ``keep``.

    ``options`` reach the renderer (e.g. ``fail_level`` for JUnit).
    """
    if not is_dir_target(target):
        target.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(target, utf8(render(report, fmt, ascii=ascii, **options)))
        return [target]
    from healthkit.reporting.history import write_history

    return write_history(report, target, fmt, ascii=ascii, keep=keep, **options)


def stamp(report: Report) -> str:
    from healthkit.reporting.history import stamp_of

    return stamp_of(report.generated_at)


def default_name(report: Report, fmt: str) -> str:
    return f"report-{stamp(report)}.{EXTENSIONS[fmt]}"
