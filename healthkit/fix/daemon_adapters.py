"""How the fix engine starts a daemon it knows, without importing it: adapters registered as entry points.

Our trainer registers one (`healthkit.fix.daemon_adapters`: `trainer`), the way checks and fixes
register; another training system could register its own. The core asks the adapter for
everything it needs to plan a safe start (argv, environment, whether it adopts a given
running training, what it changes on disk before training) and never imports the trainer,
so an audit-only install has no trainer code to break and the layering stays one-way.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from healthkit.contract.trust import Account
    from healthkit.system.procs import ProcInfo

ENTRY_POINT_GROUP = "healthkit.daemons"


class DaemonAdapter(Protocol):
    """A daemon healthkit can start for a workspace and reason about."""

    name: str
    module: str  # what its argv names (`-m <module>`), as matched against process argv

    def argv(self, base: Path) -> list[str]: ...

    def env(self) -> dict[str, str]: ...

    def adopts(self, info: ProcInfo, base: Path) -> bool:
        """Whether a daemon started now for ``base`` would adopt this running process (else it trains beside it)."""
        ...

    def start_consequences(self, base: Path) -> list[str]:
        """What a daemon started now changes on disk before it trains (moves, deletions)."""
        ...

    def start(self, base: Path, run_as: Account | None = None) -> int:
        """Start it detached; its PID once it holds its PID file. ``run_as``: drop to that user first (healthkit.contract.trust)."""
        ...

    # Optional: `start_notes(base) -> list[str]`, how it will start (e.g. under a supervisor), shown in the plan;
    # `slurm_script(base) -> str` and `slurm_submit(base) -> str` (job id): the daemon as a Slurm batch job.


def load_adapter(name: str) -> tuple[DaemonAdapter | None, str | None]:
    """(adapter, why not): the adapter registered under ``name``, or why there is none."""
    from healthkit.system.entrypoints import EntryPoint, entry_points

    eps = [ep for ep in entry_points(ENTRY_POINT_GROUP) if ep.name == name]
    if not eps and name == "trainer":  # a source tree that was never installed
        eps = [EntryPoint("trainer", "healthkit.trainer.adapter:ADAPTER")]
    if not eps:
        return None, f"no daemon adapter named {name!r} is installed"
    try:
        adapter: Any = eps[0].load()
    except Exception as exc:
        return None, f"the {name} daemon is not installed ({type(exc).__name__}: {exc})"
    return adapter, None
