"""Find the config values that Markdown docs state, in the forms people write them, with exact spans.

Forms: ``key: value`` and ``key = value`` (bullets, bold labels, YAML and JSON blocks),
inline code (`` `save_steps=100` ``), "key is `value`", grouped pairs
(``**LoRA:** r=128, alpha=128``) and Markdown table rows. Human labels ("Eval steps",
"Batch size") are mapped onto config keys. Each statement carries the line and the
column span of its value so a fix can rewrite that value and nothing else.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass
from typing import Any

ALIASES = {
    "lr": "learning_rate",
    "batch_size": "per_device_train_batch_size",
    "train_batch_size": "per_device_train_batch_size",
    "eval_batch_size": "per_device_eval_batch_size",
    "epochs": "num_train_epochs",
    "num_epochs": "num_train_epochs",
    "max_seq_len": "max_seq_length",
    "sequence_length": "max_seq_length",
    "seq_length": "max_seq_length",
    "max_length": "max_seq_length",
    "grad_accum": "gradient_accumulation_steps",
    "gradient_accumulation": "gradient_accumulation_steps",
    "evaluation_strategy": "eval_strategy",
    "eval_every": "eval_steps",
    "save_every": "save_steps",
    "checkpoint_limit": "save_total_limit",
    "warmup": "warmup_steps",
    "rank": "lora_r",
    "lora_rank": "lora_r",
    "lora_alpha": "lora_alpha",
}


@dataclass(frozen=True)
class Statement:
    """A doc's statement that config key ``key`` has value ``text`` (at line/col span)."""

    key: str
    label: str
    text: str
    line: int  # 1-based
    start: int  # column span of the value in the line (0-based, end exclusive)
    end: int
    line_text: str


def normalize_label(label: str) -> str:
    label = label.strip().strip("*`_\"' ").lower()
    return re.sub(r"[\s\-./]+", "_", label).strip("_")


