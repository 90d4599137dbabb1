"""validation.not-running, validation.status-key-missing, validation.overfitting: from the status file and log_history."""

from __future__ import annotations

import json

from healthkit.checks.validation import validation_check
from healthkit.core.detect import HEALTHKIT_SCHEMA_ID

from ..test_report_coherence import contradictions
from .conftest import call, checkpoint, codes, evidence, make_ws, only, result, run

FOREIGN = '[paths]\nconfig_schema = "none"\n'  # a foreign setup: no healthkit trainer defaults apply
OURS = {
    "$schema": HEALTHKIT_SCHEMA_ID,
    "base_model": "/m",
}  # config.json as `healthkit init` writes it (detected as ours)


def status(**kw):
    return {"state": "training", "step": 2693, "total_steps": 4980, "loss": 0.0182, **kw}


def ws(tmp_path, *, config=None, status_=None, toml=FOREIGN, files=None):
    named = {"toml": toml}
    if config is not None:
        named["config"] = config
    if status_ is not None:
        named["status"] = status_
    return make_ws(tmp_path, files, **named)


def history(steps, *, train=None, evals=None):
    """log_history entries: train loss at each step in `steps`, eval_loss where `evals` gives one."""
    out = []
    for s in steps:
        if train:
            out.append({"step": s, "loss": train(s), "epoch": s / 1000})
        if evals and evals(s) is not None:
            out.append({"step": s, "eval_loss": evals(s), "epoch": s / 1000})
    return out


# --- null versus missing ------------------------------------------------------------------


def test_null_val_loss_after_eval_was_due(tmp_path):
    ws(
        tmp_path,
        config={"eval_strategy": "steps", "eval_steps": 500, "validation_file": "data/val.jsonl"},
        status_=status(val_loss=None, val_train_gap=None),
        files={"data/val.jsonl": '{"text": "x"}\n'},
    )
    report = run(tmp_path, "validation")
    f = only(report, "validation.not-running")
    assert f.severity.value == "warning"
    assert f.problem[:3] == [
        "`status/training_status.json` shows `val_loss: null`",
        "`val_train_gap: null`",
        "At step 2693, evaluation was due every 500 steps",
    ]
    ev = evidence(f)
    assert json.loads(ev["jq '{val_loss, val_train_gap}' status/training_status.json"]) == {
        "val_loss": None,
        "val_train_gap": None,
    }
    assert (
        json.loads(ev["jq '{eval_strategy, eval_steps, validation_file, validation_split}' config.json"])["eval_steps"]
        == 500
    )
    assert f.data["steps_done"] == 2693 and f.data["has_validation_data"] is True
    assert f.root_cause and "yet no eval loss is recorded" in f.root_cause[0]


def test_missing_key_is_a_different_finding_than_null(tmp_path):
    ws(
        tmp_path,
        config={"eval_steps": 500},
        status_={"state": "training", "step": 2693, "loss": 0.1, "valid_loss_ema": None, "val_train_gap": None},
    )
    report = run(tmp_path, "validation")
    assert codes(report) == ["validation.status-key-missing"]
    f = report.findings[0]
    assert f.title == "Status file has no `val_loss` key"
    assert "a missing key, not a null value" in f.problem[0]
    assert f.data["similar"][0] == "valid_loss_ema"  # the gap key is not offered as the validation loss
    assert 'val_loss = "valid_loss_ema"' in f.recommendations[0]
    assert (
        evidence(f)["jq -c 'keys' status/training_status.json"]
        == '["loss","state","step","val_train_gap","valid_loss_ema"]'
    )


def test_a_known_alias_is_detected_so_its_null_is_not_running(tmp_path):
    """`validation_loss` is a known alias of val_loss: detection maps it, and its null is the not-running finding."""
    ws(
        tmp_path,
        config={"eval_steps": 500, "validation_file": "v.jsonl"},
        files={"v.jsonl": "{}\n"},
        status_={"state": "training", "step": 2693, "loss": 0.1, "validation_loss": None},
    )
    f = only(run(tmp_path, "validation"), "validation.not-running")
    assert f.problem[0] == "`status/training_status.json` shows `validation_loss: null`"


