"""The remaining fixes: SIGKILL after the grace, our trainer's daemon start, incomplete checkpoints, evaluation, a symlink swapped in mid-way."""

from __future__ import annotations

import json
import shutil
import sys
import time
from pathlib import Path

import pytest

from healthkit.demo import _start_orphan
from healthkit.fix import Safety
from healthkit.fix.fileops import Refused, delete_dir
from healthkit.fix.journal import Journal, read_journal
from healthkit.fix.plan import ApplyContext
from healthkit.system.procs import probe

from .conftest import fix, set_checkpoint_mtimes_past, set_config, tree_hashes
from .test_units import plans_for

STUBBORN = """\
import signal, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
open("stubborn.ready", "w").close()  # only now is SIGTERM ignored: a busy machine may take seconds to get here
while True:
    time.sleep(0.2)
"""


def test_kill_orphan_escalates_to_sigkill_after_the_grace(make_example):
    ex = make_example(start_processes=False)
    (ex.base / "train.py").write_text(STUBBORN)
    pid = _start_orphan(ex.base, [sys.executable, "train.py", "--file", "queue/processing/x.jsonl"])
    deadline = time.monotonic() + 60
    while not (ex.base / "stubborn.ready").exists():
        assert time.monotonic() < deadline, "the stubborn orphan never started"
        time.sleep(0.02)
    run, out = fix(ex.base, Safety.UNSAFE, only=("kill-orphan",), kill_grace_s=0.5)
    (outcome,) = [o for p, o in run.outcomes if p.fix_id == "kill-orphan"]
    assert outcome.ok and "SIGKILL" in outcome.message, out
    assert not probe(pid).alive
    results = [e["message"] for e in read_journal(ex.base / "logs/healthkit-fix.jsonl") if e["fix"] == "kill-orphan"]
    assert results == ["SIGTERM", "SIGKILL after 0.5s grace", "killed with SIGKILL after the grace"]


def test_our_trainer_is_started_through_start_daemon(make_example, monkeypatch):
    """No daemon_command but our trainer's layout: the fix calls trainer.daemon.start_daemon(base)."""
    from healthkit.trainer import daemon as trainer_daemon

    ex = make_example(start_processes=False)
    (ex.base / "healthkit.toml").write_text(
        '[paths]\ncheckpoints_config_key = "current_model_dir"\nconfig_schema = "none"\n'
    )
    calls = []

    def fake_start(base: Path, supervise: bool = False, timeout_s: float = 60.0) -> int:
        calls.append(base)
        script = (
            "import os, sys, time, psutil\nme = psutil.Process()\n"
            "open(sys.argv[1], 'w').write(f'{me.pid} {me.create_time():.2f}\\n')\n"
            "while os.path.isdir(os.path.dirname(sys.argv[1])): time.sleep(0.3)\n"
        )
        (base / "fake_daemon.py").write_text(script)
        pid = _start_orphan(
            base, [sys.executable, "fake_daemon.py", str(base / ".daemon.pid"), "healthkit.trainer.daemon"]
        )
        deadline = time.monotonic() + 60  # a Python start with psutil takes seconds on a busy machine
        while not (base / ".daemon.pid").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        return pid

    monkeypatch.setattr(trainer_daemon, "start_daemon", fake_start)
    ws, run = plans_for(ex.base, Safety.SAFE, only=("daemon",))
    start = next(p for p in run.chosen if p.key == "start-daemon")
    assert "trainer.daemon.start_daemon" in start.preview and "-m healthkit.trainer.daemon --workspace" in start.preview
    (ex.base / ".daemon.pid").unlink()
    outcome = start.apply(ApplyContext(ws, Journal(ex.base / "logs/j.jsonl"), start, daemon_confirm_s=1.0, run_id="t"))
    assert calls == [ex.base]
    # Its argv names trainer.daemon and it writes the PID file: confirmed the same way as the real one.
    assert outcome.ok, outcome.message


def test_incomplete_checkpoint_is_an_unsafe_deletion(make_example):
    ex = make_example(checkpoints=5, start_processes=False)
    (ex.base / "current_model/checkpoint-300/trainer_state.json").unlink()
    set_checkpoint_mtimes_past(ex.base)
    run, out = fix(ex.base, Safety.SAFE, only=("checkpoints.incomplete",))
    assert (ex.base / "current_model/checkpoint-300").is_dir() and run.outcomes == []
    run, out = fix(ex.base, Safety.UNSAFE, only=("checkpoints.incomplete",))
    assert not (ex.base / "current_model/checkpoint-300").exists(), out
    assert "checkpoints.incomplete" in {f.code for f in run.resolved}


def test_enable_evaluation_when_validation_data_exists(make_example):
    ex = make_example(start_processes=False)
    set_config(ex.base, eval_strategy="no")
    run, out = fix(ex.base, Safety.SAFE, only=("validation",))
    assert json.loads((ex.base / "config.json").read_text())["eval_strategy"] == "no"
    run, out = fix(ex.base, Safety.UNSAFE, only=("validation",))
    assert json.loads((ex.base / "config.json").read_text())["eval_strategy"] == "steps", out


def test_a_symlink_swapped_in_for_a_checkpoint_mid_way_is_not_followed(make_example, tmp_path):
    ex = make_example(checkpoints=6, start_processes=False)
    set_config(ex.base, save_total_limit=2)
    set_checkpoint_mtimes_past(ex.base)
    outside = tmp_path / "outside-target"
    shutil.copytree(ex.base / "current_model/checkpoint-100", outside)
    before = tree_hashes(outside)
    ws, run = plans_for(ex.base, Safety.SAFE, only=("checkpoints.bloat",))
    (plan,) = run.chosen
    victim = ex.base / "current_model/checkpoint-100"
    shutil.rmtree(victim)
    victim.symlink_to(outside)  # swapped after the plan, before the apply
    outcome = plan.apply(ApplyContext(ws, Journal(ex.base / "logs/j.jsonl"), plan, run_id="t"))
    assert tree_hashes(outside) == before
    assert victim.is_symlink()
    assert "checkpoint-100 kept (a symlink" in outcome.message
    assert not (ex.base / "current_model/checkpoint-200").exists()  # the others were still pruned
    # The lowest layer refuses too, even when handed the plan's fingerprint of the real folder.
    fp = None
    with pytest.raises(Refused, match="symbolic link"):
        delete_dir(ex.base, victim, fp, "t")
    assert tree_hashes(outside) == before and victim.is_symlink()


def test_doc_line_holding_a_secret_is_rewritten_from_the_file_not_the_redacted_report(tmp_path):
    """The report masks the secret on the line; the fix must still write the real line back, value changed only there."""
    from healthkit.fix.plan import Safety

    from .conftest import fix

    secret = "hf_" + "Q" * 34
    (tmp_path / "config.json").write_text('{"base_model": "m", "eval_steps": 500}')
    doc = tmp_path / "CLAUDE.md"
    doc.write_text(f"- eval_steps: 10 (token: {secret})\n")
    run, out = fix(tmp_path, Safety.SAFE, only=["config.doc-drift"])
    assert doc.read_text() == f"- eval_steps: 500 (token: {secret})\n"
    assert secret not in out
