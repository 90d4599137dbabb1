"""Worst days, measured: each hostile case and the healthy costs, this checkout against a baseline checkout, interleaved.

The baseline is another checkout with its own interpreter (``--baseline-python``, e.g. a venv of
`git worktree add /tmp/base30 7325035`). Each run is a whole `healthkit` process; its wall time and peak
memory (ru_maxrss of the process and the children it waited for, from wait4) are printed. A case that
hangs is stopped at ``--timeout`` and printed as such.

- cases: the issue's table (FIFOs, deep nesting, a 2 GB sparse trainer_state.json, NaN step, future time,
  symlink loop, non-UTF-8 path for prom), one run each, before and after;
- cost: the fleet job over 16 healthy workspaces (bench/bench_fleet.py's workspaces, `audit WS1..WS16
  --output DIR/ --textfile F`) and the example machine's audit (bench/bench_audit.py's section 2),
  interleaved ``--repeat`` times: medians, ratio new/old, and the spread (min..max of the ratios per round).
Usage: python bench/bench_worstday.py --baseline-python /tmp/base30/.venv/bin/python [--repeat 7] [--only cost]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))


def run(python: str, args: list[str], timeout: float, cwd: Path | None = None) -> tuple[float, float, int | str]:
    """(seconds, peak MiB, exit code or 'timeout') of one `healthkit` process."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        [python, "-m", "healthkit.console", *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        stdin=subprocess.DEVNULL,
        cwd=cwd or "/",
        start_new_session=True,
    )  # not a checkout: each python imports its own
    deadline = t0 + timeout
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            return time.perf_counter() - t0, usage.ru_maxrss / 1024, os.waitstatus_to_exitcode(status)
        if time.perf_counter() > deadline:
            os.killpg(proc.pid, signal.SIGKILL)
            _, _, usage = os.wait4(proc.pid, 0)
            return time.perf_counter() - t0, usage.ru_maxrss / 1024, "timeout"
        time.sleep(0.005)


def cases(root: Path) -> dict[str, Path]:
    from tests.conftest import make_healthy_workspace

    def ws(name: str) -> Path:
        return make_healthy_workspace(root / name)

    out = {}
    for rel, name in (
        ("config.json", "FIFO config.json"),
        ("status/training_status.json", "FIFO status file"),
        ("healthkit.toml", "FIFO healthkit.toml"),
        ("CLAUDE.md", "FIFO CLAUDE.md"),
        ("current_model/checkpoint-30/model.safetensors", "FIFO model.safetensors"),
    ):
        b = ws(name.replace(" ", "_"))
        (b / rel).unlink()
        os.mkfifo(b / rel)
        out[name] = b
    deep = "[" * 100_000 + "]" * 100_000
    for rel, name in (
        ("config.json", "deep config.json"),
        ("current_model/checkpoint-30/trainer_state.json", "deep trainer_state.json"),
    ):
        b = ws(name.replace(" ", "_"))
        (b / rel).write_text(deep)
        out[name] = b
    b = ws("huge_state")
    p = b / "current_model" / "checkpoint-30" / "trainer_state.json"
    head = p.read_bytes().rstrip()[:-1]
    with open(p, "wb") as fh:
        fh.write(head)
        fh.seek(2 * 1024**3)
        fh.write(b"\n}\n")
    out["2 GB sparse trainer_state.json"] = b
    b = ws("nan_step")
    sp = b / "status" / "training_status.json"
    st = json.loads(sp.read_text())
    st["step"] = float("nan")
    sp.write_text(json.dumps(st))
    out["NaN step"] = b
    b = ws("future")
    sp = b / "status" / "training_status.json"
    st = json.loads(sp.read_text())
    st["updated_at"] = 1e20
    sp.write_text(json.dumps(st))
    old = time.time() - 3 * 3600
    os.utime(sp, (old, old))
    out["timestamp 1e20, file 3 h old"] = b
    b = ws("loop")
    shutil.rmtree(b / "current_model")
    os.symlink("current_model", b / "current_model")
    out["checkpoint folder a symlink loop"] = b
    b = make_healthy_workspace(Path(os.fsdecode(os.fsencode(root) + b"/latin1-\xe9")))
    out["non-UTF-8 path, --format prom"] = b
    return out


