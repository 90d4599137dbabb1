"""config.doc-drift: every form people state config values in, compared by meaning, with spans a fix can rewrite."""

from __future__ import annotations

import json
import subprocess

import pytest

from healthkit.checks.drift import drift_check
from healthkit.contract.docvalues import KeyIndex, statements

from ..conftest import require_tool
from .conftest import call, codes, make_ws, only, result, run

CONFIG = {
    "base_model": "/models/base",
    "eval_steps": 500,
    "save_steps": 100,
    "learning_rate": 2e-4,
    "per_device_train_batch_size": 4,
    "max_steps": 1000,
    "bf16": True,
    "lora": {"r": 128, "alpha": 128},
    "hf_token": "hf_abcdefghijklmnopqrstuvwxyz123456",
}


def drift_of(tmp_path, doc: str, config: dict | None = None, name: str = "CLAUDE.md"):
    make_ws(tmp_path, {name: doc}, config=config or CONFIG)
    return run(tmp_path, "drift")


def drifts(report) -> list[dict]:
    return [d for f in report.findings for d in f.data["drifts"]]


def pairs(report) -> list[tuple[str, str]]:
    return [(d["key"], d["doc_value"]) for d in drifts(report)]


def assert_spans(report) -> None:
    """The fix engine rewrites exactly line_text[start:end]: it must be the doc's value."""
    for d in drifts(report):
        assert d["line_text"][d["start"] : d["end"]] == d["doc_value"], d


# --- every form, one drifting value each -------------------------------------------------

FORMS = [
    ("colon", "eval_steps: 10\n", "eval_steps", "10"),
    ("equals", "eval_steps = 10\n", "eval_steps", "10"),
    ("bullet human label", "## Config\n- Eval steps: 10\n", "eval_steps", "10"),
    ("numbered list", "1. Eval steps: 10\n", "eval_steps", "10"),
    ("bold label colon inside", "**Eval steps:** 10\n", "eval_steps", "10"),
    ("bold label colon outside", "**Eval steps**: 10\n", "eval_steps", "10"),
    ("bullet bold label", "- **eval_steps**: 10\n", "eval_steps", "10"),
    ("code label", "`eval_steps`: 10\n", "eval_steps", "10"),
    ("italic label", "*Eval steps:* 10\n", "eval_steps", "10"),
    ("task list item", "- [x] eval_steps: 10\n", "eval_steps", "10"),
    ("inline code pair", "Use `save_steps=50` when saving.\n", "save_steps", "50"),
    ("inline code colon", "We set `save_steps: 50` in config.\n", "save_steps", "50"),
    ("human learning rate", "Learning rate: 1e-4\n", "learning_rate", "1e-4"),
    ("learning rate sentence end", "Learning rate: 1e-4.\n", "learning_rate", "1e-4"),
    ("bold value", "Learning rate: **1e-4**\n", "learning_rate", "1e-4"),
    ("alias lr", "- LR: 3e-4\n", "learning_rate", "3e-4"),
    ("batch size label", "- Batch size: 8\n", "per_device_train_batch_size", "8"),
    ("thousands separator", "Max steps: 2,000\n", "max_steps", "2,000"),
    ("boolean yes/no", "- bf16: no\n", "bf16", "no"),
    ("is backticked path", "base_model is `/models/other/`\n", "base_model", "/models/other/"),
    ("two-word is label", "The base model is `/models/other`.\n", "base_model", "/models/other"),
    ("quoted", 'base_model: "/models/other"\n', "base_model", "/models/other"),
    ("blockquote", "> eval_steps: 10\n", "eval_steps", "10"),
    ("table row", "| Setting | Value |\n|---|---|\n| Eval steps | 10 |\n", "eval_steps", "10"),
    ("table code cell", "| key | value |\n|--|--|\n| `eval_steps` | `10` |\n", "eval_steps", "10"),
    ("table bold cell", "| key | value |\n|--|--|\n| **eval_steps** | **10** |\n", "eval_steps", "10"),
    (
        "table with key column",
        "| Setting | Key | Value |\n|-|-|-|\n| Eval steps | eval_steps | 10 |\n",
        "eval_steps",
        "10",
    ),
    ("json block", '```json\n{\n  "eval_steps": 10,\n  "save_steps": 100\n}\n```\n', "eval_steps", "10"),
    ("one-line json block", '```json\n{"eval_steps": 10, "save_steps": 100}\n```\n', "eval_steps", "10"),
    ("json string value", '```json\n{"base_model": "/models/other"}\n```\n', "base_model", "/models/other"),
    ("yaml block", "```yaml\neval_steps: 10  # evaluate often\nsave_steps: 100\n```\n", "eval_steps", "10"),
    ("unlabeled fence", "```\neval_steps: 10\n```\n", "eval_steps", "10"),
    ("toml block", "```toml\neval_steps = 10\n```\n", "eval_steps", "10"),
]


