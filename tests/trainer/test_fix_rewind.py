"""`rewind-to-checkpoint` (unsafe): checkpoints after the chosen one moved aside (never deleted), the fault's window
recorded for the trainer to skip, a failed file queued again, the daemon stopped and started around it.

The unit tests build our trainer's workspace by hand (checkpoints with our marker, a log_history with a spike at
step 700); the end-to-end test diverges a real run under a real daemon and rewinds it through the CLI.
"""

from __future__ import annotations

import io
import json
import math
import os
import random
from pathlib import Path

import pytest

from healthkit.core.api import audit
from healthkit.fix import FixOptions, Safety, run_fix
from healthkit.trainer import checkpoints as ck
from healthkit.trainer import queue as q
from healthkit.trainer import rewind
from healthkit.trainer.data_order import SEEDED, Geometry, SeededOrder, Window
from healthkit.trainer.layout import Layout
from healthkit.trainer.scaffold import init_workspace

from ..conftest import make_checkpoint
from .conftest import hk, queue_file, read_json, wait_for

SPIKE_AT = 700


def _loss(s: int) -> float:
    noise = random.Random(s).uniform(0.95, 1.05)
    return (3.2 if s >= SPIKE_AT else 1.0) * (0.6 + 1.9 * math.exp(-s / 1500)) * noise


def spiked_workspace(
    base: Path, saves=(500, 600, 800, 900, 1000), where: str = "processing", hf_order: bool = False
) -> Layout:
    """Our trainer's workspace whose file a.jsonl spiked at step 700 (logged every 10 steps), saved at ``saves``."""
    init_workspace(base, per_device_train_batch_size=4, gradient_accumulation_steps=2, save_total_limit=5)
    lay = Layout.of(base)
    src = base / "data" / "a.jsonl"
    src.parent.mkdir()
    src.write_text("".join(json.dumps({"text": f"example {i}"}) + "\n" for i in range(40)))
    queued = q.add(lay, src)
    q.claim(lay, next(e for e in q.pending(lay) if e.path == queued))
    hist = [
        {"loss": round(_loss(s), 4), "grad_norm": 1.1, "learning_rate": 1e-4, "step": s} for s in range(10, 1001, 10)
    ]
    ckdir = lay.checkpoints
    for s in saves:
        c = make_checkpoint(ckdir, s, history=[e for e in hist if e["step"] <= s], extra={"max_steps": 5000})
        (c / "rng_state.pth").write_bytes(b"r" * 16)
        ck.mark(c, "a.jsonl", s, None if hf_order else SEEDED)
    (ckdir / ck.OWNER).write_text(json.dumps({"file": "a.jsonl"}))
    if where == "failed":
        # the guard stopped it (spike_action stop); its checkpoints stay here until another file trains
        q.finish_failed(lay, lay.processing / "a.jsonl", "training loss diverged (guard.spike_action = stop)")
    return lay


def fix(base: Path, to: str | None = None, dry_run: bool = False):
    out = io.StringIO()
    opts = FixOptions(
        level=Safety.UNSAFE, dry_run=dry_run, only=("rewind-to-checkpoint",), to=to, confirm=lambda plans: True
    )
    return run_fix(base, opts, out), out.getvalue()


def spike(base: Path):
    return next(
        f for f in audit(base, select=["signal"], record_costs=False).findings if f.code == "training.loss-spike"
    )


def test_the_spike_carries_the_rewind_in_our_trainer_s_workspace_and_the_plan_says_what_it_costs(tmp_path):
    lay = spiked_workspace(tmp_path / "ws")
    f = spike(lay.base)
    assert f.data["rewind_to"] == "checkpoint-600" and [r.id for r in f.fixes] == ["rewind-to-checkpoint"]
    run, text = fix(lay.base, dry_run=True)
    [plan] = run.chosen
    assert "Rewind a.jsonl to checkpoint-600 (step 600)" in plan.title, text
    assert "checkpoint-800, checkpoint-900, checkpoint-1000" in plan.preview
    assert "steps thrown away: 601-1000 (400 step(s), trained again from checkpoint-600)" in plan.preview
    assert "skip the batches of step(s) 691-700 (10 step(s): 20 micro-batch(es) of 4 example(s) per device)" in (
        plan.preview
    )
    assert "the daemon is not running: a.jsonl resumes from checkpoint-600 when it starts" in plan.preview
    assert sorted(p.name for p in lay.checkpoints.glob("checkpoint-*")) == [
        f"checkpoint-{s}" for s in (1000, 500, 600, 800, 900)
    ]  # a dry run moves nothing


