"""Helpers for the run-format tests: real artifacts in tmp_path, audited and fixed through the real CLI."""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path
from typing import Any

from tests.conftest import run_cli

HOUR_AGO = time.time() - 3600


def age(path: Path, when: float = HOUR_AGO) -> None:
    """Everything under ``path`` last written an hour ago: no fix mistakes it for a save in progress."""
    for dirpath, dirnames, filenames in os.walk(path):
        for name in dirnames + filenames:
            os.utime(os.path.join(dirpath, name), (when, when), follow_symlinks=False)
    os.utime(path, (when, when))


def copy_run(runs: Path, name: str, tmp_path: Path) -> Path:
    """A private copy of one real run (made once per session), aged so no save looks in progress: tests may change it."""
    import shutil

    dest = tmp_path / name
    shutil.copytree(runs / name, dest, symlinks=True)
    age(dest)
    return dest


def audit(base: Path, *extra: str) -> dict[str, Any]:
    r = run_cli("audit", str(base), "--format", "json", *extra, timeout=300)
    assert b"Traceback" not in r.stderr, r.stderr.decode()
    return json.loads(r.stdout)


def codes(report: dict[str, Any]) -> list[str]:
    return sorted(f["code"] for f in report["findings"])


def findings(report: dict[str, Any], code: str) -> list[dict[str, Any]]:
    return [f for f in report["findings"] if f["code"] == code]


def inferred(report: dict[str, Any]) -> dict[str, Any]:
    return {i["setting"]: i["value"] for i in report["settings_inferred"]}


def fix(base: Path, *args: str) -> str:
    r = run_cli("fix", str(base), *args, timeout=300)
    out = r.stdout.decode() + r.stderr.decode()
    assert "Traceback" not in out, out
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
