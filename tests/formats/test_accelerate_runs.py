"""Real Accelerate runs on the CPU (tests/formats/accelerate_run.py), audited and fixed with no healthkit.toml."""

from __future__ import annotations

import os

import pytest

from tests.conftest import run_cli

from .conftest import age, audit, codes, copy_run, findings, fix, inferred

pytest.importorskip("accelerate")
from .accelerate_run import run


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    base = tmp_path_factory.mktemp("accelerate")
    run(base / "plain")  # save_state every 5 steps, 60 steps: checkpoint_0..11, total_limit=None, TensorBoard losses
    run(base / "interrupted", steps=30, interrupt_at=3)  # the 4th save_state dies after the weights
    return base


def test_twelve_states_no_retention_and_the_tensorboard_history(runs, tmp_path):
    base = copy_run(runs, "plain", tmp_path)
    report = audit(base)
    assert codes(report) == ["checkpoints.bloat", "checkpoints.no-retention"], report["findings"]
    assert inferred(report)["run.format"] == "accelerate" and inferred(report)["paths.checkpoints"] == "checkpoints"
    assert report["facts"]["checkpoints"]["count"] == 12
    assert any(h["title"] == "Validation is running" for h in report["healthy"]), report["healthy"]
    assert len(report["facts"]["log_history"]["eval"]) == 6
    [nr] = findings(report, "checkpoints.no-retention")
    assert nr["problem"][0].startswith("No `total_limit` can be read: Accelerate does not record"), nr["problem"]


def test_prune_keeps_the_newest_by_step_whole_folders(runs, tmp_path):
    base = copy_run(runs, "plain", tmp_path)
    out = fix(base, "--unsafe", "--keep", "3", "--yes", "--only", "checkpoints")
    assert sorted(os.listdir(base / "checkpoints")) == ["checkpoint_10", "checkpoint_11", "checkpoint_9"], out
    assert sorted(os.listdir(base / "checkpoints" / "checkpoint_9")) == [
        "model.safetensors",
        "optimizer.bin",
        "random_states_0.pkl",
    ]


def test_an_interrupted_save_state_is_incomplete_and_the_others_are_not(runs, tmp_path):
    base = copy_run(runs, "interrupted", tmp_path)
    [f] = findings(audit(base), "checkpoints.incomplete")
    assert f["data"]["checkpoint"] == "checkpoint_3"
    assert f["data"]["missing"] == [
        "no optimizer state (optimizer.bin)",
        "no RNG states (random_states_0.pkl): save_state did not finish",
    ]
    out = fix(base, "--unsafe", "--yes", "--only", "checkpoints.incomplete")
    assert sorted(os.listdir(base / "checkpoints")) == ["checkpoint_0", "checkpoint_1", "checkpoint_2"], out


def test_an_unknown_layout_gets_no_deletion(tmp_path):
    for n in range(4):
        d = tmp_path / "checkpoints" / f"checkpoint_{n}"
        d.mkdir(parents=True)
        (d / "weights.npz").write_bytes(b"x" * 64)  # not what save_state writes
    age(tmp_path)
    report = audit(tmp_path)
    assert "checkpoints.incomplete" not in codes(report)
    out = fix(tmp_path, "--unsafe", "--keep", "1", "--yes")
    assert len(os.listdir(tmp_path / "checkpoints")) == 4, out


def test_without_the_tensorboard_extra_the_report_names_it_and_never_says_no_validation(runs, tmp_path):
    base = copy_run(runs, "plain", tmp_path)
    shim = tmp_path / "no-tensorboard" / "tensorboard"
    shim.mkdir(parents=True)
    (shim / "__init__.py").write_text("raise ImportError('tensorboard is not installed (test shim)')\n")
    env = dict(os.environ, PYTHONPATH=str(shim.parent))
    r = run_cli("audit", str(base), "--format", "json", env=env)
    import json

    report = json.loads(r.stdout)
    assert not [c for c in codes(report) if c.startswith("validation.")], report["findings"]
    notes = [n for c in report["checks"] if c["check"] == "validation" for n in c["notes"]]
    assert any("healthkit[tensorboard]" in n for n in notes), notes
