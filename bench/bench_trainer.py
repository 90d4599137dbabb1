"""Steps per second of the tiny model: our daemon + callbacks against a bare `Trainer.train()`, same data, same run.

    python bench/bench_trainer.py [--rounds 5] [--round-seconds 20] [--modes full,lora]

Modes: `full` fine-tunes every weight; `lora` trains a LoRA adapter, against a bare
`peft.get_peft_model` + `Trainer.train()` with the same LoraConfig. Rounds interleave
the modes (bare then daemon, per mode), and each mode's ratio is the median of its
per-round ratios. The peak RSS of the daemon's child (the training process) is
reported per mode, so LoRA's memory saving is measured on the same model and data.

Both sides use the same TrainingArguments (logging, evaluation and checkpointing
included), the same tokenized data and the same model; the daemon side is the full
path (daemon process, child process, status/control/GPU/costs hooks, final save and
queue moves outside the timed loop). Each side's speed is HF's own
`train_steps_per_second` of its `train()` call; rounds alternate and the medians
are compared. Both run in a fresh process (the bare one through `--bare-once`), and
rounds alternate with the ratio taken per round, so a busy shared machine hits both
sides alike; steps per CPU-second (all threads, hooks included) is printed too, as it
is robust to other load. Target: ratio >= 0.97.

Resolving 3%: rounds of ~1.5 s (150 tiny steps) gave per-round ratios from 0.75 to 1.32
on a quiet machine: start-up jitter and one scheduler hiccup are a large share of a short
round. So each mode is first calibrated (one bare warm-up run), and its step count is set
so that a round trains for about `--round-seconds` (default 20 s); the order inside a round
alternates (bare first, then daemon first), so a drift of the machine's load does not
always favour one side; and the spread of the per-round ratios is printed: half the range
around the median (`ratio_spread_pct`), with whether it is within the ±3% the target needs.
A spread wider than that says the machine was too busy to judge 3%, not that the trainer is slow.
On a shared, busy machine `--concurrent` runs the two sides of a round at the same time, so a
change in everyone else's load hits both alike (measured at load ~5 on 2 cores: wall ±5.6%,
CPU time ±2.0%, against ±44% / ±15% for sequential rounds at load ~7).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

BENCH_CONFIG = {
    "base_model": "models/base",
    "max_seq_length": 64,
    "eval_steps": 100,
    "save_steps": 100,
    "save_total_limit": 2,
    "logging_steps": 10,
    "per_device_train_batch_size": 8,
    "per_device_eval_batch_size": 16,
    "learning_rate": 1e-3,
    "validation_split": 0.1,
    "monitor_port": 0,
    "continue_from_previous": False,
}


def bare_once(base: Path, data: Path) -> dict:
    from transformers import AutoModelForCausalLM, AutoTokenizer, DataCollatorForLanguageModeling, Trainer

    from healthkit.trainer.data import TokenizedDataset, read_texts, split
    from healthkit.trainer.layout import Layout
    from healthkit.trainer.preflight import load_config
    from healthkit.trainer.train_file import training_arguments

    lay = Layout.of(base)
    cfg = load_config(lay)
    texts, val = split(read_texts(data), cfg.validation_split, cfg.seed)
    tok = AutoTokenizer.from_pretrained(lay.resolve(cfg.base_model))
    model = AutoModelForCausalLM.from_pretrained(lay.resolve(cfg.base_model))
    if cfg.lora:
        from peft import get_peft_model

        from healthkit.trainer.modeling import lora_config

        model = get_peft_model(model, lora_config(cfg.lora))
    scratch = base / "bare_out"
    shutil.rmtree(scratch, ignore_errors=True)
    args = training_arguments(cfg, Layout.of(scratch), True, 1)
    trainer = Trainer(
        model=model,
        args=args,
        train_dataset=TokenizedDataset(tok, texts, cfg.max_seq_length),
        eval_dataset=TokenizedDataset(tok, val, cfg.max_seq_length),
        data_collator=DataCollatorForLanguageModeling(tok, mlm=False),
        processing_class=tok,
    )
    cpu0 = time.process_time()
    out = trainer.train()
    cpu = time.process_time() - cpu0
    shutil.rmtree(scratch, ignore_errors=True)
    import resource

    return {
        "steps_per_s": float(out.metrics["train_steps_per_second"]),
        "steps": trainer.state.global_step,
        "cpu_s": cpu,
        "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
    }


def bare_round(base: Path, data: Path) -> dict:
    """A bare Trainer.train() in a fresh process, like the daemon's child (same imports, same warm-up)."""
    out = subprocess.run(
        [sys.executable, __file__, "--bare-once", str(base), str(data)],
        capture_output=True,
        text=True,
        timeout=900,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def daemon_round(base: Path, data: Path, n: int) -> dict:
    from healthkit.trainer import queue as q
    from healthkit.trainer.daemon import start_daemon, stop_daemon
    from healthkit.trainer.layout import Layout
    from healthkit.trainer.state import read_json

    lay = Layout.of(base)
    name = f"bench{n}.jsonl"
    shutil.copyfile(data, base / name)
    q.add(lay, base / name)
    start_daemon(base)
    try:
        deadline = time.monotonic() + 900
        while not ((lay.done / name).exists() and (res := read_json(lay.last_result)).get("file") == name):
            if (lay.failed / name).exists() or time.monotonic() > deadline:
                raise RuntimeError(f"{name} did not train: see {lay.logs}")
            time.sleep(0.2)  # the child moves the file to done/ just before it writes its result
    finally:
        stop_daemon(base, 60)
    return {
        "steps_per_s": float(res["train_steps_per_second"]),
        "steps": res["step"],
        "cpu_s": float(res["train_cpu_s"]),
        "peak_rss_bytes": res.get("peak_rss_bytes"),
    }


LORA = {"r": 8, "alpha": 16, "dropout": 0.05, "target_modules": "all-linear"}


def setup(work: Path, modes: list[str], steps: int, n_embd: int, n_layer: int) -> dict[str, Path]:
    """One workspace per mode, sharing one tiny model (copied) and one data file."""
    from healthkit.trainer.scaffold import init_workspace
    from healthkit.trainer.tiny import build_tiny_model

    model = build_tiny_model(work / "model", vocab_size=512, n_layer=n_layer, n_embd=n_embd, n_head=4, n_positions=64)
    out = {}
    for mode in modes:
        base = work / f"ws-{mode}"
        init_workspace(base, max_steps=steps, **BENCH_CONFIG, **({"lora": LORA} if mode == "lora" else {}))
        shutil.copytree(model, base / "models" / "base")
        out[mode] = base
    return out


def spread_pct(values: list[float]) -> float:
    """Half the range of ``values`` around their median, in percent: ±this is how far one round can be off."""
    med = statistics.median(values)
    return round((max(values) - min(values)) / 2 / med * 100, 2) if med else float("inf")


def calibrate(base: Path, data: Path, steps: int, round_s: float) -> int:
    """Steps that make one round train for about ``round_s`` seconds (one bare warm-up run of ``steps`` measures speed)."""
    warm = bare_round(base, data)
    n = max(steps, int(round(warm["steps_per_s"] * round_s, -1)))
    cfg = json.loads((base / "config.json").read_text(encoding="utf-8"))
    cfg["max_steps"] = n
    (base / "config.json").write_text(json.dumps(cfg, indent=2) + "\n", encoding="utf-8")
    from healthkit.trainer.scaffold import config_doc

    (base / "README.md").write_text(config_doc(cfg), encoding="utf-8")  # the docs state it too: no drift refusal
    return n


def summary(rows: list[tuple[dict, dict]]) -> dict:
    wall = [o["steps_per_s"] / b["steps_per_s"] for b, o in rows]
    cpu = [(o["steps"] / o["cpu_s"]) / (b["steps"] / b["cpu_s"]) for b, o in rows]
    rss = [o["peak_rss_bytes"] for _, o in rows if o.get("peak_rss_bytes")]
    return {
        "ratio_wall_median": round(statistics.median(wall), 4),
        "ratio_cpu_median": round(statistics.median(cpu), 4),
        "ratios_wall": [round(x, 3) for x in wall],
        "ratio_spread_pct": spread_pct(wall),
        "ratio_cpu_spread_pct": spread_pct(cpu),
        "resolves_3pct": spread_pct(wall) <= 3.0,
        "bare_round_s_median": round(statistics.median(b["steps"] / b["steps_per_s"] for b, _ in rows), 1),
        "bare_steps_per_s_median": round(statistics.median(b["steps_per_s"] for b, _ in rows), 2),
        "daemon_steps_per_s_median": round(statistics.median(o["steps_per_s"] for _, o in rows), 2),
        "child_peak_rss_mib_median": round(statistics.median(rss) / 2**20, 1) if rss else None,
        "bare_peak_rss_mib_median": round(statistics.median(b["peak_rss_bytes"] for b, _ in rows) / 2**20, 1),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument(
        "--steps", type=int, default=200, help="steps of the calibration run (and the least a round trains)"
    )
    ap.add_argument(
        "--round-seconds",
        type=float,
        default=20.0,
        help="train each round about this long (0: exactly --steps): short rounds cannot resolve 3%%",
    )
    ap.add_argument("--modes", default="full,lora", help="comma-separated: full, lora")
    ap.add_argument("--n-embd", type=int, default=64, help="model width (wider: memory, not hooks, dominates)")
    ap.add_argument("--n-layer", type=int, default=2)
    ap.add_argument("--workdir", type=Path, default=None)
    ap.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch/OpenMP threads on both sides (1: spinning thread pools on a shared machine are pure noise)",
    )
    ap.add_argument(
        "--concurrent",
        action="store_true",
        help="run the two sides of a round at the same time (a busy machine's load then hits both alike)",
    )
    ap.add_argument("--bare-once", nargs=2, type=Path, metavar=("WS", "DATA"), help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.bare_once:
        print(json.dumps(bare_once(*a.bare_once)))
        return 0
    if a.threads:
        for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
            os.environ[k] = str(a.threads)  # inherited by the bare subprocess and the daemon's child alike
    from healthkit.trainer.tiny import sample_texts, write_jsonl

    modes = [m.strip() for m in a.modes.split(",") if m.strip()]
    work = a.workdir or Path(tempfile.mkdtemp(prefix="healthkit-bench-"))
    spaces = setup(work, modes, a.steps, a.n_embd, a.n_layer)
    data = write_jsonl(work / "data.jsonl", sample_texts(800, seed=7, words=24))
    rows: dict[str, list[tuple[dict, dict]]] = {m: [] for m in modes}
    steps = {m: calibrate(spaces[m], data, a.steps, a.round_seconds) if a.round_seconds > 0 else a.steps for m in modes}
    print(f"steps per round: {steps} (about {a.round_seconds:g} s of training each)", file=sys.stderr, flush=True)
    for i in range(a.rounds):  # interleaved, pairwise: slow drift of a shared machine hits both sides of a round
        for mode in modes:
            if a.concurrent:  # both sides at once: a change in the machine's load hits both alike
                from concurrent.futures import ThreadPoolExecutor

                with ThreadPoolExecutor(2) as ex:
                    fb, fo = ex.submit(bare_round, spaces[mode], data), ex.submit(daemon_round, spaces[mode], data, i)
                    b, o = fb.result(), fo.result()
            elif i % 2:  # alternate which side runs first, so a drift in load favours neither
                o = daemon_round(spaces[mode], data, i)
                b = bare_round(spaces[mode], data)
            else:
                b = bare_round(spaces[mode], data)
                o = daemon_round(spaces[mode], data, i)
            rows[mode].append((b, o))
            print(
                f"round {i + 1} {mode}: bare {b['steps_per_s']:.2f} steps/s ({b['cpu_s']:.1f} CPU s), daemon+callbacks "
                f"{o['steps_per_s']:.2f} steps/s ({o['cpu_s']:.1f} CPU s): ratio {o['steps_per_s'] / b['steps_per_s']:.3f}; "
                f"child peak RSS {(o.get('peak_rss_bytes') or 0) / 2**20:.0f} MiB",
                file=sys.stderr,
                flush=True,
            )
    result = {
        "steps": steps,
        "rounds": a.rounds,
        "n_embd": a.n_embd,
        "n_layer": a.n_layer,
        "target": 0.97,
        "load_avg": os.getloadavg(),
    }
    for mode in modes:
        costs = json.loads((spaces[mode] / "monitoring_costs.json").read_text()).get("training", {})
        result[mode] = {**summary(rows[mode]), "hook_share": costs.get("hook_share")}
        r = result[mode]
        print(
            f"{mode}: ratio median {r['ratio_wall_median']} (per round {r['ratios_wall']}), spread ±{r['ratio_spread_pct']}% "
            f"{'within' if r['resolves_3pct'] else 'NOT within'} the ±3% a 0.97 target needs; CPU-time ratio median "
            f"{r['ratio_cpu_median']} (spread ±{r['ratio_cpu_spread_pct']}%)",
            file=sys.stderr,
            flush=True,
        )
    print(json.dumps(result, indent=2))
    if not a.workdir:
        shutil.rmtree(work, ignore_errors=True)
    return 0 if all(result[m]["ratio_wall_median"] >= 0.97 for m in modes) else 1


if __name__ == "__main__":
    sys.exit(main())
