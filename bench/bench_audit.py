"""Audit speed against baselines run in the same command (the machine is shared and noisy: ratios, not seconds).

1. A workspace of >= 100,000 files (checkpoint folders): the whole `healthkit audit` process
   against `du -s` on the same tree. Target: ratio <= 1.5.
2. The example machine of the hand-written report: the whole `healthkit audit` process against
   `python -c "import pydantic, psutil"`. Target: ratio <= 1.5 (the everyday `audit PATH` imports no typer).

3. A long run as HF Trainer leaves it without retention: 200 checkpoints of a 100k-step run, each
   trainer_state.json holding the whole log_history up to its step (~1.5 MB at the end). The whole
   `healthkit audit` and `healthkit fix --safe --dry-run` processes against the audit of the example
   machine. Targets: ratio <= 1.5 each.
4. The same with the history doubled (200k steps, ~3 MB at the end): the audit against the audit of
   the 100k-step run. Target: ratio <= 1.10 (the cost must not grow with the length of the run).
5. A healthy workspace on a schedule: the job `healthkit schedule --heal --textfile-dir` prints (heal, notify with
   a URL configured, report history, Prometheus textfile) against today's read-only job (two audits: the history,
   then the textfile), each the exact shell command of its crontab line. Target: ratio <= 1.5.
6. (`--only split`) Where `fix --safe --dry-run` spends its time on the long run: imports, opening
   the workspace, recovery, the audit, planning, printing (in-process medians), and the whole process
   against the same workspace's audit. Target: ratio <= 1.15 (planning re-reads nothing the audit read;
   a dry run overlaps its reads with the imports like an audit does).

7. (`--only lease`) The example machine whose daemon runs on another host (a fresh `.daemon.lease` written by
   `node1`) against the same workspace without the lease: what reading and judging the lease adds to a whole
   `healthkit audit` process. Target: ratio <= 1.10.

8. (`--only slurm`, with SLURM_CONF naming a cluster whose squeue answers) The example machine with
   `[daemon] scheduler = "slurm"` against the same with `"none"`: what asking the scheduler adds to a whole
   `healthkit audit` process. Target: ratio <= 1.2.

Runs are interleaved (baseline, audit, baseline, audit, ...) and the median of each is used.
Usage: python bench/bench_audit.py [--files 100000] [--repeat 7] [--only long] [--old CHECKOUT]
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
from typing import Any

# What the `healthkit` console script runs.
HEALTHKIT = [sys.executable, "-m", "healthkit.console", "audit"]
FIX_DRY_RUN = [sys.executable, "-m", "healthkit.console", "fix", "--safe", "--dry-run"]


def build_big(base: Path, files: int, per_checkpoint: int = 2000) -> None:
    base.mkdir(parents=True)
    (base / "config.json").write_text(
        json.dumps({"base_model": "m", "save_total_limit": 3, "save_steps": 10, "monitor_port": None})
    )
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


def _log_entry(step: int, max_steps: int) -> str:
    """One log_history entry as HF writes it (indent=2, sorted keys, nested two levels deep)."""
    return (
        "    {\n"
        f'      "epoch": {step / max_steps * 3:.6f},\n      "grad_norm": {1.0 + (step % 97) / 100:.6f},\n'
        f'      "learning_rate": {2e-4 * (1 - step / max_steps):.10e},\n      "loss": {2.0 / (1 + step / 5000):.4f},\n'
        f'      "step": {step}\n    }}'
    )


def _state_text(step: int, max_steps: int, entries: list[str]) -> str:
    """A trainer_state.json as HF writes it: sorted keys, so global_step comes before log_history."""
    head = {
        "best_global_step": None,
        "best_metric": None,
        "best_model_checkpoint": None,
        "epoch": step / max_steps * 3,
        "eval_steps": 1000,
        "global_step": step,
        "is_hyper_param_search": False,
        "is_local_process_zero": True,
        "is_world_process_zero": True,
    }
    tail = {
        "logging_steps": 10,
        "max_steps": max_steps,
        "num_input_tokens_seen": 0,
        "num_train_epochs": 3,
        "save_steps": 500,
        "stateful_callbacks": {"TrainerControl": {"args": {"should_save": True}, "attributes": {}}},
        "total_flos": 1.0e18,
        "train_batch_size": 4,
        "trial_name": None,
        "trial_params": None,
    }
    h = json.dumps(head, indent=2, sort_keys=True)[:-2]
    t = json.dumps(tail, indent=2, sort_keys=True)[2:]
    return h + ',\n  "log_history": [\n' + ",\n".join(entries) + "\n  ],\n" + t + "\n"


def build_long_run(base: Path, max_steps: int = 100_000, checkpoints: int = 200) -> int:
    """A long run without retention; returns the bytes of trainer_state.json written (all checkpoints)."""
    base.mkdir(parents=True)
    (base / "config.json").write_text(
        json.dumps(
            {
                "base_model": "m",
                "save_total_limit": None,
                "save_steps": max_steps // checkpoints,
                "eval_steps": 1000,
                "logging_steps": 10,
                "monitor_port": None,
            }
        )
    )
    every = max_steps // checkpoints
    log_every = 10  # the same interval whatever the length: a longer run has a longer history
    entries = [_log_entry(s, max_steps) for s in range(log_every, max_steps + 1, log_every)]
    written = 0
    for i in range(1, checkpoints + 1):
        step = i * every
        d = base / "current_model" / f"checkpoint-{step}"
        d.mkdir(parents=True)
        text = _state_text(step, max_steps, entries[: step // log_every])
        (d / "trainer_state.json").write_text(text)
        written += len(text)
        (d / "adapter_model.safetensors").write_bytes(b"w" * 4096)
        (d / "optimizer.pt").write_bytes(b"o" * 8192)
        for name in ("scheduler.pt", "rng_state.pth", "training_args.bin"):
            (d / name).write_bytes(b"\0" * 1024)
        (d / "adapter_config.json").write_text("{}")
    return written


# Where the commands run: a neutral folder, as cron runs them from a home folder. From the checkout's root,
# `python -m` puts the checkout first on sys.path and every import of the editable install looks there first.
RUN_IN: dict[str, Path | None] = {"cwd": None}
# `--old DIR`: a checkout of older code run the same way (PYTHONPATH=DIR), interleaved with the new.
OLD: dict[str, Path | None] = {"tree": None}


def timed(argv: list[str], env: dict[str, str] | None = None) -> float:
    t0 = time.perf_counter()
    subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False, cwd=RUN_IN["cwd"], env=env)
    return time.perf_counter() - t0


def old_env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(OLD["tree"])}


def with_old(named: dict[str, list[str]], *keys: str) -> dict[str, list[str] | tuple[list[str], dict[str, str]]]:
    """``named`` plus `old-<key>` for each of ``keys`` when --old names a checkout."""
    out: dict[str, list[str] | tuple[list[str], dict[str, str]]] = dict(named)
    if OLD["tree"] is not None:
        out.update({f"old-{k}": (named[k], old_env()) for k in keys})
    return out


def interleaved(named: dict[str, Any], repeat: int) -> dict[str, float]:
    """Median seconds of each command (an argv, or (argv, env)), run round-robin so that the machine's noise falls
    on all alike."""
    cmds = {k: v if isinstance(v, tuple) else (v, None) for k, v in named.items()}
    for argv, env in cmds.values():
        timed(argv, env)  # warm the page cache and the interpreter's files
    runs: dict[str, list[float]] = {k: [] for k in cmds}
    for _ in range(repeat):
        for k, (argv, env) in cmds.items():
            runs[k].append(timed(argv, env))
    ROUNDS.clear()
    ROUNDS.update(runs)
    return {k: statistics.median(v) for k, v in runs.items()}


ROUNDS: dict[str, list[float]] = {}  # the last interleaved() call's seconds per command, round by round


def spread(num: str, den: str) -> tuple[float, float] | None:
    """The quartiles of the per-round ratios num/den of the last interleaved() call: whether the median ratio is
    a difference the noise could not make (None when it had fewer than 4 rounds)."""
    a, b = ROUNDS.get(num, []), ROUNDS.get(den, [])
    ratios = [x / y for x, y in zip(a, b, strict=False)]
    if len(ratios) < 4:
        return None
    q = statistics.quantiles(ratios, n=4)
    return q[0], q[2]


def say_old(name: str, med: dict[str, float], num: str, den: str, target: float) -> None:
    """The old checkout's ratio beside the new one's (information: the new code is what passes or fails)."""
    if f"old-{num}" in med:
        old_den = med.get(f"old-{den}", med[den])
        iqr = spread(f"old-{num}", f"old-{den}" if f"old-{den}" in med else den)
        shown = f", per-round IQR {iqr[0]:.2f}-{iqr[1]:.2f}" if iqr else ""
        print(f"  old code: {name}: ratio {med[f'old-{num}'] / old_den:.2f}{shown} (target <= {target})")
        vs = spread(num, f"old-{num}")
        vs_shown = f", per-round IQR {vs[0]:.2f}-{vs[1]:.2f}" if vs else ""
        print(f"  new / old, {num}: {med[num] / med[f'old-{num}']:.2f}{vs_shown}")


def ratio_result(name: str, num: float, den: float, target: float, iqr: tuple[float, float] | None = None) -> dict:
    ratio = num / den
    verdict = "PASS" if ratio <= target else "FAIL"
    shown = f", per-round IQR {iqr[0]:.2f}-{iqr[1]:.2f}" if iqr else ""
    print(
        f"{name}: {num * 1000:.0f} ms against {den * 1000:.0f} ms, ratio {ratio:.2f}{shown} (target <= {target}) {verdict}"
    )
    return {
        "name": name,
        "baseline_s": den,
        "audit_s": num,
        "ratio": ratio,
        "ratio_iqr": iqr,
        "target": target,
        "pass": ratio <= target,
    }


def compare(name: str, baseline: list[str], audit: list[str], repeat: int, target: float) -> dict:
    med = interleaved(with_old({"baseline": baseline, "audit": audit}, "audit"), repeat)
    result = ratio_result(name, med["audit"], med["baseline"], target, spread("audit", "baseline"))
    say_old(name, med, "audit", "baseline", target)
    return result


def big_workspace(tmp: Path, files: int, repeat: int) -> list[dict]:
    """Section 1: the audit of a workspace of many files against `du -s` on it."""
    big = tmp / "big"
    t0 = time.perf_counter()
    build_big(big, files)
    count = sum(len(f) + len(d) for _, d, f in os.walk(big))
    print(f"built {count} files and folders in {time.perf_counter() - t0:.1f}s")
    return [
        compare(
            "100k-file workspace vs du -s", ["du", "-s", str(big)], [*HEALTHKIT, str(big), "-f", "json"], repeat, 1.5
        )
    ]


def example_machine(tmp: Path, repeat: int) -> list[dict]:
    """Section 2: the audit of the example machine against importing its two dependencies."""
    from healthkit.demo import build_example

    ex = build_example(tmp / "example")
    try:
        return [
            compare(
                "example machine vs python -c 'import pydantic, psutil'",
                [sys.executable, "-c", "import pydantic, psutil"],
                [*HEALTHKIT, str(ex.base)],
                repeat,
                1.5,
            )
        ]
    finally:
        ex.cleanup()


def long_run(tmp: Path, repeat: int) -> list[dict]:
    """Sections 3 and 4: a long run against the example machine, and the growth when its history doubles."""
    from healthkit.demo import build_example

    t0 = time.perf_counter()
    written = {steps: build_long_run(tmp / f"long-{steps}", steps) for steps in (100_000, 200_000)}
    print(
        f"built long runs in {time.perf_counter() - t0:.1f}s: trainer_state.json "
        + ", ".join(f"{steps // 1000}k steps {b / 1e6:.0f} MB in all" for steps, b in written.items())
    )
    ex = build_example(tmp / "example-long")
    try:
        named = {
            "example": [*HEALTHKIT, str(ex.base)],
            "long": [*HEALTHKIT, str(tmp / "long-100000")],
            "long-fix": [*FIX_DRY_RUN, str(tmp / "long-100000")],
            "long-2x": [*HEALTHKIT, str(tmp / "long-200000")],
        }
        med = interleaved(with_old(named, *named), repeat)
    finally:
        ex.cleanup()
    rows = [
        ("long run (200 checkpoints, 100k steps) audit vs example machine audit", "long", "example", 1.5),
        ("long run fix --safe --dry-run vs example machine audit", "long-fix", "example", 1.5),
        ("long run with the history doubled (200k steps) vs 100k steps, audit", "long-2x", "long", 1.10),
    ]
    results = []
    for name, num, den, target in rows:
        results.append(ratio_result(name, med[num], med[den], target, spread(num, den)))
        say_old(name, med, num, den, target)
    return results


def _cron_shell(base: Path, reports: Path, textfiles: Path, heal: bool) -> list[str]:
    """The exact command of the crontab line `healthkit schedule` prints, run by `sh -c` as cron runs it."""
    from healthkit.scheduled.schedule import build

    line = build(base, every="15m", reports=reports, textfile_dir=textfiles, heal=heal).crontab.splitlines()[-1]
    return ["sh", "-c", line.split(" ", 5)[5].rsplit(" >/dev/null 2>&1", 1)[0]]


def scheduled_job(tmp: Path, repeat: int) -> list[dict]:
    """Section 5: the healing job on a healthy workspace against today's two-audit job."""
    import http.server
    import threading

    from healthkit.trainer.scaffold import init_workspace

    base = tmp / "scheduled"
    init_workspace(base)
    (base / "models" / "base").mkdir(parents=True)
    (base / "models" / "base" / "config.json").write_text("{}")  # a local base model: nothing to report
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), http.server.BaseHTTPRequestHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    os.environ["HEALTHKIT_NOTIFY_URLS"] = f"json://127.0.0.1:{server.server_address[1]}/hook/bench-token"
    try:
        med = interleaved(
            {
                "two-audit": _cron_shell(base, tmp / "reports-ro", tmp / "tf-ro", heal=False),
                "heal": _cron_shell(base, tmp / "reports-heal", tmp / "tf-heal", heal=True),
            },
            repeat,
        )
    finally:
        del os.environ["HEALTHKIT_NOTIFY_URLS"]
        server.shutdown()
    return [
        ratio_result(
            "healthy workspace: scheduled --heal job (notify configured) vs today's two-audit job",
            med["heal"],
            med["two-audit"],
            1.5,
        )
    ]


