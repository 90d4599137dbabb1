"""Detection of what healthkit.toml leaves unset: each rule on real files, a home-grown daemon audited end to end,
`healthkit init --detect` round trip, and fixes inside a declared checkpoint folder outside the workspace."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import jsonschema
import pytest

from healthkit.contract.settings import Settings, load_settings
from healthkit.core.api import audit
from healthkit.core.detect import SCAN_DEPTH, Probe, rule_checkpoints, rule_processes, rule_queue, rule_status_keys
from healthkit.fix import FixOptions, Safety, run_fix
from healthkit.reporting.render import render

from .conftest import heavy_modules_after_audit, make_checkpoint, run_cli, wait_for, write_json

SCHEMA = json.loads((Path(__file__).resolve().parents[1] / "healthkit" / "schemas" / "report.schema.json").read_text())

DAEMON_SCRIPT = '''\
"""Our training daemon: watches inbox/ and queue/<priority>/, trains each file itself."""
from transformers import Trainer, TrainingArguments

def train_one(path, cfg):
    trainer = Trainer(model=load_model(cfg), args=TrainingArguments(output_dir=cfg["current_model_dir"],
                      save_steps=cfg["save_steps"], save_total_limit=None))
    trainer.train()
'''

README = """\
# My fine-tuning box

Settings (keep in sync with config.json):

