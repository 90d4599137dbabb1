"""Whether an HF Trainer checkpoint can be resumed from: the one rule the audit, the fixes and the trainer share.

The rule reads each checkpoint in bounded time, so that the audit's cost does not grow
with the length of the run: a `trainer_state.json` holds the whole `log_history` up to
its step (megabytes after a long run, in every one of hundreds of checkpoints).

- The files present and their sizes (weights, all shards of a sharded save).
- The head of `trainer_state.json`: HF writes it with sorted keys, so `global_step`
  comes before `log_history`; the top-level keys are decoded one by one until it is found.
- The tail: a file cut off by a killed save does not end in the closing `}` alone at the
  start of a line. A large file not indented as HF writes it cannot be judged by its
  tail, so it is parsed whole (exact, and slower: HF never writes one).

A whole `trainer_state.json` is parsed only where its contents are needed
(`newest_with_state`); a parse failure there makes that checkpoint incomplete too.
No torch here: the trainer's daemon uses it before it starts a child.
"""

from __future__ import annotations

import gc
import json
import os
import re
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, TypeVar, cast

from healthkit.system.records import record

if TYPE_CHECKING:
    from healthkit.system.fsutil import Reader

from healthkit.formats.base import Completeness
from healthkit.formats.deepspeed import is_zero, zero_problems
from healthkit.formats.fsdp import fsdp_problems, is_fsdp

STATE_FILE = "trainer_state.json"
# HF's checkpoint folder name, `checkpoint-N`: the one rule for every listing (the format, the retry checkpoints),
# always matched whole (`checkpoint-60\n` is not a checkpoint).
CHECKPOINT_NAME = re.compile(r"checkpoint-(\d+)")
WEIGHT_FILES = (
    "model.safetensors",
    "pytorch_model.bin",
    "adapter_model.safetensors",
    "adapter_model.bin",
    "tf_model.h5",
    "flax_model.msgpack",
)
INDEX_FILES = ("model.safetensors.index.json", "pytorch_model.bin.index.json")
ADAPTER_WEIGHTS = ("adapter_model.safetensors", "adapter_model.bin")  # a LoRA (peft) checkpoint: these + its config
ADAPTER_CONFIG = "adapter_config.json"
TRAINING_STATE_FILES = ("optimizer.pt", "scheduler.pt")
# What HF writes beside the weights: a folder holding only these (and no weights) is missing its weights.
BOOKKEEPING = frozenset(
    (
        STATE_FILE,
        *TRAINING_STATE_FILES,
        "training_args.bin",
        "config.json",
        "generation_config.json",
        "tokenizer.json",
        "tokenizer_config.json",
        "special_tokens_map.json",
        "vocab.json",
        "merges.txt",
        "tokenizer.model",
        "added_tokens.json",
        "chat_template.jinja",
        "README.md",
        "zero_to_fp32.py",
        ADAPTER_CONFIG,
    )
)
# HF's own partial files: shards written before their index, rng states per process.
_RNG = re.compile(r"^rng_state(_\d+)?\.pth$|^(model|pytorch_model)-\d+-of-\d+\.(safetensors|bin)$")
HEAD_BYTES = 4096  # HF's keys before log_history take a few hundred bytes
MAX_HEAD_BYTES = 64 * 1024  # a longer head is read once before giving up on the bounded read
TAIL_BYTES = 64
WHOLE_BELOW = 64 * 1024  # a small state is parsed whole: cheaper than being clever, and exact
MAX_FULL_PARSES = 3  # newest_complete gives up after this many bounded-complete states fail to parse
_DECODER = json.JSONDecoder()
_WS = re.compile(r"\s*")


def _past_ws(text: str, pos: int) -> int:
    """The index after the whitespace at ``pos`` (``_WS`` matches the empty string, so it always matches)."""
    return cast("re.Match[str]", _WS.match(text, pos)).end()


P = TypeVar("P")


@record
class StateRead:
    """What a bounded read of trainer_state.json found: the global step, or why it cannot be trusted."""

    global_step: int | None
    problem: str | None = None


