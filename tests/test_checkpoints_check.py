"""Checkpoint retention, bloat and completeness against real HF-layout folders."""

from __future__ import annotations

import json
import os
import subprocess

from healthkit.core.api import audit
from healthkit.core.detect import HEALTHKIT_SCHEMA_ID
from healthkit.core.workspace import Workspace
from healthkit.system.fsutil import disk_usage

from .conftest import make_checkpoint, write_json


def run(base):
    return audit(base, select=["checkpoints"], record_costs=False)


def codes(base):
    return sorted(f.code for f in run(base).findings)


def config(base, **kw):
    data = {
        "$schema": HEALTHKIT_SCHEMA_ID,
        "base_model": "m",
        "save_steps": 100,
    }  # our trainer's config, as init writes it
    data.update(kw)
    write_json(base / "config.json", data)


def test_sorted_by_step_not_name(tmp_path):
    for s in (900, 2600, 100, 1000):
        make_checkpoint(tmp_path / "current_model", s)
    (tmp_path / "current_model" / "tmp-checkpoint-2700").mkdir()
    (tmp_path / "current_model" / "checkpoint-latest").mkdir()
    config(tmp_path, save_total_limit=3)
    ws = Workspace.open(tmp_path)
    assert [c.step for c in ws.checkpoints] == [100, 900, 1000, 2600]
    bloat = next(f for f in run(tmp_path).findings if f.code == "checkpoints.bloat")
    assert bloat.data["excess"] == ["checkpoint-100"]


def test_within_limit_plus_old_best_is_not_bloat(tmp_path):
    ck = tmp_path / "current_model"
    best = "/old/location/before/the/move/current_model/checkpoint-200"  # absolute, from before the workspace moved
    for s in (200, 800, 900, 1000):
        make_checkpoint(ck, s, best=best)
    config(tmp_path, save_total_limit=3)
    assert codes(tmp_path) == []
    make_checkpoint(ck, 1100, best=best)
    f = next(f for f in run(tmp_path).findings if f.code == "checkpoints.bloat")
    assert f.data["best"] == "checkpoint-200"
    assert f.data["excess"] == ["checkpoint-800"]
    assert "the Trainer would keep 4" in " ".join(f.problem)


def test_no_retention_null_and_absent(tmp_path):
    make_checkpoint(tmp_path / "current_model", 10)
    config(tmp_path, save_total_limit=None)
    f = next(f for f in run(tmp_path).findings)
    assert f.code == "checkpoints.no-retention"
    assert "sets `save_total_limit` to null" in f.problem[0]
    assert f.evidence[0].command == "jq '.save_total_limit' config.json" and f.evidence[0].observed == "null"


def test_limit_declared_in_settings_for_a_hardcoded_script(tmp_path):
    make_checkpoint(tmp_path / "current_model", 10)
    config(tmp_path, save_total_limit=None)
    (tmp_path / "healthkit.toml").write_text("[retention]\nsave_total_limit = 2\n")
    assert codes(tmp_path) == []


def test_foreign_config_without_key_is_no_retention(tmp_path):
    make_checkpoint(tmp_path / "models", 10)
    config(tmp_path, output_dir="models")
    (tmp_path / "healthkit.toml").write_text('[paths]\nconfig_schema = "none"\ncheckpoints_config_key = "output_dir"\n')
    assert codes(tmp_path) == ["checkpoints.no-retention"]


def test_unlimited_many_checkpoints_is_bloat_with_unsafe_prune(tmp_path):
    for s in range(100, 1300, 100):
        make_checkpoint(tmp_path / "current_model", s)
    config(tmp_path, save_total_limit=None)
    f = next(f for f in run(tmp_path).findings if f.code == "checkpoints.bloat")
    assert [(x.id, x.safety) for x in f.fixes] == [("prune-checkpoints", "unsafe")]
    assert len(f.data["excess"]) == 9


def test_sizes_are_du_hardlinks_once_symlinks_not_followed(tmp_path, tmp_path_factory):
    ck = tmp_path / "current_model"
    a = make_checkpoint(ck, 10, weights=os.urandom(200_000))
    b = make_checkpoint(ck, 20, weights=b"")
    (b / "model.safetensors").unlink()
    os.link(a / "model.safetensors", b / "model.safetensors")  # a hard link: counted once
    outside = tmp_path_factory.mktemp("outside")
    (outside / "huge.bin").write_bytes(os.urandom(500_000))
    (ck / "checkpoint-30").symlink_to(outside, target_is_directory=True)
    config(tmp_path, save_total_limit=5)
    report = run(tmp_path)
    du = int(subprocess.run(["du", "-s", "-B1", str(ck)], capture_output=True, text=True).stdout.split()[0])
    assert report.facts["checkpoints"]["bytes"] == du
    assert report.facts["checkpoints"]["bytes"] < 500_000  # the symlink's target is not counted
    assert any("symlink out of the workspace" in n for r in report.results for n in r.notes)


