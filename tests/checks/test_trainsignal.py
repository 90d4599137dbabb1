"""The training signal's findings on real HF-shaped and Lightning workspaces: one row per fault, one per healthy control.

Each case writes checkpoint-N/ folders whose trainer_state.json holds the log_history a Trainer writes (json.dump's
NaN included), audits it through the library, and asserts the codes and the step named. The healthy controls must
raise nothing: the table is the note's table (tests print it with -s).
"""

from __future__ import annotations

import json
import math
import os
import pickle
import random
import subprocess
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from healthkit.checks.trainsignal import CODES

from .conftest import call, checkpoint, make_ws

SIGNAL = {c.code for c in CODES}
T0 = 1_700_000_000.0


def _signal_check():
    from healthkit.checks.trainsignal import signal_check

    return signal_check


def hf_run(
    base: Path,
    *,
    last: int,
    max_steps: int = 5000,
    every: int = 10,
    saves: list[int] | None = None,
    loss: Callable[[int], float],
    grad: Callable[[int], float] | None = None,
    lr: Callable[[int], float] | None = None,
    save_times: dict[int, float] | None = None,
    first_step: bool = False,
) -> Path:
    """A workspace as transformers' Trainer leaves it: checkpoint-N/ with weights and the log_history up to N."""
    steps = ([1] if first_step else []) + list(range(every, last + 1, every))
    hist = []
    for s in steps:
        e: dict[str, Any] = {
            "epoch": round(s / max_steps, 4),
            "loss": round(loss(s), 4) if math.isfinite(loss(s)) else loss(s),
            "step": s,
        }
        if grad is not None:
            e["grad_norm"] = grad(s)
        if lr is not None:
            e["learning_rate"] = lr(s)
        hist.append(e)
    make_ws(base, config={"save_total_limit": 3})
    saves = saves if saves is not None else list(range(500, last + 1, 500))[-3:] or [last]
    for s in saves:
        state = {
            "global_step": s,
            "max_steps": max_steps,
            "save_steps": 500,
            "logging_steps": every,
            "log_history": [e for e in hist if e["step"] <= s],
        }
        d = checkpoint(base, s, size=64)
        (d / "trainer_state.json").write_text(json.dumps(state, indent=2))  # NaN as json.dump writes it
        when = (save_times or {}).get(s, T0 + s)
        for f in d.iterdir():
            os.utime(f, (when, when))
        os.utime(d, (when, when))
    return base


def noisy(seed: int, amp: float) -> Callable[[float], float]:
    rng = random.Random(seed)
    table: dict[float, float] = {}

    def f(s: float) -> float:
        if s not in table:
            table[s] = rng.uniform(1 - amp, 1 + amp)
        return table[s]

    return f


def decay(s: float, start: float = 2.5, floor: float = 0.6) -> float:
    return floor + (start - floor) * math.exp(-s / 1500)


def cosine(s: float, peak: float = 2e-4, warm: int = 100, total: int = 5000) -> float:
    if s < warm:
        return peak * s / warm
    return peak * 0.5 * (1 + math.cos(math.pi * min(1.0, (s - warm) / (total - warm))))


def linear_for(total: int, peak: float = 2e-4) -> Callable[[int], float]:
    """transformers' linear schedule built for ``total`` steps: 0 from there on."""
    return lambda s: max(0.0, peak * (1 - s / total))


N5 = noisy(5, 0.05)
N35 = noisy(35, 0.35)
G = noisy(7, 0.2)
N2 = noisy(2, 0.02)