def test_missing_key_without_similar_names(tmp_path):
    ws(tmp_path, config={"eval_steps": 500}, status_={"state": "training", "step": 10})
    f = only(run(tmp_path, "validation"), "validation.status-key-missing")
    assert f.data["similar"] == [] and f.recommendations == [
        "Make the training status writer record the validation loss"
    ]


def test_key_mapped_through_settings_is_read(tmp_path):
    toml = FOREIGN + '[status_keys]\nval_loss = "validation_loss"\nstep = "current_step"\n'
    ws(
        tmp_path,
        toml=toml,
        config={"eval_steps": 100, "validation_split": 0.1},
        status_={"status": "training", "current_step": 900, "validation_loss": None},
    )
    report = run(tmp_path, "validation")
    f = only(report, "validation.not-running")
    assert f.problem[0] == "`status/training_status.json` shows `validation_loss: null`"
    assert "jq '{validation_loss, val_train_gap}' status/training_status.json" in evidence(f)


def test_mapped_key_with_a_number_is_healthy(tmp_path):
    toml = FOREIGN + '[status_keys]\nval_loss = "validation_loss"\n'
    ws(
        tmp_path,
        toml=toml,
        config={"eval_steps": 100},
        status_={"step": 900, "validation_loss": 0.42, "val_train_gap": 0.05},
    )
    report = run(tmp_path, "validation")
    assert codes(report) == []
    assert [(h.title, h.details) for h in report.healthy] == [
        ("Validation is running", ["validation_loss: 0.42, gap +0.05"])
    ]


def test_healthy_when_val_loss_is_a_number(tmp_path):
    ws(tmp_path, config={"eval_steps": 500}, status_=status(val_loss=0.0211, val_train_gap=0.0029))
    report = run(tmp_path, "validation")
    assert codes(report) == [] and result(report, "validation").status.value == "ok"
    assert report.healthy[0].details == ["val_loss: 0.0211, gap +0.0029"]


def test_eval_steps_beyond_steps_done_is_not_a_finding(tmp_path):
    ws(tmp_path, config={"eval_steps": 500}, status_=status(step=120, val_loss=None))
    assert codes(run(tmp_path, "validation")) == []


# --- the likely cause is named ---------------------------------------------------------------


def test_cause_eval_strategy_no(tmp_path):
    ws(
        tmp_path,
        config={"eval_strategy": "no", "eval_steps": 500, "validation_file": "val.jsonl"},
        status_=status(step=50, val_loss=None),
        files={"val.jsonl": '{"text": "x"}\n'},
    )
    f = only(run(tmp_path, "validation"), "validation.not-running")
    assert f.root_cause == ['Evaluation is disabled (`eval_strategy: "no"`)']
    assert [x.id for x in f.fixes] == ["enable-evaluation"] and f.fixes[0].safety == "unsafe"


def test_cause_old_evaluation_strategy_name(tmp_path):
    ws(tmp_path, config={"evaluation_strategy": "no", "validation_split": 0.1}, status_=status(val_loss=None))
    f = only(run(tmp_path, "validation"), "validation.not-running")
    assert f.root_cause == ['Evaluation is disabled (`eval_strategy: "no"`)']
    assert [x.id for x in f.fixes] == ["enable-evaluation"]


def test_cause_no_validation_data(tmp_path):
    ws(tmp_path, config={"eval_strategy": "steps", "eval_steps": 100}, status_=status(val_loss=None))
    f = only(run(tmp_path, "validation"), "validation.not-running")
    assert f.root_cause == ["No validation data is configured (no `validation_file`, no `validation_split`)"]
    assert f.fixes == [] and f.data["has_validation_data"] is False


