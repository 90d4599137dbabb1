"""transformers' Trainer under DeepSpeed ZeRO-3 and FSDP, audited with no settings and no config.json.

FSDP shards are written by torch.distributed.checkpoint's own save code (two processes, gloo,
loopback: tests/formats/dcp_writer.py). DeepSpeed does not run here; its ZeRO-3 layout is written
as `DeepSpeedEngine.save_checkpoint` writes it (deepspeed/runtime/engine.py: `_get_ckpt_name`,
`_get_zero_ckpt_name`, the `latest` tag), each state a real `torch.save` file. The Trainer's own
`training_args.bin` is a real `torch.save(TrainingArguments(...))`, as `Trainer._save_checkpoint` writes it.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import write_json

from .conftest import age, audit, codes, findings, fix, free_port, inferred

torch = pytest.importorskip("torch")
HERE = Path(__file__).parent


@pytest.fixture(scope="module")
def training_args(tmp_path_factory):
    """{limit: bytes of a training_args.bin} written by torch.save of real TrainingArguments."""
    from transformers import TrainingArguments

    out = {}
    for limit in (3, None):
        p = tmp_path_factory.mktemp("args") / "training_args.bin"
        torch.save(TrainingArguments(output_dir=str(p.parent), save_total_limit=limit, report_to=[]), p)
        out[limit] = p.read_bytes()
    return out


@pytest.fixture(scope="module")
def dcp_shards(tmp_path_factory):
    """pytorch_model_fsdp_0/ and optimizer_0/ as torch.distributed.checkpoint writes them from 2 ranks."""
    out = tmp_path_factory.mktemp("dcp")
    r = subprocess.run(
        [sys.executable, str(HERE / "dcp_writer.py"), str(out), str(free_port())], capture_output=True, timeout=300
    )
    assert r.returncode == 0, r.stderr.decode()[-2000:]
    return out


def trainer_files(d: Path, step: int, args: bytes, best: str | None, world: int = 2) -> None:
    write_json(
        d / "trainer_state.json",
        {
            "best_model_checkpoint": best,
            "eval_steps": 10,
            "global_step": step,
            "log_history": [
                e
                for k in range(10, step + 1, 10)
                for e in ({"step": k, "loss": 1.0 / k}, {"step": k, "eval_loss": 2.0 / k})
            ],
            "max_steps": 100,
            "save_steps": 10,
        },
    )
    (d / "training_args.bin").write_bytes(args)
    torch.save({"lr": 1}, d / "scheduler.pt")
    for r in range(world):
        torch.save({"python": r}, d / f"rng_state_{r}.pth")
    (d / "config.json").write_text("{}")


def zero3_checkpoint(ck: Path, step: int, args: bytes, best: str | None = None, world: int = 2) -> Path:
    """checkpoint-N as Trainer + DeepSpeed ZeRO-3 write it without stage3_gather_16bit_weights_on_model_save."""
    d = ck / f"checkpoint-{step}"
    tag = d / f"global_step{step}"
    tag.mkdir(parents=True)
    trainer_files(d, step, args, best, world)
    (d / "latest").write_text(f"global_step{step}")
    (d / "zero_to_fp32.py").write_text("# DeepSpeed's recovery script\n")
    for r in range(world):
        torch.save({"module": None, "ds_version": "0.15"}, tag / f"zero_pp_rank_{r}_mp_rank_00_model_states.pt")
        torch.save(
            {"optimizer_state_dict": {"fp32": torch.zeros(16)}},
            tag / f"bf16_zero_pp_rank_{r}_mp_rank_00_optim_states.pt",
        )
    return d


def fsdp_checkpoint(ck: Path, step: int, args: bytes, shards: Path, best: str | None = None) -> Path:
    d = ck / f"checkpoint-{step}"
    d.mkdir(parents=True)
    trainer_files(d, step, args, best)
    for sub in ("pytorch_model_fsdp_0", "optimizer_0"):
        shutil.copytree(shards / sub, d / sub)
    return d


def test_zero3_run_is_three_sound_checkpoints_under_its_limit(tmp_path, training_args):
    ck = tmp_path / "output"
    for s in (10, 20, 30):
        zero3_checkpoint(ck, s, training_args[3], best=str(ck / "checkpoint-20"))
    age(tmp_path)
    report = audit(tmp_path)
    assert codes(report) == [], report["findings"]
    assert inferred(report)["run.format"] == "hf" and inferred(report)["paths.checkpoints"] == "output"
    facts = report["facts"]["checkpoints"]
    assert facts["count"] == 3 and facts["limit"] == 3 and facts["best"] == "checkpoint-20"
    assert "training_args.bin" in facts["limit_declared_by"]
    out = fix(tmp_path, "--unsafe", "--dry-run")
    assert "delete" not in out.lower() or "0 checkpoint(s) to delete" in out, out


def test_zero3_cut_short_is_incomplete_and_a_sound_one_is_not(tmp_path, training_args):
    ck = tmp_path / "output"
    for s in (10, 20, 30, 40):
        zero3_checkpoint(ck, s, training_args[3])
    (ck / "checkpoint-30" / "global_step30" / "bf16_zero_pp_rank_1_mp_rank_00_optim_states.pt").unlink()
    (ck / "checkpoint-40" / "latest").unlink()
    age(tmp_path)
    found = {f["data"]["checkpoint"]: f["data"]["missing"] for f in findings(audit(tmp_path), "checkpoints.incomplete")}
    assert sorted(found) == ["checkpoint-30", "checkpoint-40"], found
    assert "optimizer states of rank(s) 1 of 2" in found["checkpoint-30"][0]
    assert "`latest` is missing" in found["checkpoint-40"][0]


def test_fsdp_run_six_sound_checkpoints_no_retention_declared(tmp_path, training_args, dcp_shards):
    ck = tmp_path / "output"
    for s in range(10, 70, 10):
        fsdp_checkpoint(ck, s, training_args[None], dcp_shards)
    age(tmp_path)
    report = audit(tmp_path)
    assert codes(report) == ["checkpoints.no-retention"], report["findings"]
    [f] = findings(report, "checkpoints.no-retention")
    assert "save_total_limit: None" in " ".join(f["problem"])
    assert "delete-incomplete-checkpoint" not in fix(tmp_path, "--unsafe", "--dry-run")


def test_fsdp_cut_short_shard_and_missing_metadata_are_incomplete(tmp_path, training_args, dcp_shards):
    ck = tmp_path / "output"
    for s in (10, 20, 30):
        fsdp_checkpoint(ck, s, training_args[3], dcp_shards)
    shard = ck / "checkpoint-20" / "pytorch_model_fsdp_0" / "__1_0.distcp"
    shard.write_bytes(shard.read_bytes()[:1000])
    (ck / "checkpoint-30" / "optimizer_0" / ".metadata").unlink()
    age(tmp_path)
    found = {
        f["data"]["checkpoint"]: " ".join(f["data"]["missing"])
        for f in findings(audit(tmp_path), "checkpoints.incomplete")
    }
    assert sorted(found) == ["checkpoint-20", "checkpoint-30"], found
    assert "__1_0.distcp is cut short (1000 bytes" in found["checkpoint-20"]
    assert "optimizer_0/.metadata is missing" in found["checkpoint-30"]


@pytest.mark.parametrize("variant", ["zero3", "fsdp"])
def test_prune_keeps_newest_by_step_and_the_best_whole_folders_only(tmp_path, training_args, dcp_shards, variant):
    ck = tmp_path / "output"
    steps = (5, 10, 20, 90, 100)  # checkpoint-100 sorts before checkpoint-20 by name: the order is by step
    for s in steps:
        best = str(ck / "checkpoint-10")
        if variant == "zero3":
            zero3_checkpoint(ck, s, training_args[None], best=best)
        else:
            fsdp_checkpoint(ck, s, training_args[None], dcp_shards, best=best)
    age(tmp_path)
    out = fix(tmp_path, "--unsafe", "--keep", "2", "--yes", "--only", "checkpoints.no-retention")
    assert sorted(p.name for p in ck.iterdir()) == ["checkpoint-10", "checkpoint-100", "checkpoint-90"], out
    assert not any(p.name.startswith(".healthkit-trash") for p in ck.iterdir())
    kept = ck / "checkpoint-90"
    assert (kept / "latest").exists() if variant == "zero3" else (kept / "optimizer_0" / ".metadata").exists()
    assert codes(audit(tmp_path)) in ([], ["checkpoints.no-retention"])


def test_unknown_weight_layout_is_never_incomplete_and_never_offered_for_deletion(tmp_path, training_args):
    ck = tmp_path / "output"
    for s in (10, 20, 30):
        d = ck / f"checkpoint-{s}"
        d.mkdir(parents=True)
        trainer_files(d, s, training_args[None], None)
        (d / "consolidated.00.pth").write_bytes(b"x" * 100)  # some other stack's weights
    age(tmp_path)
    report = audit(tmp_path)
    assert "checkpoints.incomplete" not in codes(report), report["findings"]
    notes = next(c for c in report["checks"] if c["check"] == "checkpoints")["notes"]
    assert any("layout healthkit does not know" in n and "nothing offers to delete it" in n for n in notes), notes
    out = fix(tmp_path, "--unsafe", "--keep", "1", "--yes")
    assert sorted(p.name for p in ck.iterdir()) == ["checkpoint-10", "checkpoint-20", "checkpoint-30"], out


def test_limit_the_trainer_was_given_makes_the_prune_safe(tmp_path, training_args):
    """save_total_limit=3 only in training_args.bin (no config.json): five checkpoints are bloat, pruned by --safe."""
    ck = tmp_path / "output"
    for s in (10, 20, 30, 40, 50):
        zero3_checkpoint(ck, s, training_args[3], best=str(ck / "checkpoint-10"))
    age(tmp_path)
    [bloat] = findings(audit(tmp_path), "checkpoints.bloat")
    assert bloat["data"]["limit"] == 3 and bloat["data"]["limit_source"] == "run"
    assert [f["safety"] for f in bloat["fixes"]] == ["safe"]
    out = fix(tmp_path, "--safe")
    assert sorted(p.name for p in ck.iterdir()) == [
        "checkpoint-10",
        "checkpoint-30",
        "checkpoint-40",
        "checkpoint-50",
    ], out
