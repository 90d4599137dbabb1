"""The hot-path validators agree with the reference implementations (jsonschema, pydantic) they stand in for."""

from __future__ import annotations

import copy
import json
import os
import random

import jsonschema
import pytest

from healthkit.contract.config_model import TrainingConfig, export_schema
from healthkit.contract.configschema import SCHEMA_PATH, config_schema, schema_violations
from healthkit.contract.settings import SettingsError, load_settings
from healthkit.system import fsutil
from healthkit.system.schemalite import UnsupportedSchema, check_supported, validate


def test_shipped_schema_is_the_models_export():
    """Regenerate with `python -m healthkit.contract.config_model` when the model changes."""
    assert json.loads(SCHEMA_PATH.read_text()) == json.loads(json.dumps(export_schema(), sort_keys=True))


def test_shipped_schema_uses_only_supported_keywords():
    check_supported(config_schema())
    with pytest.raises(UnsupportedSchema):
        validate({"type": "string", "pattern": "^a"}, "a")


def _corpus(n: int = 400) -> list:
    rnd = random.Random(1234)
    good = {
        "base_model": "m",
        "eval_steps": 50,
        "save_total_limit": 3,
        "learning_rate": 2e-4,
        "eval_strategy": "steps",
        "validation_split": 0.1,
        "monitor_port": 8080,
        "launcher": "none",
        "drift_policy": "warn",
        "custom_key": [1, 2],
    }
    bad_values = [None, -1, 0, 1, 1.5, 3.0, "x", "", "500", True, [], {}, 1e9, -0.5, 70000]
    out = [good, {}, [], "str", 5, None]
    props = list(config_schema()["properties"])
    for _ in range(n):
        cfg = copy.deepcopy(good)
        for _ in range(rnd.randint(1, 3)):
            key = rnd.choice(props + ["base_model"])
            if rnd.random() < 0.15:
                cfg.pop(key, None)
            else:
                cfg[key] = rnd.choice(bad_values)
        out.append(cfg)
    return out


@pytest.mark.parametrize("cfg", _corpus())
def test_agrees_with_jsonschema(cfg):
    strict_int = jsonschema.Draft202012Validator.TYPE_CHECKER.redefine(
        "integer", lambda _, v: isinstance(v, int) and not isinstance(v, bool)
    )
    ref = jsonschema.validators.extend(jsonschema.Draft202012Validator, type_checker=strict_int)(config_schema())
    ref_pointers = {
        "/" + "/".join(map(str, e.absolute_path)) if e.absolute_path else ""
        for e in ref.iter_errors(cfg)
        if e.validator != "required"
    }
    ref_required = {
        f"/{m.split(chr(39))[1]}" for e in ref.iter_errors(cfg) if e.validator == "required" for m in [e.message]
    }
    ours = {p for p, _ in schema_violations(cfg)}
    assert ours == (ref_pointers | ref_required) or (not ours and not ref_pointers and not ref_required)


@pytest.mark.parametrize("cfg", [c for c in _corpus(150) if isinstance(c, dict)])
def test_agrees_with_the_pydantic_model_in_strict_mode(cfg):
    """What the audit calls invalid is what the trainer refuses (cross-field rules aside)."""
    from pydantic import ValidationError

    try:
        TrainingConfig.model_validate(cfg, strict=True)
        model_ok = True
    except ValidationError as exc:
        model_ok = all(e["type"] == "value_error" and not e["loc"] for e in exc.errors())  # model-level rules only
    assert model_ok == (schema_violations(cfg) == [])


def test_settings_refuse_unknown_keys_and_wrong_types(tmp_path):
    (tmp_path / "healthkit.toml").write_text(
        '[paths]\nconfgi = "x"\n[thresholds]\ndisk_min_free_percent = "ten"\n'
        'stalled_min_seconds = -1\n[monitor]\nports = [8080, "x"]\n[nope]\na = 1\n'
    )
    with pytest.raises(SettingsError) as exc:
        load_settings(tmp_path)
    text = str(exc.value)
    for part in (
        "paths.confgi: unknown setting (did you mean config",
        "thresholds.disk_min_free_percent: must be float, not string",
        "thresholds.stalled_min_seconds: must be > 0",
        "monitor.ports[1]: must be int",
        "nope: unknown setting",
    ):
        assert part in text


def test_settings_values_land_in_dataclasses(tmp_path):
    (tmp_path / "healthkit.toml").write_text(
        '[status_keys]\nval_loss = "validation_loss"\n[monitor]\nports = [1, 2]\n'
        "[retention]\nsave_total_limit = 3\n[thresholds]\ndisk_min_free_percent = 5\n"
    )
    s, path = load_settings(tmp_path)
    assert path == tmp_path / "healthkit.toml"
    assert s.status_keys.val_loss == "validation_loss" and s.status_keys.step == "step"
    assert s.monitor.ports == [1, 2] and s.retention.save_total_limit == 3
    assert s.thresholds.disk_min_free_percent == 5.0 and isinstance(s.thresholds.disk_min_free_percent, float)


def test_du_and_python_walk_agree(tmp_path, monkeypatch, tmp_path_factory):
    root = tmp_path / "current_model"
    a, b = root / "checkpoint-1", root / "checkpoint-2"
    a.mkdir(parents=True), b.mkdir()
    (a / "w").write_bytes(os.urandom(50_000))
    (b / "x").write_bytes(os.urandom(9000))
    (b / "sub").mkdir()
    (b / "sub" / "y").write_bytes(os.urandom(3000))
    (root / "loose.bin").write_bytes(b"1" * 5000)
    outside = tmp_path_factory.mktemp("outside")
    (outside / "big").write_bytes(os.urandom(100_000))
    (root / "checkpoint-3").symlink_to(outside, target_is_directory=True)
    with_du = fsutil.disk_usage_children(root)
    monkeypatch.setattr(fsutil.shutil, "which", lambda name: None)
    walked = fsutil.disk_usage_children(root)
    assert {k: u.bytes for k, u in with_du[0].items()} == {k: u.bytes for k, u in walked[0].items()}
    assert set(with_du[0]) == {"checkpoint-1", "checkpoint-2"}  # the symlink is not followed
    assert with_du[1].bytes == walked[1].bytes
    import subprocess

    assert with_du[1].bytes == int(
        subprocess.run(["du", "-s", "-B1", str(root)], capture_output=True, text=True).stdout.split()[0]
    )
