"""healthkit.core.goodput: every second with work queued has one cause; productive + lost == wall."""

from __future__ import annotations

import pytest

from healthkit.contract import events as ev
from healthkit.core.goodput import estimate, from_events

T = 1_000_000.0


def e(t, name, **kw):
    return {"ts": T + t, "event": name, **kw}


def lost(g):
    return {k: round(v, 3) for k, v in g.lost.items() if v}


def test_a_clean_run_is_all_productive_but_its_start_and_its_saves():
    g = from_events(
        [
            e(0, ev.DAEMON_START),
            e(1, ev.FILE_START, step=0),
            e(0, ev.TRAINING, step=0, at=T + 11),
            e(50, ev.CHECKPOINT, step=50, seconds=2.0),
            e(111, ev.FILE_DONE, step=100),
            e(112, ev.IDLE),
        ],
        T + 500,
    )
    assert g.wall == pytest.approx(112) and lost(g) == {"restart": 11.0, "checkpointing": 2.0, "unattributed": 1.0}
    assert g.productive == pytest.approx(98)


def test_a_crash_and_a_resume_cost_restart_and_redone_steps():
    evs = [
        e(0, ev.DAEMON_START),
        e(0, ev.FILE_START, step=0),
        e(10, ev.TRAINING, step=0),
        e(110, ev.CRASH, step=100, signal="SIGKILL"),  # 100 steps in 100 s; the newest checkpoint: step 60
        e(111, ev.FILE_START, step=60),
        e(111, ev.RESUME, step=60, reached=100),
        e(121, ev.TRAINING, step=60),
        e(261, ev.FILE_DONE, step=200),
        e(262, ev.IDLE),
    ]
    g = from_events(evs, T + 1000)
    # trained 100 + 140 steps in 240 s: 1 s a step; 40 redone
    assert g.steps["redone-steps"] == 40
    assert lost(g) == {"redone-steps": 40.0, "restart": 21.0, "unattributed": 1.0}
    assert g.productive + sum(g.lost.values()) == pytest.approx(g.wall) == 262


def test_a_dead_daemon_is_no_daemon_from_the_last_progress_to_the_next_start_and_pauses_do_not_count():
    evs = [
        e(0, ev.DAEMON_START),
        e(0, ev.FILE_START, step=0),
        e(10, ev.TRAINING, step=0),
        e(20, ev.PAUSE),
        e(520, ev.UNPAUSE),
        e(600, ev.DAEMON_START, previous_progress_at=T + 570, previous_step=80),  # killed with its child at ~570
        e(601, ev.FILE_START, step=50),
        e(601, ev.RESUME, step=50, reached=80),
        e(611, ev.TRAINING, step=50),
    ]
    g = from_events(evs, T + 700, last_progress=T + 700)
    assert lost(g)["no-daemon"] == 30.0 and g.steps["redone-steps"] == 30
    assert g.wall == pytest.approx(700 - 500)  # the pause is not wall time
    assert g.productive + sum(g.lost.values()) == pytest.approx(g.wall)


def test_nothing_running_now_is_no_daemon_and_a_silent_training_is_a_stall():
    evs = [e(0, ev.DAEMON_START), e(0, ev.FILE_START, step=0), e(10, ev.TRAINING, step=0)]
    assert lost(from_events(evs, T + 5000, daemon_alive=False, last_progress=T + 100))["no-daemon"] == 4900
    assert lost(from_events(evs, T + 5000, daemon_alive=True, last_progress=T + 100))["stalled"] == 4900


def test_a_disk_wait_and_a_stop_on_request():
    evs = [
        e(0, ev.DAEMON_START),
        e(0, ev.FILE_START, step=0),
        e(10, ev.TRAINING, step=0),
        e(40, ev.DISK_WAIT, step=30),
        e(100, ev.DISK_RESUMED),
        e(101, ev.FILE_START, step=30),
        e(111, ev.TRAINING, step=30),
        e(150, ev.STOP, step=69),
        e(151, ev.DAEMON_EXIT, reason="stop"),
    ]
    g = from_events(evs, T + 9000)
    assert lost(g) == {"waiting-for-disk": 60.0, "restart": 21.0} and g.wall == pytest.approx(150)


def test_no_events_no_goodput_and_the_foreign_estimate():
    assert from_events([], T) is None
    assert estimate([[10, T], [20, T + 10]], "x") is None
    pts = [[s, T + s] for s in range(0, 1001, 100)] + [[1100, T + 1100 + 600]]  # a 600 s gap before step 1100
    g = estimate(pts, "checkpoint save times")
    assert g.estimate and lost(g) == {"unattributed": 600.0} and g.productive == pytest.approx(1100)
    back = [[0, T], [100, T + 100], [200, T + 200], [150, T + 300], [250, T + 400]]  # resumed from step 100 at 150?
    g = estimate(back, "TensorBoard wall times")
    assert g.steps["redone-steps"] == 50 and g.productive + sum(g.lost.values()) == pytest.approx(g.wall)
