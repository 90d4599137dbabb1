"""Real PyTorch Lightning runs on the CPU (tests/formats/lightning_run.py), audited and fixed with no healthkit.toml.

Each run is the stack's own Trainer, ModelCheckpoint and CSVLogger; the audit sees them only through
healthkit.formats.lightning (checkpoints ordered by step, completeness from each zip's end, the
ModelCheckpoint state read without unpickling a class, the loss history from metrics.csv).
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import pytest

from .conftest import age, audit, codes, copy_run, findings, fix, inferred

pytest.importorskip("lightning")
from .lightning_run import run

CK = Path("lightning_logs/version_0/checkpoints")


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The runs, trained once per module; each test audits its own copy."""
    base = tmp_path_factory.mktemp("lightning")
    run(base / "val-off", save_last=True)  # validation off (limit_val_batches=0), save_top_k=-1 every 5 steps
    run(base / "nan", val_every=10, val_loss_at=lambda s: math.nan if s >= 30 else 1.0 / (s + 1))
    run(base / "tb-nan", val_every=10, tensorboard=True, val_loss_at=lambda s: math.nan if s >= 30 else 1.0 / (s + 1))
    run(
        base / "topk",
        val_every=10,
        monitor="val_loss",
        every_n_train_steps=None,
        val_loss_at=lambda s: abs(s - 20) / 10 + 0.1,
    )  # best at step 20; every validation saved (save_top_k=-1)
    return base


def test_validation_off_twelve_checkpoints_kept_forever(runs, tmp_path):
    base = copy_run(runs, "val-off", tmp_path)
    assert (base / CK / "last.ckpt").exists()
    report = audit(base)
    assert codes(report) == ["checkpoints.bloat", "checkpoints.no-retention", "validation.not-running"], report[
        "findings"
    ]
    assert inferred(report)["paths.checkpoints"] == str(CK) and inferred(report)["run.format"] == "lightning"
    assert report["facts"]["checkpoints"]["count"] == 12  # last.ckpt is a copy of one, not one more
    [nr] = findings(report, "checkpoints.no-retention")
    assert "save_top_k=-1" in nr["problem"][0] and "is set to keep every checkpoint" in nr["problem"][0]
    [val] = findings(report, "validation.not-running")
    assert "no validation loss" in val["problem"][0] and "limit_val_batches=0" in val["root_cause"][0]
    # fix --unsafe --keep 3 deletes the 9 oldest, whole files, and never last.ckpt
    out = fix(base, "--unsafe", "--keep", "3", "--yes", "--only", "checkpoints")
    left = sorted(os.listdir(base / CK))
    assert left == ["epoch=3-step=50.ckpt", "epoch=3-step=55.ckpt", "epoch=3-step=60.ckpt", "last.ckpt"], out
    assert "checkpoints.bloat" not in codes(audit(base))


def test_validation_loss_turning_nan(runs, tmp_path):
    base = copy_run(runs, "nan", tmp_path)
    report = audit(base)
    assert codes(report) == ["checkpoints.bloat", "checkpoints.no-retention", "validation.non-finite"], report[
        "findings"
    ]
    [nf] = findings(report, "validation.non-finite")
    assert "metrics.csv shows the validation loss nan from step 29" in nf["problem"][0]
    assert nf["evidence"][0]["observed"].splitlines()[-1].endswith(",nan")
    assert "config.invalid" not in codes(report)


def test_tensorboard_logger_history_read_through_the_extra(runs, tmp_path):
    """Lightning's TensorBoardLogger: the loss history only in event files, read by the tensorboard package."""
    base = copy_run(runs, "tb-nan", tmp_path)
    assert not list(base.rglob("metrics.csv")) and list(base.rglob("events.out.tfevents.*"))
    report = audit(base)
    [nf] = findings(report, "validation.non-finite")
    assert "TensorBoard event files" in nf["problem"][0] and nf["evidence"][0]["command"].startswith(
        "tensorboard --inspect"
    )


def test_top_k_on_a_monitored_metric_prune_keeps_the_best(runs, tmp_path):
    base = copy_run(runs, "topk", tmp_path)
    report = audit(base)
    assert report["facts"]["checkpoints"]["best"] == "epoch=1-step=20.ckpt", report["facts"]["checkpoints"]
    assert not [c for c in codes(report) if c.startswith("checkpoints.incomplete")]
    before = sorted(os.listdir(base / CK))
    assert len(before) == 6
    out = fix(base, "--unsafe", "--keep", "2", "--yes", "--only", "checkpoints")
    assert sorted(os.listdir(base / CK)) == ["epoch=1-step=20.ckpt", "epoch=3-step=50.ckpt", "epoch=3-step=60.ckpt"], (
        out
    )


