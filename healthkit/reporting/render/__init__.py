"""Report renderers, one module per format, picked by name."""

from __future__ import annotations

import enum
import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from healthkit.core.report import Report


class Format(str, enum.Enum):
    md = "md"
    json = "json"
    prom = "prom"
    junit = "junit"
    nagios = "nagios"
    html = "html"


_MODULES = {
    "md": "markdown",
    "json": "json_report",
    "prom": "prom",
    "junit": "junit",
    "nagios": "nagios",
    "html": "html",
}
EXTENSIONS = {"md": "md", "json": "json", "prom": "prom", "junit": "xml", "nagios": "txt", "html": "html"}


def renderer(fmt: str | Format) -> Any:
    """The module that renders ``fmt``, imported: `healthkit audit` imports it while its child audits."""
    fmt = fmt.value if isinstance(fmt, Format) else fmt
    if fmt not in _MODULES:
        raise ValueError(f"unknown format {fmt!r}; choose one of {', '.join(_MODULES)}")
    return importlib.import_module(f"{__name__}.{_MODULES[fmt]}")


def render(report: Report, fmt: str = "md", **options: Any) -> str:
    return renderer(fmt).render(report, **options)
