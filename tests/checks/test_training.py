"""training.stalled: status not updated for much longer than a step takes; progress figures; broken status files."""

from __future__ import annotations

import json
import os
import time

import pytest

from healthkit.checks.training import training_check

from .conftest import call, codes, evidence, iso_ago, make_ws, only, result, run


def training_status(updated_ago: float, *, fmt: str = "utc", started_ago: float | None = None, step: int = 100, **kw):
    st = {
        "state": "training",
        "step": step,
        "total_steps": 1000,
        "loss": 0.5,
        "updated_at": iso_ago(updated_ago, fmt=fmt),
        **kw,
    }
    if started_ago is not None:
        st["started_at"] = iso_ago(started_ago, fmt=fmt)
    return st


def test_fresh_status_is_progressing(tmp_path):
    make_ws(
        tmp_path,
        status=training_status(
            5,
            started_ago=500,
            eta_seconds=4500,
            gpu={"memory_used_mb": 716, "memory_total_mb": 24576, "temperature_c": 44},
        ),
    )
    report = run(tmp_path, "training")
    assert codes(report) == [] and result(report, "training").status.value == "ok"
    h = report.healthy[0]
    assert h.title == "Training is progressing"
    assert h.details[:4] == ["Step 100/1000 (10% complete)", "Loss: 0.5", "GPU: 716 MB / 24576 MB", "Temperature: 44°C"]
    t = report.facts["training"]
    assert (t["percent"], t["eta"], t["verdict"]) == (10.0, "~1h 15m remaining", "Training is progressing.")


@pytest.mark.parametrize("fmt", ["utc", "z", "offset", "naive"])
def test_stalled_for_every_timestamp_form(tmp_path, fmt):
    make_ws(tmp_path, status=training_status(3 * 3600, fmt=fmt, started_ago=4 * 3600))
    report = run(tmp_path, "training")
    f = only(report, "training.stalled")
    assert f.severity.value == "critical" and f.urgency == "immediate"
    assert f.problem[0] == "The status file says `training` but was last updated 3h 0m ago (at step 100)"
    assert abs(f.data["silent_s"] - 3 * 3600) < 5
    assert report.facts["training"]["verdict"] == "Training is not progressing."


@pytest.mark.parametrize("fmt", ["utc", "z", "offset", "naive"])
def test_fresh_for_every_timestamp_form(tmp_path, fmt):
    make_ws(tmp_path, status=training_status(30, fmt=fmt, started_ago=3600))
    assert codes(run(tmp_path, "training")) == []


def test_limit_scales_with_step_time(tmp_path):
    # 100 steps in 2h: 72 s a step, so 20 steps' worth (24 min) of silence is still normal
    make_ws(tmp_path, status=training_status(1000, started_ago=1000 + 7200))
    assert codes(run(tmp_path, "training")) == []
    make_ws(tmp_path, status=training_status(1500, started_ago=1500 + 7200))
    f = only(run(tmp_path, "training"), "training.stalled")
    assert "20x the ~72.0s a step takes" in f.problem[1]
    assert f.data["limit_s"] == pytest.approx(1440, rel=0.01)


def test_minimum_applies_to_fast_steps(tmp_path):
    make_ws(tmp_path, status=training_status(1000, started_ago=1100))  # 1 s a step: the 15 min minimum rules
    f = only(run(tmp_path, "training"), "training.stalled")
    assert f.problem[1] == "That is longer than the 15m 0s minimum"


def test_step_time_from_eta(tmp_path):
    make_ws(tmp_path, status=training_status(1500, eta_seconds=900 * 100))  # 100 s a step, 900 steps left
    assert codes(run(tmp_path, "training")) == []


def test_threshold_from_settings(tmp_path):
    make_ws(tmp_path, status=training_status(120), toml="[thresholds]\nstalled_min_seconds = 60\n")
    assert codes(run(tmp_path, "training")) == ["training.stalled"]


def test_epoch_numbers_and_mapped_keys(tmp_path):
    toml = '[status_keys]\nstate = "status"\nstep = "current_step"\nupdated_at = "timestamp"\n'
    make_ws(tmp_path, toml=toml, status={"status": "training", "current_step": 7, "timestamp": time.time() - 7200})
    f = only(run(tmp_path, "training"), "training.stalled")
    assert "(at step 7)" in f.problem[0]
    assert "jq '{status, current_step, timestamp}' status/training_status.json" in evidence(f)


def test_milliseconds_epoch(tmp_path):
    make_ws(tmp_path, status={"state": "training", "step": 3, "updated_at": (time.time() - 10) * 1000})
    assert codes(run(tmp_path, "training")) == []


def test_without_updated_at_the_file_mtime_counts(tmp_path):
    p = make_ws(tmp_path, status={"state": "training", "step": 3}) / "status/training_status.json"
    old = time.time() - 7200
    os.utime(p, (old, old))
    f = only(run(tmp_path, "training"), "training.stalled")
    assert f.problem[0].startswith("The status file says `training` but was last updated 2h 0m ago")


def test_paused_or_completed_is_never_stalled(tmp_path):
    for state in ("paused", "completed", "crashed", "idle"):
        make_ws(tmp_path, status=training_status(86400, state=state))
        report = run(tmp_path, "training")
        assert codes(report) == [] and report.healthy == [], state


def test_no_step_in_the_problem_when_unknown(tmp_path):
    st = training_status(7200)
    del st["step"]
    make_ws(tmp_path, status=st)
    f = only(run(tmp_path, "training"), "training.stalled")
    assert f.problem[0] == "The status file says `training` but was last updated 2h 0m ago"


# --- unusable status files ------------------------------------------------------------------


@pytest.mark.parametrize(
    "content,why",
    [
        ("[1, 2, 3]", "its top level is not a JSON object"),
        ('{"state": "training", ', "is not valid JSON"),
        ("", "is not valid JSON"),
        (b"\xff\xfe\x00garbage", "binary"),
    ],
)
def test_unusable_status_is_unknown_not_a_traceback(tmp_path, content, why):
    make_ws(tmp_path, {"status/training_status.json": content})
    r = result(run(tmp_path, "training"), "training")
    assert r.status.value == "unknown" and r.error is None
    assert r.findings == []
    assert len(r.notes) == 1 and r.notes[0].startswith("status file unusable:") and why in r.notes[0]


def test_no_status_file_is_a_note(tmp_path):
    out = call(training_check, make_ws(tmp_path))
    assert out.notes == ["no status file at status/training_status.json"] and out.unknown is None


def test_garbage_values_do_not_crash(tmp_path):
    make_ws(
        tmp_path,
        status={
            "state": "training",
            "step": "many",
            "total_steps": 0,
            "updated_at": "yesterday",
            "started_at": [],
            "eta_seconds": "soon",
            "gpu": "hot",
        },
    )
    r = result(run(tmp_path, "training"), "training")
    assert r.error is None and r.status.value == "ok"
    assert json.dumps(r.facts, default=str)
