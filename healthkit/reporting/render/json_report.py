"""JSON renderer: the report's full content, validated by schemas/report.schema.json."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from healthkit.core.report import Report


def render(report: Report, **_: Any) -> str:
    return report.to_json()
