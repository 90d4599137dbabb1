"""healthkit: audit and repair long-running fine-tuning workspaces.

This module is the stable surface. `from healthkit import audit` is the library entry point; a third-party
check needs nothing but the names below (Workspace, Finding, Severity, CodeDoc, Evidence, CheckOutput, Healthy,
FixRef, the `check` decorator; a fix: `fixer`, Safety, Plan, Outcome and the contexts) and registers with `@healthkit.check` or the `healthkit.checks` entry-point
group. Everything under the layer packages (system, formats, contract, core, reporting, fix, scheduled) is
private and may move; the old flat module paths keep working (healthkit/_moved.py). Every name is imported on
first use, so that `healthkit audit` can start measuring the disk before the rest of the package has loaded.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from healthkit._moved import install as _install_moved
from healthkit._version import __version__

_install_moved()

_LAZY = {
    "audit": "core.api",
    "check": "core.registry",
    "CodeDoc": "core.registry",
    "CheckOutput": "core.findings",
    "Evidence": "core.findings",
    "Finding": "core.findings",
    "FixRef": "core.findings",
    "Healthy": "core.findings",
    "Severity": "core.findings",
    "Status": "core.findings",
    "Report": "core.report",
    "Workspace": "core.workspace",
    "WorkspaceError": "core.workspace",
    "render": "reporting.render",
    # third-party fixes: the decorator, the safety levels and the plan/context types it is called with
    "fixer": "fix.plan",
    "Safety": "fix.plan",
    "Plan": "fix.plan",
    "Outcome": "fix.plan",
    "PlanContext": "fix.plan",
    "ApplyContext": "fix.plan",
}

if TYPE_CHECKING:
    from healthkit.core.api import audit
    from healthkit.core.findings import CheckOutput, Evidence, Finding, FixRef, Healthy, Severity, Status
    from healthkit.core.registry import CodeDoc, check
    from healthkit.core.report import Report
    from healthkit.core.workspace import Workspace, WorkspaceError
    from healthkit.fix.plan import ApplyContext, Outcome, Plan, PlanContext, Safety, fixer
    from healthkit.reporting.render import render


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'healthkit' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


__all__ = sorted(_LAZY) + ["__version__"]
