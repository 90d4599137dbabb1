"""healthkit.core.signalstats: the training signal's rules as pure functions over (step, value) series."""

from __future__ import annotations

import math
import random

import pytest

from healthkit.contract.settings import SignalSettings
from healthkit.core.signalstats import (
    effective_loss,
    grad_explosion,
    intervals,
    loss_flat,
    loss_spike,
    lr_zero,
    mad,
    median,
    non_finite,
    slowdown,
    warmup_end,
)

L = SignalSettings()


def series(f, last=2000, every=10, start=None):
    return [[float(s), f(s)] for s in range(start or every, last + 1, every)]


def test_median_and_mad():
    assert median([3, 1, 2]) == 2 and median([4, 1, 2, 3]) == 2.5
    assert mad([1, 2, 3, 4, 100]) == 1


def test_hidden_nan_is_non_finite_not_flat():
    loss = series(lambda s: 0.0 if s >= 500 else 1.0 + s / 1e4)
    grad = series(lambda s: math.nan if s >= 500 else 1.0)
    assert sum(1 for _, v in effective_loss(loss, grad) if math.isnan(v)) == 151
    nf = non_finite(loss, grad)
    assert (nf.step, nf.hidden, nf.last_finite_step, nf.count) == (500, True, 490, 151)
    assert loss_flat(loss, grad, L) is None
    # the same zeros beside finite gradient norms are a flat loss, not a NaN
    fine = series(lambda s: 0.0 if s >= 500 else 1.0)
    assert non_finite(loss, fine) is None and loss_flat(loss, fine, L).step == 500


def test_infinity_is_non_finite():
    nf = non_finite([[1, 2.0], [2, math.inf]], [])
    assert nf.step == 2 and nf.last_finite == 2.0 and not nf.hidden


def test_a_blip_that_recovers_is_no_spike_and_one_that_stays_is():
    rng = random.Random(1)
    base = {s: 1.0 * rng.uniform(0.95, 1.05) for s in range(10, 2001, 10)}
    blip = [[s, v * (2.5 if s == 1000 else 1)] for s, v in base.items()]
    assert (
        loss_spike([[s, v * (4 if s == 1000 else 1)] for s, v in base.items()], [], [], L) is None
    )  # one log: no climb
    stay = [[s, v * (2.5 if s >= 1000 else 1)] for s, v in base.items()]
    assert loss_spike(blip, [], [], L) is None
    sp = loss_spike(stay, [], [], L)
    assert sp.step == 1000 and sp.last_normal_step == 990 and not sp.divergence and 2 < sp.ratio < 3


def test_warmup_is_left_out_of_spikes_but_not_out_of_divergence():
    lr = series(lambda s: min(1.0, s / 300) * 1e-4)
    assert warmup_end(lr, [], L) == 290  # the first log at 95% of the peak
    rise = series(lambda s: 2.0 * (2.0 if 100 <= s < 250 else 1.0))  # up in warmup, back down after
    assert loss_spike(rise, [], lr, L) is None
    diverge = series(lambda s: 2.0 * (4.0 if 100 <= s < 250 else 1.0))
    sp = loss_spike(diverge, [], lr, L)
    assert sp.divergence and sp.step == 100 and sp.start == 2.0


def test_multiplicative_noise_raises_no_spike():
    for seed in range(20):
        rng = random.Random(seed)
        loss = series(lambda s, rng=rng: (0.5 + 2 * math.exp(-s / 2000)) * rng.uniform(0.65, 1.35), last=10000)
        assert loss_spike(loss, [], [], L) is None, seed


def test_grad_blips_are_not_an_explosion_but_a_climb_is():
    grad = series(lambda s: 50.0 if s % 300 == 0 else 1.0)
    assert grad_explosion(grad, L) is None
    climb = series(lambda s: 1.0 if s < 1000 else 10 ** ((s - 990) / 10))
    ex = grad_explosion(climb, L)
    assert (ex.step, ex.value, ex.median) == (1020, 1000.0, 1.0)  # 100x at 1010 is not above 100x
    one_then_nan = series(lambda s: 1.0 if s < 1000 else (500.0 if s == 1000 else math.nan))
    assert grad_explosion(one_then_nan, L).step == 1000


