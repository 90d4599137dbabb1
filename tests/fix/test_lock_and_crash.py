"""One run at a time, and a run SIGKILLed mid-edit or mid-prune leaves whole files, a readable journal, and a next run that completes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading

import pytest

from healthkit.fix.journal import read_journal
from healthkit.fix.lock import FixLock

from .conftest import REPO, cli, set_best, set_checkpoint_mtimes_past, set_config, tree_hashes, write_fake_daemon

KEPT = ["checkpoint-300", "checkpoint-1000", "checkpoint-1100", "checkpoint-1200"]


def journal_lines_are_whole(path) -> list[dict]:
    raw = path.read_bytes()
    assert raw.endswith(b"\n")
    return [json.loads(line) for line in raw.splitlines()]


def test_a_second_run_refuses_clearly_while_one_holds_the_lock(make_example):
    ex = make_example(start_processes=False)
    before = tree_hashes(ex.base, skip=(".healthkit-fix.lock",))
    with FixLock(ex.base):
        r = cli(ex.base, "--safe", "--only", "config.doc-drift")
    assert r.returncode == 3, r.stdout + r.stderr
    assert "another `healthkit fix` run (PID" in r.stderr and "nothing was changed" in r.stderr
    assert tree_hashes(ex.base, skip=(".healthkit-fix.lock",)) == before

    lock = FixLock(ex.base).acquire()
    threading.Timer(1.0, lock.release).start()
    r = cli(ex.base, "--safe", "--only", "config.doc-drift", "--wait", "10")
    assert r.returncode in (0, 1, 2), r.stdout + r.stderr
    assert b"- Eval steps: 500" in (ex.base / "CLAUDE.md").read_bytes()


def test_two_runs_started_together_one_runs_the_other_refuses(make_example):
    ex = make_example()
    write_fake_daemon(ex.base, delay=1.5)  # the first run holds the lock while it confirms the daemon
    env = {k: v for k, v in os.environ.items() if k != "HEALTHKIT_FIX_CRASH_AT"}
    cmd = [sys.executable, "-m", "healthkit.cli", "fix", str(ex.base), "--safe"]
    procs = [
        subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    results = [(p.wait(60), *p.communicate()) for p in procs]
    refused = [r for r in results if r[0] == 3]
    ran = [r for r in results if r[0] != 3]
    assert len(refused) == 1 and len(ran) == 1, results
    assert "another `healthkit fix` run" in refused[0][2]
    assert "Applying:" in ran[0][1]
    entries = read_journal(ex.base / "logs/healthkit-fix.jsonl")
    assert len({e["pid"] for e in entries}) == 1
    assert len([e for e in entries if e["fix"] == "sync-doc-value" and e["result"] == "applied"]) == 1


@pytest.mark.parametrize(
    "point, whole", [("edit:before-replace", "old"), ("edit:backup-written", "old"), ("edit:after-replace", "new")]
)
def test_killed_mid_edit(make_example, point, whole):
    ex = make_example(start_processes=False)
    doc = ex.base / "CLAUDE.md"
    old = doc.read_bytes()
    new = old.replace(b"- Eval steps: 10\n", b"- Eval steps: 500\n")
    r = cli(ex.base, "--safe", "--only", "config.doc-drift", env={"HEALTHKIT_FIX_CRASH_AT": point})
    assert r.returncode == -9, r.stdout + r.stderr
    assert doc.read_bytes() == (old if whole == "old" else new)
    entries = journal_lines_are_whole(ex.base / "logs/healthkit-fix.jsonl")
    assert entries[-1]["result"] == "started" and entries[-1]["fix"] == "sync-doc-value"

    r = cli(ex.base, "--safe", "--only", "config.doc-drift")
    assert r.returncode in (0, 1, 2), r.stdout + r.stderr
    assert doc.read_bytes() == new
    assert "was interrupted during: edit CLAUDE.md" in r.stdout
    assert not [p for p in ex.base.iterdir() if ".healthkit-tmp-" in p.name]
    journal_lines_are_whole(ex.base / "logs/healthkit-fix.jsonl")
    r = cli(ex.base, "--safe", "--only", "config.doc-drift")
    assert "interrupted" not in r.stdout and "Nothing to apply." in r.stdout  # reported once, then closed


@pytest.mark.parametrize("point", ["prune:mid-delete", "prune:after-rename:3"])
def test_killed_mid_prune(make_example, point):
    ex = make_example(checkpoints=12, start_processes=False)
    base = ex.base
    set_config(base, save_total_limit=3)
    set_best(base, "checkpoint-300")
    set_checkpoint_mtimes_past(base)
    kept_before = {k: tree_hashes(base / "current_model" / k) for k in KEPT}
    all_before = {p.name: tree_hashes(p) for p in (base / "current_model").iterdir()}

    r = cli(base, "--safe", "--only", "checkpoints", env={"HEALTHKIT_FIX_CRASH_AT": point})
    assert r.returncode == -9, r.stdout + r.stderr
    entries = journal_lines_are_whole(base / "logs/healthkit-fix.jsonl")
    assert entries[-1]["result"] == "started" and entries[-1]["action"] == "delete"
    # Every checkpoint is whole, or gone, or a trash folder the next run finishes; none half-deleted under its name.
    for p in (base / "current_model").iterdir():
        if p.name.startswith("checkpoint-"):
            assert tree_hashes(p) == all_before[p.name], p.name
    assert [p for p in (base / "current_model").iterdir() if p.name.startswith(".healthkit-trash-")]

    r = cli(base, "--safe", "--only", "checkpoints")
    assert r.returncode in (0, 1, 2), r.stdout + r.stderr
    assert "finished the interrupted deletion" in r.stdout
    assert sorted(p.name for p in (base / "current_model").iterdir()) == sorted(KEPT)
    assert {k: tree_hashes(base / "current_model" / k) for k in KEPT} == kept_before
    entries = journal_lines_are_whole(base / "logs/healthkit-fix.jsonl")
    gone = {e["target"] for e in entries if e["fix"] in ("prune-checkpoints", "recover") and e["result"] == "applied"}
    assert len(gone) == 8
