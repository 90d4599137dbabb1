"""`healthkit init PATH`: a workspace with config.json, a README stating it, queue folders, and optionally a tiny model."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from healthkit.contract.config_model import TrainingConfig

from .layout import Layout

TINY_OVERRIDES: dict[str, Any] = {
    "base_model": "models/base",
    "max_seq_length": 512,
    "max_steps": 30,
    "eval_steps": 10,
    "save_steps": 10,
    "logging_steps": 5,
    "per_device_train_batch_size": 4,
    "per_device_eval_batch_size": 8,
    "learning_rate": 1e-3,
    "validation_split": 0.1,
}


TINY_POSITIONS = 1024


def default_config(base_model: str = "models/base", **overrides: Any) -> dict[str, Any]:
    """config.json as written by init: every field explicit, so that docs and audits see the real values."""
    from healthkit.core.detect import HEALTHKIT_SCHEMA_ID  # the marker by which an audit knows this config is ours

    cfg = TrainingConfig.model_validate({"base_model": base_model, **overrides})
    return {"$schema": HEALTHKIT_SCHEMA_ID, **cfg.model_dump(mode="json")}


def config_doc(cfg: dict[str, Any]) -> str:
    """README.md stating the config as prose lines (`- `key`: value`), which the drift check compares with config.json
    and `healthkit fix --safe` rewrites when config.json changes (a fenced block would be left to `--unsafe`)."""
    keys = ("base_model", "max_steps", "eval_strategy", "eval_steps", "save_steps", "save_total_limit", "logging_steps",
            "learning_rate", "per_device_train_batch_size", "max_seq_length", "validation_file", "validation_split")
    stated = {k: cfg[k] for k in keys if k in cfg}
    return "\n".join([
        "# Training workspace",
        "",
        "Managed by the healthkit trainer. Queue JSONL files (one `{\"text\": ...}` or chat",
        "`{\"messages\": [{\"role\": ..., \"content\": ...}]}` per line; chat trains on the assistant turns) with",
        "`healthkit queue add WORKSPACE FILE`, start with `healthkit daemon start WORKSPACE --supervise`, check with",
        "`healthkit audit WORKSPACE` (WORKSPACE: this folder's path, `.` when you are in it).",
        "",
        "## Configuration (from config.json; `healthkit audit` reports drift, `healthkit fix --safe` rewrites it here)",
        "",
        *(f"- `{k}`: {_doc_value(v)}" for k, v in stated.items()),
        "",
        "Layout: `queue/inbox -> processing -> done | failed`, checkpoints of the file in training in",
        "`current_model/checkpoint-N/` (at most `save_total_limit`, plus the best), final models in",
        "`models/<file-stem>/` (the newest `keep_final_models`), status in `status/`, logs in `logs/`.",
        "",
    ])


def _doc_value(value: Any) -> str:
    """A value as the doc states it: strings bare (a path reads as a path), the rest as JSON (`null`, `true`, `0.001`)."""
    return value if isinstance(value, str) and value else json.dumps(value)


def init_workspace(base: Path, tiny_model: bool = False, force: bool = False, **overrides: Any) -> list[Path]:
    """Create the workspace; returns what was written. Existing config.json/README.md are kept unless ``force``."""
    lay = Layout.of(base)
    lay.base.mkdir(parents=True, exist_ok=True)
    lay.ensure()
    written: list[Path] = []
    values = {**(TINY_OVERRIDES if tiny_model else {}), **overrides}
    if force or not lay.config.exists():
        cfg = default_config(**values)
        lay.config.write_text(json.dumps(cfg, indent=2) + "\n", encoding="utf-8")
        written.append(lay.config)
    else:
        cfg = json.loads(lay.config.read_text(encoding="utf-8"))
    settings = lay.base / "healthkit.toml"
    if not settings.exists():  # our trainer's workspace opts in to recording the audit's own cost
        settings.write_text("# healthkit audit settings (see `healthkit checks`)\n[audit]\nrecord_cost = true\n", encoding="utf-8")
        written.append(settings)
    readme = lay.base / "README.md"
    if force or not readme.exists():
        readme.write_text(config_doc(cfg), encoding="utf-8")
        written.append(readme)
    if tiny_model:
        from .tiny import COMMON_WORDS, WORDS, build_tiny_model, sample_texts, write_jsonl

        dest = lay.resolve(cfg["base_model"])
        if force or not (dest / "config.json").exists():
            # Room for ordinary chat data: a tokenizer that knows common English words, and 1024 positions (a
            # conversation of a few 80-word turns is a few hundred tokens); max_seq_length stays within them.
            build_tiny_model(dest, n_positions=max(TINY_POSITIONS, int(cfg.get("max_seq_length", 64))), vocab_size=1000,
                             words=WORDS + COMMON_WORDS)
            written.append(dest)
        sample = lay.base / "data" / "sample.jsonl"
        if not sample.exists():
            written.append(write_jsonl(sample, sample_texts(64, seed=1)))
    return written