@pytest.mark.parametrize("doc,key,value", [f[1:] for f in FORMS], ids=[f[0] for f in FORMS])
def test_each_form_is_read_with_an_exact_span(tmp_path, doc, key, value):
    report = drift_of(tmp_path, doc)
    assert codes(report) == ["config.doc-drift"]
    assert pairs(report) == [(key, value)]
    assert_spans(report)


# --- nested and grouped values -------------------------------------------------------------


def test_bold_group_label_nested_config(tmp_path):
    report = drift_of(tmp_path, "- **LoRA:** r=64, alpha=16\n")
    assert pairs(report) == [("lora.r", "64"), ("lora.alpha", "16")]
    assert [d["config_value"] for d in drifts(report)] == [128, 128]
    assert_spans(report)


def test_bold_group_label_flat_config(tmp_path):
    report = drift_of(tmp_path, "**LoRA:** r=64, alpha=128\n", {"lora_r": 128, "lora_alpha": 128})
    assert pairs(report) == [("lora_r", "64")]
    assert_spans(report)


def test_group_label_matching_config_is_healthy(tmp_path):
    report = drift_of(tmp_path, "**LoRA:** r=128, alpha=128\n")
    assert codes(report) == []
    assert [h.title for h in report.healthy] == ["Docs match config.json"]


def test_yaml_nested_keys_follow_indentation(tmp_path):
    doc = "```yaml\ntraining:\n  eval_steps: 10\nlora:\n  r: 8\n  alpha: 128\n```\n"
    report = drift_of(tmp_path, doc, {**CONFIG, "r": 8})  # a top-level `r` must not capture lora.r
    assert pairs(report) == [("eval_steps", "10"), ("lora.r", "8")]
    assert [d["line"] for d in drifts(report)] == [3, 5]
    assert_spans(report)


def test_yaml_flow_mapping(tmp_path):
    report = drift_of(tmp_path, "```yaml\nlora: {r: 8, alpha: 128}\n```\n")
    assert pairs(report) == [("lora.r", "8")]
    assert_spans(report)


def test_json_nested_objects_and_arrays(tmp_path):
    doc = '```json\n{\n  "lora": {"r": 8, "alpha": 128},\n  "targets": [{"r": 1}],\n  "eval_steps": 500\n}\n```\n'
    report = drift_of(tmp_path, doc, {**CONFIG, "targets": ["q_proj"]})
    assert pairs(report) == [("lora.r", "8")]
    assert_spans(report)


# --- compared by meaning: equal values are not drift ---------------------------------------


@pytest.mark.parametrize(
    "doc",
    [
        "Learning rate: 0.0002\n",
        "- learning_rate: 2.0e-4\n",
        "Max steps: 1,000\n",
        "max_steps: 1000.0\n",
        "- bf16: yes\n",
        "- bf16: true\n",
        "**bf16:** on\n",
        "eval_steps: 500\n",
        '```json\n{"eval_steps": 500, "learning_rate": 0.0002, "bf16": true}\n```\n',
    ],
    ids=["lr-decimal", "lr-mantissa", "thousands", "float-int", "yes", "true", "on", "same", "json"],
)
def test_same_value_written_differently_is_not_drift(tmp_path, doc):
    report = drift_of(tmp_path, doc)
    assert codes(report) == []
    assert result(report, "drift").status.value == "ok"


