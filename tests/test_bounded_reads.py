"""Worst days, read side: FIFOs, deep nesting, huge files, NaN steps, future timestamps, duplicate keys, odd names.

Every case is a real file (a real FIFO by os.mkfifo, no mocks) and the audit runs through the CLI or the library;
each must end in bounded time with a finding or an UNKNOWN, never a hang, a traceback or a false OK.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import pytest

from healthkit.core.api import audit
from healthkit.system.fsutil import ReadProblem, read_json

from .conftest import make_healthy_workspace, run_cli

DEEP = "[" * 100_000 + "]" * 100_000


def codes(report) -> list[str]:
    return sorted(f.code for f in report.findings)


def result(report, check: str):
    return next(r for r in report.results if r.check == check)


def test_read_json_too_deep_is_a_problem_not_a_crash(tmp_path: Path) -> None:
    p = tmp_path / "deep.json"
    p.write_text(DEEP)
    with pytest.raises(ReadProblem) as err:
        read_json(p)
    assert err.value.kind == "too-deep"


def test_read_json_reports_duplicate_keys(tmp_path: Path) -> None:
    p = tmp_path / "c.json"
    p.write_text('{"a": 1, "b": {"x": 1, "x": 2}, "a": 3}')
    dupes: list[str] = []
    assert read_json(p, duplicates=dupes) == {"a": 3, "b": {"x": 2}}
    assert dupes == ["x", "a"]


@pytest.mark.parametrize("rel", ["config.json", "status/training_status.json", "CLAUDE.md"])
def test_fifo_in_place_of_a_workspace_file_never_blocks_and_is_a_finding(tmp_path: Path, rel: str) -> None:
    ws = make_healthy_workspace(tmp_path / "ws")
    (ws / rel).unlink()
    os.mkfifo(ws / rel)
    t0 = time.monotonic()
    proc = run_cli("audit", str(ws), "--format", "json", timeout=60)
    assert time.monotonic() - t0 < 60
    assert b"Traceback" not in proc.stderr, proc.stderr
    report = json.loads(proc.stdout)
    found = [f for f in report["findings"] if f["code"] == "files.not-regular"]
    assert found and found[0]["data"]["path"].endswith(rel), report["findings"]
    assert proc.returncode in (1, 2, 3)


def test_fifo_healthkit_toml_is_refused_with_a_message(tmp_path: Path) -> None:
    ws = make_healthy_workspace(tmp_path / "ws")
    (ws / "healthkit.toml").unlink()
    os.mkfifo(ws / "healthkit.toml")
    proc = run_cli("audit", str(ws), timeout=60)
    assert proc.returncode == 3 and b"Traceback" not in proc.stderr
    assert b"not a regular file (a FIFO)" in proc.stderr


def test_fifo_weights_are_not_empty_and_never_offered_for_deletion(tmp_path: Path) -> None:
    ws = make_healthy_workspace(tmp_path / "ws")
    w = ws / "current_model" / "checkpoint-30" / "model.safetensors"
    w.unlink()
    os.mkfifo(w)
    report = audit(ws)
    assert "checkpoints.incomplete" not in codes(report) and "files.not-regular" in codes(report)
    proc = run_cli("fix", str(ws), "--unsafe", "--dry-run", timeout=60)
    assert b"Traceback" not in proc.stderr
    assert b"checkpoint-30" not in proc.stdout or b"is empty" not in proc.stdout
    assert stat_is_fifo(w)


def stat_is_fifo(p: Path) -> bool:
    import stat

    return stat.S_ISFIFO(os.lstat(p).st_mode)


@pytest.mark.parametrize(
    "rel", ["config.json", "status/training_status.json", "current_model/checkpoint-30/trainer_state.json"]
)
def test_deep_nesting_is_files_too_deep_not_a_traceback(tmp_path: Path, rel: str) -> None:
    ws = make_healthy_workspace(tmp_path / "ws")
    (ws / rel).write_text(DEEP)
    report = audit(ws)
    assert "files.too-deep" in codes(report), codes(report)
    assert not [r for r in report.results if r.error and "crashed" in r.error]


def test_deep_healthkit_toml_is_refused_with_a_message(tmp_path: Path) -> None:
    ws = make_healthy_workspace(tmp_path / "ws")
    (ws / "healthkit.toml").write_text("a = " + "[" * 50_000 + "]" * 50_000 + "\n")
    proc = run_cli("audit", str(ws), timeout=60)
    assert proc.returncode == 3 and b"Traceback" not in proc.stderr and b"too deep" in proc.stderr


def test_huge_trainer_state_costs_bounded_memory(tmp_path: Path) -> None:
    """A 2 GB sparse trainer_state.json in the newest checkpoint is too large, not 4 GB of memory."""
    ws = make_healthy_workspace(tmp_path / "ws")
    p = ws / "current_model" / "checkpoint-30" / "trainer_state.json"
    head = p.read_bytes().rstrip()[:-1]  # HF's indented layout: its head and tail pass the bounded read
    with open(p, "wb") as fh:
        fh.write(head)
        fh.seek(2 * 1024**3)
        fh.write(b"\n}\n")
    proc = run_cli("audit", str(ws), "--format", "json", timeout=60)
    report = json.loads(proc.stdout)
    assert "files.too-large" in [f["code"] for f in report["findings"]]
    assert b"Traceback" not in proc.stderr
    import resource

    assert resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss < 1024 * 1024  # KiB: under 1 GiB


def test_nan_step_is_bad_step_and_disk_does_not_crash(tmp_path: Path) -> None:
    ws = make_healthy_workspace(tmp_path / "ws")
    sp = ws / "status" / "training_status.json"
    st = json.loads(sp.read_text())
    st["step"] = float("nan")
    sp.write_text(json.dumps(st))
    report = audit(ws)
    assert "status.bad-step" in codes(report)
    assert result(report, "disk").error is None


@pytest.mark.parametrize("stamp", ["2099-01-01T00:00:00Z", 1e20, 1.7e18])
def test_future_timestamp_is_clock_skew_and_staleness_comes_from_mtime(tmp_path: Path, stamp) -> None:
    ws = make_healthy_workspace(tmp_path / "ws")
    sp = ws / "status" / "training_status.json"
    st = json.loads(sp.read_text())
    st["updated_at"] = stamp
    sp.write_text(json.dumps(st))
    old = time.time() - 3 * 3600
    os.utime(sp, (old, old))
    report = audit(ws)
    assert "status.clock-skew" in codes(report) and "training.stalled" in codes(report), codes(report)


def test_a_near_future_timestamp_within_the_margin_is_fine(tmp_path: Path) -> None:
    ws = make_healthy_workspace(tmp_path / "ws")
    sp = ws / "status" / "training_status.json"
    st = json.loads(sp.read_text())
    st["updated_at"] = time.time() + 5
    sp.write_text(json.dumps(st))
    assert "status.clock-skew" not in codes(audit(ws))


def test_duplicate_config_key_is_a_finding(tmp_path: Path) -> None:
    ws = make_healthy_workspace(tmp_path / "ws")
    text = (ws / "config.json").read_text().replace('"eval_steps": 10,', '"eval_steps": 5,\n  "eval_steps": 10,')
    (ws / "config.json").write_text(text)
    report = audit(ws)
    assert "config.duplicate-key" in codes(report)
    f = next(f for f in report.findings if f.code == "config.duplicate-key")
    assert f.data["keys"] == ["eval_steps"]


def test_trailing_newline_is_not_a_checkpoint(tmp_path: Path) -> None:
    ws = make_healthy_workspace(tmp_path / "ws")
    os.rename(ws / "current_model" / "checkpoint-30", ws / "current_model" / "checkpoint-30\n")
    from healthkit.core.workspace import Workspace

    assert [c.name for c in Workspace.open(ws).checkpoints] == ["checkpoint-10", "checkpoint-20"]


def test_symlink_loop_checkpoint_folder_is_unknown_naming_eloop(tmp_path: Path) -> None:
    ws = make_healthy_workspace(tmp_path / "ws")
    shutil.rmtree(ws / "current_model")
    os.symlink("current_model", ws / "current_model")
    proc = run_cli("audit", str(ws), "--format", "json", timeout=60)
    assert proc.returncode == 3, proc.stderr
    report = json.loads(proc.stdout)
    ck = next(c for c in report["checks"] if c["check"] == "checkpoints")
    assert ck["status"] == "unknown" and "ELOOP" in " ".join(ck["notes"]) and "current_model" in " ".join(ck["notes"])


def test_fifo_fix_journal_never_blocks_fix(tmp_path: Path) -> None:
    ws = make_healthy_workspace(tmp_path / "ws")
    os.mkfifo(ws / "logs" / "healthkit-fix.jsonl")
    proc = run_cli("fix", str(ws), "--safe", timeout=60)
    assert proc.returncode == 3 and b"not a regular file" in proc.stderr and b"Traceback" not in proc.stderr


def test_duplicate_config_key_blocks_the_doc_fix(tmp_path: Path) -> None:
    ws = make_healthy_workspace(tmp_path / "ws")
    (ws / "CLAUDE.md").write_text((ws / "CLAUDE.md").read_text().replace("Eval steps: 10", "Eval steps: 7"))
    text = (ws / "config.json").read_text().replace('"eval_steps": 10,', '"eval_steps": 5,\n  "eval_steps": 10,')
    (ws / "config.json").write_text(text)
    before = (ws / "CLAUDE.md").read_text()
    proc = run_cli("fix", str(ws), "--safe", timeout=120)
    assert b"Traceback" not in proc.stderr
    assert (ws / "CLAUDE.md").read_text() == before
    assert b"twice" in proc.stdout, proc.stdout
