"""A real one-node Slurm cluster for the tests: munged, slurmctld and slurmd on private ports, torn down after.

Debian's `slurm-wlm` and `munge` (.ci/run installs them). Everything lives in one temporary folder: the munge key and
socket, the state, the logs and `slurm.conf`, which `SLURM_CONF` names for every client command. Outside CI a missing
package skips; under CI=true it fails (tests/conftest.py require_tool).
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
from pathlib import Path

import pytest

from ..conftest import require_tool


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _pid(path: Path) -> int | None:
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


class Cluster:
    def __init__(self, root: Path):
        self.root = root
        self.conf = root / "slurm.conf"
        self.env = {**os.environ, "SLURM_CONF": str(self.conf)}

    def run(self, *argv: str, timeout: float = 30) -> subprocess.CompletedProcess:
        return subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout, env=self.env)


@pytest.fixture(scope="session")
def slurm_cluster(tmp_path_factory):
    for tool, pkg in (
        ("munged", "munge"),
        ("slurmctld", "slurm-wlm"),
        ("slurmd", "slurm-wlm"),
        ("sbatch", "slurm-wlm"),
    ):
        require_tool(tool, pkg)
    if os.geteuid() != 0:
        if os.environ.get("CI", "").lower() in ("true", "1", "yes"):
            pytest.fail("the Slurm tests run slurmd as root, and CI=true", pytrace=False)
        pytest.skip("the Slurm tests need root (slurmd)")
    root = tmp_path_factory.mktemp("slurm")
    for d in ("state", "spool", "log", "munge"):
        (root / d).mkdir()
    key = root / "munge" / "munge.key"
    key.write_bytes(os.urandom(1024))
    key.chmod(0o600)
    sock = root / "munge" / "sock"
    subprocess.run(
        [
            "munged",
            f"--key-file={key}",
            f"--socket={sock}",
            f"--pid-file={root / 'munge' / 'pid'}",
            f"--log-file={root / 'munge' / 'log'}",
            f"--seed-file={root / 'munge' / 'seed'}",
            "--force",
        ],
        check=True,
        timeout=30,
    )
    host = socket.gethostname()
    ctld, slurmd = _free_port(), _free_port()
    (root / "slurm.conf").write_text(
        "\n".join(
            [
                "ClusterName=hk",
                f"SlurmctldHost={host}",
                f"SlurmctldPort={ctld}",
                f"SlurmdPort={slurmd}",
                "AuthType=auth/munge",
                f"AuthInfo=socket={sock}",
                "CredType=cred/munge",
                "SlurmUser=root",
                "SlurmdUser=root",
                f"StateSaveLocation={root / 'state'}",
                f"SlurmdSpoolDir={root / 'spool'}",
                f"SlurmctldPidFile={root / 'slurmctld.pid'}",
                f"SlurmdPidFile={root / 'slurmd.pid'}",
                f"SlurmctldLogFile={root / 'log' / 'ctld.log'}",
                f"SlurmdLogFile={root / 'log' / 'd.log'}",
                "ProctrackType=proctrack/linuxproc",
                "TaskPlugin=task/none",
                "JobAcctGatherType=jobacct_gather/none",
                "AccountingStorageType=accounting_storage/none",
                "SchedulerType=sched/builtin",
                "SelectType=select/cons_tres",
                "SelectTypeParameters=CR_Core",
                "ReturnToService=2",
                "MinJobAge=300",
                "KillWait=10",
                f"NodeName={host} CPUs={os.cpu_count() or 1} State=UNKNOWN",
                f"PartitionName=debug Nodes={host} Default=YES MaxTime=INFINITE State=UP",
                "",
            ]
        )
    )
    cluster = Cluster(root)
    subprocess.run(["slurmctld", "-i"], check=True, timeout=30, env=cluster.env)
    subprocess.run(["slurmd"], check=True, timeout=30, env=cluster.env)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        out = cluster.run("sinfo", "-h", "-o", "%T")
        if out.returncode == 0 and out.stdout.strip() in ("idle", "mixed", "allocated"):
            break
        time.sleep(0.2)
    else:
        pytest.fail(
            f"the test cluster did not come up: {cluster.run('sinfo').stdout}\n"
            f"{(root / 'log' / 'ctld.log').read_text()[-2000:]}"
        )
    old = os.environ.get("SLURM_CONF")
    os.environ["SLURM_CONF"] = str(cluster.conf)
    yield cluster
    if old is None:
        os.environ.pop("SLURM_CONF", None)
    else:
        os.environ["SLURM_CONF"] = old
    cluster.run("scancel", "--full", "-u", "root")
    pids = [
        _pid(root / f) for f in ("slurmd.pid", "slurmctld.pid", "munge/pid")
    ]  # read before any daemon removes its file
    for pid in pids:
        if pid:
            _end(pid)


def _end(pid: int) -> None:
    """SIGTERM, then SIGKILL after 10 s: a test cluster never outlives its session."""
    import psutil

    try:
        p = psutil.Process(pid)
        p.terminate()
        p.wait(timeout=10)
    except psutil.TimeoutExpired:
        p.kill()
    except psutil.Error:
        pass
