"""`training_args` of config.json checked against transformers' TrainingArguments before anything trains.

An unknown key, a value of the wrong type or one TrainingArguments refuses fails the
start naming the key (exit 78), and so do bf16/fp16 on a machine without CUDA, rather
than a crash minutes later in a child. Trainer-owned keys are refused by the config
model itself (healthkit/contract/config_model.py, TRAINER_OWNED_ARGS).
"""

from __future__ import annotations

import dataclasses
import difflib
import tempfile
from typing import Any

from healthkit.contract.config_model import TrainingConfig

PRECISION = ("bf16", "fp16")


def _type_problem(default: Any, value: Any) -> str | None:
    """Types TrainingArguments does not check itself (it would take gradient_accumulation_steps='4' and fail later)."""
    if isinstance(default, bool):
        ok = isinstance(value, bool)
    elif isinstance(default, int):
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif isinstance(default, float):
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    else:
        return None
    return None if ok else f"must be {type(default).__name__}, not {value!r}"


def _construct(cuda: bool, **kw: Any) -> None:
    from transformers import TrainingArguments

    with tempfile.TemporaryDirectory(prefix="healthkit-args-") as tmp:
        TrainingArguments(output_dir=tmp, report_to="none", use_cpu=not cuda, **kw)


def normalized(training_args: dict[str, Any], fields: set[str]) -> dict[str, Any]:
    """training_args as this transformers takes them: `warmup_ratio` (gone in transformers 5) becomes a
    fractional `warmup_steps`, which transformers 5 reads as the same share of the steps."""
    out = dict(training_args)
    if "warmup_ratio" in out and "warmup_ratio" not in fields:
        out["warmup_steps"] = out.pop("warmup_ratio")
    return out


def arg_fields() -> set[str]:
    from transformers import TrainingArguments

    return {f.name for f in dataclasses.fields(TrainingArguments) if f.init}


def precision_problems(cfg: TrainingConfig, cuda: bool) -> list[str]:
    return [
        f"{k} is true but this machine has no CUDA GPU: mixed precision does not train on a CPU here "
        f"(set {k} to false; CPU training runs in float32)"
        for k in PRECISION
        if cfg.arg(k) and not cuda
    ]


def check_training_args(cfg: TrainingConfig, cuda: bool) -> list[str]:
    """Problems with cfg.training_args (each naming its key) and with mixed precision on this machine."""
    import transformers
    from transformers import TrainingArguments

    fields = {f.name: f for f in dataclasses.fields(TrainingArguments) if f.init}
    errors = precision_problems(cfg, cuda)
    for key, value in cfg.training_args.items():
        if key == "warmup_ratio" and key not in fields:
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1:
                errors.append(f"training_args.warmup_ratio: must be a number in [0, 1), not {value!r}")
            continue
        if key not in fields:
            near = difflib.get_close_matches(key, list(fields), n=1)
            errors.append(
                f"training_args.{key}: not a TrainingArguments field of transformers {transformers.__version__}"
                + (f" (did you mean {near[0]!r}?)" if near else "")
            )
            continue
        why = _type_problem(fields[key].default, value)
        if why is None and key not in PRECISION:
            try:
                _construct(cuda, **{key: value})
            except (ValueError, TypeError, ImportError) as exc:
                why = str(exc).strip().splitlines()[0]
        if why:
            errors.append(f"training_args.{key}: {why}")
    if not errors and cfg.training_args:
        try:
            _construct(
                cuda, **{k: v for k, v in normalized(cfg.training_args, set(fields)).items() if k not in PRECISION}
            )
        except (ValueError, TypeError, ImportError) as exc:
            errors.append(
                f"training_args ({', '.join(cfg.training_args)}) together: {str(exc).strip().splitlines()[0]}"
            )
    return errors
