"""Charts plot only what was measured, at the step where it was measured (issue 24 item 3).

The status file's `step` is where training is now; its `val_loss` was measured at the last evaluation. Plotting
that value at the current step drew an evaluation that never ran ("2 validation evaluations (latest 1.749 at
step 65)" when one had run, at step 50). Our trainer writes `val_loss_step`/`loss_step`; without them the
status adds no point.
"""

from __future__ import annotations

import re

from hkreports import make_report

from healthkit.reporting.chart import loss_series
from healthkit.reporting.render import render
from healthkit.trainer.dashboard import LiveHistory

HISTORY = {"train": [[10, 2.4], [20, 2.1], [30, 1.9], [40, 1.8], [50, 1.7], [60, 1.65]], "eval": [[50, 1.749]]}


def eval_points(html: str) -> list[str]:
    m = re.search(r'<polyline class="series" data-label="validation loss"[^>]* points="([^"]+)"', html)
    return m.group(1).split() if m else []


def test_the_status_value_is_not_plotted_at_the_current_step() -> None:
    facts = {"log_history": HISTORY, "training": {"step": 65, "loss": 1.6, "val_loss": 1.749}}
    train, evals = loss_series(facts)
    assert evals == [(50.0, 1.749)] and train[-1] == (60.0, 1.65)
    html = render(make_report({"validation": []}, facts=facts), "html")
    assert len(eval_points(html)) == 1
    assert "1 validation evaluations (latest 1.749 at step 50" in html
    assert "at step 65" not in html


def test_a_newer_evaluation_is_plotted_at_the_step_the_status_names() -> None:
    facts = {
        "log_history": HISTORY,
        "training": {"step": 65, "loss": 1.6, "loss_step": 64, "val_loss": 1.7, "val_loss_step": 60},
    }
    train, evals = loss_series(facts)
    assert evals == [(50.0, 1.749), (60.0, 1.7)] and train[-1] == (64.0, 1.6)
    html = render(make_report({"validation": []}, facts=facts), "html")
    assert len(eval_points(html)) == 2 and "latest 1.7 at step 60" in html
    # the same evaluation already in log_history is not drawn twice
    facts["training"].update(val_loss=1.749, val_loss_step=50)
    assert loss_series(facts)[1] == [(50.0, 1.749)]


def test_no_checkpoint_is_not_called_a_checkpoint_without_history() -> None:
    facts = {"training": {"state": "completed", "step": 30, "val_loss": 1.5}, "checkpoints": {"count": 0}}
    html = render(make_report({"validation": []}, facts=facts), "html")
    assert "there is no checkpoint to read a loss history from" in html
    assert "newest checkpoint&#x27;s trainer_state.json has no loss history" not in html
    assert "newest checkpoint's trainer_state.json has no loss history" not in html


def test_the_live_history_adds_each_measurement_once_at_its_step() -> None:
    h = LiveHistory(maxlen=3)
    statuses = [
        {"step": 1, "loss": 2.0, "loss_step": 1},
        {"step": 1, "loss": 2.0, "loss_step": 1},  # the same reading again: no new point
        {"step": 5, "loss": 1.5, "loss_step": 5, "val_loss": 1.9, "val_loss_step": 5},
        {"step": 7, "loss": 1.2, "loss_step": 7, "val_loss": 1.9, "val_loss_step": 5},  # no new evaluation
        {"step": 10, "loss": 1.0, "loss_step": 10, "val_loss": 1.9, "val_loss_step": 10},  # a new one, same value
        {"step": 11, "loss": float("nan"), "loss_step": 11},
        {"step": 12, "loss": 0.9, "val_loss": 1.8},  # a status that names no step: nothing plotted
    ]
    for s in statuses:
        h.observe({"current_file": "a.jsonl", **s})
    d = h.to_dict()
    assert d["train"] == [[5, 1.5], [7, 1.2], [10, 1.0]]  # bounded, once each, finite only
    assert d["eval"] == [[5, 1.9], [10, 1.9]]
    h.observe({"current_file": "b.jsonl", "step": 1, "loss": 3.0, "loss_step": 1})
    assert h.to_dict()["train"] == [[1, 3.0]] and h.to_dict()["eval"] == []


def test_the_markdown_chart_note_says_there_is_no_checkpoint(tmp_path) -> None:
    """`audit --output DIR` after a file completed (its checkpoints cleared): the note says so, not "no loss history"."""
    from healthkit.reporting.chart import write_loss_chart

    chart = write_loss_chart(
        {"training": {"state": "completed", "val_loss": 1.5}, "checkpoints": {"count": 0}}, tmp_path, "20240501T120000Z"
    )
    assert chart.path is None and chart.note.startswith("No loss chart: there is no checkpoint to read a loss history")