SPLIT = r"""
import io, sys, time
t0 = time.perf_counter()
from healthkit.fix import FixOptions, Safety
from healthkit.fix import engine
from healthkit.core.workspace import Workspace
parts = {"imports": time.perf_counter() - t0}
def timed_part(mod, name, label):
    f = getattr(mod, name)
    def run(*a, **k):
        t = time.perf_counter()
        try:
            return f(*a, **k)
        finally:
            parts[label] = parts.get(label, 0.0) + time.perf_counter() - t
    setattr(mod, name, run)
for name, label in (("audit", "audit"), ("build_plans", "planning"), ("print_plans", "printing"), ("_recover", "recovery")):
    timed_part(engine, name, label)
t1 = time.perf_counter()
ws = Workspace.open(sys.argv[1])
parts["open"] = time.perf_counter() - t1
t2 = time.perf_counter()
engine.run_fix(ws, FixOptions(level=Safety.SAFE, dry_run=True), io.StringIO())
parts["run_fix_in_all"] = time.perf_counter() - t2
print(" ".join(f"{k}={v:.4f}" for k, v in parts.items()))
"""


def fix_split(tmp: Path, repeat: int) -> list[dict]:
    """The parts of `fix --safe --dry-run` on the long run (in-process, medians), beside whole processes: where the
    time goes, and that planning adds little to the audit it plans from (no re-reading of what the audit read)."""
    base = tmp / "long-100000"
    if not base.exists():
        build_long_run(base, 100_000)
    samples: dict[str, list[float]] = {}
    for _ in range(repeat):
        out = subprocess.run(
            [sys.executable, "-c", SPLIT, str(base)], capture_output=True, text=True, check=True
        ).stdout
        for item in out.split():
            k, v = item.split("=")
            samples.setdefault(k, []).append(float(v))
    med = {k: statistics.median(v) for k, v in samples.items()}
    print(
        "fix --safe --dry-run on the long run, in-process parts (medians): "
        + ", ".join(f"{k.replace('_', ' ')} {v * 1000:.0f} ms" for k, v in med.items())
    )
    whole = interleaved(
        {"python": [sys.executable, "-c", "pass"], "audit": [*HEALTHKIT, str(base)], "fix": [*FIX_DRY_RUN, str(base)]},
        repeat,
    )
    print(
        f"whole processes (medians): interpreter start {whole['python'] * 1000:.0f} ms, audit {whole['audit'] * 1000:.0f} ms, "
        f"fix --safe --dry-run {whole['fix'] * 1000:.0f} ms"
    )
    return [
        ratio_result("long run fix --safe --dry-run vs the same workspace's audit", whole["fix"], whole["audit"], 1.15)
    ]


