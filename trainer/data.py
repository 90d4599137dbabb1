"""Queue files as training data: JSONL checked line by line (no torch), then tokenized (torch, lazily).

Two line formats: text (`{"text": ...}`) and chat (`{"messages": [{"role", "content"}]}`,
the format of transformers' chat templates and TRL). `data_format: auto` decides per
file from its first non-empty line; a line of the other format is a bad line. Chat
lines are rendered with the tokenizer's chat template, and only the assistant turns
(with their end-of-turn token) carry labels: the loss is on what the model should say.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

MAX_REPORTED = 5


class DataError(Exception):
    """A queue or validation file that cannot be trained on; the message says which lines and why."""


def _lines(path: Path):
    try:
        f = open(path, "rb")  # noqa: SIM115 - opened alone to tell its errors apart; `with f:` below closes it
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


ROLES = ("system", "user", "assistant")


def _text_problem(obj: dict, text_field: str) -> str | None:
    if not isinstance(obj.get(text_field), str):
        return f"no string field {text_field!r}" if text_field not in obj else f"{text_field!r} is not a string"
    return f"{text_field!r} is empty" if not obj[text_field].strip() else None


def chat_problem(obj: dict) -> str | None:
    """Why a chat line cannot be trained on (None when it can): the structure only, no tokenizer."""
    msgs = obj.get("messages")
    if not isinstance(msgs, list) or not msgs:
        return "'messages' is not a non-empty list"
    for i, m in enumerate(msgs):
        if not isinstance(m, dict):
            return f"message {i} is not an object"
        if m.get("role") not in ROLES:
            return f"message {i} has an unknown role {m.get('role')!r} (expected one of {', '.join(ROLES)})"
        if not isinstance(m.get("content"), str):
            return f"message {i} ({m['role']}): content is not a string"
    if not any(m["role"] == "assistant" for m in msgs):
        return "no assistant turn (nothing to learn: the loss is on the assistant's turns only)"
    return None


def line_format(obj: Any, text_field: str) -> str | None:
    """'chat' for a messages line, 'text' for a text line, None for neither."""
    if isinstance(obj, dict) and "messages" in obj:
        return "chat"
    return "text" if isinstance(obj, dict) and text_field in obj else None


def _problem(obj: Any, fmt: str, text_field: str) -> str | None:
    if not isinstance(obj, dict):
        return f"a JSON {type(obj).__name__}, not an object"
    seen = line_format(obj, text_field)
    if seen and seen != fmt:
        return f"a {seen} line in a {fmt} file (a file holds one format)"
    return chat_problem(obj) if fmt == "chat" else _text_problem(obj, text_field)


def scan_examples(
    path: Path, data_format: str = "auto", text_field: str = "text", keep: bool = True
) -> tuple[str, list[Any], list[tuple[int, str]]]:
    """(format, examples, bad lines as (line number, why)): every line is looked at, nothing raised for a bad one.

    `queue add` reports every bad line from this; ``read_examples`` turns them into a DataError.
    """
    fmt = None if data_format == "auto" else data_format
    examples: list[Any] = []
    problems: list[tuple[int, str]] = []
    good = 0
    for n, line in _lines(path):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            why: str | None = (
                f"invalid JSON ({exc.msg.removesuffix(' at')} at column {exc.colno})"  # "Invalid control character at"
            )
        else:
            fmt = fmt or line_format(obj, text_field) or "text"
            why = _problem(obj, fmt, text_field)
        if why:
            problems.append((n, why))
            continue
        good += 1
        if keep:
            examples.append((n, obj["messages"]) if fmt == "chat" else obj[text_field])
    return fmt or "text", examples if keep else [None] * good, problems


def bad_lines_error(name: str, problems: list[tuple[int, str]]) -> str:
    """`NAME: 3 bad line(s): line 4: why; ... (and N more)`: the first MAX_REPORTED named."""
    shown = [f"line {n}: {why}" for n, why in problems[:MAX_REPORTED]]
    more = f" (and {len(problems) - len(shown)} more)" if len(problems) > len(shown) else ""
    return f"{name}: {len(problems)} bad line(s): " + "; ".join(shown) + more


def read_examples(
    path: Path, data_format: str = "auto", text_field: str = "text", keep: bool = True
) -> tuple[str, list[Any]]:
    """(format, examples): texts, or (line number, messages) for chat; raises DataError naming the bad lines.

    With ``keep=False`` the file is only checked (streamed; the daemon does this before a
    child is started, so a bad file fails in a second, not after a model load).
    """
    fmt, examples, problems = scan_examples(path, data_format, text_field, keep)
    if problems:
        raise DataError(bad_lines_error(path.name, problems))
    if not examples:
        raise DataError(f"{path.name}: no examples (the file is empty)")
    return fmt, (examples if keep else [])


def read_texts(path: Path, text_field: str = "text", keep: bool = True) -> list[str]:
    """Every example's text of a text file; raises DataError naming the bad lines (invalid JSON, not an object, no text)."""
    return read_examples(path, "text", text_field, keep)[1]


def file_format(path: Path, data_format: str, text_field: str = "text") -> str | None:
    """The format a file trains as (from its first non-empty line under 'auto'); None when unreadable or empty."""
    if data_format != "auto":
        return data_format
    try:
        for _, line in _lines(path):
            if line.strip():
                return line_format(json.loads(line), text_field) or "text"
    except (DataError, ValueError):
        return None
    return None


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
        self.items = [
            {"input_ids": ids, "attention_mask": am} for ids, am in zip(enc["input_ids"], enc["attention_mask"])
        ]

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return self.items[i]


