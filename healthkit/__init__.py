"""healthkit: audit and repair long-running fine-tuning workspaces.

`from healthkit import audit` is the library entry point; checks register with
`@healthkit.check` and the `healthkit.checks` entry-point group.
"""

from __future__ import annotations

__version__ = "0.1.0"

from .models import CheckOutput, Evidence, Finding, FixRef, Healthy, Severity, Status  # noqa: E402
from .registry import CodeDoc, check  # noqa: E402


def __getattr__(name: str):  # lazy: importing healthkit must stay cheap for checks and plugins
    if name == "audit":
        from .api import audit

        return audit
    if name in ("Workspace", "WorkspaceError"):
        from . import workspace

        return getattr(workspace, name)
    if name == "Report":
        from .report import Report

        return Report
    raise AttributeError(name)


__all__ = [
    "audit", "check", "CheckOutput", "CodeDoc", "Evidence", "Finding", "FixRef", "Healthy",
    "Report", "Severity", "Status", "Workspace", "WorkspaceError", "__version__",
]
