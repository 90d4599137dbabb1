"""Queue files as training data: JSONL checked line by line (no torch), then tokenized (torch, lazily)."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

MAX_REPORTED = 5


class DataError(Exception):
    """A queue or validation file that cannot be trained on; the message says which lines and why."""


def _lines(path: Path):
    try:
        f = open(path, "rb")
    except FileNotFoundError:
        raise DataError(f"{path.name}: does not exist") from None
    except OSError as exc:
        raise DataError(f"{path.name}: cannot be read: {exc.strerror}") from None
    with f:
        for n, raw in enumerate(f, 1):
            try:
                yield n, raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise DataError(f"{path.name}: line {n} is not UTF-8 text (byte {exc.start})") from None


def read_texts(path: Path, text_field: str = "text", keep: bool = True) -> list[str]:
    """Every example's text; raises DataError naming the bad lines (invalid JSON, not an object, no text).

    With ``keep=False`` the file is only checked (streamed; the daemon does this before a
    child is started, so a bad file fails in a second, not after a model load).
    """
    texts: list[str] = []
    problems: list[str] = []
    bad = good = 0
    for n, line in _lines(path):
        if not line.strip():
            continue
        why = None
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            why = f"invalid JSON ({exc.msg} at column {exc.colno})"
        else:
            if not isinstance(obj, dict):
                why = f"a JSON {type(obj).__name__}, not an object"
            elif not isinstance(obj.get(text_field), str):
                why = f"no string field {text_field!r}" if text_field not in obj else f"{text_field!r} is not a string"
            elif not obj[text_field].strip():
                why = f"{text_field!r} is empty"
            else:
                good += 1
                if keep:
                    texts.append(obj[text_field])
        if why:
            bad += 1
            if len(problems) < MAX_REPORTED:
                problems.append(f"line {n}: {why}")
    if bad:
        more = f" (and {bad - len(problems)} more)" if bad > len(problems) else ""
        raise DataError(f"{path.name}: {bad} bad line(s): " + "; ".join(problems) + more)
    if not good:
        raise DataError(f"{path.name}: no examples (the file is empty)")
    return texts


def split(texts: list[str], share: float, seed: int) -> tuple[list[str], list[str]]:
    """Deterministic held-out split (the same on every resume and every rank); at least one example each side."""
    if share <= 0 or len(texts) < 2:
        return texts, []
    idx = list(range(len(texts)))
    random.Random(seed).shuffle(idx)
    n_val = min(len(texts) - 1, max(1, round(len(texts) * share)))
    held = set(idx[:n_val])
    return [t for i, t in enumerate(texts) if i not in held], [t for i, t in enumerate(texts) if i in held]


class TokenizedDataset:
    """A list of tokenized examples that torch's DataLoader can index."""

    def __init__(self, tokenizer: Any, texts: list[str], max_length: int):
        eos = tokenizer.eos_token or ""
        enc = tokenizer([t + eos for t in texts], truncation=True, max_length=max_length)
        self.items = [{"input_ids": ids, "attention_mask": am} for ids, am in zip(enc["input_ids"], enc["attention_mask"])]

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return self.items[i]
