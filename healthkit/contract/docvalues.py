"""Find the config values that Markdown docs state, in the forms people write them, with exact spans.

Forms: ``key: value`` and ``key = value`` (bullets, bold labels, task items), inline code
(`` `save_steps=100` ``), "key is `value`", grouped pairs (``**LoRA:** r=128, alpha=128``),
Markdown table rows, and fenced blocks: JSON (nested objects give ``lora.r``), YAML (nested by
indentation), TOML/INI (``[lora]`` sections). Other fenced code (bash, python), indented code
and headings state nothing. Human labels ("Eval steps", "Batch size") are mapped onto config
keys. Each statement carries the line and the column span of its value so a fix can rewrite
that value and nothing else: ``line_text[start:end] == text`` always holds.

A label maps onto a key only when one key fits ("Batch size" with both a train and an eval
batch size maps to neither; `Ambiguous` says which it could be). What a line says about its
own value decides what a fix may do: history ("Earlier we tried ...") states no current value,
and a line that argues for its value (`history_marker`, `argues_for_itself`) is for a person.
"""

from __future__ import annotations

import math
import os
import re
from typing import Any

from healthkit.system.lazyre import LazyPattern
from healthkit.system.records import record

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


@record
class Statement:
    """A doc's statement that config key ``key`` has value ``text`` (at line/col span)."""

    key: str
    label: str
    text: str
    line: int  # 1-based
    start: int  # column span of the value in the line (0-based, end exclusive)
    end: int
    line_text: str
    partial: bool = False  # an unquoted value that prose goes on after ("Base model: see below")
    fenced: bool = False  # inside a fenced code block: an example or a copy of a file, never rewritten by a safe fix


@record
class Ambiguous:
    """A label that more than one config key fits ("Batch size" with train and eval batch sizes): not compared."""

    label: str
    keys: tuple[str, ...]
    line: int


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
        self.ambiguous: list[tuple[int, str, tuple[str, ...]]] = []  # (line, label, keys) met by resolve()
        self.line = 0  # the doc line being read, for ``ambiguous``
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
        """The one config key ``label`` means, or None: unknown, or fitting several keys (kept in ``ambiguous``)."""
        fits = self.candidates(label, group)
        if len(fits) > 1:
            self.ambiguous.append((self.line, label.strip("*`_\"' "), tuple(fits)))
            return None
        return fits[0] if fits else None

    def candidates(self, label: str, group: str | None = None) -> list[str]:
        """Every config key ``label`` could mean: its exact name wins; else aliases and longer names ending with it.

        "Batch size" fits per_device_train_batch_size by alias and per_device_eval_batch_size by suffix: two keys,
        so neither is assumed.
        """
        norm = normalize_label(label)
        if not norm or len(norm) > 48:
            return []
        exact = [f"{normalize_label(group)}_{norm}", f"{normalize_label(group)}.{norm}"] if group else []
        for c in exact + [norm]:
            if c in self.names:
                return [self.names[c]]
        fits: list[str] = []
        aliases = [ALIASES.get(norm, "")] + ([ALIASES.get(f"{normalize_label(group)}_{norm}", "")] if group else [])
        for a in aliases:
            if a and a in self.names and self.names[a] not in fits:
                fits.append(self.names[a])
        # "Seq length" -> max_seq_length; only labels of two or more words, so that a lone
        # "Version" or "Length" in prose does not claim a key that merely ends with it.
        if "_" in norm and len(norm) >= 6:
            for n, d in self.names.items():
                if n.endswith("_" + norm) and "." not in n and d not in fits:
                    fits.append(d)
        return sorted(fits)


