"""What a local model folder can take, read from its config.json as JSON (no torch, no transformers: the audit reads it).

One home for "does max_seq_length fit the model": `daemon start`, `queue add` and the
audit's `config.seq-longer-than-model` all ask ``seq_length_problem``. A sequence longer than
the model's position table does not fail at start: the child dies at its first batch with
`IndexError: index out of range in self`, three times, and the file goes to failed/.
"""

from __future__ import annotations

import json
from pathlib import Path

# The file `healthkit init` leaves in the base_model folder it names: the folder is a placeholder until a model is put there.
PLACEHOLDER = "PUT_YOUR_MODEL_HERE.txt"

# Where HF configs keep the position table's size: most models, GPT-2 (and its older alias), and
# multimodal configs that nest the language model's settings.
POSITION_KEYS = ("max_position_embeddings", "n_positions", "n_ctx")
NESTED = ("text_config", "llm_config")


def model_positions(folder: Path) -> tuple[int, str] | None:
    """(positions, the config.json key that says so) of a model folder; None when it has no readable number."""
    try:
        data = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    for cfg, prefix in [(data, "")] + [(data.get(k), f"{k}.") for k in NESTED if isinstance(data, dict)]:
        if not isinstance(cfg, dict):
            continue
        for key in POSITION_KEYS:
            value = cfg.get(key)
            if isinstance(value, int) and not isinstance(value, bool) and value > 0:
                return value, prefix + key
    return None


def seq_length_problem(max_seq_length: object, folder: Path) -> str | None:
    """Why ``max_seq_length`` cannot be trained on the model in ``folder`` (None when it fits or cannot be told)."""
    if not isinstance(max_seq_length, int) or isinstance(max_seq_length, bool):
        return None
    found = model_positions(folder)
    if found is None or max_seq_length <= found[0]:
        return None
    positions, key = found
    return (
        f"max_seq_length={max_seq_length} is more than the base model's {positions} positions ({key} in "
        f"{folder / 'config.json'}): a longer sequence has no position to embed, and training would die at its first "
        f"batch (IndexError: index out of range). Set max_seq_length to {positions} or less"
    )


def placeholder_text(folder: Path) -> str:
    """What the placeholder file says: a model must be put here, and where, and how."""
    return (
        f"healthkit init made this folder as config.json's base_model: no model is here yet.\n\n"
        f"Put the base model in {folder}/ (its config.json, weights and tokenizer files), e.g.\n"
        f"  huggingface-cli download ORG/MODEL --local-dir {folder}\n"
        "or set base_model in config.json to the folder of a model you already have.\n"
        "To try everything on a CPU first: `healthkit init --tiny-model` puts a tiny random model here.\n"
        "Delete this file once the model is in place (or leave it: a folder with a model's config.json is a model).\n"
    )


def placeholder_unfilled(folder: Path) -> bool:
    """The folder is still the placeholder `healthkit init` made: its file is there and no model's config.json is."""
    return (folder / PLACEHOLDER).is_file() and not (folder / "config.json").exists()