def flatten(config: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Leaves of a nested config as ``a.b`` keys (lists are leaves)."""
    out: dict[str, Any] = {}
    for k, v in config.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and v:
            out.update(flatten(v, key + "."))
        else:
            out[key] = v
    return out


class KeyIndex:
    """Maps what a doc calls a setting onto the config key it means, or None."""

    def __init__(self, config: dict[str, Any]):
        self.values = flatten(config)
        self.names: dict[str, str] = {}
        leaf_count: dict[str, int] = {}
        for dotted in self.values:
            leaf = normalize_label(dotted.rsplit(".", 1)[-1])
            leaf_count[leaf] = leaf_count.get(leaf, 0) + 1
        for dotted in self.values:
            self.names[normalize_label(dotted)] = dotted  # a.b -> a_b
            self.names[dotted.lower()] = dotted
            leaf = normalize_label(dotted.rsplit(".", 1)[-1])
            if leaf_count[leaf] == 1:
                self.names.setdefault(leaf, dotted)

    def resolve(self, label: str, group: str | None = None) -> str | None:
        norm = normalize_label(label)
        if not norm or len(norm) > 48:
            return None
        candidates = []
        if group:
            g = normalize_label(group)
            candidates += [f"{g}_{norm}", f"{g}.{norm}"]
        candidates += [norm, ALIASES.get(norm, "")]
        if group:
            candidates.append(ALIASES.get(f"{normalize_label(group)}_{norm}", ""))
        for c in candidates:
            if c and c in self.names:
                return self.names[c]
        suffix = [d for n, d in self.names.items() if n.endswith("_" + norm) and "." not in n]
        if len(set(suffix)) == 1 and len(norm) >= 6:
            return suffix[0]
        return None


_BULLET = re.compile(r"^\s*(?:[-*+]|\d+[.)]|>)?\s*")
_VALUE = r"(?P<val>`[^`\n]+`|\"[^\"\n]*\"|'[^'\n]*'|[^\s,;|`]+)"
_COLON = re.compile(r"^(?P<label>\*\*[^*\n]{1,48}?:?\*\*|`[^`\n]{1,48}`|\"[\w.\- ]{1,48}\"|[A-Za-z][\w .\-]{0,47}?)\s*(?:\*\*)?\s*(?P<sep>:|=)(?:\*\*)?\s+" + _VALUE)
_PAIR = re.compile(r"(?<![\w.-])(?P<label>[A-Za-z][\w.-]{0,47})\s*(?P<sep>=)\s*" + _VALUE)
_IS = re.compile(r"(?P<label>`?[A-Za-z][\w.-]{0,47}`?)\s+is\s+(?:set\s+to\s+)?(?P<val>`[^`\n]+`)")


def _span(m: re.Match[str], offset: int) -> tuple[str, int, int]:
    val = m.group("val")
    start, end = m.start("val") + offset, m.end("val") + offset
    if val[:1] in "`\"'" and val[-1:] == val[:1] and len(val) >= 2:
        return val[1:-1], start + 1, end - 1
    trimmed = val.rstrip(".:)")
    if trimmed != val and not val.endswith("/"):
        end -= len(val) - len(trimmed)
        val = trimmed
    return val, start, end


def statements(text: str, index: KeyIndex) -> list[Statement]:
    out: list[Statement] = []
    fence: str | None = None
    for lineno, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        m_fence = re.match(r"^(`{3,}|~{3,})\s*([\w+-]*)", stripped)
        if m_fence:
            if fence is None:
                lang = m_fence.group(2).lower()
                fence = lang if lang in ("json", "yaml", "yml", "toml", "ini", "") else "code"
            else:
                fence = None
            continue
        if fence == "code" or stripped.startswith("#") and fence is None:
            continue
        seen_spans: set[tuple[int, int]] = set()

        def add(key: str | None, label: str, m: re.Match[str], offset: int = 0) -> None:
            if not key:
                return
            val, start, end = _span(m, offset)
            if (start, end) in seen_spans or not val:
                return
            seen_spans.add((start, end))
            out.append(Statement(key, label, val, lineno, start, end, line))

        if stripped.startswith("|") and stripped.count("|") >= 3:
            cells = [(c, i) for c, i in _cells(line)]
            if len(cells) >= 2 and not re.fullmatch(r"[\s:\-|]+", stripped):
                (label, _), (val_cell, pos) = cells[0], cells[1]
                key = index.resolve(label)
                m = re.match(r"\s*" + _VALUE, val_cell)
                if key and m:
                    add(key, label.strip(), m, pos)
            continue
        bullet = _BULLET.match(line)
        offset = bullet.end() if bullet else 0
        body = line[offset:]
        group: str | None = None
        m = _COLON.match(body)
        if m:
            label = m.group("label").strip("*`\" ").rstrip(":")
            key = index.resolve(label)
            if key:
                add(key, label, m, offset)
            elif m.group("sep") == ":":
                group = label
        for m in _PAIR.finditer(line):
            add(index.resolve(m.group("label"), group) or index.resolve(m.group("label")), m.group("label"), m)
        for m in _IS.finditer(line):
            label = m.group("label").strip("`")
            add(index.resolve(label), label, m)
        if fence in ("json", "yaml", "yml", "toml", "ini", "") and fence is not None:
            mj = re.match(r'^\s*"(?P<label>[\w.-]+)"\s*:\s*' + _VALUE, line)
            if mj:
                add(index.resolve(mj.group("label")), mj.group("label"), mj)
    return out


def _cells(line: str) -> list[tuple[str, int]]:
    cells = []
    pos = line.index("|") + 1
    for part in line[pos:].split("|")[:-1] if line.rstrip().endswith("|") else line[pos:].split("|"):
        cells.append((part.strip().strip("*`"), pos + (len(part) - len(part.lstrip()))))
        pos += len(part) + 1
    return cells


# comparing by meaning -------------------------------------------------------------

_BOOL = {"true": True, "yes": True, "on": True, "false": False, "no": False, "off": False}
_NULL = {"null", "none", "~", "nil"}


def parse_doc_value(text: str, like: Any) -> tuple[bool, Any]:
    """Interpret the doc's text as the same kind of value as the config's; (False, None) if it is not one."""
    t = text.strip().rstrip(",")
    if t.lower() in _NULL:
        return True, None
    if isinstance(like, bool):
        return (t.lower() in _BOOL), _BOOL.get(t.lower())
    if isinstance(like, (int, float)):
        num = t.replace("_", "")
        if re.fullmatch(r"\d{1,3}(,\d{3})+", num):
            num = num.replace(",", "")
        try:
            return True, float(num)
        except ValueError:
            return False, None
    if isinstance(like, str):
        return True, t
    if like is None:
        try:
            return True, float(t)
        except ValueError:
            return (t.lower() in _BOOL), _BOOL.get(t.lower(), t)
    return False, None


def looks_like_path(s: str) -> bool:
    return "/" in s or s.startswith(("~", "."))


def same_value(doc: Any, config: Any) -> tuple[bool, str | None]:
    """(equal by meaning, note): 2e-5 == 0.00002; `/a/b/` == `/a/b` with a note; 10 != 500."""
    if doc is None or config is None:
        return doc is config, None
    if isinstance(config, bool) or isinstance(doc, bool):
        return doc == config, None
    if isinstance(config, (int, float)) and isinstance(doc, (int, float)):
        return math.isclose(float(doc), float(config), rel_tol=1e-9, abs_tol=0.0), None
    if isinstance(config, str) and isinstance(doc, str):
        if doc == config:
            return True, None
        if looks_like_path(doc) and looks_like_path(config):
            if os.path.normpath(doc) == os.path.normpath(config):
                return True, "differs only by a trailing slash or redundant separators"
        return False, None
    return doc == config, None


def format_for_doc(config_value: Any, doc_text: str) -> str:
    """The config's value written the way the doc wrote its value (quotes kept by the span)."""
    if isinstance(config_value, bool):
        return ("true" if config_value else "false") if doc_text.lower() in ("true", "false") else ("yes" if config_value else "no") if doc_text.lower() in ("yes", "no") else str(config_value).lower()
    if config_value is None:
        return "null"
    if isinstance(config_value, float) and config_value.is_integer() and "." not in doc_text and "e" not in doc_text.lower():
        return str(int(config_value))
    return str(config_value)