_BULLET = LazyPattern(r"^\s*(?:(?:[-*+]|\d+[.)])\s+|>\s*|\[[ xX]\]\s+)*")  # bullets, quotes, task boxes
_VALUE = (
    r"(?P<val>`[^`\n]+`|\*\*[^*\n]+\*\*|\"[^\"\n]*\"|'[^'\n]*'"
    r"|\d{1,3}(?:,\d{3})+(?![\d,])|[^\s,;|`]+)"
)
_COLON = LazyPattern(
    r"^(?:\*\*?(?P<blabel>[^*\n]{1,48}?)\s*(?P<bsep>[:=])\s*\*\*?"  # **Label:** value, *Label:* value
    r"|(?P<label>\*\*?[^*\n]{1,48}?\*\*?|`[^`\n]{1,48}`|\"[\w.\- ]{1,48}\"|[A-Za-z][\w .\-]{0,47}?)"
    r"\s*(?P<sep>:|=)(?:\*\*)?)\s+" + _VALUE
)
# `key=value` anywhere; not inside URLs (?a=1&b=2), paths or comparisons (==)
_PAIR = LazyPattern(r"(?<![\w.\-/?&=:])(?P<label>[A-Za-z][\w.-]{0,47})\s*(?P<sep>=)(?!=)\s*" + _VALUE)
_IS = LazyPattern(
    r"(?P<label>(?:[A-Za-z][\w.-]{0,47}\s+)?`?[A-Za-z][\w.-]{0,47}`?)\s+is\s+(?:set\s+to\s+)?(?P<val>`[^`\n]+`)"
)
_INLINE = LazyPattern(r"`(?P<label>[A-Za-z][\w.-]{0,47})\s*:\s+(?P<val>[^`\s][^`\n]*?)\s*`")
_FENCE = LazyPattern(r"^(?P<mark>`{3,}|~{3,})\s*(?P<lang>[^\s`]*)")
_YAML_KEY = LazyPattern(
    r"^(?P<indent>\s*)(?:-\s+)?(?P<label>\"[^\"\n]+\"|'[^'\n]+'|[A-Za-z_][\w.\- ]{0,47}?)\s*:(?:\s+(?P<rest>\S.*?))?\s*$"
)
_TOML_KEY = LazyPattern(r"^\s*(?P<label>\"[^\"\n]+\"|[A-Za-z_][\w.-]{0,47})\s*=\s*" + _VALUE)
_JSON_TOKEN = LazyPattern(
    r"\s+|//[^\n]*|(?P<str>\"(?:[^\"\\\n]|\\.)*\")|(?P<punct>[{}\[\]:,])|(?P<lit>[^\s{}\[\]:,\"]+)"
)
_JSON_LANGS = {"json", "jsonc", "json5"}
_YAML_LANGS = {"yaml", "yml"}
_KV_LANGS = {"toml", "ini", "cfg", "conf", "properties", "env", "dotenv"}


def _span(m: re.Match[str], offset: int) -> tuple[str, int, int]:
    val = m.group("val")
    start, end = m.start("val") + offset, m.end("val") + offset
    if val[:2] == "**" and val[-2:] == "**" and len(val) > 4:
        return val[2:-2], start + 2, end - 2
    if val[:1] in "`\"'" and val[-1:] == val[:1] and len(val) >= 2:
        return val[1:-1], start + 1, end - 1
    trimmed = val.rstrip(".:)")
    if trimmed != val and not val.endswith("/"):
        end -= len(val) - len(trimmed)
        val = trimmed
    return val, start, end


def _continues(line: str, end: int) -> bool:
    """Prose goes on after an unquoted value (`Base model: see below`): the value is a word, not a setting."""
    rest = line[end:].lstrip("*")
    return bool(re.match(r"[ \t]+[^\W_]", rest))


class _Collector:
    """Statements of one doc, at most one per value span of a line."""

    def __init__(self, index: KeyIndex):
        self.index = index
        self.out: list[Statement] = []
        self.seen: set[tuple[int, int, int]] = set()
        self.fenced = False  # set while a fenced block's lines are read

    def add(
        self, key: str | None, label: str, text: str, lineno: int, start: int, end: int, line: str, quoted: bool = False
    ) -> None:
        if not key or not text or (lineno, start, end) in self.seen:
            return
        if line[start:end] != text:  # a span that does not hold the value cannot be rewritten safely
            return
        self.seen.add((lineno, start, end))
        partial = not quoted and _continues(line, end)
        self.out.append(Statement(key, label, text, lineno, start, end, line, partial, self.fenced))

    def add_match(self, key: str | None, label: str, m: re.Match[str], lineno: int, line: str, offset: int = 0) -> None:
        if not key:
            return
        val, start, end = _span(m, offset)
        self.add(key, label, val, lineno, start, end, line, quoted=m.group("val")[:1] in "`\"'*")


