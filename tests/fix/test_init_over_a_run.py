"""`healthkit init` never turns an existing run into one a safe fix prunes (issue 31, items 1 and 10).

init refuses a folder that already holds checkpoints (any format) and a path that is a file; the retention limit it
writes as a default is marked as ours, so a safe prune acts only on a limit the user declared or the one our trainer
runs with in its own workspace.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from healthkit.contract.retry_checkpoints import MARK
from healthkit.fix import Safety

from ..conftest import make_checkpoint, run_cli
from .conftest import fix, set_checkpoint_mtimes_past


def _plain_trainer_run(base: Path, n: int = 6) -> None:
    """What a plain `transformers.Trainer` script leaves: checkpoint-N folders in its output_dir, no limit, no config."""
    for s in range(10, 10 * n + 10, 10):
        make_checkpoint(base, s)


def _names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.glob("checkpoint-*"))


def test_init_refuses_a_folder_holding_a_run_and_writes_nothing(tmp_path):
    base = tmp_path / "run"
    _plain_trainer_run(base)
    before = sorted(p.name for p in base.iterdir())
    for extra in ((), ("--force",), ("--tiny-model",)):
        r = run_cli("init", str(base), *extra)
        assert r.returncode == 73, r
        msg = r.stderr.decode()
        assert "already holds a training run" in msg and "6 " in msg and "init --detect" in msg, msg
        assert "nothing was written" in msg and "Traceback" not in msg
        assert sorted(p.name for p in base.iterdir()) == before  # no config.json, healthkit.toml, README.md, queue/
    assert run_cli("init", str(base), "--detect").returncode == 0
    assert sorted(p.name for p in base.iterdir()) == sorted(before + ["healthkit.toml"])


def test_init_refuses_a_lightning_run_in_its_own_layout(tmp_path):
    base = tmp_path / "lit"
    ck = base / "lightning_logs" / "version_0" / "checkpoints"
    ck.mkdir(parents=True)
    for e in range(3):
        (ck / f"epoch={e}-step={10 * (e + 1)}.ckpt").write_bytes(b"PK\x03\x04" + b"x" * 100)
    r = run_cli("init", str(base))
    assert r.returncode == 73 and b"already holds a training run" in r.stderr, r
    assert not (base / "config.json").exists()


def test_init_on_a_file_is_a_clear_refusal_not_a_traceback(tmp_path):
    f = tmp_path / "notes.txt"
    f.write_text("mine\n")
    for target in (f, f / "ws"):
        r = run_cli("init", str(target))
        assert r.returncode == 73, r
        assert b"is not a folder" in r.stderr and b"Traceback" not in r.stderr, r
    assert f.read_text() == "mine\n"


def test_init_never_replaces_a_users_config_or_readme(tmp_path):
    base = tmp_path / "ws"
    base.mkdir()
    (base / "config.json").write_text('{"base_model": "mine"}\n')
    (base / "README.md").write_text("# my notes\n")
    r = run_cli("init", str(base), "--force")
    assert r.returncode == 0, r
    assert (base / "config.json").read_text() == '{"base_model": "mine"}\n'
    assert (base / "README.md").read_text() == "# my notes\n"


def test_a_limit_init_wrote_is_not_a_declared_one(tmp_path):
    """The issue's path: init on an empty folder, then a plain Trainer run's checkpoints land in it."""
    base = tmp_path / "ws"
    assert run_cli("init", str(base)).returncode == 0
    cfg = json.loads((base / "config.json").read_text())
    assert cfg["save_total_limit"] == 3 and cfg["$healthkit_defaults"] == {"save_total_limit": 3}
    _plain_trainer_run(base / "current_model", 6)
    set_checkpoint_mtimes_past(base)

    _, out = fix(base, Safety.SAFE, only=("checkpoints.bloat",))
    assert _names(base / "current_model") == [f"checkpoint-{s}" for s in range(10, 70, 10)], out
    assert "prune-checkpoints (unsafe)" in out, out
    report = json.loads(run_cli("audit", str(base), "--format", "json").stdout)
    bloat = next(f for f in report["findings"] if f["code"] == "checkpoints.bloat")
    assert bloat["data"]["limit_source"] == "init-default" and "healthkit init" in bloat["data"]["declared_by"]

    # The user declares it (here: a different value): now it is theirs, and the safe prune applies it.
    cfg["save_total_limit"] = 4
    (base / "config.json").write_text(json.dumps(cfg))
    _, out = fix(base, Safety.SAFE, only=("checkpoints.bloat",))
    assert _names(base / "current_model") == [f"checkpoint-{s}" for s in range(30, 70, 10)], out


def test_our_trainers_own_checkpoints_prune_safely_under_the_init_default(tmp_path):
    """Where our trainer runs with the limit init wrote (its checkpoints carry our marker), the safe prune works as today."""
    base = tmp_path / "ws"
    assert run_cli("init", str(base)).returncode == 0
    shutil.rmtree(base / "current_model")
    _plain_trainer_run(base / "current_model", 6)
    for d in (base / "current_model").glob("checkpoint-*"):
        (d / MARK).write_text(json.dumps({"file": "a.jsonl", "step": int(d.name.split("-")[1])}))
    set_checkpoint_mtimes_past(base)
    _, out = fix(base, Safety.SAFE, only=("checkpoints.bloat",))
    assert _names(base / "current_model") == ["checkpoint-40", "checkpoint-50", "checkpoint-60"], out


def test_plain_init_names_its_placeholder_model_folder_and_the_audit_calls_it_that(tmp_path):
    """Issue 31 item 11: not CRITICAL 'reads like a hub id', but a placeholder that says what to put where."""
    base = tmp_path / "ws"
    assert run_cli("init", str(base)).returncode == 0
    note = (base / "models" / "base" / "PUT_YOUR_MODEL_HERE.txt").read_text()
    assert str(base / "models" / "base") in note and "huggingface-cli download" in note
    r = run_cli("audit", str(base), "--format", "json")
    rep = json.loads(r.stdout)
    assert r.returncode == 1 and rep["status"] == "warning", rep["findings"]
    (f,) = rep["findings"]
    assert f["code"] == "config.base-model-not-local" and f["severity"] == "warning"
    assert f["title"] == "base_model 'models/base' is a placeholder not filled in yet"
    start = run_cli("daemon", "start", str(base))
    assert start.returncode == 78 and b"placeholder" in start.stderr, start
