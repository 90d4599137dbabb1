"""Audit speed against baselines run in the same command (the machine is shared and noisy: ratios, not seconds).

1. A workspace of >= 100,000 files (checkpoint folders): the whole `healthkit audit` process
   against `du -s` on the same tree. Target: ratio <= 1.5.
2. The example machine of the hand-written report: the whole `healthkit audit` process against
   `python -c "import pydantic, psutil"`. Target: ratio <= 2.0.

Runs are interleaved (baseline, audit, baseline, audit, ...) and the median of each is used.
Usage: python bench/bench_audit.py [--files 100000] [--repeat 7]
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

# What the `healthkit` console script runs.
HEALTHKIT = [sys.executable, "-m", "healthkit.launch", "audit"]


def build_big(base: Path, files: int, per_checkpoint: int = 2000) -> None:
    base.mkdir(parents=True)
    (base / "config.json").write_text(json.dumps({"base_model": "m", "save_total_limit": 3, "save_steps": 10, "monitor_port": None}))
    ck = base / "current_model"
    n_ckpt = -(-files // per_checkpoint)
    for i in range(1, n_ckpt + 1):
        d = ck / f"checkpoint-{i * 10}"
        shards = d / "shards"
        shards.mkdir(parents=True)
        (d / "trainer_state.json").write_text(json.dumps({"global_step": i * 10, "log_history": []}))
        (d / "model.safetensors").write_bytes(b"w" * 4096)
        for j in range(per_checkpoint - 2):
            (shards / f"part-{j:05d}.bin").write_bytes(b"x" * (j % 7) * 100)


def timed(argv: list[str]) -> float:
    t0 = time.perf_counter()
    subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
    return time.perf_counter() - t0


def compare(name: str, baseline: list[str], audit: list[str], repeat: int, target: float) -> dict:
    timed(baseline), timed(audit)  # warm the page cache and the interpreter's files
    b, a = [], []
    for _ in range(repeat):
        b.append(timed(baseline))
        a.append(timed(audit))
    mb, ma = statistics.median(b), statistics.median(a)
    ratio = ma / mb
    verdict = "PASS" if ratio <= target else "FAIL"
    print(f"{name}: baseline median {mb * 1000:.0f} ms, healthkit audit median {ma * 1000:.0f} ms, "
          f"ratio {ratio:.2f} (target <= {target}) {verdict}")
    return {"name": name, "baseline_s": mb, "audit_s": ma, "ratio": ratio, "target": target, "pass": ratio <= target}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--files", type=int, default=100_000)
    ap.add_argument("--repeat", type=int, default=7)
    args = ap.parse_args()
    # Cron runs from an installed package with byte-code on disk; an editable checkout under
    # PYTHONDONTWRITEBYTECODE would compile every module on every run and measure the compiler.
    import healthkit, checks

    for pkg in (healthkit, checks):
        subprocess.run([sys.executable, "-m", "compileall", "-q", str(Path(pkg.__file__).parent)], check=False, stdout=subprocess.DEVNULL)
    tmp = Path(tempfile.mkdtemp(prefix="hk-bench-"))
    results = []
    try:
        big = tmp / "big"
        t0 = time.perf_counter()
        build_big(big, args.files)
        count = sum(len(f) + len(d) for _, d, f in os.walk(big))
        print(f"built {count} files and folders in {time.perf_counter() - t0:.1f}s")
        results.append(compare("100k-file workspace vs du -s", ["du", "-s", str(big)], [*HEALTHKIT, str(big), "-f", "json"], args.repeat, 1.5))

        from healthkit.demo import build_example

        ex = build_example(tmp / "example")
        try:
            results.append(compare("example machine vs python -c 'import pydantic, psutil'",
                                   [sys.executable, "-c", "import pydantic, psutil"], [*HEALTHKIT, str(ex.base)], args.repeat, 2.0))
        finally:
            ex.cleanup()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0 if all(r["pass"] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