def test_disk_usage_matches_du_on_a_tree(tmp_path):
    for i in range(50):
        d = tmp_path / f"d{i % 5}"
        d.mkdir(exist_ok=True)
        (d / f"f{i}").write_bytes(os.urandom(i * 300))
    os.link(tmp_path / "d0" / "f0", tmp_path / "d1" / "hard")
    (tmp_path / "loop").symlink_to(tmp_path)
    du = int(subprocess.run(["du", "-s", "-B1", str(tmp_path)], capture_output=True, text=True).stdout.split()[0])
    assert disk_usage(tmp_path).bytes == du


def test_incomplete_checkpoints(tmp_path):
    ck = tmp_path / "current_model"
    make_checkpoint(ck, 10)
    no_state = make_checkpoint(ck, 20)
    (no_state / "trainer_state.json").unlink()
    shards = make_checkpoint(ck, 30)
    (shards / "model.safetensors").unlink()
    (shards / "model.safetensors.index.json").write_text(
        json.dumps({"weight_map": {"a": "model-00001-of-00002.safetensors", "b": "model-00002-of-00002.safetensors"}})
    )
    (shards / "model-00001-of-00002.safetensors").write_bytes(b"x" * 10)
    empty = make_checkpoint(ck, 40)
    (empty / "model.safetensors").write_bytes(b"")
    config(tmp_path, save_total_limit=10)
    found = {f.data["checkpoint"]: f for f in run(tmp_path).findings if f.code == "checkpoints.incomplete"}
    assert sorted(found) == ["checkpoint-20", "checkpoint-30", "checkpoint-40"]
    assert "trainer_state.json is missing" in found["checkpoint-20"].data["missing"]
    assert "1 of 2 weight shards are missing" in found["checkpoint-30"].data["missing"][0]
    assert found["checkpoint-40"].urgency == "immediate"  # the newest: the one a resume would pick
    assert [(x.id, x.safety) for x in found["checkpoint-40"].fixes] == [("delete-incomplete-checkpoint", "unsafe")]


def test_transformers5_checkpoint_without_special_tokens_map_is_complete(tmp_path):
    d = make_checkpoint(tmp_path / "current_model", 10)
    assert not (d / "special_tokens_map.json").exists()
    config(tmp_path)
    assert codes(tmp_path) == []


def test_unreadable_trainer_state_is_incomplete_not_a_crash(tmp_path):
    d = make_checkpoint(tmp_path / "current_model", 10)
    (d / "trainer_state.json").write_bytes(b"\xff\xfe not json")
    config(tmp_path)
    report = run(tmp_path)
    assert [f.code for f in report.findings] == ["checkpoints.incomplete"]
    assert report.results[0].error is None


def test_pruning_under_an_undeclared_trainer_default_is_not_safe(tmp_path):
    """Only a limit the user wrote down (config.json or healthkit.toml) makes pruning safe."""
    for s in range(10, 70, 10):
        make_checkpoint(tmp_path / "current_model", s)
    config(tmp_path)  # no save_total_limit: our trainer's default (3) applies
    f = next(f for f in run(tmp_path).findings if f.code == "checkpoints.bloat")
    assert f.data["limit"] == 3 and f.data["declared_by"].startswith("healthkit trainer default")
    assert [(x.id, x.safety) for x in f.fixes] == [("prune-checkpoints", "unsafe")]
    config(tmp_path, save_total_limit=3)
    f = next(f for f in run(tmp_path).findings if f.code == "checkpoints.bloat")
    assert [(x.id, x.safety) for x in f.fixes] == [("prune-checkpoints", "safe")]


def test_a_rotation_between_the_listing_and_the_rule_is_not_bloat(tmp_path):
    """HF saves checkpoint-N, then deletes the oldest: an audit that listed three and judges after the deletion
    (the training has ended by then, so no save in progress excuses it) must not call the third one bloat."""
    from healthkit.core.api import audit as run_audit
    from healthkit.core.workspace import Workspace

    for s in (20, 25, 30):
        make_checkpoint(tmp_path / "current_model", s)
    config(tmp_path, save_total_limit=2)
    ws = Workspace.open(tmp_path)
    assert [c.name for c in ws.checkpoints] == ["checkpoint-20", "checkpoint-25", "checkpoint-30"]  # listed now
    import shutil

    shutil.rmtree(tmp_path / "current_model" / "checkpoint-20")  # the rotation, just after the listing
    assert "checkpoints.bloat" not in [
        f.code for f in run_audit(ws, select=["checkpoints"], record_costs=False).findings
    ]
    make_checkpoint(tmp_path / "current_model", 35)  # a real third one is bloat, as before
    assert "checkpoints.bloat" in codes(tmp_path)
