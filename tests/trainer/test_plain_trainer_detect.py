"""A plain `transformers.Trainer` run (no healthkit trainer, no healthkit.toml), audited as a new user would."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from healthkit.core.api import audit
from healthkit.reporting.render import render
from healthkit.trainer.tiny import sample_texts

# Real training or real services for seconds: `-m "not slow"` leaves it out.
pytestmark = pytest.mark.slow


def _plain_trainer_run(base: Path, model_dir: Path) -> None:
    """The user's own script: its config.json (no base_model, no healthkit marker), output_dir, no save_total_limit."""
    import torch
    from transformers import (
        AutoModelForCausalLM,
        AutoTokenizer,
        DataCollatorForLanguageModeling,
        Trainer,
        TrainingArguments,
    )

    config = {
        "model_name_or_path": str(model_dir),
        "output_dir": "out",
        "max_steps": 24,
        "save_steps": 2,
        "eval_strategy": "steps",
        "eval_steps": 4,
        "logging_steps": 1,
        "learning_rate": 1e-3,
        "per_device_train_batch_size": 4,
    }
    (base / "config.json").write_text(json.dumps(config, indent=2))
    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir)

    class Texts(torch.utils.data.Dataset):
        def __init__(self, texts: list[str]):
            self.items = [tok(t, truncation=True, max_length=32) for t in texts]

        def __len__(self) -> int:
            return len(self.items)

        def __getitem__(self, i: int) -> dict:
            return self.items[i]

    args = TrainingArguments(
        output_dir=str(base / config["output_dir"]),
        max_steps=config["max_steps"],
        save_steps=config["save_steps"],
        eval_strategy="steps",
        eval_steps=config["eval_steps"],
        logging_steps=1,
        learning_rate=1e-3,
        per_device_train_batch_size=4,
        per_device_eval_batch_size=8,
        report_to="none",
        use_cpu=True,
        disable_tqdm=True,
        save_total_limit=None,
    )
    Trainer(
        model=model,
        args=args,
        train_dataset=Texts(sample_texts(64, 1)),
        eval_dataset=Texts(sample_texts(16, 2)),
        data_collator=DataCollatorForLanguageModeling(tok, mlm=False),
    ).train()


def test_plain_trainer_run_without_healthkit_toml(tmp_path: Path, tiny_model_dir: Path) -> None:
    base = tmp_path / "plain"
    base.mkdir()
    _plain_trainer_run(base, tiny_model_dir)
    assert len(list((base / "out").glob("checkpoint-*/trainer_state.json"))) == 12

    report = audit(base, record_costs=False)
    codes = sorted(f.code for f in report.findings)
    assert "checkpoints.no-retention" in codes and "checkpoints.bloat" in codes, codes
    assert "config.invalid" not in codes and not [c for c in codes if c.startswith("validation.")], codes
    assert any(h.title == "Validation is running" for h in report.healthy)
    bloat = next(f for f in report.findings if f.code == "checkpoints.bloat")
    assert "12 checkpoints exist" in " ".join(bloat.problem)
    inferred = {i["setting"]: i for i in report.settings_inferred}
    assert inferred["paths.checkpoints_config_key"]["value"] == "output_dir"
    assert '`output_dir` = "out"' in inferred["paths.checkpoints_config_key"]["evidence"]
    assert inferred["paths.config_schema"]["value"] == "none"
    config_ok = next(h for h in report.healthy if h.title == "Config is valid")
    assert "not validated against healthkit's schema" in config_ok.details[0]
    md = render(report, "md")
    assert "## 🔎 Settings inferred" in md and "- paths.checkpoints_config_key: `output_dir`" in md