def test_cause_validation_file_missing_or_empty(tmp_path):
    ws(tmp_path, config={"eval_steps": 100, "validation_file": "data/val.jsonl"}, status_=status(val_loss=None))
    f = only(run(tmp_path, "validation"), "validation.not-running")
    assert f.root_cause == ["The validation file `data/val.jsonl` does not exist"]
    (tmp_path / "data").mkdir()
    (tmp_path / "data/val.jsonl").write_text("")
    f = only(run(tmp_path, "validation"), "validation.not-running")
    assert f.root_cause == ["The validation file `data/val.jsonl` is empty"]


def test_our_trainer_holds_out_a_split_by_default(tmp_path):
    ws(tmp_path, toml="", config={**OURS, "eval_steps": 100}, status_=status(val_loss=None))
    f = only(run(tmp_path, "validation"), "validation.not-running")
    assert f.data["has_validation_data"] is True
    assert not any("No validation data" in c for c in f.root_cause)


# --- trainer_state.json log_history -----------------------------------------------------------


def test_no_eval_loss_in_log_history_after_due_step(tmp_path):
    ws(tmp_path, config={"eval_strategy": "steps", "eval_steps": 100})
    checkpoint(
        tmp_path,
        300,
        state={"global_step": 300, "log_history": history(range(10, 301, 10), train=lambda s: 2 - s / 1000)},
    )
    report = run(tmp_path, "validation")
    f = only(report, "validation.not-running")
    assert f.problem == [
        "trainer_state.json of checkpoint-300 has no `eval_loss` in log_history at global step 300",
        "Evaluation was due every 100 steps",
    ]
    assert evidence(f) == {
        "jq '[.log_history[] | select(.eval_loss)] | length' current_model/checkpoint-300/trainer_state.json": "0"
    }
    assert report.facts["log_history"]["eval"] == []


def test_log_history_before_first_due_eval_is_fine(tmp_path):
    ws(tmp_path, config={"eval_steps": 500})
    checkpoint(
        tmp_path, 300, state={"global_step": 300, "log_history": history(range(10, 301, 10), train=lambda s: 1.0)}
    )
    assert codes(run(tmp_path, "validation")) == []


def test_eval_steps_from_trainer_state_when_config_has_none(tmp_path):
    ws(tmp_path, config={})
    checkpoint(
        tmp_path,
        300,
        state={"global_step": 300, "eval_steps": 50, "log_history": history(range(10, 301, 10), train=lambda s: 1.0)},
    )
    assert codes(run(tmp_path, "validation")) == ["validation.not-running"]


def test_evaluation_that_stopped_is_reported(tmp_path):
    ws(tmp_path, config={"eval_steps": 100})
    h = history(range(10, 701, 10), train=lambda s: 2 - s / 1000, evals=lambda s: 1.5 if s in (100, 200) else None)
    checkpoint(tmp_path, 700, state={"global_step": 700, "log_history": h})
    f = only(run(tmp_path, "validation"), "validation.not-running")
    assert "no `eval_loss` after step 200 (global step 700)" in f.problem[0]
    assert f.data["last_eval_step"] == 200


def test_log_history_with_regular_evals_is_healthy(tmp_path):
    ws(tmp_path, config={"eval_steps": 100})
    h = history(
        range(10, 351, 10), train=lambda s: 2 - s / 1000, evals=lambda s: 2.1 - s / 1000 if s % 100 == 0 else None
    )
    checkpoint(tmp_path, 200, state={"global_step": 200, "log_history": []})
    checkpoint(tmp_path, 350, state={"global_step": 350, "log_history": h})
    report = run(tmp_path, "validation")
    assert codes(report) == []
    assert report.healthy[0].details == ["3 evaluation(s) in log_history, latest eval_loss 1.8 at step 300"]


def test_newest_checkpoint_is_chosen_by_step_not_name(tmp_path):
    ws(tmp_path, config={"eval_steps": 100})
    good = history(range(100, 901, 100), train=lambda s: 1.0, evals=lambda s: 1.1)
    checkpoint(tmp_path, 900, state={"global_step": 900, "log_history": good})
    checkpoint(
        tmp_path, 2600, state={"global_step": 2600, "log_history": history(range(100, 2601, 100), train=lambda s: 1.0)}
    )
    f = only(run(tmp_path, "validation"), "validation.not-running")
    assert "checkpoint-2600" in f.problem[0]