def test_the_rewind_moves_the_later_checkpoints_aside_and_records_the_window(tmp_path):
    lay = spiked_workspace(tmp_path / "ws")
    run, text = fix(lay.base)
    [(plan, outcome)] = run.outcomes
    assert outcome.ok, (outcome.message, text)
    assert sorted(p.name for p in lay.checkpoints.glob("checkpoint-*")) == ["checkpoint-500", "checkpoint-600"]
    [aside] = ck.set_aside(lay.checkpoints)
    assert sorted(p.name for p in aside.glob("checkpoint-*")) == ["checkpoint-1000", "checkpoint-800", "checkpoint-900"]
    why = json.loads((aside / ck.ASIDE_INFO).read_text())["checkpoints"]["checkpoint-800"]
    assert "rewound past: training.loss-spike at step 700" in why
    assert rewind.windows(lay, "a.jsonl") == [Window(691, 700)]
    [r] = rewind.rewinds(lay, "a.jsonl")
    assert (
        r["to"] == "checkpoint-600"
        and r["reached_step"] == 1000
        and r["moved"]
        == [
            "checkpoint-800",
            "checkpoint-900",
            "checkpoint-1000",
        ]
    )
    assert ck.last_complete_of(lay, "a.jsonl") == lay.checkpoints / "checkpoint-600"  # what the daemon resumes from
    assert not any(f.code == "training.loss-spike" for f in run.after.findings)  # verified: the newest is before it


def test_to_chooses_an_older_checkpoint_and_refuses_one_after_the_fault(tmp_path):
    lay = spiked_workspace(tmp_path / "ws")
    run, _ = fix(lay.base, to="checkpoint-800", dry_run=True)
    assert not run.chosen and "not before the fault at step 700" in run.not_applied[0][1]
    run, _ = fix(lay.base, to="../../etc", dry_run=True)
    assert "checkpoint-N" in run.not_applied[0][1]
    run, _ = fix(lay.base, to="checkpoint-500")
    assert run.outcomes[0][1].ok
    assert sorted(p.name for p in lay.checkpoints.glob("checkpoint-*")) == ["checkpoint-500"]
    assert rewind.windows(lay, "a.jsonl") == [Window(691, 700)]


def test_a_file_the_guard_failed_is_rewound_where_its_checkpoints_are_kept_and_queued_again(tmp_path):
    lay = spiked_workspace(tmp_path / "ws", where="failed")
    run, text = fix(lay.base, dry_run=True)
    assert "queue a.jsonl again" in run.chosen[0].preview, text
    run, text = fix(lay.base)
    assert run.outcomes[0][1].ok, text
    assert sorted(p.name for p in lay.checkpoints.glob("checkpoint-*")) == ["checkpoint-500", "checkpoint-600"]
    assert (lay.inbox / "a.jsonl").is_file() and not (lay.failed / "a.jsonl").exists()
    resume, _ = ck.prepare(lay, "a.jsonl")  # what the daemon does before training it
    assert resume == lay.checkpoints / "checkpoint-600"


def test_no_rewind_for_a_run_our_trainer_did_not_save(tmp_path):
    lay = spiked_workspace(tmp_path / "ws")
    for c in lay.checkpoints.glob("checkpoint-*"):
        (c / "healthkit_checkpoint.json").unlink()
    assert spike(lay.base).fixes == []


def test_a_file_that_trained_in_hf_s_order_is_rewound_without_a_skip(tmp_path):
    """Checkpoints saved before the trainer ordered its examples itself (no `data_order` in their marker): their
    batches cannot be named, so the rewind resumes from the checkpoint and skips nothing, and its plan says why."""
    lay = spiked_workspace(tmp_path / "ws", hf_order=True)
    run, text = fix(lay.base, dry_run=True)
    assert "skip no batch: a.jsonl trained in HF's own example order" in run.chosen[0].preview, text
    run, _ = fix(lay.base)
    assert run.outcomes[0][1].ok and rewind.windows(lay, "a.jsonl") == []
    assert sorted(p.name for p in lay.checkpoints.glob("checkpoint-*")) == ["checkpoint-500", "checkpoint-600"]


def test_a_file_resumed_from_a_checkpoint_in_hf_s_order_keeps_that_order(tmp_path):
    """An upgrade must not change a file's order half-way through an epoch: resumed from a checkpoint saved in HF's
    order, the trainer keeps HF's sampler; from one saved in its own, it keeps its own."""
    from types import SimpleNamespace

    from healthkit.trainer.train_file import example_order

    lay = spiked_workspace(tmp_path / "ws", hf_order=True)
    args = SimpleNamespace(
        per_device_train_batch_size=4, gradient_accumulation_steps=2, world_size=1, seed=42, group_by_length=False
    )
    cfg = None
    ckpt = str(lay.checkpoints / "checkpoint-600")
    assert example_order(lay, cfg, args, "a.jsonl", 32, resume_from=ckpt) is None
    assert isinstance(example_order(lay, cfg, args, "a.jsonl", 32), SeededOrder)  # a fresh start: its own order
    ck.mark(lay.checkpoints / "checkpoint-600", "a.jsonl", 600, SEEDED)
    assert isinstance(example_order(lay, cfg, args, "a.jsonl", 32, resume_from=ckpt), SeededOrder)


