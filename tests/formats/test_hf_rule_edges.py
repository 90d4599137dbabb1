"""Edges of the HF completeness rule's variants (healthkit.formats.hf_checkpoints with formats.deepspeed and formats.fsdp), on files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from healthkit.formats.hf_checkpoints import checkpoint_completeness


def ckpt(tmp_path: Path, files: dict[str, bytes]) -> Path:
    d = tmp_path / "checkpoint-10"
    for rel, data in files.items():
        p = d / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
    return d


STATE = json.dumps({"global_step": 10, "log_history": []}).encode()


def test_bookkeeping_without_weights_is_incomplete_not_unknown(tmp_path):
    c = checkpoint_completeness(
        ckpt(tmp_path, {"trainer_state.json": STATE, "optimizer.pt": b"o", "rng_state.pth": b"r"})
    )
    assert c.incomplete and c.unknown is None and "no model weights" in c.missing[0]


def test_shards_written_before_their_index_are_incomplete(tmp_path):
    c = checkpoint_completeness(ckpt(tmp_path, {"trainer_state.json": STATE, "model-00001-of-00002.safetensors": b"w"}))
    assert c.incomplete and "no model weights" in c.missing[0]


def test_foreign_weights_are_unknown(tmp_path):
    c = checkpoint_completeness(ckpt(tmp_path, {"trainer_state.json": STATE, "consolidated.00.pth": b"w"}))
    assert not c.complete and not c.incomplete and "consolidated.00.pth" in c.unknown


def test_zero_latest_naming_a_missing_tag_or_an_empty_state(tmp_path):
    d = ckpt(tmp_path, {"trainer_state.json": STATE, "latest": b"global_step10\n"})
    assert checkpoint_completeness(d).missing == ("`latest` names global_step10/, which does not exist",)
    (d / "global_step10").mkdir()
    (d / "global_step10" / "mp_rank_00_model_states.pt").write_bytes(b"m")
    (d / "global_step10" / "zero_pp_rank_0_mp_rank_00_optim_states.pt").write_bytes(b"")
    assert checkpoint_completeness(d).missing == ("global_step10/zero_pp_rank_0_mp_rank_00_optim_states.pt is empty",)
    (d / "global_step10" / "zero_pp_rank_0_mp_rank_00_optim_states.pt").write_bytes(b"o")
    assert checkpoint_completeness(d).complete  # ZeRO-1/2: one mp_rank model state, an optimizer state per rank


def test_zero3_rank_missing_model_states(tmp_path):
    files = {"trainer_state.json": STATE, "latest": b"global_step10"}
    for r in (0, 1):
        files[f"global_step10/bf16_zero_pp_rank_{r}_mp_rank_00_optim_states.pt"] = b"o"
    files["global_step10/zero_pp_rank_0_mp_rank_00_model_states.pt"] = b"m"
    c = checkpoint_completeness(ckpt(tmp_path, files))
    assert c.missing == ("global_step10/ lacks the model states of rank(s) 1 of 2",)


def test_fsdp_metadata_that_is_not_a_pickle_falls_back_to_the_names_in_it(tmp_path):
    files = {
        "trainer_state.json": STATE,
        "pytorch_model_fsdp_0/.metadata": b"garbage __0_0.distcp __1_0.distcp",
        "pytorch_model_fsdp_0/__0_0.distcp": b"x",
    }
    c = checkpoint_completeness(ckpt(tmp_path, files))
    assert c.missing == ("pytorch_model_fsdp_0/__1_0.distcp is missing (named in .metadata)",)


def test_the_declared_retention_is_read_once_and_every_thread_that_asks_gets_it():
    """Checks run in threads: a second asker while the first reads must wait for the answer, never see 'none declared'.

    (A fix --safe once planned nothing: its disk check saw no limit while the checkpoints check was reading it.)
    """
    import threading

    from healthkit.formats.base import DeclaredRetention, RunRecord

    reading, release, calls = threading.Event(), threading.Event(), []

    def slow_reader() -> DeclaredRetention:
        calls.append(1)
        reading.set()
        assert release.wait(10)
        return DeclaredRetention(3, "training_args.bin", None)

    rec = RunRecord(label="x", retention_reader=slow_reader)
    got: list = []
    first = threading.Thread(target=lambda: got.append(rec.declared_retention()))
    first.start()
    assert reading.wait(10)
    second = threading.Thread(target=lambda: got.append(rec.declared_retention()))
    second.start()
    second.join(0.2)
    assert second.is_alive()  # waiting for the read under way, not answering None
    release.set()
    first.join(10)
    second.join(10)
    assert [r.limit for r in got] == [3, 3] and calls == [1]


def test_the_loss_series_takes_numbers_only_from_entries_with_a_numeric_step():
    """formats.hf._series: the per-entry test is written out in its loop (a long history's speed); the rule is
    unchanged: a number, never a bool, for the step and for each loss."""
    from healthkit.formats.hf import _series

    hist = [
        {"step": 10, "loss": 2.5},
        {"step": True, "loss": 1.0},
        {"step": "20", "loss": 1.0},
        "junk",
        None,
        {"step": 30.0, "loss": False, "eval_loss": 1.5},
        {"step": 40, "eval_loss": 2},
        {"loss": 3.0},
        {"step": 50, "loss": None, "eval_loss": "1"},
    ]
    assert _series({"log_history": hist}) == ([[10.0, 2.5]], [[30.0, 1.5], [40.0, 2.0]], [], [])  # no grad_norm, no lr
    assert _series({"log_history": {"step": 1}}) == ([], [], [], []) and _series({}) == ([], [], [], [])


def test_trainer_state_parses_the_same_through_orjson_and_json(monkeypatch):
    """orjson reads a long history fast; what it refuses (a bare NaN, as json.dump writes a NaN loss) is read by
    json, with the same values; what neither reads raises as json.loads did. One difference, on purpose: an
    integer past 64 bits (no step or count of a run is) is read as the nearest float."""
    import json
    import math

    from healthkit.formats import hf_checkpoints
    from healthkit.formats.hf_checkpoints import _loads_without_gc

    monkeypatch.setattr(hf_checkpoints, "ORJSON_FROM", 0)  # every size through orjson here

    plain = {"global_step": 20, "log_history": [{"loss": 1.5, "step": 10}, {"loss": 2, "step": 20}]}
    raw = json.dumps(plain, indent=2).encode()
    assert _loads_without_gc(raw) == json.loads(raw) == plain
    nan = json.dumps({"log_history": [{"loss": float("nan"), "step": 10}]}).encode()
    assert b"NaN" in nan and math.isnan(_loads_without_gc(nan)["log_history"][0]["loss"])
    assert _loads_without_gc(b'{"total_flos": 123456789012345678901234567890}')["total_flos"] == 1.2345678901234568e29
    with pytest.raises(ValueError):
        _loads_without_gc(b'{"global_step": ')
    with pytest.raises((RecursionError, ValueError)):
        _loads_without_gc(b"[" * 100_000 + b"]" * 100_000)