# --- overfitting ------------------------------------------------------------------------------


def test_overfitting_rising_eval_loss_falling_train_loss(tmp_path):
    ws(tmp_path, config={"eval_steps": 100}, status_=status(step=500, val_loss=1.9))
    evals = {100: 1.5, 200: 1.4, 300: 1.6, 400: 1.75, 500: 1.9}
    h = history(range(50, 501, 50), train=lambda s: 2.0 - s / 300, evals=evals.get)
    for step in (200, 500):
        checkpoint(tmp_path, step, state={"global_step": step, "log_history": [e for e in h if e["step"] <= step]})
    report = run(tmp_path, "validation")
    assert codes(report) == ["validation.overfitting"]
    f = report.findings[0]
    assert f.severity.value == "warning"
    assert f.problem[0].startswith("eval_loss went 1.4 (best, step 200) → 1.6 → 1.75 → 1.9: +35.7% over the best")
    assert f.data["evals"] == [[200.0, 1.4], [300.0, 1.6], [400.0, 1.75], [500.0, 1.9]]
    assert f.data["best_checkpoint"] == "checkpoint-200" and "Keep `checkpoint-200`" in f.recommendations[0]
    assert f.evidence[0].command == (
        "jq -c '.log_history[] | select(.eval_loss and .step >= 200) | {step, eval_loss}' "
        "current_model/checkpoint-500/trainer_state.json"
    )
    assert f.evidence[0].observed.splitlines()[-1] == '{"step":500,"eval_loss":1.9}'
    assert contradictions(report) == []


def test_noise_level_rise_is_not_overfitting(tmp_path):
    """0.4503 → 0.4509 → 0.4512 (+0.2%) while training loss falls: noise, not overfitting."""
    ws(tmp_path, config={"eval_steps": 100}, status_=status(step=300, val_loss=0.4512))
    h = history(range(50, 301, 50), train=lambda s: 2.0 - s / 300, evals={100: 0.4503, 200: 0.4509, 300: 0.4512}.get)
    checkpoint(tmp_path, 300, state={"global_step": 300, "log_history": h})
    assert codes(run(tmp_path, "validation")) == []
    (tmp_path / "healthkit.toml").write_text(FOREIGN + "[thresholds]\noverfit_min_rise = 0.001\n")
    f = only(run(tmp_path, "validation"), "validation.overfitting")  # the same data over a stricter setting
    assert f.data["best_step"] == 100 and round(f.data["rise"], 4) == 0.002


def test_a_single_spike_after_the_best_is_not_overfitting(tmp_path):
    """The best and one evaluation after it are two; a rise needs overfit_min_evals (3) to count."""
    ws(tmp_path, config={"eval_steps": 100}, status_=status(step=300, val_loss=1.3))
    h = history(range(50, 301, 50), train=lambda s: 2.0 - s / 300, evals={100: 1.5, 200: 1.2, 300: 1.3}.get)
    checkpoint(tmp_path, 300, state={"global_step": 300, "log_history": h})
    assert codes(run(tmp_path, "validation")) == []


def test_best_checkpoint_is_hfs_own_record_when_present(tmp_path):
    ws(tmp_path, config={"eval_steps": 100}, status_=status(step=400, val_loss=1.6))
    h = history(range(50, 401, 50), train=lambda s: 2.0 - s / 300, evals={100: 1.2, 200: 1.3, 300: 1.4, 400: 1.6}.get)
    checkpoint(
        tmp_path, 400, state={"global_step": 400, "log_history": h, "best_model_checkpoint": "out/checkpoint-100"}
    )
    f = only(run(tmp_path, "validation"), "validation.overfitting")
    assert f.data["best_checkpoint"] == "checkpoint-100"


