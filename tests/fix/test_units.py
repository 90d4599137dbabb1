"""Smaller contracts: ordering, dry run, re-validation at apply, config and queue edits, journal, CLI usage."""

from __future__ import annotations

import json
import os
from pathlib import Path

from typer.testing import CliRunner

from healthkit.cli import app
from healthkit.core.api import audit
from healthkit.core.workspace import Workspace
from healthkit.fix import FixOptions, Safety
from healthkit.fix.engine import FixRun, build_plans
from healthkit.fix.fixes_config import edit_json_text
from healthkit.fix.fixes_docs import rewrite
from healthkit.fix.journal import Journal, interrupted, read_journal
from healthkit.fix.plan import ApplyContext, PlanContext

from .conftest import fix, set_best, set_checkpoint_mtimes_past, set_config, tree_hashes


def plans_for(base: Path, level: Safety, **kw) -> tuple[Workspace, FixRun]:
    ws = Workspace.open(base)
    report = audit(ws, record_costs=False)
    run = FixRun(before=report)
    build_plans(PlanContext(ws, report, keep=kw.pop("keep", None)), report, FixOptions(level=level, **kw), run)
    return ws, run


def test_applicability_is_ordered_like_ruff():
    assert Safety.UNSAFE < Safety.SAFE
    assert Safety.SAFE >= Safety.UNSAFE  # an --unsafe run applies safe fixes too


def test_dry_run_leaves_the_tree_byte_identical(make_example, tmp_path):
    ex = make_example(start_processes=False)
    set_checkpoint_mtimes_past(ex.base)
    before = tree_hashes(tmp_path)
    stats = {p: os.lstat(p).st_mtime_ns for p in ex.base.rglob("*")}
    run, out = fix(ex.base, Safety.UNSAFE, dry_run=True, keep=2)
    assert tree_hashes(tmp_path) == before
    assert {p: os.lstat(p).st_mtime_ns for p in ex.base.rglob("*")} == stats
    assert {p.fix_id for p in run.chosen} >= {
        "sync-doc-value",
        "remove-stale-pid-file",
        "start-daemon",
        "prune-checkpoints",
        "set-save-total-limit",
        "requeue-stuck-file",
    }
    assert "Dry run: nothing was changed." in out and run.after is None


def test_a_doc_changed_between_plan_and_apply_is_not_touched(make_example):
    ex = make_example(start_processes=False)
    ws, run = plans_for(ex.base, Safety.SAFE, only=("config.doc-drift",))
    (plan,) = run.chosen
    doc = ex.base / "CLAUDE.md"
    edited = doc.read_bytes() + b"\nA line someone added meanwhile.\n"
    doc.write_bytes(edited)
    outcome = plan.apply(ApplyContext(ws, Journal(ex.base / "logs/j.jsonl"), plan, run_id="t"))
    assert outcome.status == "skipped" and "changed since plan" in outcome.message
    assert doc.read_bytes() == edited and not list(ex.base.glob("CLAUDE.md.bak-*"))


def test_a_checkpoint_changed_between_plan_and_apply_is_not_deleted(make_example):
    ex = make_example(checkpoints=8, start_processes=False)
    set_config(ex.base, save_total_limit=2)
    set_checkpoint_mtimes_past(ex.base)
    ws, run = plans_for(ex.base, Safety.SAFE, only=("checkpoints.bloat",))
    (plan,) = run.chosen
    victim = ex.base / "current_model/checkpoint-100"
    (victim / "optimizer.pt").write_bytes(b"rewritten")
    os.utime(victim / "optimizer.pt", (1e9, 1e9))
    outcome = plan.apply(ApplyContext(ws, Journal(ex.base / "logs/j.jsonl"), plan, run_id="t"))
    assert victim.is_dir() and (victim / "optimizer.pt").read_bytes() == b"rewritten"
    assert "checkpoint-100 changed since plan" in outcome.message
    assert {p.name for p in (ex.base / "current_model").iterdir()} == {
        "checkpoint-100",
        "checkpoint-700",
        "checkpoint-800",
    }


def test_doc_symlinked_out_of_the_workspace_is_never_edited(make_example, tmp_path):
    ex = make_example(start_processes=False)
    outside = tmp_path / "shared-notes.md"
    outside.write_bytes((ex.base / "CLAUDE.md").read_bytes())
    (ex.base / "CLAUDE.md").unlink()
    (ex.base / "CLAUDE.md").symlink_to(outside)
    before = outside.read_bytes()
    run, out = fix(ex.base, Safety.SAFE, only=("config.doc-drift",))
    assert outside.read_bytes() == before
    assert any("symlink out of the workspace" in why for _, why in run.not_applied), out


def test_rewrite_touches_only_the_value_and_keeps_line_endings():
    text = "a\r\n- Eval steps: 10\r\n| lr | 1e-4 |\r\nend"
    drifts = [
        {
            "key": "eval_steps",
            "line": 2,
            "start": 14,
            "end": 16,
            "doc_value": "10",
            "config_value": 500,
            "line_text": "- Eval steps: 10",
        },
        {
            "key": "learning_rate",
            "line": 3,
            "start": 7,
            "end": 11,
            "doc_value": "1e-4",
            "config_value": 0.0002,
            "line_text": "| lr | 1e-4 |",
        },
    ]
    new, changes = rewrite(text, drifts)
    assert new == "a\r\n- Eval steps: 500\r\n| lr | 0.0002 |\r\nend"
    assert [c["to"] for c in changes] == ["500", "0.0002"]


