"""The training signal's faults found by robust statistics: pure functions over (step, value) series, no I/O.

Each rule returns None or a small frozen value naming the step(s); the check (checks/trainsignal.py)
turns it into a finding with its format's evidence. Medians and MADs over windows of logs, never
means, so that a healthy noisy run raises nothing; the cost is linear in the history with small
constants (blocks of logs are sorted once), because a 100k-step run logs ten thousand points.
"""

from __future__ import annotations

import math
import operator
import re
from bisect import bisect_right, insort
from collections.abc import Sequence

from healthkit.contract.settings import SignalSettings
from healthkit.system.records import record

Series = Sequence[Sequence[float]]  # [[step, value], ...] in step order, as a run format gives it
ZERO_LR = 1e-12  # a learning rate at or below this is 0 (a cosine schedule's last float, not a learning rate)
TAIL_LOGS = 5000  # spikes and explosions are judged over the newest logs: an audit's cost must not grow with the run
DIVERGENCE_LOGS = 2  # consecutive logs at the divergence bar: one log up there is a batch, two are a climb
FLAT_RESOLUTION = 2000  # a constant loss other than 0.0 is judged only this many rounding steps above 0
MAD_SIGMA = 1.4826  # MAD of a normal distribution times this is its standard deviation


SignalLimits = SignalSettings  # the rules read healthkit.toml's [signal] table as it is


def _median(sorted_vals: Sequence[float]) -> float:
    n = len(sorted_vals)
    mid = n // 2
    return sorted_vals[mid] if n % 2 else (sorted_vals[mid - 1] + sorted_vals[mid]) / 2.0


def median(vals: Sequence[float]) -> float:
    return _median(sorted(vals))


def mad(vals: Sequence[float], center: float | None = None) -> float:
    """The median absolute deviation (around ``center``, default the median)."""
    c = median(vals) if center is None else center
    return median([abs(v - c) for v in vals])


# --- non-finite -------------------------------------------------------------------------------------------------


@record
class NonFinite:
    step: float
    value: float  # the loss logged there (nan, inf, or the 0.0 that transformers' NaN filter logs)
    grad_norm: float | None  # the gradient norm logged at that step, when one was
    last_finite_step: float | None
    last_finite: float | None
    hidden: bool  # a 0.0 loss beside a non-finite grad_norm: transformers' logging_nan_inf_filter hid the NaN
    count: int  # non-finite logs from the first on


_VALUE = operator.itemgetter(1)


def _all_finite(series: Series) -> bool:
    """Whether every value is finite: their sum is, unless one is NaN or infinite (or the sum overflows, which the
    exact test then settles). One pass in C over a long history instead of a Python-level one."""
    return math.isfinite(sum(map(_VALUE, series))) or all(map(math.isfinite, map(_VALUE, series)))


def _by_step(series: Series) -> dict[float, float]:
    return {p[0]: p[1] for p in series}


def effective_loss(loss: Series, grad: Series) -> Series:
    """The loss series with a 0.0 beside a non-finite grad_norm read as NaN (the series itself when there is none).

    transformers' `logging_nan_inf_filter` (on by default) leaves non-finite step losses out of the logged
    average; when every step of the window was non-finite the log says `loss: 0.0` beside `grad_norm: nan`.
    """
    if _all_finite(grad):
        return loss
    bad_grad = {p[0] for p in grad if not math.isfinite(p[1])}
    return [[p[0], math.nan] if p[1] == 0.0 and p[0] in bad_grad else p for p in loss]


def non_finite(loss: Series, grad: Series) -> NonFinite | None:
    eff = effective_loss(loss, grad)
    if _all_finite(eff):
        return None
    vals = [p[1] for p in eff]
    first = next(i for i, v in enumerate(vals) if not math.isfinite(v))
    step = eff[first][0]
    hidden = eff is not loss and math.isfinite(loss[first][1])
    last = next((i for i in range(first - 1, -1, -1) if math.isfinite(vals[i])), None)
    g = _by_step(grad).get(step)
    count = len(vals) - first - sum(map(math.isfinite, vals[first:]))
    return NonFinite(
        step,
        loss[first][1],
        g,
        eff[last][0] if last is not None else None,
        vals[last] if last is not None else None,
        hidden,
        count,
    )