# name: (run kwargs, expected {code: step} (empty: healthy), extra assertions)
CASES: dict[str, tuple[dict[str, Any], dict[str, float]]] = {
    "nan-from-630": (
        {
            "last": 900,
            "loss": lambda s: math.nan if s >= 630 else decay(s) * N5(s),
            "grad": lambda s: math.nan if s >= 630 else 1.2 * G(s),
            "lr": linear_for(5000),
            "saves": [500, 600, 700, 800, 900],
        },
        {"training.loss-non-finite": 630},
    ),
    "nan-hidden-by-filter-from-630": (
        {
            "last": 900,
            "loss": lambda s: 0.0 if s >= 630 else decay(s) * N5(s),
            "grad": lambda s: math.nan if s >= 630 else 1.2 * G(s),
            "lr": linear_for(5000),
            "saves": [500, 600, 700, 800, 900],
        },
        {"training.loss-non-finite": 630},
    ),
    "spike-at-700": (
        {
            "last": 1200,
            "loss": lambda s: (3.2 * decay(s) if s >= 700 else decay(s)) * N5(s),
            "grad": lambda s: 1.2 * G(s),
            "lr": cosine,
            "saves": [500, 600, 800, 900, 1000],
        },
        {"training.loss-spike": 700},
    ),
    "loss-zero-from-410": (
        {
            "last": 1000,
            "loss": lambda s: 0.0 if s >= 410 else decay(s) * N5(s),
            "grad": lambda s: 0.0 if s >= 410 else 1.2 * G(s),
            "lr": cosine,
        },
        {"training.loss-flat": 410},
    ),
    "grad-to-1e5": (
        {
            "last": 1100,
            "loss": lambda s: decay(s) * N5(s),
            "grad": lambda s: 1.2 * G(s) if s < 800 else min(1e5, 1.2 * 10 ** ((s - 790) / 20)),
            "lr": cosine,
        },
        {"training.grad-explosion": 830},
    ),
    "lr-0-from-500-of-5000": (
        {"last": 1500, "loss": lambda s: decay(s) * N5(s), "grad": lambda s: 1.2 * G(s), "lr": linear_for(500)},
        {"training.lr-zero": 500},
    ),
    "diverging-7-to-49": (
        {
            "last": 400,
            "loss": lambda s: 7 * (1 + 6 * math.sin(math.pi * min(1.0, s / 300)) ** 2) * N5(s),
            "grad": lambda s: 5 * G(s),
            "lr": lambda s: 0.99,
            "saves": [100, 200, 300, 400],
        },
        {"training.loss-spike": 70},
    ),
    "slowdown-to-a-fifth": (
        {
            "last": 2000,
            "loss": lambda s: decay(s) * N5(s),
            "grad": lambda s: 1.2 * G(s),
            "lr": cosine,
            "saves": list(range(200, 2001, 200)),
            "save_times": {s: T0 + (s * 6 if s <= 1400 else 1400 * 6 + (s - 1400) * 30) for s in range(200, 2001, 200)},
        },
        {"training.slowdown": 1400},
    ),
    # healthy controls: nothing
    "healthy-noise-35pct": (
        {"last": 3000, "loss": lambda s: decay(s) * N35(s), "grad": lambda s: 1.2 * G(s), "lr": cosine},
        {},
    ),
    "healthy-grad-blips": (
        {
            "last": 3000,
            "loss": lambda s: decay(s) * N5(s),
            "grad": lambda s: 60.0 if s % 230 == 0 else 1.2 * G(s),
            "lr": cosine,
        },
        {},
    ),
    "healthy-uneven-save-times": (
        {
            "last": 2000,
            "loss": lambda s: decay(s) * N5(s),
            "grad": lambda s: 1.2 * G(s),
            "lr": cosine,
            "saves": list(range(200, 2001, 200)),
            "save_times": {s: T0 + s * 6 + random.Random(s).uniform(-400, 400) for s in range(200, 2001, 200)},
        },
        {},
    ),
    "healthy-cosine-to-0-at-max-steps": (
        {"last": 5000, "loss": lambda s: decay(s) * N5(s), "grad": lambda s: 1.2 * G(s), "lr": cosine},
        {},
    ),
    "healthy-floor-0.02": (
        {
            "last": 3000,
            "loss": lambda s: (0.02 + 2 * math.exp(-s / 100)) * N2(s),
            "grad": lambda s: 0.3 * G(s),
            "lr": cosine,
        },
        {},
    ),
    "healthy-warmup-from-lr-0": (
        {
            "last": 1000,
            "first_step": True,
            "loss": lambda s: decay(s) * N5(s),
            "grad": lambda s: (40.0 if s < 30 else 1.2) * G(s),
            "lr": cosine,
        },
        {},
    ),
}
ROWS: list[str] = []


@pytest.mark.parametrize("name", list(CASES))
def test_fault_table(name, tmp_path):
    kwargs, expected = CASES[name]
    base = hf_run(tmp_path / name, **kwargs)
    out = call(_signal_check(), base)
    got = {f.code: f.data.get("step") for f in out.findings if f.code in SIGNAL}
    ROWS.append(f"| {name} | " + ("; ".join(f"`{c}` at step {s:g}" for c, s in got.items()) or "nothing") + " |")
    assert got == expected, [(f.code, f.title, f.problem) for f in out.findings]
    for f in out.findings:
        assert f.evidence and f.evidence[0].observed, f.code
        assert f.recommendations


