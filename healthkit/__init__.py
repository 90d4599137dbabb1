"""healthkit: audit and repair long-running fine-tuning workspaces.

`from healthkit import audit` is the library entry point; checks register with
`@healthkit.check` and the `healthkit.checks` entry-point group. Every name is
imported on first use, so that `healthkit audit` can start measuring the disk
before the rest of the package has loaded.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_LAZY = {
    "audit": "api",
    "check": "registry",
    "CodeDoc": "registry",
    "CheckOutput": "models",
    "Evidence": "models",
    "Finding": "models",
    "FixRef": "models",
    "Healthy": "models",
    "Severity": "models",
    "Status": "models",
    "Report": "report",
    "Workspace": "workspace",
    "WorkspaceError": "workspace",
}

if TYPE_CHECKING:
    from .api import audit
    from .models import CheckOutput, Evidence, Finding, FixRef, Healthy, Severity, Status
    from .registry import CodeDoc, check
    from .report import Report
    from .workspace import Workspace, WorkspaceError


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'healthkit' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


__all__ = sorted(_LAZY) + ["__version__"]
