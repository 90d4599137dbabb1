"""One completeness rule (healthkit.formats.hf_checkpoints), read in bounded time, shared by the audit, fix planning and the trainer."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from healthkit.checks.checkpoints import PRUNE, PRUNE_DEFAULT, PRUNE_UNSAFE, LimitSource, Retention, _prune_ref
from healthkit.core.api import audit
from healthkit.core.workspace import Workspace
from healthkit.fix.fixes_checkpoints import protections
from healthkit.formats import hf_checkpoints as rule
from healthkit.formats.hf_checkpoints import checkpoint_completeness, read_state
from healthkit.trainer import checkpoints as trainer_ckpts


def hf_state(step: int, entries: int = 0) -> str:
    """trainer_state.json as HF writes it: indent=2, sorted keys (global_step before log_history)."""
    history = [
        {"epoch": s / 1000, "grad_norm": 1.25, "learning_rate": 2e-4, "loss": 2.0 / (1 + s), "step": s}
        for s in range(1, entries + 1)
    ]
    state = {
        "best_model_checkpoint": None,
        "epoch": step / 1000,
        "global_step": step,
        "log_history": history,
        "max_steps": 100_000,
        "save_steps": 10,
        "stateful_callbacks": {"TrainerControl": {"args": {}}},
        "total_flos": 1.0,
        "trial_params": None,
    }
    return json.dumps(state, indent=2, sort_keys=True) + "\n"


def make(ckdir: Path, step: int, state: str | None, *, weights: bool = True) -> Path:
    d = ckdir / f"checkpoint-{step}"
    d.mkdir(parents=True)
    if state is not None:
        (d / "trainer_state.json").write_text(state, encoding="utf-8")
    if weights:
        (d / "model.safetensors").write_bytes(b"w" * 64)
    for name in ("optimizer.pt", "scheduler.pt", "config.json"):
        (d / name).write_bytes(b"{}")
    return d


def old(d: Path) -> Path:
    """Older than the fixes' two-minute 'may be being written' guard."""
    import os

    for p in [*d.iterdir(), d]:
        os.utime(p, (time.time() - 3600, time.time() - 3600))
    return d


BIG = hf_state(500, entries=3000)  # ~400 KB: well past what is parsed whole