def statements(text: str, index: KeyIndex, ambiguous: list[Ambiguous] | None = None) -> list[Statement]:
    """Every statement of a config value in a Markdown text, in line order.

    Labels that fit more than one config key state nothing; they are added to ``ambiguous`` when given.
    """
    col = _Collector(index)
    index.ambiguous.clear()
    fence: tuple[str, str] | None = None  # (marker, kind)
    block: list[tuple[int, str]] = []
    for lineno, line in enumerate(text.splitlines(), 1):
        index.line = lineno
        stripped = line.strip()
        m_fence = _FENCE.match(stripped)
        if fence is not None:
            mark = fence[0]
            if (
                m_fence
                and m_fence.group("mark")[0] == mark[0]
                and len(m_fence.group("mark")) >= len(mark)
                and not stripped[len(m_fence.group("mark")) :].strip()
            ):
                _block(col, fence[1], block)
                fence, block = None, []
            else:
                block.append((lineno, line))
            continue
        if m_fence:
            lang = m_fence.group("lang").lower().lstrip("{.").rstrip("}")
            kind = (
                "json"
                if lang in _JSON_LANGS
                else "yaml"
                if lang in _YAML_LANGS
                else "kv"
                if lang in _KV_LANGS
                else "plain"
                if lang == ""
                else "code"
            )
            fence, block = (m_fence.group("mark"), kind), []
            continue
        _prose_line(col, lineno, line)
    if fence is not None:  # an unclosed fence runs to the end of the doc
        _block(col, fence[1], block)
    col.out.sort(key=lambda s: (s.line, s.start))
    if ambiguous is not None:
        for at, label, keys in dict.fromkeys(index.ambiguous):
            ambiguous.append(Ambiguous(label, keys, at))
    index.ambiguous.clear()
    return col.out


def _prose_line(col: _Collector, lineno: int, line: str) -> None:
    index = col.index
    stripped = line.strip()
    if (
        not stripped
        or stripped.startswith("#")
        or line.startswith(("    ", "\t"))
        and not _BULLET.match(line).group().strip()
    ):
        return  # headings, and indented code blocks (not list continuations)
    if stripped.startswith("|") and stripped.count("|") >= 3:
        _table_row(col, lineno, line)
        return
    bullet = _BULLET.match(line)
    offset = bullet.end() if bullet else 0
    body = line[offset:]
    group: str | None = None
    m = _COLON.match(body)
    if m:
        label = (m.group("blabel") or m.group("label")).strip('*`" ').rstrip(":").strip()
        sep = m.group("bsep") or m.group("sep")
        key = index.resolve(label)
        if key:
            col.add_match(key, label, m, lineno, line, offset)
        elif sep == ":":
            group = label
    for m in _PAIR.finditer(line):
        lab = m.group("label")
        col.add_match(index.resolve(lab, group) or index.resolve(lab), lab, m, lineno, line)
    for m in _INLINE.finditer(line):
        lab = m.group("label")
        col.add_match(index.resolve(lab), lab, m, lineno, line)
    for m in _IS.finditer(line):
        label = m.group("label").replace("`", "")
        key = index.resolve(label)
        if not key and " " in label.strip():
            label = label.split()[-1]
            key = index.resolve(label)
        col.add_match(key, label, m, lineno, line)


def _table_row(col: _Collector, lineno: int, line: str) -> None:
    stripped = line.strip()
    if re.fullmatch(r"[\s:\-|]+", stripped):
        return
    cells = _cells(line)
    if len(cells) < 2:
        return
    label = cells[0][0]
    key = col.index.resolve(label)
    if not key:
        return
    rest = cells[1:]
    if len(rest) >= 2 and col.index.resolve(rest[0][0]) == key:
        rest = rest[1:]  # | Eval steps | eval_steps | 500 |
    val_cell, pos = rest[0]
    m = re.match(_VALUE, val_cell)
    if m:
        col.add_match(key, label.strip(), m, lineno, line, pos)


def _cells(line: str) -> list[tuple[str, int]]:
    """Cells of a table row as (text without surrounding space, bold or backticks; its column in the line)."""
    cells = []
    pos = line.index("|") + 1
    parts = line[pos:].split("|")
    if line.rstrip().endswith("|"):
        parts = parts[:-1]
    for part in parts:
        lead = len(part) - len(part.lstrip())
        text = part.strip()
        inner = text.strip("*")
        lead += len(text) - len(text.lstrip("*"))
        cells.append((inner, pos + lead))
        pos += len(part) + 1
    return cells


def _block(col: _Collector, kind: str, block: list[tuple[int, str]]) -> None:
    if kind == "code" or not block:
        return
    first = next((ln.strip() for _, ln in block if ln.strip()), "")
    col.fenced = True
    try:
        if kind == "json" or kind == "plain" and first[:1] in "{[":
            _json_block(col, block)
        elif kind == "kv":
            _kv_block(col, block)
        else:
            _yaml_block(col, block)
    finally:
        col.fenced = False


