"""The trainer as the fix engine sees it (healthkit/fix/daemon_adapters.py): registered under `healthkit.fix.daemon_adapters` as `trainer`."""

from __future__ import annotations

from pathlib import Path

from healthkit.contract.trust import Account
from healthkit.system.procs import ProcInfo

from .launch import DAEMON_MODULE, child_env, is_training
from .layout import Layout


class TrainerAdapter:
    name = "trainer"
    module = DAEMON_MODULE

    def argv(self, base: Path) -> list[str]:
        """The daemon's command, or its supervisor's when the last daemon ran supervised (the supervisor starts it)."""
        from .daemon import daemon_argv, ran_supervised, supervisor_argv

        lay = Layout.of(base)
        return supervisor_argv(lay) if ran_supervised(lay) else daemon_argv(lay)

    def start_notes(self, base: Path) -> list[str]:
        """How it starts, said in the plan: under the supervisor when the last daemon ran under one."""
        from .daemon import ran_supervised

        if not ran_supervised(Layout.of(base)):
            return []
        return [
            "under its supervisor, as the last daemon ran (status/daemon_state.json: `supervised: true`): "
            "the supervisor is the daemon's parent and restarts it after a crash"
        ]

    def env(self) -> dict[str, str]:
        return child_env()

    def adopts(self, info: ProcInfo, base: Path) -> bool:
        """Our daemon adopts only its own `train_file` children of this workspace (trainer/README.md)."""
        return is_training(info, Layout.of(base))

    def start_consequences(self, base: Path) -> list[str]:
        from .daemon import start_consequences

        return start_consequences(base)

    def start(self, base: Path, run_as: Account | None = None) -> int:
        from .daemon import ran_supervised, start_daemon

        supervise = ran_supervised(Layout.of(base))
        return (
            start_daemon(base, supervise=supervise, run_as=run_as)
            if run_as
            else start_daemon(base, supervise=supervise)
        )

    def slurm_script(self, base: Path) -> str:
        """The batch script `daemon start` submits under Slurm (shown in the fix's plan)."""
        from healthkit.contract.settings import load_settings
        from healthkit.contract.wsid import ensure_workspace_id

        from .slurm import batch_script

        lay = Layout.of(base)
        return batch_script(lay, load_settings(lay.base)[0], ensure_workspace_id(lay.base))

    def slurm_submit(self, base: Path) -> str:
        """Submit the daemon as a batch job; its job id (trainer.slurm.SlurmError says why not)."""
        from healthkit.contract.settings import load_settings
        from healthkit.contract.wsid import ensure_workspace_id

        from .slurm import submit

        lay = Layout.of(base)
        return submit(lay, load_settings(lay.base)[0], ensure_workspace_id(lay.base))


ADAPTER = TrainerAdapter()