def _step_of(data: Any) -> StateRead:
    if not isinstance(data, dict):
        return StateRead(None, "trainer_state.json is not a JSON object")
    step = data.get("global_step")
    if isinstance(step, int) and not isinstance(step, bool):
        return StateRead(step)
    return StateRead(None, "trainer_state.json has no global_step")


def _step_from_head(head: str) -> StateRead | None:
    """global_step decoded from the top-level keys before `log_history`; None when the head cannot tell."""
    pos = _past_ws(head, 0)
    if head[pos : pos + 1] != "{":
        return StateRead(None, "trainer_state.json is unreadable (not a JSON object)")
    pos += 1
    try:
        while True:
            pos = _past_ws(head, pos)
            key, pos = _DECODER.raw_decode(head, pos)
            pos = _past_ws(head, pos)
            if head[pos : pos + 1] != ":":
                return None
            pos = _past_ws(head, pos + 1)
            if key == "log_history":
                return None  # not sorted (or no global_step): the tail may hold it
            value, pos = _DECODER.raw_decode(head, pos)
            if key == "global_step":
                return _step_of({key: value})
            pos = _past_ws(head, pos)
            if head[pos : pos + 1] != ",":
                return None
            pos += 1
    except ValueError:
        return None  # a value runs past the head (or the head is odd): let the whole parse decide


def _ends_closed(tail: bytes) -> bool:
    """The file ends in the object's closing brace, alone at the start of a line (as an indented file closes).

    A cut after a nested entry's `}` leaves it indented, so it does not pass.
    """
    end = tail.rstrip()
    return end.endswith(b"}") and end[:-1].endswith((b"\n", b"\r"))


def _bounded(fh: BinaryIO, size: int) -> StateRead | None:
    """Head and tail of a large trainer_state.json; None when they cannot tell (then it is parsed whole)."""
    head = fh.read(HEAD_BYTES).decode("utf-8", errors="replace")
    if head.lstrip()[1:2] not in ("\n", "\r"):
        return None  # not indented as HF writes it: its tail cannot tell a cut, so it is parsed whole
    fh.seek(max(0, size - TAIL_BYTES))
    if not _ends_closed(fh.read(TAIL_BYTES)):
        return StateRead(None, f"trainer_state.json is cut off (it does not end in `}}`: {size} bytes)")
    found = _step_from_head(head)
    if found is None:
        fh.seek(0)
        found = _step_from_head(fh.read(MAX_HEAD_BYTES).decode("utf-8", errors="replace"))
    return found


def read_state(path: Path) -> StateRead:
    """The global step of a trainer_state.json in bounded time (head and tail), parsed whole only when small or odd."""
    from healthkit.system.fsutil import CAP_HISTORY, ReadProblem, open_regular

    try:
        with open_regular(path) as fh:
            size = os.fstat(fh.fileno()).st_size
            if size == 0:
                return StateRead(None, "trainer_state.json is empty")
            if size <= WHOLE_BELOW:
                raw = fh.read()
            else:
                found = _bounded(fh, size)
                if found is not None:
                    return found
                if size > CAP_HISTORY:
                    ReadProblem(
                        "too-large", path, f"{path} is {size} bytes, more than the {CAP_HISTORY} we parse whole"
                    )
                    return StateRead(None, f"trainer_state.json is too large to parse whole ({size} bytes)")
                fh.seek(0)
                raw = fh.read()
    except ReadProblem as exc:
        why = "Is a directory" if exc.kind == "directory" else _problem_words(exc)  # as open(2)'s EISDIR says it
        return StateRead(None, f"trainer_state.json cannot be read ({why})")
    except OSError as exc:
        return StateRead(None, f"trainer_state.json cannot be read ({exc.strerror or exc})")
    try:
        return _step_of(json.loads(raw))
    except RecursionError:
        ReadProblem("too-deep", path, f"{path} is nested too deep to parse")  # recorded for checks/files.py
        return StateRead(None, "trainer_state.json is unreadable (nested too deep to parse)")
    except (ValueError, UnicodeDecodeError) as exc:
        return StateRead(None, f"trainer_state.json is unreadable ({_reason(exc)})")