def table(new: str, old: str, timeout: float) -> None:
    root = Path(tempfile.mkdtemp(prefix="hk-worst-"))
    try:
        print("| case | before: exit, time, peak | after: exit, time, peak |\n|---|---|---|")
        for name, base in cases(root).items():
            args = ["audit", str(base), "--format", "prom" if "prom" in name else "json"]
            cells = []
            for py in (old, new):
                s, mib, code = run(py, args, timeout)
                cells.append(f"{code}, {s:.2f} s, {mib:.0f} MiB")
            print(f"| {name} | {cells[0]} | {cells[1]} |", flush=True)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def cost(new: str, old: str, repeat: int) -> None:
    from bench_fleet import build

    from healthkit.demo import build_example

    root = Path(tempfile.mkdtemp(prefix="hk-cost-"))
    ex = build_example(root / "example")
    try:
        fleet = [build(root / f"ws{i:02d}", 1000 + 100 * i) for i in range(16)]
        jobs = {
            "fleet 16": lambda tag: [
                "audit",
                *map(str, fleet),
                "--output",
                str(root / f"out-{tag}") + "/",
                "--textfile",
                str(root / f"tf-{tag}" / "healthkit.prom"),
            ],
            "example audit": lambda tag: ["audit", str(ex.base)],
        }
        for name, argv in jobs.items():
            for py, tag in ((old, "old"), (new, "new")):
                run(py, argv(tag), 300)  # warm: page cache, .pyc, the loss charts of the history
            times: dict[str, list[float]] = {"old": [], "new": []}
            mem: dict[str, list[float]] = {"old": [], "new": []}
            for _ in range(repeat):
                for py, tag in ((old, "old"), (new, "new")):
                    s, mib, _code = run(py, argv(tag), 300)
                    times[tag].append(s)
                    mem[tag].append(mib)
            ratios = [n / o for n, o in zip(times["new"], times["old"])]
            mo, mn = statistics.median(times["old"]), statistics.median(times["new"])
            print(
                f"{name}: old {mo * 1000:.0f} ms, new {mn * 1000:.0f} ms, ratio {mn / mo:.3f} "
                f"(per round {min(ratios):.2f}..{max(ratios):.2f}); peak old {statistics.median(mem['old']):.0f} MiB, "
                f"new {statistics.median(mem['new']):.0f} MiB",
                flush=True,
            )
    finally:
        ex.cleanup()
        shutil.rmtree(root, ignore_errors=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--baseline-python", required=True)
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--timeout", type=float, default=20)
    ap.add_argument("--only", choices=("cases", "cost"), action="append")
    args = ap.parse_args()
    only = set(args.only or ("cases", "cost"))
    # Cron runs with byte-code on disk: compile both checkouts first (under PYTHONDONTWRITEBYTECODE an edited module
    # would otherwise be compiled on every run and the benchmark would measure the compiler).
    for py in (sys.executable, args.baseline_python):
        subprocess.run(
            [
                py,
                "-c",
                "import compileall, os, healthkit, healthkit.checks; "
                "[compileall.compile_dir(os.path.dirname(m.__file__), quiet=1) for m in (healthkit, healthkit.checks)]",
            ],
            cwd="/",
            check=False,
            stdout=subprocess.DEVNULL,
        )
    if "cases" in only:
        table(sys.executable, args.baseline_python, args.timeout)
    if "cost" in only:
        cost(sys.executable, args.baseline_python, args.repeat)
    return 0


if __name__ == "__main__":
    sys.exit(main())
