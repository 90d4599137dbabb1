"""What `daemon start` checks before it trains anything, so a broken setup fails at once, loudly, not hours later.

- config.json parses and passes its schema (the same model the `config.invalid` check uses);
- torch, transformers and accelerate are importable (Trainer refuses to run without accelerate);
- evaluation, when configured, can run: the validation file exists and parses, or a split is set;
  eval_steps beyond max_steps is said (validation then runs once, at the end of each file);
- base_model is a local folder (a hub id would make the child reach for the network and crash), whose positions
  (config.json) hold max_seq_length;
- the docs do not drift from config.json (the audit's own `drift` check): fail or warn by `drift_policy`;
- chat data (data_format chat, or a queued chat file under auto) has a chat template: the
  tokenizer's own or config.json's `chat_template`;
- `training_args` are TrainingArguments with good values, bf16/fp16 only with CUDA, and
  LoRA has peft (QLoRA also CUDA and bitsandbytes). torch/transformers are imported only
  when one of these is asked for, so a plain start stays fast.
"""

from __future__ import annotations

import importlib.util
import json
from dataclasses import dataclass, field
from pathlib import Path

from healthkit.contract.config_model import TrainingConfig, parse_config
from healthkit.contract.modelinfo import seq_length_problem

from .data import DataError, file_format, read_examples
from .layout import Layout

TRAINER_DEPS = ("torch", "transformers", "accelerate")


class ConfigProblem(Exception):
    """config.json cannot be used; the message lists each problem with its JSON pointer."""


def load_config(layout: Layout) -> TrainingConfig:
    path = layout.config
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigProblem(f"{path} does not exist (create one with `healthkit init {layout.base}`)") from None
    except (OSError, ValueError) as exc:
        raise ConfigProblem(f"{path} cannot be read as JSON: {exc}") from None
    cfg, errors = parse_config(data)
    if cfg is None:
        lines = "\n".join(f"  {ptr or '/'}: {msg}" for ptr, msg in errors)
        raise ConfigProblem(f"{path} fails its schema (healthkit/schemas/config.schema.json):\n{lines}")
    return cfg


@dataclass
class Preflight:
    config: TrainingConfig | None = None
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors


def missing_deps() -> list[str]:
    return [m for m in TRAINER_DEPS if importlib.util.find_spec(m) is None]


def check_validation(layout: Layout, cfg: TrainingConfig, pf: Preflight) -> None:
    if cfg.eval_strategy == "no":
        pf.warnings.append("eval_strategy is 'no': no validation loss will be computed (overfitting cannot be seen)")
        return
    if cfg.validation_file:
        p = layout.resolve(cfg.validation_file)
        try:
            read_examples(p, cfg.data_format, cfg.text_field, keep=False)
        except DataError as exc:
            pf.errors.append(
                f"evaluation is configured (eval_strategy={cfg.eval_strategy}) but validation_file cannot be used: {exc}"
                if p.exists()
                else f"evaluation is configured (eval_strategy={cfg.eval_strategy}) but validation_file {p} does not exist"
            )
    elif cfg.validation_split <= 0:
        pf.errors.append(
            f"evaluation is configured (eval_strategy={cfg.eval_strategy}) but there is no validation_file "
            "and validation_split is 0: set one of them, or eval_strategy 'no'"
        )
    if cfg.eval_strategy == "steps" and cfg.max_steps > 0 and cfg.eval_steps > cfg.max_steps:
        pf.warnings.append(
            f"eval_steps={cfg.eval_steps} is more than max_steps={cfg.max_steps}: validation will not run during "
            "a file; it runs once at the end of each file"
        )
    if cfg.load_best_model_at_end and cfg.eval_strategy == "steps" and cfg.save_steps % cfg.eval_steps:
        pf.errors.append(
            f"load_best_model_at_end needs save_steps ({cfg.save_steps}) to be a multiple of eval_steps ({cfg.eval_steps})"
        )


def has_chat_template(folder: Path) -> bool:
    """Whether a tokenizer folder carries a chat template (read from files: no transformers import)."""
    if (folder / "chat_template.jinja").is_file() or (folder / "chat_template.json").is_file():
        return True
    try:
        return bool(json.loads((folder / "tokenizer_config.json").read_text(encoding="utf-8")).get("chat_template"))
    except (OSError, ValueError, AttributeError):
        return False


def tokenizer_folder(layout: Layout, cfg: TrainingConfig) -> Path:
    """The folder the next child loads its tokenizer from (train_file.load_tokenizer decides the same way)."""
    from . import checkpoints as ck

    if cfg.tokenizer:
        return layout.resolve(cfg.tokenizer)
    latest = ck.latest_final(layout) if cfg.continue_from_previous else None
    if latest is not None and (latest / "tokenizer_config.json").exists():
        return latest
    return layout.resolve(cfg.base_model)


def chat_files(layout: Layout, cfg: TrainingConfig) -> list[str]:
    """Queued (and validation) files that train as chat data."""
    files = [p for d in (layout.processing, layout.inbox) if d.is_dir() for p in sorted(d.glob("*.jsonl"))]
    if cfg.validation_file:
        files.append(layout.resolve(cfg.validation_file))
    return [p.name for p in files if p.is_file() and file_format(p, cfg.data_format, cfg.text_field) == "chat"]


