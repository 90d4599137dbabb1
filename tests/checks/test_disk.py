"""disk.low-space and disk.forecast-full, with os.statvfs faked at the boundary (the filesystem itself is real)."""

from __future__ import annotations

import os
from types import SimpleNamespace

import pytest

from healthkit.checks.disk import disk_check, forecast
from healthkit.core.workspace import Workspace

from .conftest import call, checkpoint, codes, evidence, make_ws, only, result, run

GiB = 1024**3
BLOCK = 4096
DISK = "disk"
NO_LOW = "[thresholds]\ndisk_min_free_percent = 0\ndisk_min_free_bytes = 0\ndisk_critical_free_percent = 0\n"
FOREIGN = '[paths]\nconfig_schema = "none"\n'  # no healthkit-trainer default retention


@pytest.fixture
def disk(monkeypatch, tmp_path):
    """Set what statvfs reports for the workspace: `disk(total=..., avail=..., bfree=...)` in bytes."""
    real = os.statvfs
    seen: list[str] = []

    def set_(total: int, avail: int, bfree: int | None = None, error: OSError | None = None) -> list[str]:
        def fake(path):
            if not str(path).startswith(str(tmp_path)):
                return real(path)
            seen.append(str(path))
            if error:
                raise error
            return SimpleNamespace(
                f_frsize=BLOCK,
                f_bsize=BLOCK,
                f_blocks=total // BLOCK,
                f_bfree=(bfree if bfree is not None else avail) // BLOCK,
                f_bavail=avail // BLOCK,
            )

        monkeypatch.setattr(os, "statvfs", fake)
        return seen

    return set_


def test_plenty_of_space_is_healthy(tmp_path, disk):
    make_ws(tmp_path)
    disk(total=1800 * GiB, avail=1144 * GiB, bfree=1200 * GiB)
    report = run(tmp_path, DISK)
    assert codes(report) == [] and result(report, "disk").status.value == "ok"
    h = report.healthy[0]
    assert h.title == "Disk space OK"
    assert h.details == ["600.0G / 1.8T used (34%)", "1.1T available"]
    assert report.facts["disk"]["free_bytes"] == 1144 * GiB


def test_free_is_f_bavail_not_f_bfree(tmp_path, disk):
    """Root's reserve (f_bfree - f_bavail) is not free to the trainer: huge f_bfree, tiny f_bavail must warn."""
    make_ws(tmp_path)
    disk(total=1000 * GiB, avail=2 * GiB, bfree=60 * GiB)
    report = run(tmp_path, DISK)
    f = only(report, "disk.low-space")
    assert f.severity.value == "critical"  # 0.2% is under the 3% critical threshold
    assert f.problem[0] == "Only 2.0G (0.2%) free on the filesystem of `.`"
    assert evidence(f) == {"df -h .": "940.0G / 1000.0G used (100%), 2.0G available to unprivileged writers"}
    assert f.data["free_bytes"] == 2 * GiB and f.urgency == "immediate"


def test_low_by_bytes_is_a_warning(tmp_path, disk):
    make_ws(tmp_path)
    disk(total=50 * GiB, avail=8 * GiB)  # 16% free, but under the 10 GiB minimum
    f = only(run(tmp_path, DISK), "disk.low-space")
    assert f.severity.value == "warning" and f.urgency == "short-term"
    assert f.problem[1] == "Threshold: 10% and 10.0G"


def test_low_by_percent_is_a_warning(tmp_path, disk):
    make_ws(tmp_path)
    disk(total=2000 * GiB, avail=100 * GiB)  # 5%: above 10 GiB, under 10%
    assert [(f.code, f.severity.value) for f in run(tmp_path, DISK).findings] == [("disk.low-space", "warning")]


def test_thresholds_from_settings(tmp_path, disk):
    make_ws(tmp_path, toml="[thresholds]\ndisk_min_free_percent = 50\ndisk_min_free_bytes = 0\n")
    disk(total=100 * GiB, avail=40 * GiB)
    assert codes(run(tmp_path, DISK)) == ["disk.low-space"]


def test_statvfs_on_the_checkpoint_folder_when_it_exists(tmp_path, disk):
    make_ws(
        tmp_path,
        config={"current_model_dir": "runs/ckpt"},
        toml='[paths]\ncheckpoints_config_key = "current_model_dir"\n',
    )
    (tmp_path / "runs/ckpt").mkdir(parents=True)
    seen = disk(total=100 * GiB, avail=1 * GiB)
    f = only(run(tmp_path, DISK), "disk.low-space")
    assert seen == [str(tmp_path / "runs/ckpt")]
    assert "df -h runs/ckpt" in evidence(f)


def test_statvfs_failure_is_unknown(tmp_path, disk):
    make_ws(tmp_path)
    disk(total=0, avail=0, error=OSError(5, "Input/output error"))
    r = result(run(tmp_path, DISK), "disk")
    assert r.status.value == "unknown" and r.error is None
    assert r.notes == ["statvfs failed on the workspace's filesystem"]


# --- forecast -------------------------------------------------------------------------------


def run_with_checkpoints(tmp_path, *, n=3, size=64 * 1024, first=100, every=100):
    for i in range(n):
        checkpoint(tmp_path, first + i * every, size=size)


