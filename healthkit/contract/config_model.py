"""config.json as a pydantic model: HF TrainingArguments names where they exist, plus the daemon's own keys.

The trainer builds TrainingArguments from it; the `config.invalid` check validates
against it (through `parse_config`, which turns errors into JSON pointers); the JSON
Schema in schemas/config.schema.json is exported from it (`python -m healthkit.contract.config_model`).
Unknown keys are allowed so that a foreign setup's config is checked only on what we know.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

SCHEMA_PATH = Path(__file__).parent.parent / "schemas" / "config.schema.json"


class LoraSettings(BaseModel):
    """LoRA adapters through peft: only the adapter trains, checkpoints and final models hold only the adapter."""

    model_config = ConfigDict(extra="forbid", title="LoRA")

    r: int = Field(8, ge=1, description="rank of the adapter matrices")
    alpha: float = Field(16, gt=0, description="scaling: the update is multiplied by alpha / r")
    dropout: float = Field(0.05, ge=0, lt=1, description="dropout on the adapter's input")
    target_modules: str | list[str] = Field(
        "all-linear", description="'all-linear' (every linear layer but the output head) or module names"
    )
    merge_final: bool = Field(
        False, description="also write merged full weights to models/<stem>/merged/ when a file completes"
    )
    load_in_4bit: bool = Field(
        False, description="QLoRA: load the base model in 4 bits through bitsandbytes (CUDA only)"
    )


class GuardSettings(BaseModel):
    """What the trainer does about its own training signal (trainer/guard.py); a non-finite loss always stops the file."""

    model_config = ConfigDict(extra="forbid", title="Guard")

    spike_action: Literal["warn", "stop"] = Field(
        "warn",
        description="a loss spike or divergence (the audit's training.loss-spike rule): 'warn' logs it, 'stop' "
        "fails the file before its next save, keeping its checkpoints for `healthkit queue retry`",
    )


TRAINER_OWNED_ARGS: dict[str, str] = {
    **dict.fromkeys(
        ("output_dir", "overwrite_output_dir", "resume_from_checkpoint", "save_only_model", "save_safetensors"),
        "the daemon writes checkpoints to current_model/ itself",
    ),
    **dict.fromkeys(
        (
            "eval_strategy",
            "evaluation_strategy",
            "eval_steps",
            "save_strategy",
            "save_steps",
            "save_total_limit",
            "load_best_model_at_end",
            "metric_for_best_model",
            "max_steps",
            "num_train_epochs",
            "learning_rate",
            "per_device_train_batch_size",
            "per_device_eval_batch_size",
            "logging_steps",
            "logging_strategy",
        ),
        "set it at the top level of config.json (the audit and the docs read it there)",
    ),
    **dict.fromkeys(
        (
            "report_to",
            "disable_tqdm",
            "use_cpu",
            "no_cuda",
            "logging_dir",
            "local_rank",
            "ddp_backend",
            "push_to_hub",
            "hub_model_id",
            "hub_token",
        ),
        "the daemon sets it (offline, no progress bars, one process per rank)",
    ),
}


class TrainingConfig(BaseModel):
    """Training configuration of one workspace (config.json)."""

    model_config = ConfigDict(extra="allow", defer_build=True, title="healthkit training config")

    base_model: str = Field(..., min_length=1, description="model folder (or hub id already in the local cache)")
    tokenizer: str | None = Field(None, description="tokenizer folder; default: base_model")
    validation_file: str | None = Field(None, description="held-out JSONL evaluated every eval_steps")
    validation_split: float = Field(
        0.1, ge=0.0, lt=1.0, description="share of each training file held out when no validation_file"
    )
    max_seq_length: int = Field(512, ge=8)
    text_field: str = Field("text", description="JSONL field holding the training text")
    data_format: Literal["auto", "text", "chat"] = Field(
        "auto",
        description='text: {text_field: ...} lines; chat: {"messages": [{role, content}]} lines; auto: per file, from its first line',
    )
    chat_template: str | None = Field(
        None, description="Jinja chat template for chat files; default: the tokenizer's own"
    )
    lora: LoraSettings | None = Field(None, description="LoRA adapters through peft; null: full fine-tuning")
    guard: GuardSettings = Field(
        default_factory=GuardSettings,
        description="the run's own guard: a non-finite loss stops "
        "the file before any checkpoint of it is written; what a spike does",
    )
    training_args: dict[str, Any] = Field(
        default_factory=dict,
        description="more transformers TrainingArguments (e.g. lr_scheduler_type, warmup_ratio, max_grad_norm, optim, "
        "gradient_checkpointing); they override the top-level keys of the same name; checked at start",
    )

    eval_strategy: Literal["no", "steps", "epoch"] = "steps"
    eval_steps: int = Field(50, ge=1)
    save_strategy: Literal["no", "steps", "epoch"] = "steps"
    save_steps: int = Field(50, ge=1)
    save_total_limit: int | None = Field(
        3, ge=1, description="checkpoints kept (plus the best one); null means unlimited"
    )
    logging_steps: int = Field(10, ge=1)
    max_steps: int = Field(-1, ge=-1, description="-1: train num_train_epochs over each file")
    num_train_epochs: float = Field(1.0, gt=0)
    learning_rate: float = Field(2e-4, gt=0, lt=1)
    per_device_train_batch_size: int = Field(4, ge=1)
    per_device_eval_batch_size: int = Field(4, ge=1)
    gradient_accumulation_steps: int = Field(1, ge=1)
    warmup_steps: int = Field(0, ge=0)
    weight_decay: float = Field(0.0, ge=0)
    seed: int = 42
    load_best_model_at_end: bool = False
    metric_for_best_model: str | None = None
    bf16: bool = False
    fp16: bool = False

    monitor_port: int | None = Field(8080, ge=0, le=65535, description="HTTP monitor on 127.0.0.1; null disables it")
    max_failures: int = Field(3, ge=1, description="failed attempts before a queue file goes to failed/")
    drift_policy: Literal["fail", "warn", "off"] = Field(
        "warn", description="what daemon start does when docs drift from this file"
    )
    launcher: Literal["none", "torchrun", "accelerate"] = "none"
    nproc_per_node: int = Field(1, ge=1)
    nnodes: int = Field(1, ge=1)
    hook_timeout_s: float = Field(5.0, gt=0, description="a monitoring hook slower than this is cut off")
    rdzv_endpoint: str | None = Field(
        None, description="host:port of the rendezvous for nnodes > 1 (torchrun/accelerate)"
    )
    continue_from_previous: bool = Field(
        True,
        description="each queue file starts from the final model of the file before it (models/LATEST), else from base_model",
    )
    keep_final_models: int = Field(
        2, ge=1, description="final models kept under models/<file-stem>/ (oldest removed first)"
    )
    max_eval_samples: int | None = Field(None, ge=1, description="cap on validation examples per evaluation")
    status_interval_s: float = Field(
        0.0, ge=0, description="least seconds between status-file writes (0: every logging step)"
    )

    @model_validator(mode="after")
    def _consistent(self) -> TrainingConfig:
        if self.load_best_model_at_end and self.eval_strategy == "no":
            raise ValueError("load_best_model_at_end needs eval_strategy other than 'no'")
        if self.arg("bf16") and self.arg("fp16"):
            raise ValueError("bf16 and fp16 cannot both be true")
        owned = [k for k in self.training_args if k in TRAINER_OWNED_ARGS]
        if owned:
            raise ValueError(
                "; ".join(f"training_args.{k} is the trainer's own: {TRAINER_OWNED_ARGS[k]}" for k in owned)
            )
        return self

    def arg(self, name: str) -> Any:
        """The effective TrainingArguments value: training_args wins over the top-level key of the same name."""
        return self.training_args[name] if name in self.training_args else getattr(self, name, None)


def json_pointer(loc: tuple[Any, ...]) -> str:
    """RFC 6901 pointer for a pydantic error location."""
    parts = [str(p).replace("~", "~0").replace("/", "~1") for p in loc]
    return "/" + "/".join(parts) if parts else ""


def parse_config(data: Any) -> tuple[TrainingConfig | None, list[tuple[str, str]]]:
    """The trainer's reading of parsed config.json: the model, or (JSON pointer, message) for each error.

    Stricter than the audit's `configschema.schema_violations` only by the model's cross-field
    rules; the schema both read is exported from this model (tests/test_schemalite.py holds them equal).
    """
    if not isinstance(data, dict):
        return None, [("", f"the top level must be an object, not {type(data).__name__}")]
    try:
        return TrainingConfig.model_validate(data), []
    except ValidationError as exc:
        return None, [(json_pointer(e["loc"]), e["msg"]) for e in exc.errors()]


def export_schema() -> dict[str, Any]:
    schema = TrainingConfig.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = "https://healthkit.dev/schemas/config.schema.json"
    return schema


if __name__ == "__main__":
    SCHEMA_PATH.write_text(json.dumps(export_schema(), indent=2, sort_keys=True) + "\n", encoding="utf-8")
    print(f"wrote {SCHEMA_PATH}")
