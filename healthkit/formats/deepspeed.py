"""DeepSpeed ZeRO checkpoints inside an HF Trainer `checkpoint-N/`: the `latest` tag and its `global_stepN/` states.

Layout as DeepSpeed writes it (deepspeed/runtime/engine.py, `DeepSpeedEngine.save_checkpoint`):
the tag is `global_step{N}`; `_save_checkpoint` writes the model states through
`_get_ckpt_name` (`mp_rank_{mp:02d}_model_states.pt`, or under ZeRO-3
`zero_pp_rank_{dp}_mp_rank_{mp:02d}_model_states.pt`, one per data-parallel rank);
`_save_zero_checkpoint` writes `{bf16_}zero_pp_rank_{dp}_mp_rank_{mp:02d}_optim_states.pt`
through `_get_zero_ckpt_name`, one per rank; and with `save_latest` the file `latest` holds the
tag. `Trainer._save_checkpoint` calls it into `checkpoint-N/` and, under ZeRO-3 without
`stage3_gather_16bit_weights_on_model_save`, that is the only copy of the weights.

Complete: `latest` names a tag folder that holds model and optimizer states for every rank
that wrote one (ranks 0..n-1, none empty). Only names and sizes are read.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from healthkit.system.lazyre import LazyPattern

LATEST = "latest"
TAG_RE = LazyPattern(r"^global_step\d+$")
_OPTIM = LazyPattern(r"^(?:bf16_)?zero_pp_rank_(\d+)_mp_rank_(\d+)_optim_states\.pt$")
_MODEL3 = LazyPattern(r"^zero_pp_rank_(\d+)_mp_rank_(\d+)_model_states\.pt$")
_MODEL = LazyPattern(r"^mp_rank_(\d+)_model_states\.pt$")


def is_zero(files: frozenset[str]) -> bool:
    """Whether a checkpoint folder holds a DeepSpeed save (its `latest` tag or a `global_stepN/`)."""
    return LATEST in files or any(f.startswith("global_step") and TAG_RE.fullmatch(f) for f in files)


def _ranks(names: list[str], pattern: re.Pattern[str] | LazyPattern) -> set[int]:
    return {int(m.group(1)) for m in map(pattern.fullmatch, names) if m}


def zero_problems(path: Path, files: frozenset[str]) -> list[str]:
    """What a DeepSpeed resume from ``path`` would lack (empty: its ZeRO states are whole)."""
    if LATEST not in files:
        tags = sorted(f for f in files if TAG_RE.fullmatch(f))
        return [
            f"`latest` is missing (DeepSpeed resumes from the tag it names; {', '.join(tags[:2])} has no pointer to it)"
        ]
    from healthkit.system.fsutil import ReadProblem, open_regular

    try:
        with open_regular(path / LATEST) as fh:
            tag = fh.read(256).decode("utf-8", "replace").strip()
    except ReadProblem as exc:
        return [f"`latest` cannot be read ({exc.message.replace(str(path / LATEST) + ' ', '', 1)})"]
    except OSError as exc:
        return [f"`latest` cannot be read ({exc.strerror or exc})"]
    if not tag or "/" in tag or tag in (".", ".."):
        return ["`latest` is empty or does not name a tag folder"]
    try:
        names = os.listdir(path / tag)
    except OSError:
        return [f"`latest` names {tag}/, which does not exist"]
    optim = _ranks(names, _OPTIM)
    model3 = _ranks(names, _MODEL3)
    problems = []
    if not optim:
        problems.append(f"{tag}/ has no optimizer states (*_optim_states.pt)")
    if not model3 and not any(_MODEL.fullmatch(n) for n in names):
        problems.append(f"{tag}/ has no model states (*_model_states.pt)")
    world = max(optim | model3, default=-1) + 1
    lost = sorted(set(range(world)) - optim) if optim else []
    if lost:
        problems.append(f"{tag}/ lacks the optimizer states of rank(s) {', '.join(map(str, lost[:4]))} of {world}")
    lost3 = sorted(set(range(world)) - model3) if model3 else []
    if lost3:
        problems.append(f"{tag}/ lacks the model states of rank(s) {', '.join(map(str, lost3[:4]))} of {world}")
    for n in sorted(names):
        if _OPTIM.fullmatch(n) or _MODEL3.fullmatch(n) or _MODEL.fullmatch(n):
            try:
                if os.stat(path / tag / n).st_size == 0:
                    problems.append(f"{tag}/{n} is empty")
            except OSError as exc:
                problems.append(f"{tag}/{n} cannot be read ({exc.strerror})")
    return problems