def test_nan_names_the_last_finite_value_and_the_checkpoint_before(tmp_path):
    base = hf_run(tmp_path / "ws", **CASES["nan-hidden-by-filter-from-630"][0])
    f = next(f for f in call(_signal_check(), base).findings if f.code == "training.loss-non-finite")
    assert f.data["last_finite_step"] == 620 and f.data["hidden_by_filter"]
    assert f.data["rewind_to"] == "checkpoint-600"
    assert "logging_nan_inf_filter" in f.problem[0]
    assert "training.loss-flat" not in [x.code for x in call(_signal_check(), base).findings]
    ev = f.evidence[0]
    assert (
        ev.command.startswith("jq -c '.log_history[]")
        and "current_model/checkpoint-900/trainer_state.json" in ev.command
    )
    # the evidence re-runs: jq prints exactly what the finding shows
    ran = subprocess.run(["bash", "-c", ev.command], cwd=base, capture_output=True, text=True)
    assert ran.returncode == 0 and ran.stdout.strip() == ev.observed, (ran.stdout, ev.observed)


def test_spike_names_the_newest_complete_checkpoint_before_it(tmp_path):
    base = hf_run(tmp_path / "ws", **CASES["spike-at-700"][0])
    (base / "current_model/checkpoint-600/adapter_model.safetensors").unlink()  # incomplete: not a rewind point
    f = next(f for f in call(_signal_check(), base).findings if f.code == "training.loss-spike")
    assert f.data["rewind_to"] == "checkpoint-500"
    assert "checkpoint-800, checkpoint-900, checkpoint-1000" in f.recommendations[0]


def test_spike_after_rotation_says_none_remains(tmp_path):
    kwargs = dict(CASES["spike-at-700"][0], saves=[800, 900, 1000])
    f = next(
        f for f in call(_signal_check(), hf_run(tmp_path / "ws", **kwargs)).findings if f.code == "training.loss-spike"
    )
    assert f.data["rewind_to"] is None
    assert "No complete checkpoint from before step 700 remains" in f.recommendations[0]


def test_slowdown_needs_five_timed_intervals(tmp_path):
    """Three kept checkpoints are two intervals: a slowdown is not judged, whatever their times."""
    kwargs = dict(CASES["slowdown-to-a-fifth"][0], saves=[1400, 1600, 1800, 2000])
    out = call(_signal_check(), hf_run(tmp_path / "ws", **kwargs))
    assert not out.findings and out.facts["signal"]["timed_intervals"] == 3


def test_thresholds_are_settings(tmp_path):
    base = hf_run(tmp_path / "ws", **CASES["lr-0-from-500-of-5000"][0])
    (base / "healthkit.toml").write_text("[signal]\nlr_zero_min_share_left = 0.95\n")
    assert not call(_signal_check(), base).findings


@pytest.mark.parametrize("seed", range(8))
def test_healthy_noisy_runs_raise_nothing_whatever_the_seed(seed, tmp_path):
    n, g = noisy(100 + seed, 0.35), noisy(200 + seed, 0.4)
    base = hf_run(
        tmp_path / "ws",
        last=5000,
        loss=lambda s: decay(s) * n(s),
        grad=lambda s: (25.0 if s % 370 == 0 else 1.0) * g(s),
        lr=cosine,
        first_step=True,
    )
    assert call(_signal_check(), base).findings == []


# --- Lightning metrics.csv ------------------------------------------------------------------------------------------


def lightning_run(base: Path, rows: list[dict[str, Any]], ckpt_steps: list[int]) -> Path:
    version = base / "lightning_logs/version_0"
    (version / "checkpoints").mkdir(parents=True)
    keys = ["epoch", "step", "train_loss", "grad_2.0_norm_total", "lr-AdamW", "val_loss"]
    lines = [",".join(keys)] + [",".join("" if r.get(k) is None else str(r[k]) for k in keys) for r in rows]
    (version / "metrics.csv").write_text("\n".join(lines) + "\n")
    for s in ckpt_steps:
        p = version / "checkpoints" / f"epoch=0-step={s}.ckpt"
        with zipfile.ZipFile(p, "w") as zf:
            zf.writestr("archive/data.pkl", pickle.dumps({"global_step": s}))
        os.utime(p, (T0 + s, T0 + s))
    (base / "healthkit.toml").write_text('[paths]\ncheckpoints = "lightning_logs/version_0/checkpoints"\n')
    return base


