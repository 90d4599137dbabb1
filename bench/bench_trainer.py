"""Steps per second of the tiny model: our daemon + callbacks against a bare `Trainer.train()`, same data, same run.

    python bench/bench_trainer.py [--rounds 3] [--steps 200] [--modes full,lora]

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
"""

from __future__ import annotations

import argparse
import json
import shutil
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

BENCH_CONFIG = {
    "base_model": "models/base", "max_seq_length": 64, "eval_steps": 100, "save_steps": 100, "save_total_limit": 2,
    "logging_steps": 10, "per_device_train_batch_size": 8, "per_device_eval_batch_size": 16, "learning_rate": 1e-3,
    "validation_split": 0.1, "monitor_port": 0, "continue_from_previous": False,
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
    trainer = Trainer(model=model, args=args, train_dataset=TokenizedDataset(tok, texts, cfg.max_seq_length),
                      eval_dataset=TokenizedDataset(tok, val, cfg.max_seq_length),
                      data_collator=DataCollatorForLanguageModeling(tok, mlm=False), processing_class=tok)
    cpu0 = time.process_time()
    out = trainer.train()
    cpu = time.process_time() - cpu0
    shutil.rmtree(scratch, ignore_errors=True)
    import resource

    return {"steps_per_s": float(out.metrics["train_steps_per_second"]), "steps": trainer.state.global_step, "cpu_s": cpu,
            "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}


def bare_round(base: Path, data: Path) -> dict:
    """A bare Trainer.train() in a fresh process, like the daemon's child (same imports, same warm-up)."""
    out = subprocess.run([sys.executable, __file__, "--bare-once", str(base), str(data)], capture_output=True, text=True,
                         timeout=900, check=True)
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
    return {"steps_per_s": float(res["train_steps_per_second"]), "steps": res["step"], "cpu_s": float(res["train_cpu_s"]),
            "peak_rss_bytes": res.get("peak_rss_bytes")}


LORA = {"r": 8, "alpha": 16, "dropout": 0.05, "target_modules": "all-linear"}


def setup(work: Path, modes: list[str], steps: int, n_embd: int, n_layer: int) -> dict[str, Path]:
    """One workspace per mode, sharing one tiny model (copied) and one data file."""
    from healthkit.trainer.init import init_workspace
    from healthkit.trainer.tiny import build_tiny_model

    model = build_tiny_model(work / "model", vocab_size=512, n_layer=n_layer, n_embd=n_embd, n_head=4, n_positions=64)
    out = {}
    for mode in modes:
        base = work / f"ws-{mode}"
        init_workspace(base, max_steps=steps, **BENCH_CONFIG, **({"lora": LORA} if mode == "lora" else {}))
        shutil.copytree(model, base / "models" / "base")
        out[mode] = base
    return out


def summary(rows: list[tuple[dict, dict]]) -> dict:
    wall = [o["steps_per_s"] / b["steps_per_s"] for b, o in rows]
    cpu = [(o["steps"] / o["cpu_s"]) / (b["steps"] / b["cpu_s"]) for b, o in rows]
    rss = [o["peak_rss_bytes"] for _, o in rows if o.get("peak_rss_bytes")]
    return {"ratio_wall_median": round(statistics.median(wall), 4), "ratio_cpu_median": round(statistics.median(cpu), 4),
            "ratios_wall": [round(x, 3) for x in wall],
            "bare_steps_per_s_median": round(statistics.median(b["steps_per_s"] for b, _ in rows), 2),
            "daemon_steps_per_s_median": round(statistics.median(o["steps_per_s"] for _, o in rows), 2),
            "child_peak_rss_mib_median": round(statistics.median(rss) / 2**20, 1) if rss else None,
            "bare_peak_rss_mib_median": round(statistics.median(b["peak_rss_bytes"] for b, _ in rows) / 2**20, 1)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--modes", default="full,lora", help="comma-separated: full, lora")
    ap.add_argument("--n-embd", type=int, default=64, help="model width (wider: memory, not hooks, dominates)")
    ap.add_argument("--n-layer", type=int, default=2)
    ap.add_argument("--workdir", type=Path, default=None)
    ap.add_argument("--threads", type=int, default=1,
                    help="torch/OpenMP threads on both sides (1: spinning thread pools on a shared machine are pure noise)")
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
    for i in range(a.rounds):  # interleaved, pairwise: slow drift of a shared machine hits both sides of a round
        for mode in modes:
            b = bare_round(spaces[mode], data)
            o = daemon_round(spaces[mode], data, i)
            rows[mode].append((b, o))
            print(f"round {i + 1} {mode}: bare {b['steps_per_s']:.2f} steps/s ({b['cpu_s']:.1f} CPU s), daemon+callbacks "
                  f"{o['steps_per_s']:.2f} steps/s ({o['cpu_s']:.1f} CPU s): ratio {o['steps_per_s'] / b['steps_per_s']:.3f}; "
                  f"child peak RSS {(o.get('peak_rss_bytes') or 0) / 2**20:.0f} MiB", file=sys.stderr, flush=True)
    result = {"steps": a.steps, "rounds": a.rounds, "n_embd": a.n_embd, "n_layer": a.n_layer, "target": 0.97, "load_avg": os.getloadavg()}
    for mode in modes:
        costs = json.loads((spaces[mode] / "monitoring_costs.json").read_text()).get("training", {})
        result[mode] = {**summary(rows[mode]), "hook_share": costs.get("hook_share")}
    print(json.dumps(result, indent=2))
    if not a.workdir:
        shutil.rmtree(work, ignore_errors=True)
    return 0 if all(result[m]["ratio_wall_median"] >= 0.97 for m in modes) else 1


if __name__ == "__main__":
    sys.exit(main())