def paired(name: str, audited: Path, baseline: Path, repeat: int, target: float) -> dict:
    """The audit of ``audited`` against that of ``baseline``, the order alternating each round; per-round ratios
    and their spread printed (sections 7 and 8: what one feature of a workspace adds to its audit)."""
    runs: dict[Path, list[float]] = {baseline: [], audited: []}
    for base in runs:
        timed([*HEALTHKIT, str(base)])
    for i in range(repeat):
        for base in (baseline, audited) if i % 2 == 0 else (audited, baseline):
            runs[base].append(timed([*HEALTHKIT, str(base)]))
    ratios = [a / b for a, b in zip(runs[audited], runs[baseline], strict=True)]
    spread = (max(ratios) - min(ratios)) / 2 / statistics.median(ratios) * 100
    print(f"per-run ratios {', '.join(f'{r:.2f}' for r in ratios)}; spread ±{spread:.1f}%")
    res = ratio_result(name, statistics.median(runs[audited]), statistics.median(runs[baseline]), target)
    res["ratio_spread_pct"] = spread
    return res


def lease(tmp: Path, repeat: int) -> list[dict]:
    """Section 7: an audit of a workspace with another host's fresh lease against the same without it."""
    import shutil as _sh

    from healthkit.contract.lease import Lease
    from healthkit.demo import build_example

    ex = build_example(tmp / "example-lease")
    try:
        plain, leased = tmp / "plain", tmp / "leased"
        _sh.copytree(ex.base, plain, symlinks=True)
        _sh.copytree(ex.base, leased, symlinks=True)
        now = time.time()
        le = Lease("node1", "0" * 36, 4242, now - 3600, 7, 10_000_000.0, now, now - 3600, "a" * 32, "tok", 4242)
        (leased / ".daemon.lease").write_text(json.dumps(le.to_json()))
        for base in (plain, leased):  # the same PID file in both: a PID of node1's, which means nothing here
            (base / ".daemon.pid").write_text("4242 1000.00\n")
        return [paired("audit with another host's lease vs without", leased, plain, repeat, 1.10)]
    finally:
        ex.cleanup()