def template_problem(layout: Layout, cfg: TrainingConfig, what: str) -> str | None:
    """Why ``what`` (chat data) cannot be rendered, or None."""
    folder = tokenizer_folder(layout, cfg)
    if cfg.chat_template or not folder.is_dir() or has_chat_template(folder):
        return None
    return (
        f"{what} is chat data but the tokenizer in {folder} has no chat template and config.json sets no "
        "chat_template: add one (a Jinja template, as transformers' apply_chat_template takes)"
    )


def check_chat(layout: Layout, cfg: TrainingConfig, pf: Preflight) -> None:
    chats = ["data_format 'chat'"] if cfg.data_format == "chat" else chat_files(layout, cfg)
    why = template_problem(layout, cfg, ", ".join(chats[:3]) + (" ..." if len(chats) > 3 else "")) if chats else None
    if why:
        pf.errors.append(why)


def check_torch_side(cfg: TrainingConfig, pf: Preflight) -> None:
    """training_args, mixed precision, LoRA/QLoRA: needs torch/transformers, so only when asked for."""
    lora = cfg.lora
    if lora and importlib.util.find_spec("peft") is None:
        pf.errors.append("lora is set but peft is not installed: pip install 'healthkit[trainer]'")
    if not (cfg.training_args or cfg.arg("bf16") or cfg.arg("fp16") or (lora and lora.load_in_4bit)) or missing_deps():
        return
    import torch

    from .training_args import check_training_args

    cuda = torch.cuda.is_available()
    pf.errors.extend(check_training_args(cfg, cuda))
    if lora and lora.load_in_4bit and not cuda:
        pf.errors.append(
            "lora.load_in_4bit (QLoRA) loads the base model in 4 bits through bitsandbytes, which needs a CUDA GPU; "
            "this machine has none: set lora.load_in_4bit to false to train the adapter on a full-precision base"
        )
    elif lora and lora.load_in_4bit and importlib.util.find_spec("bitsandbytes") is None:
        pf.errors.append("lora.load_in_4bit (QLoRA) needs bitsandbytes: pip install bitsandbytes")


def check_drift(layout: Layout, cfg: TrainingConfig, pf: Preflight) -> None:
    if cfg.drift_policy == "off":
        return
    try:
        from healthkit.core.api import audit
        from healthkit.core.selectors import SelectorError

        report = audit(layout.base, select=["config.doc-drift"], record_costs=False)
    except SelectorError:
        pf.warnings.append(
            "the docs drift check is not installed (no check reports config.doc-drift): docs were not compared"
        )
        return
    except Exception as exc:
        pf.warnings.append(f"the docs drift check could not run: {type(exc).__name__}: {exc}")
        return
    if not report.results:
        pf.warnings.append(
            "the docs drift check is not installed (no check reports config.doc-drift): docs were not compared"
        )
        return
    for r in report.results:
        if r.error:
            pf.warnings.append(f"the docs drift check could not run: {r.error}")
        for f in r.findings:
            if f.code != "config.doc-drift":
                continue
            detail = "; ".join(f.problem) if isinstance(f.problem, list) else str(f.problem or "")
            msg = f"{f.code}: {f.title}" + (f" ({detail})" if detail else "")
            (pf.errors if cfg.drift_policy == "fail" else pf.warnings).append(
                msg + ("" if cfg.drift_policy == "fail" else " [drift_policy=warn]")
            )


def base_model_problem(layout: Layout, base_model: str) -> str | None:
    """Why ``base_model`` cannot be trained from, or None: it must be a local folder (the trainer runs offline)."""
    from healthkit.contract.modelinfo import PLACEHOLDER, placeholder_unfilled

    base = layout.resolve(base_model)
    if base.is_dir() and placeholder_unfilled(base):
        return (
            f"base_model {base_model!r} is the placeholder `healthkit init` made: no model is in {base} yet; put the "
            f"model there (see {base / PLACEHOLDER}) or set base_model to a model's folder"
        )
    if base.is_dir():
        return None
    if base.exists():
        return f"base_model {base_model!r} is not a folder ({base})"
    return (
        f"base_model {base_model!r} is not a local folder ({base}); the trainer runs offline and downloads nothing: "
        "download the model once and set base_model to its folder"
    )


def run_preflight(layout: Layout, drift: bool = True) -> Preflight:
    pf = Preflight()
    try:
        pf.config = load_config(layout)
    except ConfigProblem as exc:
        pf.errors.append(str(exc))
        return pf
    missing = missing_deps()
    if missing:
        pf.errors.append(
            f"the trainer needs {', '.join(missing)}: pip install 'healthkit[trainer]' "
            "(transformers' Trainer refuses to run without accelerate)"
        )
    cfg = pf.config
    from healthkit.contract.configschema import unknown_key_lines

    pf.warnings.extend(unknown_key_lines(dict(cfg.model_extra or {})))  # a misspelled key is ignored: say so
    problem = base_model_problem(layout, cfg.base_model) or seq_length_problem(
        cfg.max_seq_length, layout.resolve(cfg.base_model)
    )
    if problem:
        pf.errors.append(problem)
    check_validation(layout, cfg, pf)
    check_chat(layout, cfg, pf)
    check_torch_side(cfg, pf)
    if cfg.launcher != "none" and cfg.nnodes > 1 and not cfg.rdzv_endpoint:
        pf.errors.append(f"launcher {cfg.launcher} with nnodes={cfg.nnodes} needs rdzv_endpoint (host:port)")
    if drift:
        check_drift(layout, cfg, pf)
    return pf


def describe(pf: Preflight) -> str:
    lines = [f"ERROR: {e}" for e in pf.errors] + [f"WARNING: {w}" for w in pf.warnings]
    return "\n".join(lines)
