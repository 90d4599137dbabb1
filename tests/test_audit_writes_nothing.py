"""An audit and a dry run write nothing in the audited tree: compared byte for byte, new files and lock files included."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from healthkit.demo import build_example

from .conftest import run_cli


def snapshot(base: Path) -> dict[str, tuple]:
    """Every path under ``base``: kind, bytes (files) or link target, and mtime of files."""
    out: dict[str, tuple] = {}
    for root, dirs, files in os.walk(base):
        for name in dirs + files:
            p = Path(root) / name
            rel = str(p.relative_to(base))
            if p.is_symlink():
                out[rel] = ("link", os.readlink(p))
            elif p.is_dir():
                out[rel] = ("dir",)
            else:
                out[rel] = ("file", p.read_bytes(), p.stat().st_mtime_ns)
    return out


@pytest.fixture
def example(tmp_path):
    """The example machine without its orphan: nothing but the command under test can write."""
    ex = build_example(tmp_path / "training", ckpt_bytes=8192, start_processes=False)
    yield ex.base
    ex.cleanup()


@pytest.fixture
def example_live(tmp_path):
    """With its orphaned train.py running (it rewrites its own status file; that file is left out of the comparison)."""
    ex = build_example(tmp_path / "training", ckpt_bytes=8192)
    yield ex.base
    ex.cleanup()


ORPHAN_WRITES = {"status/training_status.json"}


@pytest.fixture
def empty(tmp_path):
    d = tmp_path / "empty"
    d.mkdir()
    return d


@pytest.mark.parametrize("which", ["example", "example_live", "empty"])
@pytest.mark.parametrize(
    "args",
    [("audit",), ("audit", "--format", "json"), ("fix", "--safe", "--dry-run"), ("fix", "--unsafe", "--dry-run")],
)
def test_audit_and_dry_run_leave_the_tree_byte_for_byte(request, which, args):
    base = request.getfixturevalue(which)
    skip = ORPHAN_WRITES if which == "example_live" else set()
    before = {k: v for k, v in snapshot(base).items() if k not in skip}
    r = run_cli(args[0], str(base), *args[1:])
    assert r.returncode in (0, 1, 2), r.stderr
    after = {k: v for k, v in snapshot(base).items() if k not in skip}
    assert sorted(set(after) - set(before)) == [], "new paths"
    assert sorted(set(before) - set(after)) == [], "removed paths"
    assert [k for k in before if before[k] != after[k]] == [], "changed paths"


def test_output_is_the_only_place_an_audit_writes(example, tmp_path):
    before = snapshot(example)
    out = tmp_path / "reports"
    assert run_cli("audit", str(example), "--output", str(out)).returncode == 2
    assert snapshot(example) == before
    assert sorted(p.name for p in out.iterdir() if p.name.startswith("latest"))


def test_recording_the_audit_cost_is_opt_in(empty):
    (empty / "healthkit.toml").write_text("[audit]\nrecord_cost = true\n")
    run_cli("audit", str(empty))
    assert (empty / "monitoring_costs.json").is_file()