def slurm(tmp: Path, repeat: int) -> list[dict]:
    """Section 8: an audit that asks squeue against the same workspace without a scheduler."""
    import shutil as _sh

    from healthkit.demo import build_example

    if subprocess.run(["squeue", "-h"], capture_output=True, timeout=10, check=False).returncode != 0:
        print("slurm: squeue does not answer here (set SLURM_CONF to a running cluster); skipped")
        return []
    ex = build_example(tmp / "example-slurm")
    try:
        plain, sl = tmp / "no-scheduler", tmp / "slurm"
        _sh.copytree(ex.base, plain, symlinks=True)
        _sh.copytree(ex.base, sl, symlinks=True)
        for base, sched in ((plain, "none"), (sl, "slurm")):
            toml = base / "healthkit.toml"
            toml.write_text((toml.read_text() if toml.exists() else "") + f'\n[daemon]\nscheduler = "{sched}"\n')
            (base / ".healthkit-id").write_text("d" * 32 + "\n")
        return [paired("audit of a Slurm workspace (squeue answering) vs none", sl, plain, repeat, 1.2)]
    finally:
        ex.cleanup()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--files", type=int, default=100_000)
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument(
        "--old",
        type=Path,
        help="a checkout of older code to interleave with this one (its healthkit/checks and healthkit/trainer "
        "linked to ../checks and ../trainer, as the editable install maps them)",
    )
    ap.add_argument(
        "--only",
        choices=("big", "example", "long", "scheduled", "split", "lease", "slurm"),
        action="append",
        help="run only these sections (repeatable); all by default",
    )
    args = ap.parse_args()
    only = set(args.only or ("big", "example", "long", "scheduled", "split"))
    # Cron runs from an installed package with byte-code on disk; an editable checkout under
    # PYTHONDONTWRITEBYTECODE would compile every module on every run and measure the compiler.
    import healthkit
    import healthkit.checks
    import healthkit.trainer  # the trainer's fix (rewind-to-checkpoint) loads with every `healthkit fix`

    for pkg in (healthkit, healthkit.checks, healthkit.trainer):
        subprocess.run(
            [sys.executable, "-m", "compileall", "-q", str(Path(pkg.__file__).parent)],
            check=False,
            stdout=subprocess.DEVNULL,
        )
    tmp = Path(tempfile.mkdtemp(prefix="hk-bench-"))
    RUN_IN["cwd"] = tmp
    OLD["tree"] = args.old.resolve() if args.old else None
    results: list[dict] = []
    try:
        if "big" in only:
            results += big_workspace(tmp, args.files, args.repeat)
        if "example" in only:
            results += example_machine(tmp, args.repeat)
        if "long" in only:
            results += long_run(tmp, args.repeat)
        if "scheduled" in only:
            results += scheduled_job(tmp, args.repeat)
        if "split" in only:
            results += fix_split(tmp, args.repeat)
        if "lease" in only:
            results += lease(tmp, args.repeat)
        if "slurm" in only:
            results += slurm(tmp, args.repeat)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0 if all(r["pass"] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
