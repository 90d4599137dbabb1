"""`queue add` checks a whole file before queuing it: every line's structure, and (with the trainer extra) its token length.

The same rules the trainer applies, called the same way (data.scan_examples, data.cut_off,
Dropped.failure, train_file.load_tokenizer), so what `queue add` predicts is what the daemon
does: a file it would fail is refused here, at once, not after a night in the queue.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from healthkit.contract.config_model import TrainingConfig

from .data import MAX_DROPPED_SHARE, SHOWN_LINES, Dropped, bad_lines_error, chat_features, cut_off, scan_examples
from .layout import Layout


@dataclass
class FileCheck:
    """What the trainer would make of one file: its bad lines, the lines it would drop, why it would fail."""

    path: Path
    fmt: str = "text"
    good: int = 0
    bad: list[tuple[int, str]] = field(default_factory=list)
    dropped: Dropped | None = None
    tokens: str | None = None  # how token lengths were checked, or why they were not
    problem: str | None = None  # a reason the file cannot train that is not a line (unreadable, no chat template)

    def failure(self) -> str | None:
        """The one reason the daemon would fail this file, or None when it would train."""
        if self.problem:
            return self.problem
        if self.bad:
            return bad_lines_error(self.path.name, self.bad)
        if not self.good:
            return f"{self.path.name}: no examples (the file is empty)"
        if self.dropped is not None:
            return self.dropped.failure(self.path.name, self.good - len(self.dropped.lines))
        return None

    def report(self) -> list[str]:
        """Human lines: counts, then line numbers (the first SHOWN_LINES of each kind)."""
        name = self.path.name
        out = [f"{name}: {self.good + len(self.bad)} line(s) of {self.fmt} data: {len(self.bad)} bad, {self.good} good"]
        if self.bad:
            shown = "; ".join(f"line {n}: {why}" for n, why in self.bad[:SHOWN_LINES])
            out.append(
                f"  bad line(s) (the daemon fails a file with any): {shown}"
                + (f" (and {len(self.bad) - SHOWN_LINES} more)" if len(self.bad) > SHOWN_LINES else "")
            )
        if self.tokens:
            out.append(f"  token lengths: {self.tokens}")
        if self.dropped is not None:
            out.append(f"  would be dropped: {self.dropped.summary()} (a file may lose up to {MAX_DROPPED_SHARE:.0%})")
        elif self.fmt == "chat" and self.tokens and not self.tokens.startswith("not checked"):
            out.append("  would be dropped: none (every conversation's assistant part fits)")
        if not self.failure():
            kept = self.good - (len(self.dropped.lines) if self.dropped else 0)
            out.append(f"  would train on {kept} line(s)")
        return out


def _token_lengths(layout: Layout, cfg: TrainingConfig, chk: FileCheck, examples: list[Any]) -> None:
    """Tokenize every conversation as the trainer will, count those whose assistant part is wholly cut off."""
    if chk.fmt != "chat":
        chk.tokens = (
            f"not needed for text data (a text line longer than max_seq_length={cfg.max_seq_length} is truncated)"
        )
        return
    if any(importlib.util.find_spec(m) is None for m in ("torch", "transformers")):
        chk.tokens = "not checked: the trainer extra is not installed (pip install 'healthkit[trainer]')"
        return
    from .preflight import template_problem, tokenizer_folder

    why = template_problem(layout, cfg, chk.path.name)
    if why:
        chk.problem = why
        return
    folder = tokenizer_folder(layout, cfg)
    if not folder.is_dir():
        chk.tokens = f"not checked: the tokenizer folder {folder} does not exist"
        return
    import transformers

    from .train_file import load_tokenizer, model_source

    transformers.utils.logging.set_verbosity_error()
    try:
        tok = load_tokenizer(layout, cfg, model_source(layout, cfg))
    except Exception as exc:
        why = " ".join(str(exc).split())  # transformers' messages span lines
        chk.tokens = (
            f"not checked: the tokenizer in {_rel(layout, folder)} could not be loaded ({type(exc).__name__}: {why})"
        )
        return
    lines, bad = [], []
    for n, msgs in examples:
        try:
            item = chat_features(tok, msgs, None, cfg.max_seq_length)
        except ValueError as exc:
            bad.append((n, str(exc)))
            continue
        if cut_off(item):
            lines.append(n)
    chk.bad.extend(bad)
    chk.good -= len(bad)
    chk.tokens = (
        f"checked with the workspace's tokenizer ({_rel(layout, folder)}) at max_seq_length={cfg.max_seq_length}"
    )
    if lines:
        chk.dropped = Dropped(lines, chk.good, cfg.max_seq_length)


def _rel(layout: Layout, p: Path) -> str:
    return str(p.relative_to(layout.base)) if p.is_relative_to(layout.base) else str(p)


def check_file(layout: Layout, cfg: TrainingConfig, path: Path) -> FileCheck:
    """Check every line of ``path`` by the trainer's own rules; nothing is queued or changed."""
    from .data import DataError

    chk = FileCheck(path)
    try:
        chk.fmt, examples, chk.bad = scan_examples(path, cfg.data_format, cfg.text_field)
    except DataError as exc:
        chk.problem = str(exc)
        return chk
    chk.good = len(examples)
    if examples:  # bad lines too: the person fixing them should learn about the long ones at once
        _token_lengths(layout, cfg, chk, examples)
    return chk
