"""The trainer as the fix engine sees it (healthkit/daemons.py): registered under `healthkit.daemons` as `trainer`."""

from __future__ import annotations

from pathlib import Path

from healthkit.procs import ProcInfo
from healthkit.trust import Account

from .launch import DAEMON_MODULE, child_env, is_training
from .layout import Layout


class TrainerAdapter:
    name = "trainer"
    module = DAEMON_MODULE

    def argv(self, base: Path) -> list[str]:
        from .daemon import daemon_argv

        return daemon_argv(Layout.of(base))

    def env(self) -> dict[str, str]:
        return child_env()

    def adopts(self, info: ProcInfo, base: Path) -> bool:
        """Our daemon adopts only its own `train_file` children of this workspace (trainer/README.md)."""
        return is_training(info, Layout.of(base))

    def start_consequences(self, base: Path) -> list[str]:
        from .daemon import start_consequences

        return start_consequences(base)

    def start(self, base: Path, run_as: "Account | None" = None) -> int:
        from .daemon import start_daemon

        return start_daemon(base, run_as=run_as) if run_as else start_daemon(base)


ADAPTER = TrainerAdapter()