def test_to_needs_unsafe(tmp_path):
    lay = spiked_workspace(tmp_path / "ws")
    r = hk("fix", str(lay.base), "--safe", "--dry-run", "--to", "checkpoint-600")
    assert r.returncode == 64 and "--to names where the unsafe rewind-to-checkpoint goes back to" in r.stderr


def test_a_second_rewind_adds_its_window_after_the_first(tmp_path):
    lay = spiked_workspace(tmp_path / "ws")
    fix(lay.base)
    rw = rewind.plan(lay, "a.jsonl", lay.checkpoints / "checkpoint-500", Window(551, 560))
    rewind.apply(lay, rw, "training.loss-spike at step 560", "a test", 600)
    assert rewind.windows(lay, "a.jsonl") == [Window(691, 700), Window(551, 560)]
    assert rewind.plan(lay, "a.jsonl", lay.checkpoints / "checkpoint-500", Window(400, 560)).window == Window(501, 560)
    rewind.clear(lay, "a.jsonl")  # the file completed
    assert rewind.windows(lay, "a.jsonl") == []


@pytest.mark.slow
def test_a_diverging_run_is_rewound_under_its_daemon_and_skips_the_window(make_ws, tmp_path):
    """learning_rate 0.99 under the real daemon: the loss diverges; `healthkit fix --unsafe --yes` stops the daemon,
    moves the checkpoints after the rewind point aside, starts it again; the file resumes from that checkpoint and
    never trains on the window's examples in that epoch (recorded by the test hook HEALTHKIT_TEST_RECORD_EXAMPLES)."""
    pytest.importorskip("transformers", reason="transformers not installed (extra `trainer`)")
    lay = make_ws(
        learning_rate=0.99,
        warmup_steps=12,
        logging_steps=1,
        save_steps=4,
        eval_steps=500,
        max_steps=60,
        save_total_limit=20,
    )
    with open(lay.base / "healthkit.toml", "a", encoding="utf-8") as toml:  # this tiny run climbs ~3x: 2x is enough
        toml.write("\n[signal]\ndivergence_factor = 2.0\n")
    queue_file(lay, "a.jsonl", n=100)
    record = tmp_path / "trained.txt"
    env = {**os.environ, "HEALTHKIT_TRAINER_STEP_SLEEP_S": "0.3", "HEALTHKIT_TEST_RECORD_EXAMPLES": str(record)}
    r = hk("daemon", "start", str(lay.base), env=env)
    assert r.returncode == 0, r.stderr

    def spiked():
        if (read_json(lay.status).get("step") or 0) < 16:
            return None
        found = audit(lay.base, select=["signal"], record_costs=False).findings
        return next((f for f in found if f.code == "training.loss-spike" and f.data["rewind_to"]), None)

    f = wait_for(spiked, timeout=300, interval=0.5, what="a loss spike with a checkpoint before it")
    r = hk("fix", str(lay.base), "--unsafe", "--yes", "--only", "rewind-to-checkpoint", env=env, timeout=600)
    assert "rewound a.jsonl to " + f.data["rewind_to"] in r.stdout + r.stderr, r.stdout + r.stderr
    print("\n", f.title, "\n", r.stdout, "\n", r.stderr)
    [rw] = rewind.rewinds(lay, "a.jsonl")
    print(json.dumps(rw, indent=1))
    to_step, first, last = rw["to_step"], rw["skip_first"], rw["skip_last"]
    assert to_step <= f.data["step"] and first <= f.data["step"] == last
    assert rw["moved"] and all(to_step < int(n.split("-")[1]) <= rw["reached_step"] for n in rw["moved"])
    wait_for(lambda: (lay.done / "a.jsonl").exists(), timeout=400, interval=0.5, what="a.jsonl done after the rewind")
    log = (lay.logs / "train-a.log").read_text()
    assert f"resuming from {lay.checkpoints / rw['to']}" in log and f"steps {first}-{last} are skipped" in log
    # The examples trained after the resume: the order with the window cut out, from the checkpoint's position on.
    resumed = record.read_text().split("--- start\n")[-1].splitlines()
    g = Geometry(int(resumed[0]), 4)
    order = SeededOrder(g, 42, [Window(first, last)])
    trained = [int(x) for x in resumed[1:]]
    epoch, start, _ = g.span(to_step + 1)
    expected = order.order(epoch)[start:] + order.order(epoch + 1) + order.order(epoch + 2)
    assert trained == expected[: len(trained)] and len(trained) >= (60 - to_step) * g.per_step
    assert not set(order.skipped(epoch)) & set(trained[: g.examples - start])
    assert not rewind.record_path(lay, "a.jsonl").exists()  # completed: the record went with its checkpoints
