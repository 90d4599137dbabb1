"""A live training with healthkit beside it: audits every few hundred ms, `fix --safe` every few seconds.

The real daemon trains two queue files on the tiny model with a save every 5 steps and
`save_total_limit` 2, so checkpoints are written and rotated all the time. Nothing healthkit
says or does may be wrong about it: no finding on a healthy run (a checkpoint being written
is not incomplete, the one extra during rotation is not bloat), no fix that touches it, and
the queue finishes with each file trained once.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections import Counter
from pathlib import Path

import pytest

from healthkit.trainer.daemon import start_daemon, stop_daemon
from healthkit.trainer.layout import Layout

from .conftest import REPO, all_logs, daemon_log, queue_file, read_json, wait_for
from .test_daemon_e2e import queue_drained, spawns

pytestmark = pytest.mark.slow

# Findings that a healthy, running training must never get.
FALSE_ON_A_LIVE_RUN = ("checkpoints.incomplete", "checkpoints.bloat", "training.stalled", "queue.stuck")
AUDIT_EVERY_S = 0.3
FIX_EVERY_S = 3.0


def _healthkit(*args: str, timeout: float) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "healthkit.cli", *args], capture_output=True, text=True, timeout=timeout, cwd=REPO
    )


class Beside(threading.Thread):
    """Runs one healthkit command in a loop until stopped, and keeps what each run said."""

    def __init__(self, args: list[str], every_s: float):
        super().__init__(daemon=True)
        self.args, self.every_s = args, every_s
        self.runs: list[subprocess.CompletedProcess] = []
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            self.runs.append(_healthkit(*self.args, timeout=180))
            self.stop.wait(self.every_s)


def _findings(runs: list[subprocess.CompletedProcess]) -> tuple[Counter, list[str], dict[str, str]]:
    """Finding codes over all audits, the audits whose output was not a JSON report, and one example per code."""
    codes: Counter = Counter()
    broken = []
    examples: dict[str, str] = {}
    for r in runs:
        try:
            report = json.loads(r.stdout)
        except ValueError:
            broken.append(f"rc {r.returncode}: {r.stdout[:300]!r} {r.stderr[-500:]!r}")
            continue
        codes.update(f["code"] for f in report["findings"])
        for f in report["findings"]:
            examples.setdefault(
                f["code"], json.dumps({k: f.get(k) for k in ("problem", "evidence", "root_cause")})[:1500]
            )
    return codes, broken, examples


def _false(codes: Counter) -> dict[str, int]:
    return {c: n for c, n in codes.items() if c in FALSE_ON_A_LIVE_RUN or c.startswith("daemon.")}


def _journal(lay: Layout) -> list[dict]:
    path = lay.base / "logs" / "healthkit-fix.jsonl"
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()] if path.exists() else []


def test_live_training_survives_audits_and_safe_fixes_beside_it(make_ws, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HEALTHKIT_TRAINER_STEP_SLEEP_S", "0.1")  # a run long enough for many audits mid-save
    lay = make_ws(max_steps=30, save_steps=5, save_total_limit=2, eval_steps=5)
    queue_file(lay, "a.jsonl", seed=1)
    queue_file(lay, "b.jsonl", seed=2)
    base = str(lay.base)
    audits = Beside(["audit", base, "--format", "json"], AUDIT_EVERY_S)
    fixes = Beside(["fix", base, "--safe", "--wait", "120"], FIX_EVERY_S)
    start_daemon(lay.base)
    wait_for(lambda: read_json(lay.status).get("state") == "training", 120, what="training to start\n" + all_logs(lay))
    audits.start()
    fixes.start()
    try:
        wait_for(lambda: queue_drained(lay, 2), 420, 0.2, "both files done\n" + all_logs(lay))
        wait_for(lambda: read_json(lay.daemon_state).get("state") == "idle", 60, what="daemon idle")
    finally:
        for t in (audits, fixes):
            t.stop.set()
        for t in (audits, fixes):
            t.join(200)
    assert stop_daemon(lay.base, wait_s=120)

    codes, broken, examples = _findings(audits.runs)
    report = f"{len(audits.runs)} audits, findings by code {dict(codes)}\n" + "\n".join(examples.values())
    print(f"chaos: {report}; {len(fixes.runs)} fix runs")
    assert not broken, broken[:3]
    assert len(audits.runs) >= 10, report
    assert _false(codes) == {}, report
    assert codes == Counter(), report  # a healthy run has no finding at all
    assert len(fixes.runs) >= 2
    for r in fixes.runs:
        assert r.returncode == 0 and "Nothing to apply." in r.stdout, r.stdout[-3000:] + r.stderr[-2000:]
    # healthkit touched nothing (so no checkpoint being written or resumed from was moved), and its journal parses.
    assert [e for e in _journal(lay) if e.get("action") not in (None, "run")] == []
    assert not list(Path(base).rglob("*trash*"))
    # Each file trained once, to the end.
    assert spawns(lay, "a.jsonl") == 1 and spawns(lay, "b.jsonl") == 1, daemon_log(lay)
    finals = {p.parent.name: read_json(p) for p in lay.models.glob("*/healthkit_final.json")}
    assert set(finals) == {"a", "b"} and all(f["global_step"] == 30 for f in finals.values()), finals