def _problem_words(exc: Any) -> str:
    """A ReadProblem's message without the path (the finding names the checkpoint already)."""
    return exc.message.replace(f"{exc.path} ", "", 1).replace(f"{exc.path}: ", "", 1)


def _reason(exc: Exception) -> str:
    return exc.msg if isinstance(exc, json.JSONDecodeError) else "not UTF-8 JSON"


def _weight_problems(path: Path, files: frozenset[str], zero: bool, fsdp: bool) -> list[str]:
    problems: list[str] = []
    weights = [f for f in WEIGHT_FILES if f in files]
    index = next((f for f in INDEX_FILES if f in files), None)
    sharded_states = zero or fsdp
    if zero:
        problems += zero_problems(path, files)
    if fsdp:
        problems += fsdp_problems(path, files)
    if index:
        from healthkit.system.fsutil import CAP_JSON, ReadProblem, parse_json, read_bytes

        try:  # bytes to json: a byte-order mark some editors write is read as JSON allows
            shards = sorted(
                set(parse_json(read_bytes(path / index, CAP_JSON), path / index).get("weight_map", {}).values())
            )
            lost = [s for s in shards if s not in files]
            if lost:
                problems.append(f"{len(lost)} of {len(shards)} weight shards are missing ({', '.join(lost[:3])})")
        except (ReadProblem, AttributeError, TypeError):
            problems.append(f"{index} is unreadable")
    elif not weights and not sharded_states:
        problems.append("no model weights (model.safetensors, pytorch_model.bin or an adapter)")
    if any(w in ADAPTER_WEIGHTS for w in weights) and ADAPTER_CONFIG not in files:
        problems.append(f"{ADAPTER_CONFIG} is missing (the adapter's weights cannot be loaded without it)")
    from healthkit.system.fsutil import regular_size

    for w in weights:
        size, why = regular_size(path / w)
        if size == 0:
            problems.append(f"{w} is empty")
        elif why is not None and why.startswith("not a regular file"):
            continue  # a FIFO or device is no weight file to call empty: checkpoint_completeness judges it unknown
        elif why is not None:
            problems.append(f"{w} cannot be read ({why})")
    return problems


def _not_regular_weights(path: Path, names: frozenset[str]) -> str | None:
    """Why a checkpoint whose weight file is a FIFO, socket or device cannot be judged (it is not "empty")."""
    from healthkit.system.fsutil import regular_size

    for w in WEIGHT_FILES:
        if w in names:
            _, why = regular_size(path / w)
            if why is not None and why.startswith("not a regular file"):
                from healthkit.system.fsutil import ReadProblem

                ReadProblem("not-regular", path / w, f"{path / w} is {why}")  # recorded for checks/files.py
                return f"{w} is {why}: not a weight file healthkit can judge, and nothing offers to delete it"
    return None


def unknown_layout(names: frozenset[str], zero: bool, fsdp: bool) -> str | None:
    """Why a checkpoint folder is in a layout this rule cannot judge (None: it can).

    HF's rule knows the weights it names; a folder that holds files and none of those weights,
    beside at most HF's bookkeeping, keeps its weights some other way (a custom save, another
    stack): it is unknown, never incomplete, and nothing offers to delete it.
    """
    if not names or zero or fsdp or any(f in names for f in WEIGHT_FILES + INDEX_FILES):
        return None
    other = sorted(f for f in names if f not in BOOKKEEPING and not _RNG.fullmatch(f))
    if not other:
        return None  # only HF's own files: the weights are missing
    return f"its weights are in a layout healthkit does not know ({', '.join(other[:3])})"