# --- spikes and divergence -----------------------------------------------------------------------------------------


@record
class Spike:
    step: float
    value: float
    baseline: float  # the median of the window before it
    ratio: float  # value / baseline
    last_normal_step: float | None  # the last log before the spike (a checkpoint at or before it predates the spike)
    after_median: float | None  # the median of the logs after it (spike), or the latest loss (divergence)
    divergence: bool  # a climb to several times the starting loss
    start: float  # the run's starting loss (median of its first logs)


def warmup_end(lr: Series, steps: Sequence[float], limits: SignalLimits) -> float:
    """The step where warmup ends: the learning rate's first reach of 95% of its peak; else a share of the logs."""
    vals = [p[1] for p in lr]
    if len(vals) >= 3 and all(map(math.isfinite, vals)):
        peak = max(vals)
        if peak > 0:
            bar = 0.95 * peak
            return lr[next(i for i, v in enumerate(vals) if v >= bar)][0]
    if not steps:
        return 0.0
    return steps[min(len(steps) - 1, int(len(steps) * limits.warmup_fraction))]


def _finite(eff: Series) -> tuple[list[float], list[float]]:
    """(steps, values) of the finite logs."""
    vals = list(map(_VALUE, eff))
    if _all_finite(eff):
        return [p[0] for p in eff], vals
    keep = [i for i, v in enumerate(vals) if math.isfinite(v)]
    return [eff[i][0] for i in keep], [vals[i] for i in keep]


def divergence(steps: list[float], vals: list[float], limits: SignalLimits) -> Spike | None:
    """A climb to ``divergence_factor`` times the starting loss (two logs in a row), anywhere (warmup included), even if
    it falls back."""
    if len(vals) < 5:
        return None
    start = min(
        vals[0], median(vals[:5])
    )  # the first log, unless it is above the next ones: a climb can begin at log 2
    if start <= 0:
        return None
    bar = limits.divergence_factor * start
    if max(vals) < bar:
        return None
    n = DIVERGENCE_LOGS
    i = next((k for k in range(len(vals) - n + 1) if vals[k] >= bar and min(vals[k : k + n]) >= bar), None)
    if i is None:
        return None
    peak = max(vals[i:])
    return Spike(steps[i], peak, start, peak / start, steps[i - 1] if i else None, vals[-1], True, start)


