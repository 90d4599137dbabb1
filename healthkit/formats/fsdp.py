"""FSDP sharded checkpoints inside an HF Trainer `checkpoint-N/`: `pytorch_model_fsdp_N/` and `optimizer_N/`.

Layout as Accelerate writes it for `Trainer` under FSDP with SHARDED_STATE_DICT
(accelerate/utils/fsdp_utils.py, `save_fsdp_model` and `save_fsdp_optimizer`): each is a
torch.distributed.checkpoint folder written by `FileSystemWriter`, a `.metadata` file (the
pickled `Metadata`, whose `storage_data` maps each piece to a `_StorageInfo(relative_path,
offset, length)`) and the `__{rank}_{n}.distcp` files it names.

Complete: each such folder has its `.metadata`, and every file it names exists and is at
least as long as the data it is said to hold. The metadata is read without unpickling its
classes (healthkit.formats.safepickle); if even that fails, the `.distcp` names in its bytes.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from healthkit.system.lazyre import LazyPattern

MODEL_RE = LazyPattern(r"^pytorch_model_fsdp_\d+$")
OPTIM_RE = LazyPattern(r"^optimizer_\d+$")
METADATA = ".metadata"
MAX_METADATA_BYTES = 64 * 1024 * 1024
_DISTCP = re.compile(rb"__\d+_\d+\.distcp")


def is_fsdp(files: frozenset[str]) -> bool:
    return any(f.startswith("pytorch_model_fsdp_") and MODEL_RE.fullmatch(f) for f in files)


def _named(raw: bytes) -> dict[str, int]:
    """{file: bytes it must hold at least} from a DCP .metadata (0 when only the name could be read)."""
    from healthkit.formats.safepickle import (  # pickle is imported only where FSDP shards exist
        PickleRefused,
        field_of,
        safe_loads,
    )

    need: dict[str, int] = {}
    try:
        meta = safe_loads(raw)
        storage = field_of(meta, "storage_data") or {}
        for info in storage.values() if isinstance(storage, dict) else []:
            rel = field_of(info, "relative_path")
            if isinstance(rel, str):
                off, length = field_of(info, "offset", 0), field_of(info, "length", 0)
                end = off + length if isinstance(off, int) and isinstance(length, int) else 0
                need[rel] = max(need.get(rel, 0), end)
    except PickleRefused:
        pass
    if not need:
        need = {m.decode(): 0 for m in _DISTCP.findall(raw)}
    return need


def dcp_problems(folder: Path, label: str) -> list[str]:
    """What a torch.distributed.checkpoint folder lacks: its .metadata, or a named shard (missing or short)."""
    from healthkit.system.fsutil import ReadProblem, open_regular

    try:
        with open_regular(folder / METADATA) as fh:
            raw = fh.read(MAX_METADATA_BYTES + 1)
    except ReadProblem as exc:
        if exc.kind == "missing":
            return [f"{label}/.metadata is missing (the save did not finish)"]
        return [f"{label}/.metadata cannot be read ({exc.message.replace(str(folder / METADATA) + ' ', '', 1)})"]
    except OSError as exc:
        return [f"{label}/.metadata cannot be read ({exc.strerror or exc})"]
    if len(raw) > MAX_METADATA_BYTES:
        return []  # a metadata this large is not judged (a bounded read): say nothing rather than guess
    need = _named(raw)
    if not need:
        return [f"{label}/.metadata names no shard file (cut short, or not a DCP checkpoint)"]
    problems = []
    for rel, end in sorted(need.items()):
        try:
            size = os.stat(folder / rel).st_size
        except OSError:
            problems.append(f"{label}/{rel} is missing (named in .metadata)")
            continue
        if size < max(end, 1):
            problems.append(f"{label}/{rel} is cut short ({size} bytes; .metadata places data up to byte {end})")
    return problems


def fsdp_problems(path: Path, files: frozenset[str]) -> list[str]:
    """What an FSDP resume from checkpoint folder ``path`` would lack (empty: its sharded states are whole)."""
    problems = []
    models = sorted(f for f in files if MODEL_RE.fullmatch(f))
    for m in models:
        problems += dcp_problems(path / m, m)
    optims = sorted(f for f in files if OPTIM_RE.fullmatch(f) and os.path.isdir(path / f))
    for o in optims:
        problems += dcp_problems(path / o, o)
    return problems


__all__ = ["is_fsdp", "fsdp_problems", "dcp_problems"]