def test_scientific_notation_equal(tmp_path):
    report = drift_of(tmp_path, "Learning rate: 2e-5\n", {"learning_rate": 0.00002})
    assert codes(report) == []


def test_ten_versus_five_hundred_is_drift_with_evidence(tmp_path):
    doc = "# Notes\n\nThe daemon trains the queue.\n\n## Current configuration\n- Eval steps: 10\n- Save steps: 100\n"
    report = drift_of(tmp_path, doc)
    f = only(report, "config.doc-drift")
    assert f.severity.value == "warning"
    assert f.title == "Config drift in CLAUDE.md"
    assert "CLAUDE.md:6 says: `eval_steps: 10`" in f.problem
    assert "Actual config.json: `eval_steps: 500`" in f.problem
    grep, jq = f.evidence
    assert grep.command == "grep -n -F -e '- Eval steps: 10' CLAUDE.md"
    assert grep.observed == "6:- Eval steps: 10"
    assert jq.command == "jq '{eval_steps}' config.json"
    assert json.loads(jq.observed) == {"eval_steps": 500}
    assert [x.id for x in f.fixes] == ["sync-doc-value"] and f.fixes[0].safety == "safe"
    assert f.data["doc"] == str(tmp_path / "CLAUDE.md")
    d = f.data["drifts"][0]
    assert (d["key"], d["line"], d["doc_value"], d["config_value"]) == ("eval_steps", 6, "10", 500)
    assert_spans(report)


def test_evidence_commands_print_what_the_report_observed(tmp_path):
    require_tool("grep", "grep")
    require_tool("jq", "jq")
    report = drift_of(tmp_path, "- Eval steps: 10\n**LoRA:** r=64, alpha=128\n")
    f = only(report, "config.doc-drift")
    for e in f.evidence:
        out = subprocess.run(e.command, shell=True, cwd=tmp_path, capture_output=True, text=True, check=True).stdout
        if e.command.startswith("jq"):
            assert json.loads(out) == json.loads(e.observed)
        else:
            assert out.strip() == e.observed


def test_nested_evidence_shows_only_the_drifted_leaves(tmp_path):
    config = {**CONFIG, "lora": {"r": 128, "alpha": 128, "auth_token": "hf_secretsecretsecretsecret1234"}}
    report = drift_of(tmp_path, "**LoRA:** r=64\n", config)
    f = only(report, "config.doc-drift")
    jq = f.evidence[1]
    assert jq.command == """jq '{"lora.r": .lora.r}' config.json"""
    assert json.loads(jq.observed) == {"lora.r": 128}
    assert "secret" not in json.dumps(f.to_dict())


def test_trailing_slash_is_a_note_not_a_finding(tmp_path):
    report = drift_of(tmp_path, "base_model is `/models/base/`\n")
    assert codes(report) == []
    notes = result(report, "drift").notes
    assert len(notes) == 1 and "CLAUDE.md:1" in notes[0] and "trailing slash" in notes[0]


def test_several_docs_one_finding_each(tmp_path):
    make_ws(
        tmp_path,
        {"README.md": "- Save steps: 50\n", "AGENTS.md": "save_steps: 100\n"},
        config=CONFIG,
        claude="- Eval steps: 10\n",
    )
    report = run(tmp_path, "drift")
    assert [f.title for f in report.findings] == ["Config drift in CLAUDE.md", "Config drift in README.md"]