def checkpoint_completeness(
    path: Path, files: Iterable[str] | None = None, *, need_optimizer: bool = False
) -> Completeness:
    """THE rule: what a resume from checkpoint folder ``path`` would lack, read in bounded time.

    ``files`` is the folder's listing when the caller already has it. ``need_optimizer``:
    the caller's trainer always saves optimizer and scheduler state and resumes from it
    (HF tolerates their absence, so the audit does not require them).
    """
    if files is None:
        try:
            files = os.listdir(path)
        except OSError as exc:
            return Completeness(None, (f"its folder cannot be listed ({exc.strerror or exc})",))
    names = frozenset(files)
    zero, fsdp = is_zero(names), is_fsdp(names)
    unknown = unknown_layout(names, zero, fsdp) or _not_regular_weights(path, names)
    if unknown:
        return Completeness(None, (), unknown=unknown)
    state = read_state(path / STATE_FILE) if STATE_FILE in names else StateRead(None, "trainer_state.json is missing")
    problems = ([state.problem] if state.problem else []) + _weight_problems(path, names, zero, fsdp)
    if need_optimizer:
        problems += [f"{f} is missing" for f in TRAINING_STATE_FILES if f not in names]
    return Completeness(state.global_step, tuple(problems), state.problem)


ORJSON_FROM = 512 * 1024  # a history of ~3,500 logs: orjson saves more than its import costs from here


def _loads_without_gc(raw: bytes) -> Any:
    """The parsed JSON, with the cyclic GC paused: a long history is tens of thousands of fresh dicts, none in a
    cycle, and each GC pass they trigger would walk every object of the process again.

    orjson parses a 100k-step history (1.5 MB) about 2.7x faster than json, but importing it costs ~3.5 ms (it
    imports uuid and platform): only a file of ORJSON_FROM bytes or more is worth it. What orjson refuses (HF writes
    a NaN loss as the bare `NaN` that json.dump allows; nesting past 1024) goes to json, which reads the same values
    and raises what callers expect for what neither reads. orjson reads an integer beyond 64 bits as a float, which
    no step or count of a run is."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        if len(raw) < ORJSON_FROM:
            return json.loads(raw)
        try:
            import orjson
        except ImportError:
            return json.loads(raw)
        try:
            return orjson.loads(raw)
        except orjson.JSONDecodeError:
            return json.loads(raw)
    finally:
        if was_enabled:
            gc.enable()


def load_state(path: Path, reader: Reader | None = None) -> tuple[dict | None, str | None]:
    """A whole trainer_state.json, for where its contents are needed: (data, None) or (None, why not).

    Read through the bounded reader (a FIFO never blocks; over CAP_HISTORY it is "too large", never 4 GB of
    memory). ``reader``: only what that user could read (healthkit.system.fsutil.Reader; root auditing another user's workspace).
    """
    from healthkit.system.fsutil import CAP_HISTORY, ReadProblem, read_bytes

    try:
        raw = read_bytes(Path(path), max_bytes=CAP_HISTORY, reader=reader)
    except ReadProblem as exc:
        return None, f"trainer_state.json cannot be read ({_problem_words(exc)})"
    try:
        data = _loads_without_gc(raw)
    except RecursionError:
        ReadProblem("too-deep", Path(path), f"{path} is nested too deep to parse")  # recorded for checks/files.py
        return None, "trainer_state.json is unreadable (nested too deep to parse)"
    except (ValueError, UnicodeDecodeError) as exc:
        return None, f"trainer_state.json is unreadable ({_reason(exc)})"
    read = _step_of(data)
    return (data, None) if read.problem is None else (None, read.problem)


def newest_with_state(
    candidates: Sequence[P],
    eligible: Callable[[P], bool],
    state_path: Callable[[P], Path],
    reader: Reader | None = None,
    load: Callable[[Path], tuple[dict | None, str | None]] | None = None,
) -> tuple[P | None, dict | None, dict[int, str]]:
    """The newest eligible candidate (``candidates`` sorted by step, oldest first) with its whole state parsed.

    Returns (candidate, its trainer_state data, {index: why} for candidates the bounded
    read passed but the whole parse failed: their state is broken too). At most
    MAX_FULL_PARSES whole parses.
    """
    failed: dict[int, str] = {}
    for i in range(len(candidates) - 1, -1, -1):
        if not eligible(candidates[i]):
            continue
        data, why = (
            load(state_path(candidates[i])) if load is not None else load_state(state_path(candidates[i]), reader)
        )
        if data is not None:
            return candidates[i], data, failed
        failed[i] = why or "trainer_state.json is unreadable"
        if len(failed) >= MAX_FULL_PARSES:
            break
    return None, None, failed