def _yaml_block(col: _Collector, block: list[tuple[int, str]]) -> None:
    """`key: value` lines, nested by indentation (`lora:` then `  r: 128` is lora.r)."""
    stack: list[tuple[int, str]] = []
    for lineno, line in block:
        col.index.line = lineno
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        m = _YAML_KEY.match(line)
        if not m:
            continue
        indent = len(m.group("indent"))
        while stack and stack[-1][0] >= indent:
            stack.pop()
        label = m.group("label").strip("\"' ")
        group = ".".join(lab for _, lab in stack) or None
        rest = m.group("rest")
        if rest is None or rest.startswith(("#", "|", ">", "&")):
            stack.append((indent, label))
            continue
        pos = m.start("rest")
        if rest.startswith("{"):  # flow mapping: lora: {r: 128, alpha: 128}
            sub = ".".join(x for x in (group, label) if x)
            for pm in re.finditer(r"(?P<label>[A-Za-z_][\w.-]*)\s*:\s*" + _VALUE, rest):
                col.add_match(col.index.resolve(pm.group("label"), sub), pm.group("label"), pm, lineno, line, pos)
            continue
        vm = re.match(_VALUE, rest)
        if not vm:
            continue
        key = col.index.resolve(label, group) if group else col.index.resolve(label)
        if vm.group("val")[:1] in "\"'" or re.fullmatch(_VALUE, rest.split(" #")[0].rstrip()):
            col.add_match(key, label, vm, lineno, line, pos)
        else:  # an unquoted scalar with spaces: the whole text up to a comment
            text = rest.split(" #")[0].rstrip()
            col.add(key, label, text, lineno, pos, pos + len(text), line, quoted=True)


def _kv_block(col: _Collector, block: list[tuple[int, str]]) -> None:
    """TOML/INI: `[section]` headers group the `key = value` lines under them."""
    group: str | None = None
    for lineno, line in block:
        col.index.line = lineno
        s = line.strip()
        if s.startswith("[") and s.endswith("]"):
            group = s.strip("[] ") or None
            continue
        m = _TOML_KEY.match(line)
        if m:
            label = m.group("label").strip('"')
            col.add_match(
                col.index.resolve(label, group) if group else col.index.resolve(label), label, m, lineno, line
            )


def _json_block(col: _Collector, block: list[tuple[int, str]]) -> None:
    """Object keys of a JSON block with their paths (`"lora": {"r": 128}` is lora.r); arrays are skipped."""
    # frames: [kind, path or None (inside an array), pending key, after colon]
    stack: list[list[Any]] = []
    for lineno, line in block:
        col.index.line = lineno
        for m in _JSON_TOKEN.finditer(line):
            tok = m.group(0)
            top = stack[-1] if stack else None
            if m.group("punct"):
                if tok in "{[":
                    if top is None:
                        path: list[str] | None = [] if tok == "{" else None
                    elif top[0] == "obj" and top[1] is not None and top[2] is not None:
                        path = top[1] + [top[2]] if tok == "{" else None
                    else:
                        path = None
                    if top is not None and top[0] == "obj":
                        top[2], top[3] = None, False
                    stack.append(["obj" if tok == "{" else "arr", path, None, False])
                elif tok in "}]":
                    if stack:
                        stack.pop()
                elif tok == ":" and top is not None and top[0] == "obj":
                    top[3] = True
                elif tok == "," and top is not None and top[0] == "obj":
                    top[2], top[3] = None, False
                continue
            if top is None or top[0] != "obj":
                continue
            if m.group("str") and not top[3]:
                top[2] = tok[1:-1]
                continue
            if (m.group("str") or m.group("lit")) and top[3] and top[2] is not None:
                if top[1] is not None and "\\" not in tok:
                    group = ".".join(top[1]) or None
                    label = top[2]
                    key = col.index.resolve(label, group) if group else col.index.resolve(label)
                    if m.group("str"):
                        col.add(key, label, tok[1:-1], lineno, m.start() + 1, m.end() - 1, line, quoted=True)
                    else:
                        col.add(key, label, tok, lineno, m.start(), m.end(), line, quoted=True)
                top[2], top[3] = None, False


# comparing by meaning -------------------------------------------------------------

_BOOL = {"true": True, "yes": True, "on": True, "false": False, "no": False, "off": False}
_NULL = {"null", "none", "~", "nil"}