def test_doc_paths_come_from_settings(tmp_path):
    make_ws(
        tmp_path,
        {"docs/setup.md": "- Eval steps: 10\n"},
        config=CONFIG,
        claude="- Eval steps: 20\n",
        toml='[paths]\ndocs = ["docs/setup.md"]\n',
    )
    report = run(tmp_path, "drift")
    assert [f.title for f in report.findings] == ["Config drift in docs/setup.md"]


# --- no false positives -------------------------------------------------------------------

PROSE = """\
# Eval steps: 10

## eval_steps = 10

The learning rate: see below.
Learning rate: see the table in the appendix.
Base model: see below
bf16: no idea yet, ask the team
Version: 2.0 of this guide. Tested with Python 3.11 and transformers==4.46.
Set per the docs at https://example.org/train?eval_steps=3&lr=0.1 and /opt/x/eval_steps=7.

```bash
python train.py --eval_steps 10
export EVAL_STEPS=10
eval_steps=10 ./run.sh
```

```python
learning_rate = 1e-3
```

    eval_steps: 10

hf_token: hf_zzzzzzzzzzzzzzzzzzzzzzzzzzzz
"""


def test_prose_headings_code_and_versions_are_not_statements(tmp_path):
    report = drift_of(tmp_path, PROSE, {**CONFIG, "model_version": "v3"})
    assert codes(report) == [], pairs(report)
    assert result(report, "drift").status.value == "ok"


def test_secret_keys_never_reach_the_report(tmp_path):
    doc = '- Eval steps: 10\nhf_token: hf_olddocvalueolddocvalue0000\n```json\n{"hf_token": "x"}\n```\n'
    report = drift_of(tmp_path, doc)
    f = only(report, "config.doc-drift")
    assert [d["key"] for d in f.data["drifts"]] == ["eval_steps"]
    text = json.dumps(f.to_dict()) + json.dumps(result(report, "drift").notes)
    assert "hf_token" not in text and "hf_old" not in text and "hf_abc" not in text


def test_secret_on_the_same_line_is_masked_in_the_evidence(tmp_path):
    report = drift_of(tmp_path, "- eval_steps: 10, api_key=sk-aaaaaaaaaaaaaaaaaaaaaaaaaaaaa\n")
    f = only(report, "config.doc-drift")
    assert "sk-aaaa" not in f.evidence[0].observed


def test_unknown_keys_are_ignored(tmp_path):
    report = drift_of(tmp_path, "- Warmup ratio: 0.1\n- foo: bar\n")
    assert codes(report) == []
    assert report.healthy == []  # nothing was checked, so nothing is claimed


def test_list_and_object_values_are_not_compared(tmp_path):
    report = drift_of(tmp_path, "lora: r=128\ntargets: q_proj\n", {"targets": ["q_proj", "v_proj"], "lora": {"r": 128}})
    assert codes(report) == []


# --- unreadable docs and configs -------------------------------------------------------------


