"""Steps per second of the tiny model: our daemon + callbacks against a bare `Trainer.train()`, same data, same run.

    python bench/bench_trainer.py [--rounds 3] [--steps 200]

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

    from trainer.data import TokenizedDataset, read_texts, split
    from trainer.layout import Layout
    from trainer.preflight import load_config
    from trainer.train_file import training_arguments

    lay = Layout.of(base)
    cfg = load_config(lay)
    texts, val = split(read_texts(data), cfg.validation_split, cfg.seed)
    tok = AutoTokenizer.from_pretrained(lay.resolve(cfg.base_model))
    model = AutoModelForCausalLM.from_pretrained(lay.resolve(cfg.base_model))
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
    return {"steps_per_s": float(out.metrics["train_steps_per_second"]), "steps": trainer.state.global_step, "cpu_s": cpu}


def bare_round(base: Path, data: Path) -> dict:
    """A bare Trainer.train() in a fresh process, like the daemon's child (same imports, same warm-up)."""
    out = subprocess.run([sys.executable, __file__, "--bare-once", str(base), str(data)], capture_output=True, text=True,
                         timeout=900, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def daemon_round(base: Path, data: Path, n: int) -> dict:
    from trainer import queue as q
    from trainer.daemon import start_daemon, stop_daemon
    from trainer.layout import Layout

    lay = Layout.of(base)
    name = f"bench{n}.jsonl"
    shutil.copyfile(data, base / name)
    q.add(lay, base / name)
    start_daemon(base)
    try:
        deadline = time.monotonic() + 900
        while not (lay.done / name).exists():
            if (lay.failed / name).exists() or time.monotonic() > deadline:
                raise RuntimeError(f"{name} did not train: see {lay.logs}")
            time.sleep(0.2)
        res = json.loads(lay.last_result.read_text())
    finally:
        stop_daemon(base, 60)
    return {"steps_per_s": float(res["train_steps_per_second"]), "steps": res["step"], "cpu_s": float(res["train_cpu_s"])}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--steps", type=int, default=200)
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
    from trainer.init import init_workspace
    from trainer.tiny import build_tiny_model, sample_texts, write_jsonl

    work = a.workdir or Path(tempfile.mkdtemp(prefix="healthkit-bench-"))
    base = work / "ws"
    init_workspace(base, max_steps=a.steps, **BENCH_CONFIG)
    build_tiny_model(base / "models" / "base", vocab_size=512, n_layer=2, n_embd=64, n_head=4, n_positions=64)
    data = write_jsonl(work / "data.jsonl", sample_texts(800, seed=7, words=24))
    wall, cpu = [], []
    for i in range(a.rounds):  # alternate, pairwise: slow drift of a shared machine hits both sides of a round
        b = bare_round(base, data)
        o = daemon_round(base, data, i)
        wall.append(o["steps_per_s"] / b["steps_per_s"])
        cpu.append((o["steps"] / o["cpu_s"]) / (b["steps"] / b["cpu_s"]))
        print(f"round {i + 1}: bare {b['steps_per_s']:.2f} steps/s ({b['cpu_s']:.1f} CPU s), daemon+callbacks "
              f"{o['steps_per_s']:.2f} steps/s ({o['cpu_s']:.1f} CPU s): ratio {wall[-1]:.3f} wall, {cpu[-1]:.3f} CPU",
              file=sys.stderr, flush=True)
    costs = json.loads((base / "monitoring_costs.json").read_text()).get("training", {})
    result = {"steps": a.steps, "rounds": a.rounds, "ratio_wall_median": round(statistics.median(wall), 4),
              "ratio_cpu_median": round(statistics.median(cpu), 4), "target": 0.97, "hook_share": costs.get("hook_share"),
              "load_avg": os.getloadavg()}
    print(json.dumps(result, indent=2))
    if not a.workdir:
        shutil.rmtree(work, ignore_errors=True)
    return 0 if result["ratio_wall_median"] >= 0.97 else 1


if __name__ == "__main__":
    sys.exit(main())
