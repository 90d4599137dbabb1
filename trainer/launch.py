"""How the daemon starts a training child, and how it recognises one (its own, or one left by a dead daemon).

A single process is `python -m healthkit.trainer.train_file ...`; several go through the existing
launchers, never a home-made one: `python -m torch.distributed.run` (torchrun) or
`python -m accelerate.commands.launch`, both with `-m healthkit.trainer.train_file` so that every
rank's argv names the module the audit looks for. Each child starts its own session, so
the daemon can signal the whole process group (launcher and workers) and a daemon that
dies does not take its child with it.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from healthkit.contract.config_model import TrainingConfig
from healthkit.contract.trust import Account, make_dirs_for
from healthkit.system.procs import ProcInfo, argv_matches, scan_processes

from .layout import Layout

TRAIN_MODULE = "healthkit.trainer.train_file"
DAEMON_MODULE = "healthkit.trainer.daemon"


def child_command(layout: Layout, cfg: TrainingConfig, file: Path, attempt: int, resume: Path | None) -> list[str]:
    inner = ["-m", TRAIN_MODULE, "--workspace", str(layout.base), "--file", str(file), "--attempt", str(attempt)]
    if resume is not None:
        inner += ["--resume-from", str(resume)]
    if cfg.launcher == "torchrun":
        cmd = [
            sys.executable,
            "-m",
            "torch.distributed.run",
            f"--nproc-per-node={cfg.nproc_per_node}",
            f"--nnodes={cfg.nnodes}",
        ]
        if cfg.nnodes == 1:
            cmd.append("--standalone")
        else:
            cmd += ["--rdzv-backend=c10d", f"--rdzv-endpoint={cfg.rdzv_endpoint}", "--rdzv-id=healthkit"]
        return cmd + inner
    if cfg.launcher == "accelerate":
        cmd = [
            sys.executable,
            "-m",
            "accelerate.commands.launch",
            "--num_processes",
            str(cfg.nproc_per_node * cfg.nnodes),
            "--num_machines",
            str(cfg.nnodes),
        ]
        if cfg.nnodes > 1 and cfg.rdzv_endpoint:
            host, _, port = cfg.rdzv_endpoint.rpartition(":")
            cmd += ["--main_process_ip", host, "--main_process_port", port]
        if cfg.nproc_per_node * cfg.nnodes > 1:
            cmd.append("--multi_gpu")
        return cmd + inner
    return [sys.executable, *inner]


def child_env() -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        HF_HUB_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        HF_DATASETS_OFFLINE="1",
        TOKENIZERS_PARALLELISM="false",
        PYTHONUNBUFFERED="1",
        HF_HUB_DISABLE_PROGRESS_BARS="1",
    )
    root = str(Path(__file__).resolve().parent.parent)  # the trainer package must import from the workspace cwd
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


def belongs_to(info: ProcInfo, layout: Layout) -> bool:
    base = str(layout.base)
    argv = info.cmdline
    for i, tok in enumerate(argv):
        if tok == "--workspace" and i + 1 < len(argv) and os.path.abspath(argv[i + 1]) == base:
            return True
        if tok.startswith("--workspace=") and os.path.abspath(tok.split("=", 1)[1]) == base:
            return True
    return False


def is_training(info: ProcInfo, layout: Layout) -> bool:
    return info.alive and argv_matches(info.cmdline, [TRAIN_MODULE]) is not None and belongs_to(info, layout)


def is_daemon(info: ProcInfo, layout: Layout) -> bool:
    return info.alive and argv_matches(info.cmdline, [DAEMON_MODULE]) is not None and belongs_to(info, layout)


def find_training(layout: Layout, procs: list[ProcInfo] | None = None) -> list[ProcInfo]:
    """Training processes of this workspace that no other training process started (the launcher, not its ranks)."""
    procs = scan_processes() if procs is None else procs
    found = [p for p in procs if is_training(p, layout)]
    pids = {p.pid for p in found}
    return sorted((p for p in found if p.ppid not in pids), key=lambda p: p.create_time)


def trainings_not_ours(layout: Layout) -> list[ProcInfo]:
    """Trainings working in this workspace that a daemon started now would not adopt, so it would train beside them.

    The audit's own rule decides what a training of this workspace is (healthkit.core.ownership, with the
    workspace's healthkit.toml); ours are the `train_file` children the daemon adopts (`is_training`).
    A hand-started `python train.py` in the workspace is the case this exists for.
    """
    from healthkit.core.ownership import training_processes
    from healthkit.core.workspace import Workspace, WorkspaceError

    try:
        ws = Workspace.open(layout.base)
    except WorkspaceError:
        ws = Workspace(layout.base)  # unreadable settings: the default patterns still find train.py
    return [p for p in training_processes(ws, fresh=True) if not is_training(p, layout)]


def arg_value(argv: tuple[str, ...] | list[str], flag: str) -> str | None:
    for i, tok in enumerate(argv):
        if tok == flag and i + 1 < len(argv):
            return argv[i + 1]
        if tok.startswith(flag + "="):
            return tok.split("=", 1)[1]
    return None


SPAWNER = r"""
import os, subprocess, sys
log, cwd = sys.argv[1], sys.argv[2]
fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
p = subprocess.Popen(sys.argv[3:], cwd=cwd, stdin=subprocess.DEVNULL, stdout=fd, stderr=fd, start_new_session=True)
print(p.pid, flush=True)
os._exit(0)
"""


def spawn_detached(
    argv: list[str], cwd: Path, log: Path, env: dict[str, str] | None = None, run_as: Account | None = None
) -> int:
    """Start ``argv`` fully detached (not our child: an intermediate process exits at once); returns its PID.

    ``run_as``: the intermediate process drops to that user before it runs (healthkit.contract.trust.Account),
    so the daemon, its log and every child it starts belong to the workspace's owner, never root.
    """
    make_dirs_for(log.parent, cwd)
    env = env or child_env()
    drop = run_as.popen_kwargs() if run_as else {}
    out = subprocess.run(
        [sys.executable, "-c", SPAWNER, str(log), str(cwd), *argv],
        capture_output=True,
        text=True,
        env=run_as.env(env) if run_as else env,
        timeout=60,
        check=True,
        **drop,
    )
    return int(out.stdout.strip().splitlines()[-1])
