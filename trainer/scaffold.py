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


# Defaults init writes that decide what training deletes: recorded under DEFAULTS_KEY, so that the audit tells a value
# healthkit chose from one the user declared (a safe prune acts only on the user's, or on the one our trainer runs with).
MARKED_DEFAULTS = ("save_total_limit",)


def default_config(base_model: str = "models/base", **overrides: Any) -> dict[str, Any]:
    """config.json as written by init: every field explicit, so that docs and audits see the real values."""
    from healthkit.contract.configschema import (  # markers by which an audit knows what is ours
        DEFAULTS_KEY,
        HEALTHKIT_SCHEMA_ID,
    )

    cfg = TrainingConfig.model_validate({"base_model": base_model, **overrides})
    data = cfg.model_dump(mode="json")
    ours = {k: data[k] for k in MARKED_DEFAULTS if k not in overrides and data.get(k) is not None}
    return {"$schema": HEALTHKIT_SCHEMA_ID, **({DEFAULTS_KEY: ours} if ours else {}), **data}


def config_doc(cfg: dict[str, Any]) -> str:
    """README.md stating the config as prose lines (`- `key`: value`), which the drift check compares with config.json
    and `healthkit fix --safe` rewrites when config.json changes (a fenced block would be left to `--unsafe`)."""
    keys = (
        "base_model",
        "max_steps",
        "eval_strategy",
        "eval_steps",
        "save_steps",
        "save_total_limit",
        "logging_steps",
        "learning_rate",
        "per_device_train_batch_size",
        "max_seq_length",
        "validation_file",
        "validation_split",
    )
    stated = {k: cfg[k] for k in keys if k in cfg}
    return "\n".join(
        [
            "# Training workspace",
            "",
            'Managed by the healthkit trainer. Queue JSONL files (one `{"text": ...}` or chat',
            '`{"messages": [{"role": ..., "content": ...}]}` per line; chat trains on the assistant turns) with',
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
        ]
    )


def _doc_value(value: Any) -> str:
    """A value as the doc states it: strings bare (a path reads as a path), the rest as JSON (`null`, `true`, `0.001`)."""
    return value if isinstance(value, str) and value else json.dumps(value)


class InitRefused(Exception):
    """init would write over something it did not make (a run's folder, a file): the message says why; nothing was written."""


def _refusal(lay: Layout) -> str | None:
    """Why init must not write here: the path is not a folder, or it holds a run that a config.json of ours is not for."""
    base = lay.base
    if base.exists() and not base.is_dir():
        return f"{base} exists and is not a folder"
    for parent in base.parents:  # mkdir would fail on a file in the way
        if parent.exists():
            if not parent.is_dir():
                return f"{parent} is not a folder"
            break
    if not base.is_dir() or _config_is_ours(lay.config):
        return None  # a new folder, or our own workspace: init writes only what is missing
    from healthkit.core.detect import FOUND_FORMAT, scan_checkpoint_folders

    found = scan_checkpoint_folders(base)
    if not found:
        return None
    rel, n = found[0]
    what = FOUND_FORMAT.get(str(base / rel if rel != "." else base), "checkpoint(s)")
    return (
        f"{base} already holds a training run (`{rel}/` holds {n} {what}); init writes a new workspace's "
        "config.json (with a retention limit) and would make healthkit treat it as that run's policy"
    )


def _is_within(path: Path, base: Path) -> bool:
    try:
        path.resolve().relative_to(base.resolve())
    except ValueError:
        return False
    return True


def _config_is_ours(path: Path) -> bool:
    from healthkit.core.detect import HEALTHKIT_SCHEMA_ID

    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(data, dict) and data.get("$schema") == HEALTHKIT_SCHEMA_ID


def init_workspace(base: Path, tiny_model: bool = False, force: bool = False, **overrides: Any) -> list[Path]:
    """Create the workspace; returns what was written. An existing config.json or README.md is never replaced (it may
    be the user's); ``force`` rebuilds only the tiny model. Raises InitRefused, before writing anything, on a folder
    that already holds a run (use `init --detect`) or a path that is not a folder."""
    lay = Layout.of(base)
    why = _refusal(lay)
    if why:
        raise InitRefused(why)
    lay.base.mkdir(parents=True, exist_ok=True)
    lay.ensure()
    written: list[Path] = []
    values = {**(TINY_OVERRIDES if tiny_model else {}), **overrides}
    if not lay.config.exists():
        cfg = default_config(**values)
        lay.config.write_text(json.dumps(cfg, indent=2) + "\n", encoding="utf-8")
        written.append(lay.config)
    else:
        cfg = json.loads(lay.config.read_text(encoding="utf-8"))
    settings = lay.base / "healthkit.toml"
    if not settings.exists():  # our trainer's workspace opts in to recording the audit's own cost
        settings.write_text(
            "# healthkit audit settings (see `healthkit checks`)\n[audit]\nrecord_cost = true\n", encoding="utf-8"
        )
        written.append(settings)
    readme = lay.base / "README.md"
    if not readme.exists():
        readme.write_text(config_doc(cfg), encoding="utf-8")
        written.append(readme)
    dest = lay.resolve(cfg["base_model"])
    if not tiny_model and "base_model" not in overrides and not dest.exists() and _is_within(dest, lay.base):
        from healthkit.contract.modelinfo import PLACEHOLDER, placeholder_text

        dest.mkdir(parents=True)  # the placeholder says what to put here: the audit calls it that, not a hub id
        (dest / PLACEHOLDER).write_text(placeholder_text(dest), encoding="utf-8")
        written.append(dest / PLACEHOLDER)
    if tiny_model:
        from .tiny import COMMON_WORDS, WORDS, build_tiny_model, sample_texts, write_jsonl

        dest = lay.resolve(cfg["base_model"])
        if force or not (dest / "config.json").exists():
            # Room for ordinary chat data: a tokenizer that knows common English words, and 1024 positions (a
            # conversation of a few 80-word turns is a few hundred tokens); max_seq_length stays within them.
            build_tiny_model(
                dest,
                n_positions=max(TINY_POSITIONS, int(cfg.get("max_seq_length", 64))),
                vocab_size=1000,
                words=WORDS + COMMON_WORDS,
            )
            written.append(dest)
        sample = lay.base / "data" / "sample.jsonl"
        if not sample.exists():
            written.append(write_jsonl(sample, sample_texts(64, seed=1)))
    return written
