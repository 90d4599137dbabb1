"""A real FUSE mount (tests/hangfs.py in its own process) that a test makes hang or fail with EIO.

Mounted under /tmp/hk-fuse-* (outside pytest's tmp_path, which pytest walks and deletes), lazily
unmounted at teardown. Outside CI a missing FUSE (no /dev/fuse, no fusermount, no fusepy/libfuse2) skips
with the reason; under CI=true it fails: .ci/run installs them.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from .conftest import require_tool

HANGFS = Path(__file__).with_name("hangfs.py")


def _missing(why: str) -> None:
    if os.environ.get("CI", "").lower() in ("true", "1", "yes"):
        pytest.fail(f"{why}, and CI=true: CI must provide it (.ci/run)", pytrace=False)
    pytest.skip(why)


class HangMount:
    """A passthrough of ``source`` at ``mount``; ``mode("hang" | "eio" | "ok")`` changes how it answers."""

    def __init__(self, source: Path, mount: Path, control: Path, proc: subprocess.Popen):
        self.source, self.mount, self.control, self.proc = source, mount, control, proc

    def mode(self, word: str) -> None:
        tmp = self.control.with_suffix(".tmp")
        tmp.write_text(word)
        os.replace(tmp, self.control)


def fuse_ready() -> None:
    """Skip (or fail under CI) unless a FUSE mount can be made here."""
    if not os.path.exists("/dev/fuse"):
        _missing("/dev/fuse is missing (FUSE not available)")
    require_tool("fusermount", "fuse")
    probe = subprocess.run([sys.executable, "-c", "import fuse"], capture_output=True, text=True)
    if probe.returncode != 0:
        _missing(f"fusepy or libfuse2 is missing (pip `fusepy`, Debian `libfuse2`): {probe.stderr.strip()[-200:]}")


def mounted(source: Path, control_dir: Path) -> Iterator[HangMount]:
    fuse_ready()
    mount = Path(tempfile.mkdtemp(prefix="hk-fuse-", dir="/tmp"))
    control = control_dir / "hangfs-mode"
    control.write_text("ok")
    log = open(control_dir / "hangfs.log", "wb")  # noqa: SIM115 - the filesystem process writes it while mounted
    proc = subprocess.Popen(
        [sys.executable, str(HANGFS), str(source), str(mount), str(control)],
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=log,
    )
    try:
        deadline = time.monotonic() + 20
        while not os.path.ismount(mount):
            if proc.poll() is not None or time.monotonic() > deadline:
                log.flush()
                _missing(
                    f"the FUSE mount did not come up: {(control_dir / 'hangfs.log').read_text(errors='replace')[-400:]}"
                )
            time.sleep(0.05)
        yield HangMount(source, mount, control, proc)
    finally:
        control.write_text("ok")  # release whatever still waits on it
        subprocess.run(["fusermount", "-uz", str(mount)], capture_output=True)
        if os.path.ismount(mount):
            subprocess.run(["umount", "-l", str(mount)], capture_output=True)
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
        log.close()
        shutil.rmtree(mount, ignore_errors=True)