def parse_doc_value(text: str, like: Any) -> tuple[bool, Any]:
    """Interpret the doc's text as the same kind of value as the config's; (False, None) if it is not one."""
    t = text.strip().rstrip(",")
    # A string setting may well be "none" (report_to): read as text, so that the value a fix writes reads back equal.
    if t.lower() in _NULL and not isinstance(like, str):
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
    if doc is None or config is None:  # (`and` here is an equivalent mutant: the last line compares them too)
        return doc is config, None
    if isinstance(config, bool) or isinstance(doc, bool):  # True == 1 in Python, not in a config
        return type(doc) is type(config) and doc == config, None
    if isinstance(config, (int, float)) and isinstance(doc, (int, float)):
        # Written out though both are isclose's defaults (so dropping either is an equivalent mutant): 1005 != 1000.
        return math.isclose(float(doc), float(config), rel_tol=1e-9, abs_tol=0.0), None
    if isinstance(config, str) and isinstance(doc, str):
        if doc == config:
            return True, None
        if looks_like_path(doc) and looks_like_path(config) and os.path.normpath(doc) == os.path.normpath(config):
            return True, "differs only by a trailing slash or redundant separators"
        return False, None
    return doc == config, None


def format_for_doc(config_value: Any, doc_text: str) -> str:
    """The config's value written the way the doc wrote its value (quotes kept by the span)."""
    if isinstance(config_value, bool):
        return ("yes" if config_value else "no") if doc_text.lower() in ("yes", "no") else str(config_value).lower()
    if config_value is None:
        return "null"
    if (
        isinstance(config_value, float)
        and config_value.is_integer()
        and "." not in doc_text
        and "e" not in doc_text.lower()
    ):
        return str(int(config_value))
    return str(config_value)


def line_fingerprint(line: str) -> str:
    """Change detection for a doc line between audit and fix (not security): CRC-32 and length.

    Not hashlib: loading OpenSSL costs a cron audit more than every check together.
    """
    import zlib

    data = line.encode("utf-8")
    return f"{zlib.crc32(data):08x}-{len(data)}"


# what a line says about its own value -----------------------------------------------

_HISTORY = LazyPattern(
    r"\b(?:earlier|previously|formerly|originally|initially|used\s+to|we\s+tried|tried|in\s+the\s+past|no\s+longer|"
    r"back\s+then|changed\s+from|until\s+\w+|old\s+value|was|were|had\s+been)\b",
    re.IGNORECASE,
)
_ARGUES = LazyPattern(
    r"\b(?:required|requires?|must|mandatory|do\s+not|don'?t|never|intentional(?:ly)?|deliberate(?:ly)?|on\s+purpose|"
    r"needed|necessary|important|causes?|oom|out\s+of\s+memory|crash(?:es)?|keep\s+(?:it\s+)?at|pinned|fixed\s+at)\b",
    re.IGNORECASE,
)
_OTHER_PAIR = LazyPattern(r"(?P<label>[A-Za-z][\w.-]{0,47})[\"'`]?\s*[:=]\s*[\"'`]?(?P<val>[^\s,;|`\"'()]+)")


def history_marker(st: Statement) -> str | None:
    """The word that makes a prose statement history ("Earlier we tried `eval_steps: 50`"), or None.

    Only words before the value count: "Eval steps: 10 (was 500)" states 10 now, and names an old value.
    """
    if st.fenced:
        return None
    m = _HISTORY.search(st.line_text[: st.start])
    return m.group(0) if m else None


def _outside(st: Statement) -> str:
    return st.line_text[: st.start] + " " * (st.end - st.start) + st.line_text[st.end :]


def argues_for_itself(st: Statement, index: KeyIndex, config_value: Any) -> str | None:
    """Why a person must decide between the doc and config.json, or None.

    A line that says its value is required or must not change, names an old value, or also states
    config.json's value for the same key (`"batch_size": 1,  <- REQUIRED (batch_size=2 causes OOM)`)
    argues for its own value: rewriting it would make it contradict itself.
    """
    rest = _outside(st)
    for m in _OTHER_PAIR.finditer(rest):
        if index.resolve(m.group("label")) != st.key and normalize_label(m.group("label")) != normalize_label(st.label):
            continue
        ok, value = parse_doc_value(m.group("val"), config_value)
        if ok and same_value(value, config_value)[0]:
            return f"the line also states `{m.group(0).strip()}`"
    m = _ARGUES.search(rest)
    if m:
        return f"the line argues for its value (`{m.group(0)}`)"
    m = _HISTORY.search(st.line_text[st.end :])
    if m and not st.fenced:
        return f"the line records a change (`{m.group(0)}`)"
    return None