def test_config_edit_keeps_the_other_bytes():
    text = '{\n  "eval_steps": 500,\n  "save_total_limit": null,\n  "lora": {"r": 8}\n}\n'
    assert edit_json_text(text, {"save_total_limit": 3}) == text.replace("null", "3")
    added = edit_json_text('{\n  "a": 1\n}\n', {"save_total_limit": 3})
    assert added == '{\n  "a": 1,\n  "save_total_limit": 3\n}\n'


def test_unsafe_config_fix_sets_the_limit_with_a_backup(make_example):
    ex = make_example(start_processes=False)
    before = (ex.base / "config.json").read_text()
    run, out = fix(ex.base, Safety.UNSAFE, only=("set-save-total-limit",), keep=4)
    after = (ex.base / "config.json").read_text()
    assert json.loads(after)["save_total_limit"] == 4
    assert after == before.replace('"save_total_limit": null', '"save_total_limit": 4')
    assert [p.read_text() for p in ex.base.glob("config.json.bak-*")] == [before]
    assert "checkpoints.no-retention" in {f.code for f in run.resolved}, out


def test_requeue_stuck_file_moves_it_back(make_example):
    ex = make_example(start_processes=False)  # no training runs: the processing file is stuck
    stuck = ex.base / "queue/processing/lattice_autogen_20000_seed5678_converted.jsonl"
    data = stuck.read_bytes()
    run, out = fix(ex.base, Safety.SAFE, only=("queue.stuck",))
    assert not stuck.exists()
    assert (ex.base / "inbox" / stuck.name).read_bytes() == data
    assert "queue.stuck" in {f.code for f in run.resolved}, out


def test_malformed_pid_file_is_removed_when_no_daemon_runs(make_example):
    ex = make_example(start_processes=False)
    (ex.base / ".daemon.pid").write_text("not a pid\n")
    ws, run = plans_for(ex.base, Safety.SAFE, only=("daemon.pid-malformed",))
    plan = next(p for p in run.chosen if p.fix_id == "remove-malformed-pid-file")
    outcome = plan.apply(ApplyContext(ws, Journal(ex.base / "logs/j.jsonl"), plan, run_id="t"))
    assert outcome.ok and not (ex.base / ".daemon.pid").exists()


def test_journal_survives_a_torn_line_and_reports_interrupted_actions(tmp_path):
    path = tmp_path / "logs/j.jsonl"
    j = Journal(path)
    j.append(run="r1", fix="prune-checkpoints", action="delete", target="a", result="started", message="")
    with open(path, "ab") as fh:
        fh.write(b'{"torn": ')
    j.append(
        run="r1",
        fix="sync-doc-value",
        action="edit",
        target="b",
        result="applied",
        message="token=hf_abcdefghijklmnopqrstuvwx",
    )
    entries = read_journal(path)
    assert [e["target"] for e in entries] == ["a", "b"]
    assert "hf_abcdefghij" not in path.read_text()  # secrets redacted
    assert [e["target"] for e in interrupted(entries)] == ["a"]


def test_cli_usage_errors_and_dry_run(make_example):
    ex = make_example(start_processes=False)
    runner = CliRunner()
    for args in (["fix", str(ex.base)], ["fix", str(ex.base), "--safe", "--unsafe"]):
        result = runner.invoke(app, args)
        assert result.exit_code == 64, result.output
    result = runner.invoke(app, ["fix", str(ex.base), "--safe", "--dry-run"])
    assert result.exit_code == 2, result.output  # the audit's verdict: daemon.dead is critical
    assert "[1] sync-doc-value (safe)" in result.output and "Dry run: nothing was changed." in result.output


def test_unsafe_without_yes_is_refused_when_not_interactive(make_example):
    ex = make_example(start_processes=False)
    set_best(ex.base, "checkpoint-100")
    before = tree_hashes(ex.base)
    result = CliRunner().invoke(app, ["fix", str(ex.base), "--unsafe", "--only", "checkpoints", "--keep", "2"])
    assert "need --yes" in result.output and "Aborted: nothing was changed." in result.output
    assert tree_hashes(ex.base, skip=(".healthkit-fix.lock",)) == before


def test_the_content_digest_is_hashlibs_sha256_without_importing_hashlib():
    """fix.fileops.sha256_hex uses CPython's built-in SHA-256 (no OpenSSL start-up); the digest is hashlib's."""
    import hashlib
    import subprocess
    import sys

    from healthkit.fix.fileops import sha256_hex

    for data in (b"", b"abc", bytes(range(256)) * 1000):
        assert sha256_hex(data) == hashlib.sha256(data).hexdigest()
    probe = (
        "import sys; from healthkit.fix.fileops import sha256_hex; sha256_hex(b'x'); print('hashlib' in sys.modules)"
    )
    r = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert r.stdout.strip() == "False", r.stderr