def assistant_spans(tokenizer: Any, messages: list[dict], template: str | None) -> tuple[str, list[tuple[int, int]]]:
    """The rendered conversation and the character spans of its assistant turns (end-of-turn token included).

    Each span is what rendering one more turn adds: from the prefix rendered with the
    generation prompt (everything the model sees before it speaks) to the prefix that
    includes the assistant turn. Character spans, not token counts, so a tokenizer that
    merges across the boundary cannot shift the mask; a template that does not render
    prefixes as prefixes of the whole is refused rather than guessed at.
    """

    def render(msgs: list[dict], gen: bool) -> str:
        return tokenizer.apply_chat_template(msgs, chat_template=template, tokenize=False, add_generation_prompt=gen)

    full = render(messages, False)
    spans = []
    for i, m in enumerate(messages):
        if m["role"] != "assistant":
            continue
        start, end = render(messages[:i], True), render(messages[: i + 1], False)
        if not (full.startswith(start) and full.startswith(end) and len(end) > len(start)):
            raise ValueError(
                "the chat template does not render a conversation's beginning as the beginning of the whole, "
                "so the assistant turns cannot be located"
            )
        spans.append((len(start), len(end)))
    return full, spans


def chat_features(tokenizer: Any, messages: list[dict], template: str | None, max_length: int) -> dict[str, list[int]]:
    """input_ids, attention_mask, labels (-100 outside the assistant spans) of one conversation, truncated."""
    full, spans = assistant_spans(tokenizer, messages, template)
    enc = tokenizer(full, add_special_tokens=False, return_offsets_mapping=True, truncation=True, max_length=max_length)
    labels = []
    for tid, (a, b) in zip(enc["input_ids"], enc["offset_mapping"]):
        inside = b > a and any(s <= a < e for s, e in spans)
        labels.append(tid if inside else -100)
    return {"input_ids": list(enc["input_ids"]), "attention_mask": list(enc["attention_mask"]), "labels": labels}


def cut_off(item: dict[str, list[int]]) -> bool:
    """Whether a tokenized conversation has nothing left to learn: its assistant part is wholly past max_seq_length.

    The one rule for "too long": the trainer drops such a line, `queue add` counts it beforehand.
    """
    return all(x == -100 for x in item["labels"])


# Above this share of a file's lines dropped as too long, the file fails instead of training on the rest.
# Why 10%: dropping a few lines is what other trainers do quietly (Axolotl drops and counts, TRL truncates),
# and a night's queue should not fail over 1% of a file. But every dropped line is a long one, so the
# loss sees a biased sample: past a tenth of the file the length distribution trained on is no longer
# the data's, and a person must choose (a longer max_seq_length, or shorter lines), not the trainer.
MAX_DROPPED_SHARE = 0.10
# (The audit's `queue.lines-dropped` turns from info into a warning above 2%: checks/queue.py.)
SHOWN_LINES = 20  # line numbers kept in records and messages


@dataclass
class Dropped:
    """Lines of a file dropped because they do not fit max_seq_length, out of ``total`` trainable ones."""

    lines: list[int]
    total: int
    max_length: int

    @property
    def share(self) -> float:
        return len(self.lines) / self.total if self.total else 0.0

    def summary(self) -> str:
        n = len(self.lines)
        shown = ", ".join(str(x) for x in sorted(self.lines)[:SHOWN_LINES]) + (" ..." if n > SHOWN_LINES else "")
        return (
            f"{n} of {self.total} line(s) ({self.share:.1%}) too long for max_seq_length={self.max_length} "
            f"(the assistant part wholly cut off): line(s) {shown}"
        )

    def record(self) -> dict[str, Any]:
        """What the done record, the status file and the result say (first SHOWN_LINES line numbers)."""
        return {
            "count": len(self.lines),
            "total": self.total,
            "share": round(self.share, 4),
            "max_seq_length": self.max_length,
            "first_lines": sorted(self.lines)[:SHOWN_LINES],
            "fail_share": MAX_DROPPED_SHARE,
        }

    def failure(self, name: str, trainable: int) -> str | None:
        """Why the file fails instead of training on the rest (None when it trains)."""
        if trainable == 0:
            return f"{name}: nothing trainable is left: {self.summary()}"
        if self.share > MAX_DROPPED_SHARE:
            return (
                f"{name}: too many lines too long: {self.summary()}; more than {MAX_DROPPED_SHARE:.0%} dropped would "
                "train on a biased sample, so the file fails: raise max_seq_length (up to the model's positions) or "
                "shorten the lines"
            )
        return None


class ChatDataset(TokenizedDataset):
    """Chat conversations tokenized with labels on the assistant turns only.

    A conversation whose assistant part is wholly cut off by max_seq_length is dropped and its
    line number kept in ``dropped`` (the caller decides whether the file still trains); a line
    the template cannot render raises DataError by number.
    """

    def __init__(
        self,
        tokenizer: Any,
        conversations: list[tuple[int, list[dict]]],
        max_length: int,
        template: str | None = None,
        name: str = "file",
    ):
        self.items = []
        self.dropped: list[int] = []
        problems: list[tuple[int, str]] = []
        for n, msgs in conversations:
            try:
                item = chat_features(tokenizer, msgs, template, max_length)
            except ValueError as exc:
                problems.append((n, str(exc)))
                continue
            if cut_off(item):
                self.dropped.append(n)
                continue
            self.items.append(item)
        if problems:
            raise DataError(bad_lines_error(name, problems))