def spike(steps: list[float], vals: list[float], warm_end: float, limits: SignalLimits) -> Spike | None:
    """The first jump, after warmup, far beyond the spread of the window before it that does not come back.

    In log space (noise in a loss is multiplicative): a log is a candidate when it is above the window
    median by ``spike_sigmas`` robust standard deviations (1.4826 MAD) and by ``spike_min_ratio``; it
    is a spike when the median of the ``spike_recover_logs`` logs from it stays above half that jump.
    The window is the block of ``window_logs`` logs before the candidate's block, sorted once.
    """
    w = limits.window_logs
    first = bisect_right(steps, warm_end)
    if len(vals) - first < 2 * w or min(vals[first:]) <= 0:
        return None
    floor = math.log(limits.spike_min_ratio)
    span = vals[first:]
    log = math.log
    for b in range(w, len(span), w):
        top = max(span[b : b + w])
        if (
            top <= min(span[b - w : b]) * limits.spike_min_ratio
        ):  # the median is at least the minimum: no candidate here
            continue
        ref = sorted(map(log, span[b - w : b]))
        m = _median(ref)
        if log(top) <= m + floor:
            continue
        sigma = MAD_SIGMA * _median(sorted(abs(x - m) for x in ref))
        bar = max(limits.spike_sigmas * sigma, floor)
        for k, v in enumerate(span[b : b + w]):
            x = log(v)
            if x - m <= bar:
                continue
            i = b + k
            after = span[i : i + limits.spike_recover_logs]
            if len(after) < max(3, limits.spike_recover_logs // 2):
                return None  # too few logs after it to tell a spike from a blip
            am = log(median(after))
            if am - m > (x - m) / 2:
                j = first + i
                return Spike(
                    steps[j],
                    vals[j],
                    math.exp(m),
                    vals[j] / math.exp(m),
                    steps[j - 1],
                    math.exp(am),
                    False,
                    median(vals[:5]),
                )
    return None


def loss_spike(loss: Series, grad: Series, lr: Series, limits: SignalLimits) -> Spike | None:
    """A divergence (anywhere) first, else a spike after warmup among the newest TAIL_LOGS logs; None for a healthy run."""
    steps, vals = _finite(effective_loss(loss, grad))
    d = divergence(steps, vals, limits)
    if d is not None:
        return d
    warm = warmup_end(lr[:TAIL_LOGS], steps[:TAIL_LOGS], limits)  # warmup is at the start
    return spike(steps[-TAIL_LOGS:], vals[-TAIL_LOGS:], warm, limits)


# --- flat ---------------------------------------------------------------------------------------------------------


@record
class Flat:
    step: float  # the first log of the constant stretch
    last_step: float
    value: float
    logs: int
    to_end: bool  # the stretch reaches the newest log


def resolution(vals: Sequence[float]) -> float:
    """The finest decimal step the values are written with (transformers rounds a logged loss to 4 decimals: 1e-4)."""
    finest = 1.0
    for v in vals:
        if math.isfinite(v):
            k = next((k for k in range(10) if round(v, k) == v), 10)
            finest = min(finest, 10.0**-k)
    return finest


def loss_flat(loss: Series, grad: Series, limits: SignalLimits) -> Flat | None:
    """The longest stretch of at least ``flat_min_logs`` consecutive logs with one finite loss value (among the newest
    TAIL_LOGS logs: a loss stuck long ago and moving since is no longer a fault).

    A value other than 0.0 counts only when it is at least FLAT_RESOLUTION times the decimal step the log is written
    with (transformers rounds to 4 decimals): a smooth loss near 0.09 repeats its rounded value without being stuck.
    """
    eff = effective_loss(loss[-TAIL_LOGS:], grad[-TAIL_LOGS:])
    vals = [p[1] for p in eff]
    same = list(map(operator.eq, vals[:-1], vals[1:]))
    if sum(same) < limits.flat_min_logs - 1:
        return None
    runs = [
        (m.start(), m.end() - m.start()) for m in re.finditer(b"\x01{%d,}" % (limits.flat_min_logs - 1), bytes(same))
    ]
    if not runs:
        return None
    best: Flat | None = None
    written = resolution(vals[:100] + vals[-100:])
    for i, n in runs:  # n equal neighbours: n + 1 logs
        v = vals[i]
        if not math.isfinite(v) or (best is not None and n + 1 <= best.logs):
            continue
        if v == 0.0 or abs(v) >= FLAT_RESOLUTION * min(written, resolution([v])):
            best = Flat(eff[i][0], eff[i + n][0], v, n + 1, i + n == len(vals) - 1)
    return best


# --- gradient explosion --------------------------------------------------------------------------------------------


@record
class Explosion:
    step: float
    value: float
    median: float  # the running median before it
    ratio: float
    logs: int  # consecutive logs above the bar
    peak: float


def grad_explosion(grad: Series, limits: SignalLimits) -> Explosion | None:
    """``grad_min_logs`` consecutive gradient norms (or one followed by a non-finite one) ``grad_factor`` times
    the running median: the median of the medians of the blocks of ``window_logs`` logs before (among the newest
    TAIL_LOGS logs).

    A single blip is not an explosion; a non-finite gradient norm is judged by non_finite with the loss.
    """
    w = limits.window_logs
    grad = grad[-TAIL_LOGS:]
    vals = [p[1] for p in grad]
    if len(vals) <= w:
        return None
    medians: list[float] = []
    finite = all(map(math.isfinite, vals))
    for b in range(0, len(vals), w):
        block = sorted(vals[b : b + w] if finite else filter(math.isfinite, vals[b : b + w]))
        if medians and block:
            ref = _median(medians)
            bar = limits.grad_factor * ref
            if ref > 0 and block[-1] > bar:
                found = _explosion(grad, vals, b, w, bar, ref, limits)
                if found is not None:
                    return found
        if block:
            insort(medians, _median(block))
    return None


def _explosion(
    grad: Series, vals: list[float], b: int, w: int, bar: float, ref: float, limits: SignalLimits
) -> Explosion | None:
    run = 0
    for i in range(b, len(vals)):
        v = vals[i]
        if math.isfinite(v) and v > bar:
            run += 1
            first = i - run + 1
            nxt = vals[i + 1] if i + 1 < len(vals) else None
            if run >= limits.grad_min_logs or (nxt is not None and not math.isfinite(nxt)):
                j = i
                while j + 1 < len(vals) and math.isfinite(vals[j + 1]) and vals[j + 1] > bar:
                    j += 1
                return Explosion(
                    grad[first][0], vals[first], ref, vals[first] / ref, j - first + 1, max(vals[first : j + 1])
                )
        else:
            run = 0
            if i >= b + w:
                break
    return None


# --- learning rate at zero ------------------------------------------------------------------------------------------


@record
class LrZero:
    step: float  # the first log of the final stretch at 0
    last_step: float
    logs: int
    max_steps: float | None
    share_left: float  # of max_steps (or of the logged steps) still to run when it reached 0


def lr_zero(lr: Series, max_steps: float | None, limits: SignalLimits) -> LrZero | None:
    """The learning rate at 0 over the newest ``lr_zero_min_logs`` logs or more, while a large share of the run remains.

    The warmup's start (0, then rising) is not a stretch that reaches the newest log; a schedule that ends at
    0 at ``max_steps`` leaves no share of the run.
    """
    zeros: list[float] = []  # the steps of the newest finite logs at 0, newest first (walked from the end only)
    last: float | None = None
    for step, value in reversed(lr):
        if not math.isfinite(value):
            continue
        if last is None:
            last = step
        if abs(value) > ZERO_LR:
            break
        zeros.append(step)
    n = len(zeros)
    if n < limits.lr_zero_min_logs or last is None:
        return None
    z = zeros[-1]
    total = max_steps if max_steps and max_steps > 0 else None
    share = (total - z) / total if total else (last - z) / last if last > 0 else 0.0
    if share < limits.lr_zero_min_share_left:
        return None
    return LrZero(z, last, n, total, share)


# --- slowdown -----------------------------------------------------------------------------------------------------


@record
class Slowdown:
    step: float  # where the slow stretch began
    until_step: float
    rate: float  # steps per hour over the slow stretch
    median_rate: float  # the run's median steps per hour
    intervals: int  # timed intervals judged
    slow: int  # consecutive slow intervals
    ongoing: bool  # the stretch reaches the newest timed point


def intervals(times: Series, min_seconds: float) -> list[tuple[float, float, float, float]]:
    """(step0, step1, t0, t1) between timed points in time order, each at least ``min_seconds`` long (shorter
    ones merge into the next); a step that does not grow (a resume from an older checkpoint) starts afresh."""
    pts = sorted((p[1], p[0]) for p in times if math.isfinite(p[1]))
    out: list[tuple[float, float, float, float]] = []
    if not pts:
        return out
    t0, s0 = pts[0]
    for t, s in pts[1:]:
        if s <= s0:
            t0, s0 = t, s
            continue
        if t - t0 >= min_seconds:
            out.append((s0, s, t0, t))
            t0, s0 = t, s
    return out


def slowdown(times: Series, limits: SignalLimits) -> tuple[Slowdown | None, int]:
    """(the newest stretch of ``slowdown_min_slow`` consecutive intervals under ``slowdown_factor`` of the run's
    median steps per hour, the number of intervals judged); nothing is judged under ``slowdown_min_intervals``."""
    iv = intervals(times, limits.slowdown_min_interval_seconds)
    if len(iv) < limits.slowdown_min_intervals:
        return None, len(iv)
    rates = [(s1 - s0) * 3600.0 / (t1 - t0) for s0, s1, t0, t1 in iv]
    m = median(rates)
    bar = limits.slowdown_factor * m
    found = None
    i = 0
    while i < len(rates):
        if rates[i] < bar:
            j = i
            while j + 1 < len(rates) and rates[j + 1] < bar:
                j += 1
            if j - i + 1 >= limits.slowdown_min_slow:
                steps = iv[j][1] - iv[i][0]
                secs = iv[j][3] - iv[i][2]
                found = Slowdown(iv[i][0], iv[j][1], steps * 3600.0 / secs, m, len(iv), j - i + 1, j == len(rates) - 1)
            i = j + 1
        else:
            i += 1
    return found, len(iv)
