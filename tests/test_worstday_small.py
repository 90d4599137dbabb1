"""Worst days, the smaller items: overlapping runs, a run that cannot heal, leftover trash, huge prunes, honest durations."""

from __future__ import annotations

import json
import os
import threading
import time
import tracemalloc
from pathlib import Path

from healthkit.core.api import audit
from healthkit.core.workspace import Workspace
from healthkit.fix.fileops import delete_dir, tree_fingerprint
from healthkit.reporting.history import write_history

from .conftest import make_healthy_workspace, run_cli


def test_overlapping_runs_in_the_same_second_get_distinct_report_names(tmp_path: Path) -> None:
    ws = make_healthy_workspace(tmp_path / "ws")
    report = audit(ws)
    folder = tmp_path / "reports"
    folder.mkdir()
    barrier = threading.Barrier(6)
    names: list[str] = []

    def one() -> None:
        barrier.wait()
        written = write_history(report, folder, "json")
        names.extend(p.name for p in written if p.name.startswith("report-") and p.suffix == ".json")

    threads = [threading.Thread(target=one) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(names) == 6 and len(set(names)) == 6, names


def test_a_scheduled_run_that_cannot_heal_still_writes_an_unknown_report(tmp_path: Path) -> None:
    ws = make_healthy_workspace(tmp_path / "ws")
    os.mkfifo(ws / "logs" / "healthkit-fix.jsonl")  # the fix refuses: its journal is not a file
    out, textfile = tmp_path / "reports", tmp_path / "tf" / "healthkit.prom"
    proc = run_cli(
        "fix", str(ws), "--safe", "--scheduled", "--output", f"{out}/", "--textfile", str(textfile), timeout=120
    )
    assert proc.returncode == 3 and b"Traceback" not in proc.stderr, proc.stderr
    latest = json.loads((out / "latest.json").read_text())
    assert latest["status"] == "unknown" and "not a regular file" in latest["checks"][0]["error"]
    assert any(
        line.startswith("healthkit_status{") and line.endswith(" 3.0") for line in textfile.read_text().splitlines()
    )


def test_the_audit_mentions_an_interrupted_fixs_leftover_trash(tmp_path: Path) -> None:
    ws = make_healthy_workspace(tmp_path / "ws")
    (ws / "current_model" / ".healthkit-trash-checkpoint-5-20260101T000000Z").mkdir()
    ck = next(r for r in audit(ws).results if r.check == "checkpoints")
    assert any("interrupted `healthkit fix`" in n and ".healthkit-trash-checkpoint-5" in n for n in ck.notes), ck.notes


def test_pruning_a_checkpoint_of_many_files_streams_in_bounded_memory(tmp_path: Path) -> None:
    base = tmp_path / "ws"
    d = base / "current_model" / "checkpoint-1"
    for i in range(20):
        sub = d / f"shard{i}"
        sub.mkdir(parents=True)
        for j in range(1000):
            (sub / f"f{j}").touch()
    tracemalloc.start()
    try:
        fp = tree_fingerprint(d)
        assert fp.files == 20_020
        delete_dir(base, d, fp, "t")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert not d.exists()
    assert peak < 2 * 1024 * 1024, peak  # the whole listing of 20,000 entries would be several MB


def test_the_audit_duration_counts_opening_and_detection(tmp_path: Path) -> None:
    ws = Workspace.open(make_healthy_workspace(tmp_path / "ws"))
    time.sleep(0.3)  # as if healthkit.toml and detection had been slow to read
    assert audit(ws).duration_s >= 0.3
