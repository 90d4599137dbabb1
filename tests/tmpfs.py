"""A real small filesystem for disk-full tests: a tmpfs mounted by the test (root, as in CI), always unmounted after."""

from __future__ import annotations

import contextlib
import os
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest


def _mount(where: Path, size: int) -> None:
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root (CI runs as root)")
    where.mkdir(parents=True, exist_ok=True)
    r = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(where)], capture_output=True, text=True
    )
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {r.stderr.strip() or r.returncode}")


@contextlib.contextmanager
def mounted_tmpfs(where: Path, size: int, kill: Callable[[Path], None] | None = None) -> Iterator[Path]:
    """Mount a ``size``-byte tmpfs on ``where``; at the end kill what runs from it (``kill``) and unmount it."""
    _mount(where, size)
    try:
        yield where
    finally:
        for _ in range(50):
            if kill is not None:
                kill(where)
            if subprocess.run(["umount", str(where)], capture_output=True).returncode == 0:
                break
            time.sleep(0.1)
        else:
            subprocess.run(["umount", "-l", str(where)], capture_output=True)
        assert not os.path.ismount(where), f"{where} is still mounted"


def fill(where: Path, name: str = "filler") -> Path:
    """Write a file until the filesystem is full (ENOSPC); returns it."""
    path = where / name
    chunk = b"\0" * 65536
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        while True:
            try:
                if os.write(fd, chunk) <= 0:
                    break
            except OSError:
                if len(chunk) == 1:
                    break
                chunk = chunk[: len(chunk) // 2]
    finally:
        os.close(fd)
    return path


def free(where: Path) -> int:
    st = os.statvfs(where)
    return st.f_bavail * st.f_frsize