def test_forecast_full_without_retention(tmp_path, disk):
    make_ws(
        tmp_path,
        config={"save_steps": 100},
        status={"state": "training", "step": 300, "total_steps": 1000},
        toml=FOREIGN + NO_LOW,
    )
    run_with_checkpoints(tmp_path)
    ws = Workspace.open(tmp_path)
    size = max(u.bytes for u in ws.checkpoint_usage.values())
    assert size >= 64 * 1024
    # 7 saves left + the final model = 8 checkpoints; leave room for 5
    disk(total=100 * GiB, avail=5 * size)
    report = run(tmp_path, DISK)
    f = only(report, "disk.forecast-full")
    assert f.severity.value == "critical" and f.urgency == "immediate"
    assert f.data == {
        "saves_left": 7,
        "checkpoint_bytes": size,
        "need_bytes": 8 * size,
        "limit": None,
        "steps_left": 700.0,
        "growth_checkpoints": 7,
    }
    assert f.problem[0].startswith("700 steps left: 7 more checkpoint save(s) of ~")
    assert "At the current retention (none)" in f.problem[1]
    assert any(c.startswith("du -sh current_model") for c in evidence(f))


def test_retention_makes_it_fit(tmp_path, disk):
    make_ws(
        tmp_path,
        config={"save_steps": 100, "save_total_limit": 3},
        status={"state": "training", "step": 300, "total_steps": 1000},
        toml=NO_LOW,
    )
    run_with_checkpoints(tmp_path)
    fc = forecast(Workspace.open(tmp_path))
    assert (fc["limit"], fc["growth_checkpoints"]) == (3, 0)
    disk(total=100 * GiB, avail=2 * fc["checkpoint_bytes"])  # only the final model is still to come
    report = run(tmp_path, DISK)
    assert codes(report) == []
    assert "the rest of the run needs" in report.healthy[0].details[1]


def test_retention_below_the_limit_grows_up_to_it(tmp_path, disk):
    make_ws(
        tmp_path,
        config={"save_steps": 100, "save_total_limit": 5},
        status={"state": "training", "step": 300, "total_steps": 1000},
        toml=NO_LOW,
    )
    run_with_checkpoints(tmp_path)
    fc = forecast(Workspace.open(tmp_path))
    assert fc["growth_checkpoints"] == 2 and fc["need_bytes"] == 3 * fc["checkpoint_bytes"]
    disk(total=100 * GiB, avail=fc["need_bytes"] - 1)
    f = only(run(tmp_path, DISK), "disk.forecast-full")
    assert "save_total_limit=5" in f.problem[1]


def test_forecast_from_trainer_state_when_status_lacks_steps(tmp_path, disk):
    make_ws(tmp_path, toml=NO_LOW)
    run_with_checkpoints(tmp_path, n=2)
    checkpoint(tmp_path, 300, size=64 * 1024, state={"global_step": 300, "max_steps": 1000, "save_steps": 100})
    fc = forecast(Workspace.open(tmp_path))
    assert (fc["saves_left"], fc["steps_left"]) == (7, 700.0)


def test_no_forecast_when_finished_unknown_or_saving_per_epoch(tmp_path):
    make_ws(tmp_path, config={"save_steps": 100}, status={"state": "completed", "step": 1000, "total_steps": 1000})
    run_with_checkpoints(tmp_path)
    assert forecast(Workspace.open(tmp_path)) is None
    make_ws(tmp_path, config={"save_steps": 100}, status={"state": "training", "step": 10})
    assert forecast(Workspace.open(tmp_path)) is None  # no total
    make_ws(tmp_path, config={"save_steps": 100, "save_strategy": "epoch"}, status={"step": 300, "total_steps": 1000})
    assert forecast(Workspace.open(tmp_path)) is None


def test_save_strategy_no_needs_only_the_final_model(tmp_path):
    make_ws(tmp_path, config={"save_steps": 100, "save_strategy": "no"}, status={"step": 300, "total_steps": 1000})
    run_with_checkpoints(tmp_path)
    fc = forecast(Workspace.open(tmp_path))
    assert (fc["saves_left"], fc["growth_checkpoints"], fc["need_bytes"]) == (0, 0, fc["checkpoint_bytes"])


def test_no_checkpoints_no_forecast(tmp_path, disk):
    make_ws(tmp_path, config={"save_steps": 100}, status={"step": 300, "total_steps": 1000})
    disk(total=100 * GiB, avail=50 * GiB)
    out = call(disk_check, tmp_path)
    assert out.findings == [] and "forecast" not in out.facts["disk"]


def test_low_space_offers_the_declared_unsafe_prune_when_checkpoints_exist(tmp_path):
    """Held to the typed contract: the FixRef a disk.low-space finding carries is the one its CodeDoc declares."""
    from healthkit.checks.checkpoints import PRUNE_UNSAFE
    from healthkit.checks.disk import LOW
    from healthkit.core.api import audit
    from healthkit.core.registry import default_registry
    from healthkit.fix.plan import contract_errors, load_fixes

    from ..conftest import make_checkpoint

    for step in (10, 20, 30):
        make_checkpoint(tmp_path / "current_model", step)
    (tmp_path / "healthkit.toml").write_text("[thresholds]\ndisk_min_free_percent = 100\n")
    report = audit(tmp_path, select=["disk"])
    (f,) = [f for f in report.findings if f.code == "disk.low-space"]
    assert f.fixes == [PRUNE_UNSAFE] and PRUNE_UNSAFE in LOW.fixes
    assert contract_errors(default_registry().code_docs(), load_fixes()) == []
