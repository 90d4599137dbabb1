"""Checkpoint pruning: the declared limit is safe, a chosen one is unsafe; the newest, the best and symlinks survive."""

from __future__ import annotations

import os
from pathlib import Path

from healthkit.fix import Safety
from healthkit.fix.journal import read_journal

from .conftest import fix, set_best, set_checkpoint_mtimes_past, set_config, tree_hashes


def names(base: Path) -> set[str]:
    return {p.name for p in (base / "current_model").iterdir()}


def test_declared_limit_keeps_three_newest_plus_the_best(make_example):
    ex = make_example(checkpoints=12, start_processes=False)
    base = ex.base
    set_config(base, save_total_limit=3)
    set_best(base, "checkpoint-300")
    set_checkpoint_mtimes_past(base)
    kept = ["checkpoint-300", "checkpoint-1000", "checkpoint-1100", "checkpoint-1200"]
    before = {k: tree_hashes(base / "current_model" / k) for k in kept}

    run, out = fix(base, Safety.SAFE, only=("checkpoints",))

    assert names(base) == set(kept), out
    assert {k: tree_hashes(base / "current_model" / k) for k in kept} == before
    deleted = sorted(
        e["target"]
        for e in read_journal(base / "logs/healthkit-fix.jsonl")
        if e["fix"] == "prune-checkpoints" and e["result"] == "applied"
    )
    expected = sorted(f"current_model/checkpoint-{s}" for s in (100, 200, 400, 500, 600, 700, 800, 900))
    assert deleted == expected
    assert "checkpoints.bloat" in {f.code for f in run.resolved}, out
    assert "keep   current_model/checkpoint-300/  (best_model_checkpoint)" in out
    # Safe: the same happens with --safe; a second run deletes nothing more.
    run2, out2 = fix(base, Safety.SAFE, only=("checkpoints",))
    assert run2.outcomes == [] and names(base) == set(kept)


def test_resumed_and_recent_checkpoints_are_never_pruned(make_example):
    ex = make_example(checkpoints=8, start_processes=False)
    base = ex.base
    set_config(base, save_total_limit=2)
    set_checkpoint_mtimes_past(base)
    (base / "status/daemon_state.json").write_text(
        '{"state": "training", "resume_from": "current_model/checkpoint-200"}'
    )
    os.utime(base / "current_model/checkpoint-400")  # touched just now: may be being written
    (base / "current_model/tmp-checkpoint-900").mkdir()
    run, out = fix(base, Safety.SAFE, only=("checkpoints",))
    assert names(base) == {
        "checkpoint-200",
        "checkpoint-400",
        "checkpoint-700",
        "checkpoint-800",
        "tmp-checkpoint-900",
    }, out


def test_without_a_declared_limit_pruning_is_unsafe_and_takes_keep(make_example):
    ex = make_example(checkpoints=14, start_processes=False)
    base = ex.base
    set_checkpoint_mtimes_past(base)
    all_names = names(base)
    run, out = fix(base, Safety.SAFE, only=("checkpoints",))
    assert names(base) == all_names and run.outcomes == []
    run, out = fix(base, Safety.UNSAFE, only=("checkpoints.bloat",))
    assert names(base) == all_names
    assert "pass --unsafe --keep N" in out
    run, out = fix(base, Safety.UNSAFE, only=("checkpoints.bloat",), keep=4)
    assert names(base) == {f"checkpoint-{s}" for s in (1100, 1200, 1300, 1400)}, out


def test_symlinked_checkpoint_out_of_the_workspace_is_never_followed(make_example, tmp_path):
    ex = make_example(checkpoints=12, start_processes=False)
    base = ex.base
    outside = tmp_path / "outside"
    (outside / "checkpoint-50").mkdir(parents=True)
    (outside / "checkpoint-50" / "trainer_state.json").write_text('{"global_step": 50}')
    (outside / "checkpoint-50" / "adapter_model.safetensors").write_bytes(b"x" * 100)
    (outside / "data").mkdir()
    (outside / "data" / "precious.bin").write_bytes(b"p" * 100)
    (base / "current_model" / "checkpoint-50").symlink_to(outside / "checkpoint-50")
    (base / "current_model" / "checkpoint-100" / "link-out").symlink_to(outside / "data")
    set_config(base, save_total_limit=2)
    set_checkpoint_mtimes_past(base)
    outside_before = tree_hashes(outside)
    tree_before = tree_hashes(base)

    run, out = fix(base, Safety.UNSAFE, only=("checkpoints",), dry_run=True)
    assert tree_hashes(base) == tree_before and tree_hashes(outside) == outside_before

    run, out = fix(base, Safety.UNSAFE, only=("checkpoints",), keep=2)
    assert tree_hashes(outside) == outside_before, out
    assert (base / "current_model" / "checkpoint-50").is_symlink()
    assert not (base / "current_model" / "checkpoint-100").exists()  # deleted: its inner link unlinked, never followed
    assert names(base) == {"checkpoint-50", "checkpoint-1100", "checkpoint-1200"}


def test_safe_run_never_prunes_under_an_undeclared_trainer_default(tmp_path):
    import json as _json

    from healthkit.fix.plan import Safety

    from ..conftest import make_checkpoint
    from .conftest import fix, set_checkpoint_mtimes_past

    for s in range(10, 130, 10):
        make_checkpoint(tmp_path / "current_model", s)
    (tmp_path / "config.json").write_text(_json.dumps({"base_model": "m", "save_steps": 10}))
    set_checkpoint_mtimes_past(tmp_path)
    run, out = fix(tmp_path, Safety.SAFE, only=("checkpoints.bloat",))
    assert len(list((tmp_path / "current_model").glob("checkpoint-*"))) == 12, out


def test_under_our_trainers_default_limit_unsafe_alone_prunes_to_it(tmp_path):
    """The limit nobody wrote down is held back from --safe, and --unsafe alone applies it: no --keep needed."""
    from healthkit.core.detect import HEALTHKIT_SCHEMA_ID

    from ..conftest import make_checkpoint, write_json

    base = tmp_path / "ws"
    for s in range(10, 90, 10):
        make_checkpoint(base / "current_model", s)
    write_json(base / "config.json", {"$schema": HEALTHKIT_SCHEMA_ID, "base_model": "m", "save_steps": 10})
    set_checkpoint_mtimes_past(base)
    run, out = fix(base, Safety.SAFE, only=("checkpoints.bloat",))
    assert run.outcomes == [] and len(names(base)) == 8
    assert ("  - prune-checkpoints (unsafe) for checkpoints.bloat: unsafe: applied only with --unsafe\n") in out, out
    run, out = fix(base, Safety.UNSAFE, only=("checkpoints.bloat",))
    assert names(base) == {"checkpoint-60", "checkpoint-70", "checkpoint-80"}, out  # the trainer's default: 3
    assert "beyond save_total_limit 3 (healthkit trainer default" in out
