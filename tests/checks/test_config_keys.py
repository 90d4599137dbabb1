"""config.unknown-key (issue 31, item 6): a misspelled key of our trainer's config.json is a warning naming the key it
most likely meant; keys under `training_args` stay allowed, and a foreign config is not judged by our key list."""

from __future__ import annotations

import json

from healthkit.core.detect import HEALTHKIT_SCHEMA_ID

from ..conftest import run_cli
from .conftest import codes, make_ws, only, run

OURS = {"$schema": HEALTHKIT_SCHEMA_ID, "base_model": "/m"}


def test_a_misspelled_key_is_a_warning_with_did_you_mean(tmp_path):
    make_ws(tmp_path, config={**OURS, "save_totl_limit": 1, "training_args": {"lr_scheduler_type": "cosine"}})
    f = only(run(tmp_path, "config"), "config.unknown-key")
    assert f.severity.value == "warning"
    assert f.problem == [
        "The trainer ignores these keys of config.json:",
        "`save_totl_limit`: did you mean `save_total_limit`?",
    ]
    assert f.data["keys"] == [{"key": "save_totl_limit", "did_you_mean": "save_total_limit"}]
    assert f.recommendations == ["Rename `save_totl_limit` to `save_total_limit`"]


def test_known_keys_markers_and_training_args_are_allowed(tmp_path):
    make_ws(
        tmp_path,
        config={
            **OURS,
            "$healthkit_defaults": {"save_total_limit": 3},
            "save_total_limit": 3,
            "training_args": {"anything_transformers_takes": 1},
        },
    )
    assert codes(run(tmp_path, "config")) == []


def test_a_key_unlike_any_setting_points_to_training_args(tmp_path):
    make_ws(tmp_path, config={**OURS, "lr_scheduler_type": "cosine"})
    f = only(run(tmp_path, "config"), "config.unknown-key")
    assert f.problem[1] == "`lr_scheduler_type`: not a setting of the trainer"
    assert f.recommendations == ["Move other transformers TrainingArguments under `training_args`"]


def test_a_foreign_config_is_not_judged_by_our_keys(tmp_path):
    make_ws(tmp_path, config={"model_name": "x", "save_totl_limit": 1}, toml='[paths]\nconfig_schema = "none"\n')
    assert codes(run(tmp_path, "config")) == []


def test_explain_knows_the_code():
    r = run_cli("explain", "config.unknown-key")
    assert r.returncode == 0 and b"misspelling" in r.stdout, r


def test_queue_add_warns_about_the_key(tmp_path):
    base = tmp_path / "ws"
    assert run_cli("init", str(base)).returncode == 0
    cfg = json.loads((base / "config.json").read_text())
    (base / "config.json").write_text(json.dumps({**cfg, "save_totl_limit": 1}))
    data = tmp_path / "a.jsonl"
    data.write_text('{"text": "hello"}\n')
    r = run_cli("queue", "add", str(base), str(data), "--force")
    assert (
        b"WARNING: config.json key `save_totl_limit` is not a setting of the trainer and is ignored: did you mean "
        b"`save_total_limit`?" in r.stderr
    ), r