def _after_nested_brace(text: str) -> int:
    """A cut just after a log_history entry's closing brace: the text still ends in `}`."""
    return text.index("    }", len(text) // 2) + len("    }")


CUTS = {
    "middle": lambda t: len(t) // 2,
    "after a nested }": _after_nested_brace,
    "before the last }": lambda t: len(t) - 2,
    "head only": lambda t: 300,
}


@pytest.mark.parametrize("cut", list(CUTS))
def test_cut_off_state_is_incomplete_for_audit_fix_and_trainer(tmp_path, cut):
    assert len(BIG) > 4 * rule.WHOLE_BELOW
    ck = tmp_path / "current_model"
    (tmp_path / "config.json").write_text(json.dumps({"save_total_limit": 1, "monitor_port": None}))
    good = old(make(ck, 100, hf_state(100, entries=2000)))
    broken = old(make(ck, 500, BIG[: CUTS[cut](BIG)]))
    newest = old(make(ck, 900, hf_state(900, entries=10)))
    assert read_state(broken / "trainer_state.json").problem

    found = {
        f.data["checkpoint"]
        for f in audit(tmp_path, select=["checkpoints"], record_costs=False).findings
        if f.code == "checkpoints.incomplete"
    }
    assert found == {"checkpoint-500"}
    protected, candidates = protections(Workspace.open(tmp_path), 1, None, set())
    assert protected["checkpoint-500"].startswith("incomplete") and [c.name for c in candidates] == ["checkpoint-100"]
    assert [trainer_ckpts.is_complete(p) for p in (good, broken, newest)] == [True, False, True]


def test_cut_off_newest_falls_back_to_the_previous_everywhere(tmp_path):
    ck = tmp_path / "current_model"
    make(ck, 100, hf_state(100, entries=5))
    make(ck, 500, BIG[: len(BIG) // 2])
    ws = Workspace.open(tmp_path)
    ckpt, ts = ws.latest_trainer_state
    assert ckpt.name == "checkpoint-100" and ts.data["global_step"] == 100
    assert trainer_ckpts.last_complete(ck) == ck / "checkpoint-100"


def test_huge_valid_history_is_complete_and_read_in_bounded_time(tmp_path):
    """Garbage in the middle of an older checkpoint's log_history goes unseen: proof that its state is not parsed whole."""
    ck = tmp_path / "current_model"
    sound = hf_state(300, entries=20_000)  # ~3 MB
    start = sound.index('"log_history"') + 5000
    tampered = sound[:start] + "#" * 100 + sound[start + 100 :]
    make(ck, 100, tampered)
    make(ck, 300, sound)
    assert checkpoint_completeness(ck / "checkpoint-300").complete
    assert checkpoint_completeness(ck / "checkpoint-100") == rule.Completeness(300, ())
    ws = Workspace.open(tmp_path)
    assert [ws.completeness_of(c).complete for c in ws.checkpoints] == [True, True]
    assert (
        ws.latest_trainer_state[1].data["global_step"] == 300
        and len(ws.latest_trainer_state[1].data["log_history"]) == 20_000
    )


def test_a_state_the_bounded_read_passes_but_the_whole_parse_fails_is_incomplete(tmp_path):
    """Where a state is parsed whole (the newest sound one) a failed parse makes it incomplete, and the next is used."""
    ck = tmp_path / "current_model"
    sound = hf_state(300, entries=3000)
    start = sound.index('"log_history"') + 5000
    make(ck, 100, hf_state(100, entries=3))
    make(ck, 300, sound[:start] + "#" + sound[start + 1 :])
    ws = Workspace.open(tmp_path)
    newest = ws.checkpoints[-1]
    assert not ws.completeness_of(newest).complete
    assert "unreadable" in ws.completeness_of(newest).missing[0]
    assert ws.latest_trainer_state[0].name == "checkpoint-100"
    assert trainer_ckpts.last_complete(ck) == ck / "checkpoint-100"


def test_newest_is_picked_by_step_not_name(tmp_path):
    ck = tmp_path / "current_model"
    for step in (900, 2600, 10000):
        make(ck, step, hf_state(step, entries=3))
    make(ck, 12000, None)  # newest by step, but a killed save: no trainer_state.json
    ws = Workspace.open(tmp_path)
    assert [c.name for c in ws.checkpoints] == [
        "checkpoint-900",
        "checkpoint-2600",
        "checkpoint-10000",
        "checkpoint-12000",
    ]
    ckpt, ts = ws.latest_trainer_state
    assert (ckpt.name, ts.data["global_step"]) == ("checkpoint-10000", 10000)
    assert trainer_ckpts.last_complete(ck) == ck / "checkpoint-10000"


def test_state_that_is_not_hf_indented_is_parsed_whole(tmp_path):
    """A compact file's tail cannot tell a cut after a nested `}`: such a file is judged by a whole parse."""
    ck = tmp_path / "current_model"
    compact = json.dumps(json.loads(BIG))
    d = make(ck, 500, compact[: compact.index("}", len(compact) // 2) + 1])
    assert not checkpoint_completeness(d).complete
    d2 = make(ck, 600, compact)
    assert checkpoint_completeness(d2) == rule.Completeness(500, ())


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("", "empty"),
        ("[1, 2]", "not a JSON object"),
        ('{"log_history": []}', "no global_step"),
        ('{"global_step": true}', "no global_step"),
        ("\xff", "unreadable"),
    ],
)
def test_small_states_are_parsed_whole(tmp_path, text, why):
    d = make(tmp_path, 1, None)
    (d / "trainer_state.json").write_bytes(text.encode("latin-1"))
    assert why in checkpoint_completeness(d).missing[0]


def test_unsorted_large_state_still_finds_global_step(tmp_path):
    """global_step after log_history (not HF's sorted order): the bounded read cannot tell, the whole parse can."""
    state = json.loads(BIG)
    step = state.pop("global_step")
    d = make(tmp_path, 1, json.dumps({**state, "global_step": step}, indent=2))
    assert checkpoint_completeness(d) == rule.Completeness(step, ())


def test_trainer_also_needs_optimizer_state(tmp_path):
    d = make(tmp_path, 1, hf_state(1))
    (d / "scheduler.pt").unlink()
    assert checkpoint_completeness(d).complete
    assert checkpoint_completeness(d, need_optimizer=True).missing == ("scheduler.pt is missing",)
    assert not trainer_ckpts.is_complete(d)


@pytest.mark.parametrize(
    ("source", "ref"),
    [
        (LimitSource.CONFIG, PRUNE),
        (LimitSource.SETTINGS, PRUNE),
        (LimitSource.TRAINER_DEFAULT, PRUNE_DEFAULT),
        (LimitSource.NONE, PRUNE_UNSAFE),
    ],
)
def test_prune_safety_comes_from_the_typed_limit_source(source, ref):
    """Not from the wording of `declared_by`: the same words under another source change nothing."""
    assert _prune_ref(Retention(3, source, "healthkit trainer default (config.json has no `x`)")) is ref
