"""Steps per second of the tiny model: our daemon + callbacks against a bare `Trainer.train()`, same data, same run.

    python bench/bench_trainer.py [--rounds 3] [--steps 200]

Both sides use the same TrainingArguments (logging, evaluation and checkpointing
included), the same tokenized data and the same model; the daemon side is the full
path (daemon process, child process, status/control/GPU/costs hooks, final save and
queue moves outside the timed loop). Each side's speed is HF's own
`train_steps_per_second` of its `train()` call; rounds alternate and the medians
are compared. Target: ratio >= 0.97.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
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


def bare_round(base: Path, data: Path, steps: int) -> float:
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
    out = trainer.train()
    shutil.rmtree(scratch, ignore_errors=True)
    return float(out.metrics["train_steps_per_second"])


def daemon_round(base: Path, data: Path, n: int) -> float:
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
    return float(res["train_steps_per_second"])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--workdir", type=Path, default=None)
    a = ap.parse_args()
    from trainer.init import init_workspace
    from trainer.tiny import build_tiny_model, sample_texts, write_jsonl

    work = a.workdir or Path(tempfile.mkdtemp(prefix="healthkit-bench-"))
    base = work / "ws"
    init_workspace(base, max_steps=a.steps, **BENCH_CONFIG)
    build_tiny_model(base / "models" / "base", vocab_size=512, n_layer=2, n_embd=64, n_head=4, n_positions=64)
    data = write_jsonl(work / "data.jsonl", sample_texts(800, seed=7, words=24))
    bare, ours = [], []
    for i in range(a.rounds):
        bare.append(bare_round(base, data, a.steps))
        ours.append(daemon_round(base, data, i))
        print(f"round {i + 1}: bare {bare[-1]:.2f} steps/s, daemon+callbacks {ours[-1]:.2f} steps/s", flush=True)
    b, o = statistics.median(bare), statistics.median(ours)
    costs = json.loads((base / "monitoring_costs.json").read_text()).get("training", {})
    print(json.dumps({"steps": a.steps, "rounds": a.rounds, "bare_steps_per_s": round(b, 3), "daemon_steps_per_s": round(o, 3),
                      "ratio": round(o / b, 4), "target": 0.97, "hook_share": costs.get("hook_share")}, indent=2))
    if not a.workdir:
        shutil.rmtree(work, ignore_errors=True)
    return 0 if o / b >= 0.97 else 1


if __name__ == "__main__":
    sys.exit(main())
