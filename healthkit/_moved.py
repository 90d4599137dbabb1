"""Old module paths that keep working: each names the very module that now lives in its layer's package.

`healthkit.contract` (0.1's state names) is now the contract layer's package, which re-exports those names.

Until 0.2 the modules sat flat in `healthkit/` (`healthkit.core.workspace`, `healthkit.core.findings`, ...). A third-party
check or a script written against those paths still imports them: a meta-path finder hands out the moved
module itself, so `healthkit.core.workspace is healthkit.core.workspace` and patching one patches the other. Only the
facade (`healthkit`) is a stable surface; these aliases exist so that nothing breaks on upgrade
(docs/development.md, "Stable surface").
"""

from __future__ import annotations

import importlib
import importlib.machinery
import sys
from types import ModuleType
from typing import TYPE_CHECKING, cast

if TYPE_CHECKING:
    from importlib.abc import Loader

MOVED = {
    "healthkit.api": "healthkit.core.api",
    "healthkit.chart": "healthkit.reporting.chart",
    "healthkit.checkpoints": "healthkit.formats.hf_checkpoints",
    "healthkit.checks.monitor": "healthkit.checks.ports",
    "healthkit.checks.monitoring": "healthkit.checks.hook_cost",
    "healthkit.config_model": "healthkit.contract.config_model",
    "healthkit.configschema": "healthkit.contract.configschema",
    "healthkit.costs": "healthkit.contract.monitoring_costs",
    "healthkit.daemons": "healthkit.fix.daemon_adapters",
    "healthkit.detect": "healthkit.core.detect",
    "healthkit.docvalues": "healthkit.contract.docvalues",
    "healthkit.entrypoints": "healthkit.system.entrypoints",
    "healthkit.events": "healthkit.contract.events",
    "healthkit.fix.crash": "healthkit.fix.kill_points",
    "healthkit.fleet": "healthkit.scheduled.fleet",
    "healthkit.fleetpage": "healthkit.reporting.fleetpage",
    "healthkit.fsutil": "healthkit.system.fsutil",
    "healthkit.gpu": "healthkit.system.gpu",
    "healthkit.heal": "healthkit.scheduled.backoff",
    "healthkit.history": "healthkit.reporting.history",
    "healthkit.htmlindex": "healthkit.reporting.htmlindex",
    "healthkit.jsonio": "healthkit.system.jsonio",
    "healthkit.kept": "healthkit.contract.retry_checkpoints",
    "healthkit.launch": "healthkit.console",
    "healthkit.modelinfo": "healthkit.contract.modelinfo",
    "healthkit.models": "healthkit.core.findings",
    "healthkit.notify": "healthkit.scheduled.notify",
    "healthkit.notify_send": "healthkit.scheduled.notify_send",
    "healthkit.output": "healthkit.reporting.output",
    "healthkit.ownership": "healthkit.core.ownership",
    "healthkit.procs": "healthkit.system.procs",
    "healthkit.redact": "healthkit.system.redact",
    "healthkit.registry": "healthkit.core.registry",
    "healthkit.render": "healthkit.reporting.render",
    "healthkit.render.html": "healthkit.reporting.render.html",
    "healthkit.render.json_": "healthkit.reporting.render.json_report",
    "healthkit.render.junit": "healthkit.reporting.render.junit",
    "healthkit.render.markdown": "healthkit.reporting.render.markdown",
    "healthkit.render.nagios": "healthkit.reporting.render.nagios",
    "healthkit.render.prom": "healthkit.reporting.render.prom",
    "healthkit.report": "healthkit.core.report",
    "healthkit.runner": "healthkit.core.runner",
    "healthkit.schedule": "healthkit.scheduled.schedule",
    "healthkit.schemalite": "healthkit.system.schemalite",
    "healthkit.selectors": "healthkit.core.selectors",
    "healthkit.settings": "healthkit.contract.settings",
    "healthkit.shellcmd": "healthkit.system.shellcmd",
    "healthkit.svgchart": "healthkit.reporting.svgchart",
    "healthkit.trainer.init": "healthkit.trainer.scaffold",
    "healthkit.trainer.monitor": "healthkit.trainer.health_server",
    "healthkit.trainer.targs": "healthkit.trainer.training_args",
    "healthkit.trust": "healthkit.contract.trust",
    "healthkit.unattended": "healthkit.scheduled.unattended",
    "healthkit.workspace": "healthkit.core.workspace",
    "healthkit.wsid": "healthkit.contract.wsid",
}


# Plain classes, not importlib.abc's: the import system needs only these methods, and importlib.abc pulls in
# importlib.resources, tempfile, random and shutil, a sizeable share of every command's start-up.
class _Alias:
    """The loader of an old path: the moved module itself."""

    def __init__(self, target: str) -> None:
        self.target = target

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType:
        return importlib.import_module(self.target)

    def exec_module(self, module: ModuleType) -> None:
        """Nothing to run: the module was executed once, under its new name."""


class _MovedFinder:
    """The meta-path finder of the old paths (MOVED)."""

    def find_spec(
        self, fullname: str, path: object = None, target: object = None
    ) -> importlib.machinery.ModuleSpec | None:
        new = MOVED.get(fullname)
        if new is None:
            return None
        return importlib.machinery.ModuleSpec(fullname, cast("Loader", _Alias(new)))  # a Loader by its methods


def install() -> None:
    if not any(isinstance(f, _MovedFinder) for f in sys.meta_path):
        # First: a moved package's old name must not let the path finder load its submodules a second time.
        sys.meta_path.insert(0, _MovedFinder())