```json
{"learning_rate": 0.0002, "save_steps": 100, "eval_steps": 50}
```
"""


def probe(base: Path) -> Probe:
    settings, _ = load_settings(base)
    return Probe(base, settings, settings.explicit)


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def old_checkpoint(root: Path, step: int, **kw) -> Path:
    """A complete checkpoint last written an hour ago (not one that may be being written)."""
    d = make_checkpoint(root, step, **kw)
    old = time.time() - 3600
    for p in [*d.iterdir(), d]:
        os.utime(p, (old, old))
    return d


def home_grown_daemon(base: Path, checkpoints: int = 31) -> Path:
    """The setup of issue 8 and DESIGN.md's "Foreign workspaces", written as such a daemon leaves it."""
    base.mkdir(parents=True, exist_ok=True)
    write_json(
        base / "config.json",
        {
            "base_model": "/models/llama-8b",
            "current_model_dir": "current_model_small",
            "batch_size": 4,
            "learning_rate": 2e-4,
            "save_steps": 100,
            "eval_steps": 50,
            "lora": {"r": 128, "alpha": 128},
        },
    )
    (base / "home_daemon.py").write_text(DAEMON_SCRIPT)
    (base / "CLAUDE.md").write_text(
        "# Training notes\n\n## Current configuration\n- Batch size: 1\n- Learning rate: 2e-4\n"
    )
    (base / "README.md").write_text(README)
    for d in (
        "inbox",
        "queue/high",
        "queue/normal",
        "queue/low",
        "queue/processing",
        "queue/failed",
        "queue/recently_completed",
        "control",
    ):
        (base / d).mkdir(parents=True, exist_ok=True)
    write_json(base / "queue" / "queue_metadata.json", {"files": []})
    (base / "queue/recently_completed/batch_seed1.jsonl").write_text('{"text": "x"}\n')
    for i in range(1, checkpoints + 1):
        old_checkpoint(
            base / "current_model_small",
            i * 100,
            history=[{"step": s, "loss": 2.0 / (1 + s / 100)} for s in range(10, i * 100 + 1, 10)],
        )
    write_json(
        base / "status" / "training_status.json",
        {
            "status": "training",
            "current_step": checkpoints * 100 + 20,
            "total_steps": 5000,
            "loss": 0.31,
            "validation_loss": 0.512,
            "val_train_gap": 0.2,
            "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        },
    )
    (base / ".daemon.pid").write_text(f"{dead_pid()}\n")
    os.utime(base / ".daemon.pid", (time.time() - 3600,) * 2)
    return base


# --- rules --------------------------------------------------------------------------------------


def test_checkpoint_folder_from_a_config_key(tmp_path):
    write_json(tmp_path / "config.json", {"output_dir": "runs/out"})
    make_checkpoint(tmp_path / "runs" / "out", 10)
    [guess] = rule_checkpoints(probe(tmp_path))
    assert (guess.setting, guess.value) == ("paths.checkpoints_config_key", "output_dir")
    assert guess.evidence == 'config.json `output_dir` = "runs/out" names the checkpoint folder'


def test_checkpoint_folder_from_a_depth_limited_scan(tmp_path):
    write_json(tmp_path / "config.json", {"lr": 1})
    for s in (10, 20):
        make_checkpoint(tmp_path / "experiments" / "exp1", s)
    make_checkpoint(tmp_path / "a" / "b" / "c" / "d", 10)  # holder at depth 4: beyond the scan
    (tmp_path / "experiments" / "exp2" / "checkpoint-5").mkdir(parents=True)  # no trainer_state.json: not one
    [guess] = rule_checkpoints(probe(tmp_path))
    assert (guess.setting, guess.value) == ("paths.checkpoints", "experiments/exp1")
    assert guess.evidence.startswith(
        f"`experiments/exp1/` holds 2 checkpoint-N/trainer_state.json (folders scanned to depth {SCAN_DEPTH})"
    )
    assert audit(tmp_path, select=["checkpoints"], record_costs=False).facts.get("checkpoints", {}) is not None


def test_the_default_folder_holding_checkpoints_is_no_guess(tmp_path):
    make_checkpoint(tmp_path / "current_model", 10)
    make_checkpoint(tmp_path / "old" / "runs", 10)
    assert rule_checkpoints(probe(tmp_path)) == []


def test_status_key_aliases_quote_the_real_key(tmp_path):
    write_json(
        tmp_path / "status" / "training_status.json",
        {"status": "training", "global_step": 7, "eval_loss": 1.5, "last_update": "x", "val_loss": None},
    )
    got = {g.setting: (g.value, g.evidence) for g in rule_status_keys(probe(tmp_path))}
    assert got == {
        "status_keys.step": ("global_step", '`status/training_status.json` has `"global_step": 7` and no `step`'),
        "status_keys.updated_at": (
            "last_update",
            '`status/training_status.json` has `"last_update": "x"` and no `updated_at`',
        ),
        "status_keys.state": ("status", '`status/training_status.json` has `"status": "training"` and no `state`'),
    }  # val_loss exists (null): a null is not a missing key, so no alias is guessed for it


def test_a_declared_setting_is_never_guessed(tmp_path):
    (tmp_path / "healthkit.toml").write_text('[status_keys]\nstep = "my_step"\n[paths]\nqueue_pending = ["q"]\n')
    write_json(tmp_path / "status" / "training_status.json", {"current_step": 3})
    (tmp_path / "inbox").mkdir()
    assert rule_status_keys(probe(tmp_path)) == [] and rule_queue(probe(tmp_path)) == []


def test_processes_from_the_pid_files_live_process_and_the_scripts(tmp_path, request):
    (tmp_path / "my_daemon.py").write_text("import pathlib, time\npathlib.Path('up').write_text('1')\ntime.sleep(60)\n")
    (tmp_path / "train_lora.py").write_text("")
    proc = subprocess.Popen([sys.executable, "my_daemon.py"], cwd=tmp_path)
    request.addfinalizer(lambda: (proc.kill(), proc.wait()))
    assert wait_for(lambda: (tmp_path / "up").exists())
    (tmp_path / ".daemon.pid").write_text(f"{proc.pid}\n")
    got = {g.setting: (g.value, g.evidence) for g in rule_processes(probe(tmp_path))}
    assert got == {
        "processes.daemon": (["my_daemon.py"], "the PID file's live process runs `my_daemon.py`"),
        "processes.training": (["train_lora.py"], "training script(s) in the workspace: `train_lora.py`"),
    }


def test_a_reused_pid_running_another_program_is_no_evidence(tmp_path, request):
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    request.addfinalizer(lambda: (proc.kill(), proc.wait()))
    (tmp_path / ".daemon.pid").write_text(f"{proc.pid}\n")
    assert rule_processes(probe(tmp_path)) == []


# --- a home-grown daemon, no healthkit.toml ----------------------------------------------------------


def test_home_grown_daemon_audited_without_settings(tmp_path):
    base = home_grown_daemon(tmp_path / "box")
    report = audit(base, record_costs=False)
    codes = sorted(f.code for f in report.findings)
    assert codes == ["checkpoints.bloat", "checkpoints.no-retention", "config.doc-drift", "daemon.dead"], codes
    drift = next(f for f in report.findings if f.code == "config.doc-drift")
    assert (
        "CLAUDE.md:4 says: `batch_size: 1`" in drift.problem and "Actual config.json: `batch_size: 4`" in drift.problem
    )
    bloat = next(f for f in report.findings if f.code == "checkpoints.bloat")
    assert "31 checkpoints exist (checkpoint-100 through checkpoint-3100, ordered by step)" in bloat.problem
    assert any(h.title == "Validation is running" and "validation_loss: 0.512" in h.details[0] for h in report.healthy)
    inferred = {i["setting"]: i["value"] for i in report.settings_inferred}
    assert inferred == {
        "paths.config_schema": "none",
        "paths.checkpoints_config_key": "current_model_dir",
        "paths.queue_pending": ["inbox", "queue/high", "queue/normal", "queue/low"],
        "paths.queue_done": "queue/recently_completed",
        "status_keys.step": "current_step",
        "status_keys.val_loss": "validation_loss",
        "status_keys.updated_at": "timestamp",
        "status_keys.state": "status",
        "processes.daemon": ["home_daemon.py"],
        "processes.training_in_daemon": True,
        "run.format": "hf",
    }
    data = json.loads(report.to_json())
    jsonschema.validate(data, SCHEMA)
    assert {
        "setting": "status_keys.val_loss",
        "value": "validation_loss",
        "evidence": '`status/training_status.json` has `"validation_loss": 0.512` and no `val_loss`',
    } in data["settings_inferred"]
    md = render(report, "md")
    assert (
        '- paths.checkpoints_config_key: `current_model_dir` (config.json `current_model_dir` = "current_model_small" names'
        in md
    )


def test_status_validation_loss_counts_only_while_fresher_than_trainer_state(tmp_path):
    """The daemon validates itself: its status number proves validation runs, unless trainer_state.json is newer."""
    base = home_grown_daemon(tmp_path / "box", checkpoints=3)
    (base / "healthkit.toml").write_text(
        '[status_keys]\nval_loss = "validation_loss"\nstep = "current_step"\n'
        "[thresholds]\ncheckpoint_count_without_limit = 50\n"
    )
    assert not [f.code for f in audit(base, record_costs=False, select=["validation"]).findings]
    status = base / "status" / "training_status.json"
    os.utime(status, (time.time() - 7200, time.time() - 7200))  # older than the checkpoints' trainer_state.json
    codes = [f.code for f in audit(base, record_costs=False, select=["validation"]).findings]
    assert codes == ["validation.not-running"]


# --- healthkit init --detect ---------------------------------------------------------------------


def test_init_detect_round_trip(tmp_path):
    base = home_grown_daemon(tmp_path / "box")
    before = run_cli("audit", str(base), "--format", "json")
    printed = run_cli("init", str(base), "--detect", "--print")
    assert printed.returncode == 0 and not (base / "healthkit.toml").exists()
    r = run_cli("init", str(base), "--detect")
    assert r.returncode == 0, r.stderr.decode()
    text = (base / "healthkit.toml").read_text()
    assert text == printed.stdout.decode().replace("\r\n", "\n")
    assert (
        '# `status/training_status.json` has `"validation_loss": 0.512` and no `val_loss`\nval_loss = "validation_loss"'
        in text
    )
    settings, _ = load_settings(base)
    assert (
        settings.processes.training_in_daemon is True and settings.paths.checkpoints_config_key == "current_model_dir"
    )
    after = run_cli("audit", str(base), "--format", "json")

    def findings(res):
        return sorted((f["code"], f["title"], f["problem"]) for f in json.loads(res.stdout)["findings"])

    assert findings(after) == findings(before) and before.returncode == after.returncode == 2
    assert json.loads(after.stdout)["settings_inferred"] == []  # everything is pinned now
    again = run_cli("init", str(base), "--detect")
    assert again.returncode == 1 and b"--force" in again.stderr and b"Traceback" not in again.stderr
    assert (base / "healthkit.toml").read_text() == text
    (base / "healthkit.toml").write_text("# mine\n")
    assert run_cli("init", str(base), "--detect", "--force").returncode == 0
    assert (base / "healthkit.toml").read_text() == text


def test_init_print_without_detect_is_a_usage_error(tmp_path):
    r = run_cli("init", str(tmp_path), "--print")
    assert r.returncode == 64 and not (tmp_path / "config.json").exists()


# --- a declared checkpoint folder outside the workspace ------------------------------------------------


def _fix(base: Path, dry_run: bool = False) -> str:
    out = io.StringIO()
    run_fix(base, FixOptions(level=Safety.SAFE, dry_run=dry_run, only=("checkpoints",)), out)
    return out.getvalue()


@pytest.mark.parametrize("declared_by", ["healthkit.toml", "config key"])
def test_declared_outside_checkpoint_folder_is_pruned_to_its_limit(tmp_path, declared_by):
    base, big, elsewhere = tmp_path / "ws", tmp_path / "mnt" / "big", tmp_path / "elsewhere"
    ckpts = big / "ckpts"
    base.mkdir()
    for s in range(10, 70, 10):
        old_checkpoint(ckpts, s)
    make_checkpoint(elsewhere, 5)
    os.symlink(elsewhere / "checkpoint-5", ckpts / "checkpoint-5")  # a symlink out of the declared folder
    (big / "beside.txt").write_text("not a checkpoint")
    (ckpts / "notes.txt").write_text("mine")
    if declared_by == "healthkit.toml":
        (base / "healthkit.toml").write_text(f'[paths]\ncheckpoints = "{ckpts}"\n[retention]\nsave_total_limit = 3\n')
        write_json(base / "config.json", {"lr": 1})
    else:
        write_json(base / "config.json", {"checkpoint_dir": str(ckpts), "save_total_limit": 3})

    dry = _fix(base, dry_run=True)
    assert sorted(p.name for p in ckpts.iterdir()) == sorted(
        ["checkpoint-5", "notes.txt"] + [f"checkpoint-{s}" for s in range(10, 70, 10)]
    ), dry
    out = _fix(base)
    assert sorted(p.name for p in ckpts.iterdir()) == [
        "checkpoint-40",
        "checkpoint-5",
        "checkpoint-50",
        "checkpoint-60",
        "notes.txt",
    ], out
    assert "a symlink: its target is never deleted" in out
    assert (elsewhere / "checkpoint-5" / "model.safetensors").exists() and (
        big / "beside.txt"
    ).read_text() == "not a checkpoint"


def test_an_undeclared_outside_folder_is_never_touched(tmp_path):
    """A checkpoint folder reached through a symlinked `current_model` (nobody declared it) stays untouched."""
    base, outside = tmp_path / "ws", tmp_path / "outside"
    base.mkdir()
    for s in range(10, 60, 10):
        old_checkpoint(outside, s)
    os.symlink(outside, base / "current_model")
    (base / "healthkit.toml").write_text("[retention]\nsave_total_limit = 2\n")
    write_json(base / "config.json", {"lr": 1})
    out = _fix(base)
    assert len(list(outside.iterdir())) == 5
    assert "not deleted: outside the workspace and the declared checkpoint folder" in out


def test_a_blocked_prune_says_why_each_checkpoint_is_kept(tmp_path):
    base = tmp_path / "ws"
    for s in range(10, 60, 10):
        make_checkpoint(base / "out", s)  # just written: every one may still be being written
    write_json(base / "config.json", {"output_dir": "out", "save_total_limit": 2})
    for dry in (True, False):
        out = _fix(base, dry_run=dry)
        assert "nothing can be deleted: every checkpoint beyond the limit is protected" in out
        assert "keep   out/checkpoint-10/  (modified in the last 2 minutes (may be being written))" in out
        assert "keep   out/checkpoint-50/  (one of the newest 2)" in out
    assert len(list((base / "out").iterdir())) == 5


def test_detection_leaves_a_settings_object_alone_once_detected(tmp_path):
    write_json(tmp_path / "config.json", {"output_dir": "o"})
    (tmp_path / "o").mkdir()
    from healthkit.core.workspace import Workspace

    ws = Workspace.open(tmp_path)
    assert [i.setting for i in ws.inferred] == ["paths.config_schema", "paths.checkpoints_config_key"]
    again = Workspace(ws.base, ws.settings, ws.settings_path)
    assert again.settings is ws.settings and Settings().inferred is None


def test_detection_imports_nothing_heavy(tmp_path):
    """Detection runs on every audit: it must not pull pydantic models, torch or transformers onto the audit path."""
    base = home_grown_daemon(tmp_path / "box", checkpoints=3)
    assert heavy_modules_after_audit(base, 2) == []


def test_a_prune_killed_in_a_declared_outside_folder_is_finished_by_the_next_run(tmp_path):
    base, ckpts = tmp_path / "ws", tmp_path / "mnt" / "ckpts"
    base.mkdir()
    for s in range(10, 60, 10):
        old_checkpoint(ckpts, s)
    (base / "healthkit.toml").write_text(f'[paths]\ncheckpoints = "{ckpts}"\n[retention]\nsave_total_limit = 2\n')
    write_json(base / "config.json", {"lr": 1})
    env = {k: v for k, v in os.environ.items() if k != "HEALTHKIT_FIX_CRASH_AT"}
    argv = [sys.executable, "-m", "healthkit.cli", "fix", str(base), "--safe", "--only", "checkpoints"]
    r = subprocess.run(
        argv, capture_output=True, text=True, env={**env, "HEALTHKIT_FIX_CRASH_AT": "prune:after-rename"}, timeout=60
    )
    assert r.returncode == -9, r.stdout + r.stderr
    assert [p.name for p in ckpts.iterdir() if p.name.startswith(".healthkit-trash-")]
    r = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=60)
    assert "finished the interrupted deletion" in r.stdout, r.stdout + r.stderr
    assert sorted(p.name for p in ckpts.iterdir()) == ["checkpoint-40", "checkpoint-50"]
