"""The wheel: one top-level package (healthkit), with checks/ and trainer/ inside it, schemas and entry points."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def _setuptools_new_enough() -> bool:
    try:
        import setuptools
    except ImportError:
        return False
    return int(setuptools.__version__.split(".")[0]) >= 77


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[zipfile.ZipFile, str]:
    """The wheel built from a copy of the sources, and what the build printed."""
    if not _setuptools_new_enough():
        if os.environ.get("CI"):
            pytest.fail("setuptools>=77 is missing: the Makefile installs it so that the wheel builds offline")
        pytest.skip(
            "setuptools>=77 is not installed here (the Makefile installs it); the wheel cannot be built offline"
        )
    out = tmp_path_factory.mktemp("wheel")
    build = tmp_path_factory.mktemp("src")
    # Build from a copy: setuptools writes build/ and *.egg-info beside the sources.
    files = subprocess.run(
        ["git", "-C", str(REPO), "ls-files", "-co", "--exclude-standard"], capture_output=True, text=True, check=True
    ).stdout.split()
    for name in files:
        src = REPO / name
        if src.is_file() and not name.startswith(("tests/", "reports/", "bench/")):
            dst = build / name
            dst.parent.mkdir(parents=True, exist_ok=True)
            dst.write_bytes(src.read_bytes())
    # -v: the build backend's own warnings reach the log (pip shows them to a user's `pip install -e .` too).
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            "-v",
            "-w",
            str(out),
            str(build),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    (whl,) = out.glob("healthkit-*.whl")
    return zipfile.ZipFile(whl), r.stdout + r.stderr


@pytest.fixture(scope="module")
def wheel(built: tuple[zipfile.ZipFile, str]) -> zipfile.ZipFile:
    return built[0]


def test_the_build_is_quiet_about_packages(built):
    """A newcomer's first install shows no setuptools warning wall: every importable folder is declared."""
    log = built[1]
    assert "running build_py" in log  # the backend's output is in the log at all
    assert "is absent from the `packages` configuration" not in log, log
    assert "Package would be ignored" not in log


def test_the_wheel_holds_exactly_one_top_level_package(wheel):
    tops = {n.split("/")[0] for n in wheel.namelist()}
    assert {t for t in tops if not t.endswith(".dist-info")} == {"healthkit"}
    names = set(wheel.namelist())
    assert {
        "healthkit/checks/daemon.py",
        "healthkit/trainer/daemon.py",
        "healthkit/fix/engine.py",
        "healthkit/schemas/config.schema.json",
        "healthkit/schemas/report.schema.json",
    } <= names
    assert not any(n.startswith(("checks/", "trainer/", "tests/")) for n in names)


def test_the_wheel_registers_checks_fixes_and_the_trainer_under_healthkit(wheel):
    (ep,) = [n for n in wheel.namelist() if n.endswith(".dist-info/entry_points.txt")]
    text = wheel.read(ep).decode()
    assert "[healthkit.checks]" in text and "[healthkit.fixes]" in text and "[healthkit.daemons]" in text
    values = [line.split("=", 1)[1].strip() for line in text.splitlines() if "=" in line]
    assert values and all(v.startswith("healthkit.") for v in values), values


def test_the_version_is_declared_once_in_each_place_and_they_agree():
    import tomllib

    from healthkit._version import __version__

    declared = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
    assert __version__ == declared


def test_every_package_of_the_tree_reaches_the_wheel(wheel):
    """pyproject lists packages by hand: a new layer package that is not listed would be missing from the wheel."""
    names = set(wheel.namelist())
    for init in sorted((REPO / "healthkit").rglob("__init__.py")):
        rel = init.relative_to(REPO).as_posix()
        assert rel in names, f"{rel} is not in the wheel: add its package to [tool.setuptools] packages"