def test_lr_zero_rules():
    assert lr_zero(series(lambda s: max(0.0, 1e-4 * (1 - s / 500)), last=1500), 5000, L).step == 500
    cosine = series(lambda s: 1e-4 * 0.5 * (1 + math.cos(math.pi * s / 5000)) if s < 5000 else 0.0, last=5000)
    assert lr_zero(cosine, 5000, L) is None
    warm = [[1.0, 0.0]] + series(lambda s: 1e-4 * min(1, s / 100))
    assert lr_zero(warm, 5000, L) is None
    assert lr_zero(series(lambda s: 0.0, last=100), None, L).share_left == 0.9  # 0 from the first log: configured so


@pytest.mark.parametrize("points, judged", [(3, 2), (6, 5)])
def test_slowdown_needs_enough_intervals(points, judged):
    times = [[s * 100.0, 1000.0 + s * 600] for s in range(points)]
    assert slowdown(times, L) == (None, judged)


def test_slowdown_found_and_named():
    times = [[s * 100.0, 1000.0 + s * 600] for s in range(8)] + [
        [800.0 + k * 100, 1000 + 8 * 600 + (k + 1) * 3000] for k in range(3)
    ]
    sl, judged = slowdown(times, L)
    assert judged == 10 and sl.step == 700 and sl.ongoing and sl.slow == 3 and sl.rate < 0.5 * sl.median_rate


def test_intervals_merge_short_ones_and_restart_on_a_resume():
    times = [[0, 0.0], [10, 5.0], [20, 40.0], [30, 80.0], [25, 100.0], [40, 150.0]]
    assert intervals(times, 30.0) == [(0, 20, 0.0, 40.0), (20, 30, 40.0, 80.0), (25, 40, 100.0, 150.0)]


def test_one_resume_gap_is_not_a_slowdown():
    times = [[s * 100.0, s * 600.0 + (5000 if s >= 5 else 0)] for s in range(12)]
    assert slowdown(times, L)[0] is None


def test_a_smooth_loss_repeating_its_rounded_value_is_not_flat():
    """transformers rounds the logged loss to 4 decimals: a slowly falling 0.095 repeats; 2.3026 (ln 10) stuck does not."""
    smooth = series(lambda s: round(2.0 / (1 + s / 5000), 4), last=100_000)
    assert loss_flat(smooth, [], L) is None
    stuck = series(lambda s: 2.3026 if s >= 500 else round(3 - s / 1000, 4), last=1000)
    assert loss_flat(stuck, [], L).step == 500


def test_a_divergence_from_the_second_log_counts_from_the_first():
    """The real run at learning rate 0.99: 5.5 at step 1, then 37, 34, 36, 42, ... (the median of the first five is
    already diverged)."""
    real = [5.457, 37.48, 33.9, 35.82, 42.33, 44.14, 50.9, 56.58, 44.95, 33.32, 35.02, 43.71]
    sp = loss_spike([[i + 1, v] for i, v in enumerate(real)], [], [], L)
    assert sp.divergence and sp.step == 2 and sp.start == 5.457 and sp.last_normal_step == 1


def test_spikes_are_judged_over_the_newest_logs_divergence_and_nan_anywhere():
    """The cost of an audit must not grow with the run: spikes and explosions among the newest TAIL_LOGS logs."""
    from healthkit.core.signalstats import TAIL_LOGS

    n = TAIL_LOGS + 2000
    rng = random.Random(3)
    noise = [rng.uniform(0.95, 1.05) for _ in range(n)]
    old_spike = [[i * 10.0, (2.5 if 500 <= i < 2000 else 1.0) * noise[i]] for i in range(n)]
    assert loss_spike(old_spike, [], [], L) is None
    new_spike = [[i * 10.0, (2.5 if i >= n - 500 else 1.0) * noise[i]] for i in range(n)]
    assert loss_spike(new_spike, [], [], L).step == (n - 500) * 10
    diverged_early = [[i * 10.0, (4.0 if 100 <= i < 200 else 1.0) * noise[i]] for i in range(n)]
    assert loss_spike(diverged_early, [], [], L).divergence
    nan_early = [[i * 10.0, math.nan if i == 50 else 1.0] for i in range(n)]
    assert non_finite(nan_early, []).step == 500