def test_lightning_metrics_csv_nan(tmp_path):
    rows = [
        {
            "epoch": 0,
            "step": s,
            "train_loss": "nan" if s >= 630 else round(decay(s) * N5(s), 4),
            "grad_2.0_norm_total": 1.1,
            "lr-AdamW": 1e-4,
        }
        for s in range(9, 900, 10)
    ]
    base = lightning_run(tmp_path / "ws", rows, [299, 599, 899])
    out = call(_signal_check(), base)
    f = next(f for f in out.findings if f.code == "training.loss-non-finite")
    assert f.data["step"] == 639 and f.data["rewind_to"] == "epoch=0-step=599.ckpt"
    assert f.evidence[0].command.startswith("sed -n '1p;")
    ran = subprocess.run(["bash", "-c", f.evidence[0].command], cwd=base, capture_output=True, text=True)
    assert ran.stdout.strip() == f.evidence[0].observed
    assert "639,nan" in f.evidence[0].observed.replace("0,639,", "639,")


def test_lightning_lr_zero_and_healthy(tmp_path):
    rows = [
        {
            "epoch": 0,
            "step": s,
            "train_loss": round(decay(s) * N35(s), 4),
            "grad_2.0_norm_total": round(G(s), 3),
            "lr-AdamW": linear_for(500)(s),
        }
        for s in range(9, 1500, 10)
    ]
    rows += [{"epoch": 0, "step": s, "val_loss": 1.0} for s in range(99, 1500, 100)]
    out = call(_signal_check(), lightning_run(tmp_path / "fault", rows, [499, 999, 1499]))
    assert [(f.code, f.data["step"]) for f in out.findings] == [("training.lr-zero", 509)]
    rows = [dict(r, **{"lr-AdamW": cosine(r["step"], total=1500)}) if "train_loss" in r else r for r in rows]
    assert call(_signal_check(), lightning_run(tmp_path / "ok", rows, [499, 999, 1499])).findings == []


def test_print_table():
    """The note's table (run with -s after the cases)."""
    print("\n| case | audit |\n|---|---|\n" + "\n".join(ROWS))


# --- TensorBoard wall times (an Accelerate project) -----------------------------------------------------------------


def accelerate_run(base: Path, points: list[tuple[int, float, float]]) -> Path:
    """An Accelerate project: checkpoints/checkpoint_N/ and the TensorBoard events of `log_with="tensorboard"`."""
    from tensorboard.compat.proto.event_pb2 import Event
    from tensorboard.compat.proto.summary_pb2 import Summary
    from tensorboard.summary.writer.event_file_writer import EventFileWriter

    logdir = base / "project/logs"
    logdir.mkdir(parents=True)
    w = EventFileWriter(str(logdir))
    for step, wall, loss in points:
        w.add_event(
            Event(
                wall_time=wall,
                step=step,
                summary=Summary(
                    value=[
                        Summary.Value(tag="train/loss", simple_value=loss),
                        Summary.Value(tag="train/grad_norm", simple_value=1.0),
                        Summary.Value(tag="train/learning_rate", simple_value=1e-4),
                    ]
                ),
            )
        )
    w.close()
    for i in range(3):
        d = base / f"project/checkpoints/checkpoint_{i}"
        d.mkdir(parents=True)
        for f in ("model.safetensors", "optimizer.bin", "random_states_0.pkl"):
            (d / f).write_bytes(b"x" * 16)
    (base / "healthkit.toml").write_text('[paths]\ncheckpoints = "project/checkpoints"\n')
    return base


def test_tensorboard_wall_times_show_a_slowdown(tmp_path):
    pts = [(s, T0 + (s * 3 if s <= 3000 else 9000 + (s - 3000) * 15), decay(s) * N5(s)) for s in range(10, 5001, 10)]
    out = call(_signal_check(), accelerate_run(tmp_path / "slow", pts))
    assert [(f.code, f.data["step"]) for f in out.findings] == [("training.slowdown", 3000)]
    f = out.findings[0]
    assert f.data["ongoing"] and "TensorBoard wall times" in f.problem[1]
    assert f.evidence[0].command.startswith("python -m healthkit.formats.tensorboard project/logs ")
    ran = subprocess.run(
        f.evidence[0].command.split(),
        cwd=tmp_path / "slow",
        capture_output=True,
        text=True,
        env={**os.environ, "PATH": os.path.dirname(os.sys.executable) + ":" + os.environ["PATH"]},
    )
    assert ran.returncode == 0 and ran.stdout.strip() == f.evidence[0].observed
    even = [(s, T0 + s * 3 + random.Random(s).uniform(-20, 20), decay(s) * N5(s)) for s in range(10, 5001, 10)]
    assert call(_signal_check(), accelerate_run(tmp_path / "even", even)).findings == []
