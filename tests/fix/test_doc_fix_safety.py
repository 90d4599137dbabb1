"""The safe doc fix rewrites only current-state statements (issue 11 item 5).

Never fenced code blocks, never history, never a line that argues for its own value: those are
reported for a person to decide (both values quoted) and left alone by --safe; --unsafe may rewrite.
A label that fits more than one config key is not mapped; the report says which keys it could be.
"""

from __future__ import annotations

import json
from pathlib import Path

from healthkit.core.api import audit
from healthkit.fix.plan import Safety

from .conftest import fix

REQUIRED_LINE = '  "batch_size": 1,  ← REQUIRED (batch_size=2 causes OOM)'


def ws(base: Path, doc: str, config: dict | None = None) -> Path:
    base.mkdir(parents=True, exist_ok=True)
    cfg = {"base_model": "/models/base", "eval_steps": 500, "batch_size": 2, "learning_rate": 2e-4}
    (base / "config.json").write_text(json.dumps(config or cfg, indent=2))
    (base / "README.md").write_text(doc, encoding="utf-8")
    return base


def drift_finding(base: Path):
    found = [f for f in audit(base, select=["drift"]).findings if f.code == "config.doc-drift"]
    return found[0] if found else None


def drift_notes(base: Path) -> list[str]:
    return [n for r in audit(base, select=["drift"]).results for n in r.notes]


def test_safe_fix_rewrites_prose_but_never_a_fenced_code_block(tmp_path):
    doc = '# Notes\n\n- Eval steps: 10\n\n```json\n{\n  "eval_steps": 10\n}\n```\n'
    base = ws(tmp_path, doc)
    f = drift_finding(base)
    assert [(d["line"], d["guard"]) for d in f.data["drifts"]] == [(3, None), (7, "fenced")]
    run, out = fix(base, Safety.SAFE, only=["config.doc-drift"])
    assert (base / "README.md").read_text() == doc.replace("- Eval steps: 10", "- Eval steps: 500")
    assert "in a fenced code block" in out
    run, out = fix(base, Safety.UNSAFE, only=["config.doc-drift"])  # --unsafe may rewrite it
    assert '"eval_steps": 500' in (base / "README.md").read_text()


def test_a_doc_whose_only_drift_is_fenced_offers_only_an_unsafe_fix(tmp_path):
    doc = "```yaml\neval_steps: 10\n```\n"
    base = ws(tmp_path, doc)
    f = drift_finding(base)
    assert [(r.id, r.safety) for r in f.fixes] == [("sync-doc-value", "unsafe")]
    run, out = fix(base, Safety.SAFE, only=["config.doc-drift"])
    assert (base / "README.md").read_text() == doc and not run.chosen


def test_history_is_not_a_statement_of_the_current_value(tmp_path):
    doc = "Earlier we tried `eval_steps: 50` but it was too slow.\nWe previously used eval_steps=20 as well.\n"
    base = ws(tmp_path, doc)
    assert drift_finding(base) is None
    notes = drift_notes(base)
    assert any("README.md:1: `eval_steps: 50` reads as history" in n for n in notes), notes
    run, out = fix(base, Safety.UNSAFE, only=["drift"])
    assert (base / "README.md").read_text() == doc


def test_a_line_that_argues_for_its_value_is_for_a_person_to_decide(tmp_path):
    doc = f'# Settings\n\n```json\n{{\n{REQUIRED_LINE}\n  "eval_steps": 500\n}}\n```\n'
    base = ws(tmp_path, doc)
    f = drift_finding(base)
    (d,) = f.data["drifts"]
    assert (d["key"], d["doc_value"], d["config_value"], d["guard"]) == ("batch_size", "1", 2, "decide")
    text = " ".join(f.problem)
    assert "a person must decide" in text and "`batch_size: 1`" in text and "says `2`" in text
    assert "batch_size=2" in text
    run, out = fix(base, Safety.SAFE, only=["config.doc-drift"])
    assert (base / "README.md").read_text() == doc, "fix --safe turned the REQUIRED 1 into a 2"
    assert "a person must decide" in out and "(config.json: 2)" in out and "`batch_size: 1`" in out
    fix(base, Safety.UNSAFE, only=["config.doc-drift"])  # the unsafe fix may still rewrite
    assert '"batch_size": 2,  ← REQUIRED' in (base / "README.md").read_text()


def test_prose_that_says_required_or_must_not_change_is_for_a_person(tmp_path):
    doc = "- Eval steps: 10 (must not change: the paper's numbers use it)\n- Learning rate: 1e-4\n"
    base = ws(tmp_path, doc)
    f = drift_finding(base)
    assert [(d["key"], d["guard"]) for d in f.data["drifts"]] == [("eval_steps", "decide"), ("learning_rate", None)]
    fix(base, Safety.SAFE, only=["config.doc-drift"])
    assert (base / "README.md").read_text() == doc.replace("1e-4", "0.0002")


def test_a_label_that_fits_two_keys_is_not_mapped(tmp_path):
    config = {"base_model": "/m", "per_device_train_batch_size": 4, "per_device_eval_batch_size": 8}
    doc = "- Batch size: 16\n"
    base = ws(tmp_path, doc, config)
    assert drift_finding(base) is None
    notes = drift_notes(base)
    assert any(
        '"Batch size" could be `per_device_eval_batch_size` or `per_device_train_batch_size`' in n for n in notes
    ), notes
    fix(base, Safety.UNSAFE, only=["drift"])
    assert (base / "README.md").read_text() == doc
    # one key that fits: mapped as before
    base2 = ws(tmp_path / "one", doc, {"base_model": "/m", "per_device_train_batch_size": 4})
    assert [d["key"] for d in drift_finding(base2).data["drifts"]] == ["per_device_train_batch_size"]


def test_a_current_state_statement_is_still_rewritten_by_the_safe_fix(tmp_path):
    doc = "## Current configuration\n- Eval steps: 10\n- Learning rate: 1e-4\n"
    base = ws(tmp_path, doc)
    run, out = fix(base, Safety.SAFE, only=["config.doc-drift"])
    assert (base / "README.md").read_text() == "## Current configuration\n- Eval steps: 500\n- Learning rate: 0.0002\n"


def test_the_readme_init_writes_is_kept_in_step_by_the_safe_fix(tmp_path):
    """`healthkit init`'s README states the config where `fix --safe` may rewrite it (not in a fenced block), so the
    workspace's own README follows config.json; the finding quotes the doc's own value, not a stock example."""
    from typer.testing import CliRunner

    from healthkit.cli import app

    base = tmp_path / "ws"
    r = CliRunner().invoke(app, ["init", str(base)])
    assert r.exit_code == 0, r.output
    readme = (base / "README.md").read_text(encoding="utf-8")
    assert "```" not in readme and "- `eval_steps`: 50\n" in readme
    assert drift_finding(base) is None
    cfg = json.loads((base / "config.json").read_text())
    cfg.update(eval_steps=500, learning_rate=1e-4)
    (base / "config.json").write_text(json.dumps(cfg, indent=2))
    f = drift_finding(base)
    assert f is not None and [d["guard"] for d in f.data["drifts"]] == [None, None]
    assert "Whoever reads README.md expects `eval_steps` to be 50 while training runs with 500" in f.impact
    docs = audit(base, select=["drift"]).code_docs["config.doc-drift"]
    assert "every 10 steps" not in docs.why
    fix(base, Safety.SAFE, only=["config.doc-drift"])
    text = (base / "README.md").read_text(encoding="utf-8")
    assert "- `eval_steps`: 500\n" in text and "- `learning_rate`: 0.0001\n" in text
    assert drift_finding(base) is None