def test_a_ckpt_cut_short_is_incomplete_and_a_whole_one_is_not(runs, tmp_path):
    base = copy_run(runs, "val-off", tmp_path)
    cut = base / CK / "epoch=2-step=40.ckpt"
    data = cut.read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    age(base)
    [f] = findings(audit(base), "checkpoints.incomplete")
    assert f["data"]["checkpoint"] == "epoch=2-step=40.ckpt" and "cut short" in f["data"]["missing"][0]
    out = fix(base, "--unsafe", "--yes", "--only", "checkpoints.incomplete")
    assert not cut.exists() and (base / CK / "epoch=2-step=35.ckpt").exists(), out
    assert "checkpoints.incomplete" not in codes(audit(base))


def test_an_unknown_layout_gets_no_deletion(tmp_path):
    """`.ckpt` folders (Lightning's DeepSpeed strategy writes one per save): not judged, never deleted."""
    ck = tmp_path / "lightning_logs" / "version_0" / "checkpoints"
    for s in (5, 10, 15):
        shard = ck / f"epoch=0-step={s}.ckpt" / "checkpoint"
        shard.mkdir(parents=True)
        (shard / "mp_rank_00_model_states.pt").write_bytes(b"x" * 100)
    age(tmp_path)
    report = audit(tmp_path)
    assert "checkpoints.incomplete" not in codes(report), report["findings"]
    assert any("not judged" in n for c in report["checks"] for n in c["notes"])
    out = fix(tmp_path, "--unsafe", "--keep", "1", "--yes")
    assert sorted(os.listdir(ck)) == ["epoch=0-step=10.ckpt", "epoch=0-step=15.ckpt", "epoch=0-step=5.ckpt"], out


def test_init_detect_writes_the_recognised_format(runs, tmp_path):
    from tests.conftest import run_cli

    base = copy_run(runs, "val-off", tmp_path)
    r = run_cli("init", str(base), "--detect")
    assert r.returncode == 0, r.stderr.decode()
    toml = (base / "healthkit.toml").read_text()
    assert 'format = "lightning"' in toml and "holds 12 Lightning `*.ckpt` file(s)" in toml, toml
    assert f'checkpoints = "{CK}"' in toml
    assert inferred(audit(base)) == {}  # everything now declared: nothing left to guess


def test_step_from_the_file_when_the_name_has_none(runs, tmp_path):
    base = copy_run(runs, "val-off", tmp_path)
    (base / CK / "epoch=0-step=5.ckpt").rename(base / CK / "first.ckpt")  # a custom filename: no `step=N`
    report = audit(base)
    assert report["facts"]["checkpoints"]["oldest_step"] == 5 and report["facts"]["checkpoints"]["count"] == 12
    out = fix(base, "--unsafe", "--keep", "11", "--yes", "--only", "checkpoints")
    assert not (base / CK / "first.ckpt").exists() and (base / CK / "epoch=0-step=10.ckpt").exists(), out


def test_checkpoints_and_csv_logger_apart_history_found_by_the_loggers_layout(runs, tmp_path):
    """Issue 31 item 12: `ModelCheckpoint(dirpath="ckpts")` and `CSVLogger("logs")` apart: the history is found in
    the logger's own layout (the NaN is still seen); with no history at all, the report itself says validation was
    not judged, and why."""
    import shutil

    from tests.conftest import run_cli

    base = copy_run(runs, "nan", tmp_path)
    shutil.move(str(base / CK), str(base / "ckpts"))
    (base / "logs").mkdir()
    shutil.move(str(base / "lightning_logs"), str(base / "logs" / "lightning_logs"))
    age(base)
    report = audit(base)
    assert "validation.non-finite" in codes(report), report["findings"]
    assert inferred(report)["paths.checkpoints"] == "ckpts"
    (base / "logs" / "lightning_logs" / "version_0" / "metrics.csv").unlink()
    md = run_cli("audit", str(base)).stdout.decode()
    assert "## ➖ NOT JUDGED" in md and "**Validation loss**: no status file and no loss history" in md, md
