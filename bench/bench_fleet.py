"""The cost of one scheduled run over 1, 4 and 16 workspaces, against a single audit, in one command.

Each workspace is a small but complete training setup (config, status file, a queue, three
checkpoints with their trainer_state.json). Measured, interleaved round by round on the same
machine (it is shared and noisy: ratios, not seconds):

- ``single``: one `healthkit audit WS --format prom --output FILE` process (the baseline);
- ``single+h``: one `healthkit audit WS --output DIR/` process: the history a job writes (Markdown,
  JSON, HTML, the loss chart: matplotlib's import and drawing are most of it);
- ``job N``: the command of the crontab line `healthkit schedule` prints for N workspaces, run by
  `sh -c` as cron would (N = 1 is today's single-workspace job: history, then textfile; N > 1 is one
  `healthkit audit WS1 .. WSN --output DIR/ --textfile FILE` process);
- ``16 jobs``: sixteen single-workspace jobs, what the fleet cost before one job could hold them;
- ``heal 16``: the healing job `healthkit schedule WS1 .. WS16 --heal --output DIR` prints (one
  `healthkit fix WS1 .. WS16 --safe --scheduled` process: each workspace's fix under its lock, its
  flap and notification state, its history, then the fleet page and one textfile), on healthy
  workspaces (nothing to apply: one audit each);
- ``job 16 new``: the job over 16 workspaces into an empty reports folder, so every loss chart is
  drawn (matplotlib); the other runs find last run's charts and reuse them, as cron does between
  two checkpoints.

Target: one job over 16 workspaces costs at most 0.4 of sixteen single-workspace jobs (no Python
start-up, no import of the report writers, no second audit per workspace). Also printed: what each
workspace adds to a job ((job 16 - job 4) / 12), against a single audit.
Usage: python bench/bench_fleet.py [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

HEALTHKIT = [sys.executable, "-m", "healthkit.console"]


def build(base: Path, step: int) -> Path:
    (base / "queue" / "inbox").mkdir(parents=True)
    (base / "status").mkdir()
    (base / "config.json").write_text(
        json.dumps({"base_model": "m", "save_total_limit": 3, "save_steps": 100, "eval_steps": 100})
    )
    (base / "healthkit.toml").write_text('[processes]\ndaemon = ["training_daemon.py"]\n')
    now = datetime.now(UTC).isoformat()
    (base / "status" / "training_status.json").write_text(
        json.dumps(
            {"state": "idle", "step": step, "total_steps": 1000, "loss": 1.0, "val_loss": 1.1, "updated_at": now}
        )
    )
    for s in (step - 200, step - 100, step):
        ck = base / "current_model" / f"checkpoint-{s}"
        ck.mkdir(parents=True)
        history = [{"step": i, "loss": 2.0 - i / 1000} for i in range(10, s + 1, 10)]
        history += [{"step": i, "eval_loss": 2.1 - i / 1000} for i in range(100, s + 1, 100)]
        (ck / "trainer_state.json").write_text(json.dumps({"global_step": s, "log_history": history}))
        (ck / "model.safetensors").write_bytes(b"w" * 4096)
        for name in ("optimizer.pt", "scheduler.pt", "rng_state.pth", "training_args.bin", "config.json"):
            (ck / name).write_bytes(b"{}")
    return base


def scheduled_command(paths: list[Path], root: Path, tag: str, heal: bool = False) -> str:
    """The shell command of the crontab line `healthkit schedule` prints for these workspaces."""
    extra = ["--output", str(root / f"reports-{tag}")] if len(paths) > 1 else []
    extra += ["--heal"] if heal else []
    out = subprocess.run(
        [*HEALTHKIT, "schedule", *map(str, paths), "--every", "15m", "--textfile-dir", str(root / f"tf-{tag}"), *extra],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    line = next(ln for ln in out.splitlines() if ln.startswith("*/15 * * * * "))
    return line[len("*/15 * * * * ") :].removesuffix(" >/dev/null 2>&1").replace("\\%", "%")


def timed(argv: list[str]) -> float:
    t0 = time.perf_counter()
    subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="hk-bench-fleet-") as tmp:
        root = Path(tmp)
        (root / "tf-single").mkdir()
        ws = [build(root / f"ws{i:02d}", 300 + 10 * i) for i in range(16)]
        runs: dict[str, list[str]] = {
            "single": [
                *HEALTHKIT,
                "audit",
                str(ws[0]),
                "--format",
                "prom",
                "--output",
                str(root / "tf-single" / "single.prom"),
            ],
            "single+h": [*HEALTHKIT, "audit", str(ws[0]), "--output", str(root / "single-history") + "/"],
        }
        for n in (1, 4, 16):
            (root / f"tf-{n}").mkdir()
            runs[f"job {n}"] = ["sh", "-c", scheduled_command(ws[:n], root, str(n))]
        (root / "tf-heal16").mkdir()
        runs["heal 16"] = ["sh", "-c", scheduled_command(ws, root, "heal16", heal=True)]
        singles = []
        for i, w in enumerate(ws):
            (root / f"tf-s{i}").mkdir()
            singles.append(["sh", "-c", scheduled_command([w], root, f"s{i}")])
        fresh = root / "reports-16"
        times: dict[str, list[float]] = {k: [] for k in [*runs, "16 jobs", "job 16 new"]}
        for argv in runs.values():  # warm the page cache and .pyc files once
            timed(argv)
        for _ in range(args.repeat):
            for name, argv in runs.items():
                times[name].append(timed(argv))
            times["16 jobs"].append(sum(timed(argv) for argv in singles))
            shutil.rmtree(fresh)
            times["job 16 new"].append(timed(runs["job 16"]))
        base = times["single"]
        print(f"{'run':<10} {'median s':>9} {'x single':>9} {'spread (min-max of per-round ratios)':>38}")
        for name, ts in times.items():
            ratios = [t / b for t, b in zip(ts, base)]
            print(
                f"{name:<10} {statistics.median(ts):>9.3f} {statistics.median(ratios):>9.2f} "
                f"{min(ratios):>18.2f} - {max(ratios):.2f}"
            )
        med = {k: statistics.median(v) for k, v in times.items()}
        share = statistics.median(a / b for a, b in zip(times["job 16"], times["16 jobs"]))
        extra = (med["job 16"] - med["job 4"]) / 12
        print(
            f"heal 16 / job 16: {statistics.median(a / b for a, b in zip(times['heal 16'], times['job 16'])):.2f}; "
            f"heal 16 / 16 jobs: {statistics.median(a / b for a, b in zip(times['heal 16'], times['16 jobs'])):.2f}"
        )
        print(f"each workspace adds {extra:.3f} s to a job ({extra / med['single']:.2f} x a single audit)")
        verdict = "PASS" if share <= 0.4 else "FAIL"
        print(f"job 16 / 16 jobs: {share:.2f} (target <= 0.4): {verdict}")
        if verdict == "FAIL":
            sys.exit(1)


if __name__ == "__main__":
    main()
