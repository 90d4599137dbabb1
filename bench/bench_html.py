"""The HTML report and the live dashboard, measured:

    python bench/bench_html.py render [--repeat 200]
    python bench/bench_html.py dashboard [--rounds 2] [--steps 300]

`render`: the example machine's report rendered as HTML against Markdown, alternating in one
process (medians per render and their ratio), plus the HTML file's size.

`dashboard`: the tiny model trained by the real daemon, one file with the live page closed and
one with it open in headless Chromium (refreshing every few seconds, as a person's browser
would; a Python poller of the same three URLs where Chromium is missing), alternating. Each
file's hook share is read from monitoring_costs.json when it is done (the trainer writes the
section afresh per file). The monitor runs in the daemon, not in the training process, so the
open page should cost the training thread nothing measurable beyond noise.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def bench_render(repeat: int) -> dict:
    from healthkit.core.api import audit
    from healthkit.demo import build_example
    from healthkit.reporting.render import render

    work = Path(tempfile.mkdtemp(prefix="healthkit-bench-html-"))
    ex = build_example(work / "training")
    try:
        report = audit(ex.base, record_costs=False)
    finally:
        ex.cleanup()
    times: dict[str, list[float]] = {"md": [], "html": []}
    sizes = {}
    for _ in range(repeat):
        for fmt in ("md", "html"):
            t0 = time.perf_counter()
            text = render(report, fmt)
            times[fmt].append(time.perf_counter() - t0)
            sizes[fmt] = len(text.encode("utf-8"))
    shutil.rmtree(work, ignore_errors=True)
    md, html = statistics.median(times["md"]), statistics.median(times["html"])
    return {
        "repeat": repeat,
        "md_ms": round(md * 1000, 3),
        "html_ms": round(html * 1000, 3),
        "ratio_html_over_md": round(html / md, 2),
        "bytes": sizes,
    }


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Viewer:
    """The live page kept open: headless Chromium in real time, or a poller of the page's three URLs."""

    def __init__(self, port: int):
        self.port, self.proc, self.stop = port, None, threading.Event()
        exe = next((p for n in ("chromium", "chromium-browser", "google-chrome") if (p := shutil.which(n))), None)
        self.kind = "chromium" if exe else "poller"
        if exe:
            self.profile = tempfile.mkdtemp(prefix="hk-bench-chromium-")
            self.proc = subprocess.Popen(
                [
                    exe,
                    "--headless",
                    "--no-sandbox",
                    "--disable-gpu",
                    "--no-first-run",
                    "--disable-background-networking",
                    "--disable-component-update",
                    "--disable-sync",
                    f"--user-data-dir={self.profile}",
                    "--remote-debugging-port=0",
                    f"http://127.0.0.1:{port}/",
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        else:
            threading.Thread(target=self._poll, daemon=True).start()

    def _poll(self) -> None:
        while not self.stop.wait(3.0):
            for path in ("/status", "/history", "/findings"):
                try:
                    urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=5).read()
                except OSError:
                    pass

    def close(self) -> None:
        self.stop.set()
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
            shutil.rmtree(self.profile, ignore_errors=True)


def _train_one(lay, name: str, src: Path, viewer_port: int | None) -> dict:
    from healthkit.trainer import queue as q

    shutil.copyfile(src, lay.base / name)
    q.add(lay, lay.base / name)
    viewer = Viewer(viewer_port) if viewer_port else None
    try:
        deadline = time.monotonic() + 900
        while not (lay.done / name).exists():
            if (lay.failed / name).exists() or time.monotonic() > deadline:
                raise RuntimeError(f"{name} did not train: see {lay.logs}")
            time.sleep(0.2)
        time.sleep(0.5)  # the final costs write follows the queue move closely
    finally:
        if viewer:
            viewer.close()
    costs = json.loads(lay.monitoring_costs.read_text())["training"]
    res = json.loads(lay.last_result.read_text())
    return {
        "hook_share": costs["hook_share"],
        "steps_per_s": res.get("train_steps_per_second"),
        "viewer": viewer.kind if viewer else None,
    }


def bench_dashboard(rounds: int, steps: int) -> dict:
    from healthkit.trainer.daemon import start_daemon, stop_daemon
    from healthkit.trainer.layout import Layout
    from healthkit.trainer.scaffold import init_workspace
    from healthkit.trainer.tiny import build_tiny_model, sample_texts, write_jsonl

    os.environ.setdefault("OMP_NUM_THREADS", "1")
    work = Path(tempfile.mkdtemp(prefix="healthkit-bench-dash-"))
    port = _free_port()
    base = work / "ws"
    init_workspace(
        base,
        base_model="models/base",
        max_steps=steps,
        max_seq_length=64,
        eval_steps=50,
        save_steps=100,
        save_total_limit=2,
        logging_steps=5,
        per_device_train_batch_size=8,
        per_device_eval_batch_size=16,
        validation_split=0.1,
        monitor_port=port,
        continue_from_previous=False,
    )
    build_tiny_model(base / "models" / "base", vocab_size=512, n_layer=2, n_embd=64, n_head=4, n_positions=64)
    data = write_jsonl(work / "data.jsonl", sample_texts(800, seed=7, words=24))
    lay = Layout.of(base)
    start_daemon(base)
    closed, opened = [], []
    try:
        for i in range(rounds):
            closed.append(_train_one(lay, f"closed{i}.jsonl", data, None))
            opened.append(_train_one(lay, f"open{i}.jsonl", data, port))
            print(
                f"round {i + 1}: hook share closed {closed[-1]['hook_share']:.4%}, open {opened[-1]['hook_share']:.4%} "
                f"({opened[-1]['viewer']})",
                file=sys.stderr,
                flush=True,
            )
    finally:
        stop_daemon(base, 60)
        shutil.rmtree(work, ignore_errors=True)
    c = statistics.median(r["hook_share"] for r in closed)
    o = statistics.median(r["hook_share"] for r in opened)
    return {
        "steps": steps,
        "rounds": rounds,
        "viewer": opened[0]["viewer"],
        "hook_share_closed": c,
        "hook_share_open": o,
        "ratio_open_over_closed": round(o / c, 3) if c else None,
        "steps_per_s_closed": statistics.median(r["steps_per_s"] for r in closed),
        "steps_per_s_open": statistics.median(r["steps_per_s"] for r in opened),
        "load_avg": os.getloadavg(),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="what", required=True)
    r = sub.add_parser("render")
    r.add_argument("--repeat", type=int, default=200)
    d = sub.add_parser("dashboard")
    d.add_argument("--rounds", type=int, default=2)
    d.add_argument("--steps", type=int, default=300)
    a = ap.parse_args()
    out = bench_render(a.repeat) if a.what == "render" else bench_dashboard(a.rounds, a.steps)
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