def test_no_overfitting_when_both_losses_fall(tmp_path):
    ws(tmp_path, config={"eval_steps": 100}, status_=status(step=500, val_loss=1.0))
    h = history(
        range(50, 501, 50), train=lambda s: 2.0 - s / 300, evals=lambda s: 2.0 - s / 1000 if s % 100 == 0 else None
    )
    checkpoint(tmp_path, 500, state={"global_step": 500, "log_history": h})
    assert codes(run(tmp_path, "validation")) == []


def test_widening_gap_with_flat_eval_loss_is_not_overfitting(tmp_path):
    """Training loss falls faster than eval loss; eval within 2% of its best is no finding."""
    ws(tmp_path, config={"eval_steps": 100}, status_=status(step=500, val_loss=1.5))
    h = history(range(50, 501, 50), train=lambda s: 2.0 - s / 300, evals={300: 1.5, 400: 1.48, 500: 1.5}.get)
    checkpoint(tmp_path, 500, state={"global_step": 500, "log_history": h})
    assert codes(run(tmp_path, "validation")) == []


def test_no_best_checkpoint_left_says_so(tmp_path):
    ws(tmp_path, config={"eval_steps": 100}, status_=status(step=500, val_loss=1.9))
    h = history(range(50, 501, 50), train=lambda s: 2.0 - s / 300, evals={300: 1.5, 400: 1.6, 500: 1.9}.get)
    checkpoint(tmp_path, 500, state={"global_step": 500, "log_history": h})
    f = only(run(tmp_path, "validation"), "validation.overfitting")
    assert (
        f.data["best_checkpoint"] is None and "No checkpoint from the best step (300) survives" in f.recommendations[0]
    )


def test_no_overfitting_when_train_loss_rises_too(tmp_path):
    ws(tmp_path, config={"eval_steps": 100}, status_=status(step=500, val_loss=2.0))
    h = history(
        range(50, 501, 50), train=lambda s: 1.0 + s / 1000, evals=lambda s: 1.0 + s / 500 if s % 100 == 0 else None
    )
    checkpoint(tmp_path, 500, state={"global_step": 500, "log_history": h})
    assert codes(run(tmp_path, "validation")) == []


def test_overfitting_needs_the_configured_number_of_evals(tmp_path):
    ws(
        tmp_path,
        toml=FOREIGN + "[thresholds]\noverfit_min_evals = 4\n",
        config={"eval_steps": 100},
        status_=status(step=300, val_loss=1.9),
    )
    h = history(range(50, 301, 50), train=lambda s: 2.0 - s / 300, evals={100: 1.5, 200: 1.6, 300: 1.9}.get)
    checkpoint(tmp_path, 300, state={"global_step": 300, "log_history": h})
    assert codes(run(tmp_path, "validation")) == []


# --- nothing to judge by, broken inputs -----------------------------------------------------------


def test_nothing_to_judge_is_a_note(tmp_path):
    ws(tmp_path, config={"eval_steps": 100})
    r = result(run(tmp_path, "validation"), "validation")
    assert r.notes == ["no status file and no loss history: nothing to judge validation by"]


def test_corrupt_inputs_never_crash(tmp_path):
    ws(tmp_path, config={"eval_steps": "often"}, files={"status/training_status.json": "[1, 2]"})
    checkpoint(
        tmp_path,
        100,
        state={
            "global_step": "x",
            "log_history": [None, 3, {"step": "?", "loss": "a"}, {"step": 5, "eval_loss": None}],
        },
    )
    out = call(validation_check, tmp_path)
    assert out.findings == []
    (tmp_path / "status/training_status.json").write_text("{broken")
    assert result(run(tmp_path, "validation"), "validation").error is None


def test_unset_eval_steps_waits_for_hf_default(tmp_path):
    """Without eval_steps HF evaluates every logging_steps (500 unless set): a null at step 40 is not yet a problem."""
    ws(tmp_path, config={"validation_split": 0.1}, status_=status(step=40, val_loss=None))
    assert codes(run(tmp_path, "validation")) == []
    ws(tmp_path, config={"validation_split": 0.1, "logging_steps": 20}, status_=status(step=40, val_loss=None))
    assert codes(run(tmp_path, "validation")) == ["validation.not-running"]