def test_binary_doc_is_a_note(tmp_path):
    make_ws(tmp_path, {"CLAUDE.md": b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR"}, config=CONFIG, readme="- Eval steps: 10\n")
    report = run(tmp_path, "drift")
    r = result(report, "drift")
    assert r.error is None
    assert codes(report) == ["config.doc-drift"]  # the other doc is still checked
    assert any("CLAUDE.md not read" in n and "binary" in n for n in r.notes)


def test_non_utf8_doc_is_a_note(tmp_path):
    make_ws(tmp_path, {"CLAUDE.md": "eval_steps: 10 café\n".encode("latin-1")}, config=CONFIG)
    report = run(tmp_path, "drift")
    r = result(report, "drift")
    assert (r.error, codes(report), r.status.value) == (None, [], "ok")
    assert any("not valid UTF-8" in n for n in r.notes)


def test_doc_that_is_a_directory_is_a_note(tmp_path):
    (tmp_path / "CLAUDE.md").mkdir()
    make_ws(tmp_path, config=CONFIG)
    r = result(run(tmp_path, "drift"), "drift")
    assert r.error is None and any("CLAUDE.md not read" in n for n in r.notes)


def test_no_docs_and_no_config_are_notes(tmp_path):
    make_ws(tmp_path, config=CONFIG)
    assert result(run(tmp_path, "drift"), "drift").notes == ["no docs found (CLAUDE.md, AGENTS.md, README.md)"]
    (tmp_path / "config.json").write_text("{not json")
    out = call(drift_check, tmp_path)
    assert out.findings == [] and "config.json unavailable" in out.notes[0]


def test_empty_and_crlf_docs(tmp_path):
    make_ws(tmp_path, {"CLAUDE.md": "", "README.md": "- Eval steps: 10\r\n- Save steps: 100\r\n"}, config=CONFIG)
    report = run(tmp_path, "drift")
    assert pairs(report) == [("eval_steps", "10")]
    assert_spans(report)


# --- the parser directly ------------------------------------------------------------------


def test_statements_span_every_form_in_one_doc():
    doc = "\n".join(t[1] for t in FORMS)
    found = statements(doc, KeyIndex(CONFIG))
    assert found, "no statements"
    for st in found:
        assert st.line_text[st.start : st.end] == st.text
        assert doc.splitlines()[st.line - 1] == st.line_text


def test_unclosed_fence_runs_to_the_end():
    found = statements("```bash\neval_steps: 10\n", KeyIndex(CONFIG))
    assert found == []
    found = statements("```yaml\neval_steps: 10\n", KeyIndex(CONFIG))
    assert [(s.key, s.text, s.line) for s in found] == [("eval_steps", "10", 2)]


def test_random_markdown_never_breaks_the_span_contract():
    """Whatever the text, every statement's span holds its value on its own line (and nothing raises)."""
    import random

    rng = random.Random(7)
    alphabet = "ab_ eval steps:=`*|-#{}[]\",'\n/.0123456789rlora~>\t\\"
    index = KeyIndex({**CONFIG, "a": {"b": {"c": 1}}, "x-y": 2})
    for _ in range(3000):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 80)))
        lines = text.splitlines()
        for st in statements(text, index):
            assert st.line_text == lines[st.line - 1] and st.line_text[st.start : st.end] == st.text, text


# --- what a line says about its own value (issue 11) -----------------------------------------


@pytest.mark.parametrize(
    "doc,kind",
    [
        ("- Eval steps: 10\n", None),
        ("Earlier we tried `eval_steps: 50` but it was too slow\n", "history"),
        ("We used to run with eval_steps=50.\n", "history"),
        ("- Eval steps: 10 (was 500 until the OOM)\n", "decide"),
        ("- Eval steps: 10  # REQUIRED\n", "decide"),
        ("- Eval steps: 10 (do not change)\n", "decide"),
        ("- eval_steps: 10 (eval_steps=500 is too slow)\n", "decide"),
        ("```yaml\neval_steps: 10\n```\n", "fenced"),
        ("```yaml\neval_steps: 10  # never raise this\n```\n", "decide"),
    ],
)
def test_each_drifting_line_is_classified(tmp_path, doc, kind):
    report = drift_of(tmp_path, doc)
    got = [d["guard"] for d in drifts(report)]
    assert got == ([] if kind == "history" else [kind]), (got, result(report, "drift").notes)


def test_ambiguous_labels_are_reported_with_their_candidates():
    from healthkit.contract.docvalues import Ambiguous

    index = KeyIndex({"per_device_train_batch_size": 4, "per_device_eval_batch_size": 8, "batch_size_note": "x"})
    amb: list = []
    assert statements("- Batch size: 16\n| Batch size | 16 |\n", index, amb) == []
    assert amb == [
        Ambiguous("Batch size", ("per_device_eval_batch_size", "per_device_train_batch_size"), 1),
        Ambiguous("Batch size", ("per_device_eval_batch_size", "per_device_train_batch_size"), 2),
    ]
    assert (
        KeyIndex({"batch_size": 1, "per_device_eval_batch_size": 8}).resolve("Batch size") == "batch_size"
    )  # exact wins
