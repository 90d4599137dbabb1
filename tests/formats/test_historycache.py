"""The loss-history cache (healthkit/formats/historycache.py): a long run's series are parsed once per file, an
audit from the cache says exactly what a cold one says, and anything that changed the file is parsed again."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import pytest

from healthkit.core.api import audit
from healthkit.core.workspace import Workspace
from healthkit.formats import hf, hf_checkpoints, historycache

from ..checks.test_trainsignal import decay, hf_run, noisy

N5 = noisy(5, 0.05)


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("HEALTHKIT_NO_HISTORY_CACHE", raising=False)
    parses: list[Path] = []
    real = hf_checkpoints.load_state

    def counted(p: Path, r=None):
        parses.append(p)
        return real(p, r)

    monkeypatch.setattr(hf_checkpoints, "load_state", counted)  # where the evidence reads it again
    monkeypatch.setattr(hf, "load_state", counted)  # where the audit reads the newest state
    return tmp_path / "cache" / "healthkit" / "history", parses


def long_run(base: Path, spike_at: float | None = 55_000, nan_at: float | None = None) -> Path:
    """60k steps logged every 10 (6,000 entries, ~600 KB): large enough for the cache."""

    def loss(s: float) -> float:
        if nan_at is not None and s >= nan_at:
            return math.nan
        return (3.2 if spike_at is not None and s >= spike_at else 1.0) * decay(s, floor=0.6) * N5(s)

    base = hf_run(base, last=60_000, max_steps=100_000, loss=loss, grad=lambda s: 1.1, saves=[59_000, 60_000])
    assert (base / "current_model/checkpoint-60000/trainer_state.json").stat().st_size >= historycache.CACHE_FROM
    return base


def said(report) -> list:
    return [(f.code, f.title, [(e.command, e.observed) for e in f.evidence]) for f in report.findings]


def test_a_second_audit_reads_the_series_from_the_cache_and_says_the_same(tmp_path, cache):
    folder, parses = cache
    base = long_run(tmp_path / "ws")
    cold = audit(base, select=["signal", "validation"], record_costs=False)
    assert len(list(folder.glob("*.json"))) == 1 and parses
    parses.clear()
    warm = audit(base, select=["signal", "validation"], record_costs=False)
    assert said(warm) == said(cold) and any(f.code == "training.loss-spike" for f in warm.findings)
    # the evidence printed log_history entries: read again from the file for it, and only for it
    assert parses == [base / "current_model/checkpoint-60000/trainer_state.json"]
    ckpt, state = Workspace.open(base).latest_trainer_state
    assert isinstance(state.data["log_history"], list) and len(state.data["log_history"]) == 6000


def test_a_changed_file_is_parsed_again(tmp_path, cache):
    folder, parses = cache
    base = long_run(tmp_path / "ws", spike_at=None)
    audit(base, select=["signal"], record_costs=False)
    state = base / "current_model/checkpoint-60000/trainer_state.json"
    os.utime(state, (1, 1))
    parses.clear()
    audit(base, select=["signal"], record_costs=False)
    assert parses == [state] and len(list(folder.glob("*.json"))) == 2


def test_a_history_with_a_nan_is_never_cached_and_still_found(tmp_path, cache):
    folder, _ = cache
    base = long_run(tmp_path / "ws", spike_at=None, nan_at=58_000)
    for _ in range(2):
        report = audit(base, select=["signal"], record_costs=False)
        assert [f.data["step"] for f in report.findings if f.code == "training.loss-non-finite"] == [58_000]
    assert not folder.exists() or not list(folder.glob("*.json"))


def test_turned_off_and_garbage_caches_are_ignored(tmp_path, cache, monkeypatch):
    folder, parses = cache
    base = long_run(tmp_path / "ws", spike_at=None)
    monkeypatch.setenv("HEALTHKIT_NO_HISTORY_CACHE", "1")
    audit(base, select=["signal"], record_costs=False)
    assert not folder.exists()
    monkeypatch.delenv("HEALTHKIT_NO_HISTORY_CACHE")
    audit(base, select=["signal"], record_costs=False)
    [entry] = folder.glob("*.json")
    entry.write_text(json.dumps({"v": 1, "id": "someone else's", "head": {}, "series": [[], [], [], []]}))
    parses.clear()
    report = audit(base, select=["signal"], record_costs=False)
    assert parses and not any(f.code.startswith("training.") for f in report.findings)