def test_our_trainer_default_eval_steps(tmp_path):
    ws(tmp_path, toml="", config=OURS, status_=status(step=40, val_loss=None))
    assert codes(run(tmp_path, "validation")) == []  # healthkit trainer default: every 50 steps
    ws(tmp_path, toml="", config=OURS, status_=status(step=60, val_loss=None))
    f = only(run(tmp_path, "validation"), "validation.not-running")
    assert f.problem[-1] == "At step 60, evaluation was due every 50 steps"


def test_nan_validation_loss_is_its_own_finding_and_the_json_report_stays_strict(tmp_path):
    import json as _json

    from healthkit.core.api import audit as _audit

    (tmp_path / "config.json").write_text('{"base_model": "m", "eval_steps": 10}')
    (tmp_path / "status").mkdir()
    (tmp_path / "status" / "training_status.json").write_text(
        '{"state": "training", "step": 50, "loss": NaN, "val_loss": NaN, "val_train_gap": null}'
    )
    report = _audit(tmp_path, select=["validation.non-finite", "training"], record_costs=False)
    f = next(f for f in report.findings if f.code == "validation.non-finite")
    assert f.data["diverged"] is True and f.urgency == "immediate"

    def refuse(name):
        raise ValueError(f"non-standard JSON constant {name}")

    data = _json.loads(report.to_json(), parse_constant=refuse)
    assert data["facts"]["training"]["val_loss"] == "nan"


def test_status_null_since_a_restart_is_no_alarm_while_the_history_evaluates(tmp_path):
    """Issue 31 item 3, as a resumed run of our trainer left it before the fix (status written afresh at the restart:
    `val_loss: null`, `resumed_from` set) with eval_loss at step 260 in the checkpoint it resumed from, at step 270."""
    hist = history(
        range(5, 266, 5), train=lambda s: 2.0 - s / 1000, evals=lambda s: 2.1 - s / 1000 if s % 20 == 0 else None
    )
    state = {"global_step": 265, "max_steps": 600, "eval_steps": 20, "save_steps": 5, "log_history": hist}
    checkpoint(tmp_path, 265, state=state)
    restarted = {
        "state": "training",
        "step": 270,
        "total_steps": 600,
        "loss": 1.73,
        "val_loss": None,
        "val_train_gap": None,
        "loss_step": 270,
        "val_loss_step": None,
        "resumed_from": "checkpoint-265",
        "attempt": 2,
        "eval_steps": 20,
    }
    ws(tmp_path, config={**OURS, "eval_steps": 20, "save_steps": 5}, status_=restarted, toml="")
    assert codes(run(tmp_path, "validation")) == []
    # The history's rule still holds: with the last eval_loss two intervals back, it is an alarm.
    ws(tmp_path, status_={**restarted, "step": 305}, toml="")
    assert codes(run(tmp_path, "validation")) == ["validation.not-running"]


def test_the_facts_keep_a_chart_of_a_long_history_with_its_spike_and_its_nan():
    """A 100k-step run logs 10k points: the report's facts keep about CHART_POINTS of them (the lowest and highest of
    each run, so a spike survives; a NaN stays visible), the first and the last, and say how many there were."""
    import math

    from healthkit.checks.validation import CHART_POINTS, chart_points

    points = [[float(s), 2.0 - s / 200_000] for s in range(10, 100_001, 10)]
    points[4321][1] = 40.0
    points[7000][1] = math.nan
    kept = chart_points(points)
    assert len(kept) <= CHART_POINTS + 2 and kept[0] == points[0] and kept[-1] == points[-1]
    assert [p for p in kept if p[1] == 40.0] == [points[4321]] and any(math.isnan(p[1]) for p in kept)
    assert kept == sorted(kept, key=lambda p: p[0]) and chart_points(points[:50]) == points[:50]
