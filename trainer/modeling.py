"""Loading the model a file trains: full weights, a LoRA adapter on top of the base (peft), or QLoRA (4-bit base).

Kept apart from train_file so that what a final model *is* (full weights, or an adapter
with adapter_config.json naming its base) is decided in one place: the next file
continues the same adapter, and a full fine-tune that starts from an adapter folds it in.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from healthkit.contract.config_model import LoraSettings, TrainingConfig

from .layout import Layout

log = logging.getLogger("healthkit.trainer.modeling")

ADAPTER_CONFIG = "adapter_config.json"


def is_adapter(src: str | Path) -> bool:
    return (Path(src) / ADAPTER_CONFIG).is_file()


def base_source(layout: Layout, cfg: TrainingConfig) -> str:
    p = layout.resolve(cfg.base_model)
    return str(p) if p.exists() else cfg.base_model  # a hub id: read from the local cache only (offline)


def quantized_kwargs() -> dict[str, Any]:
    """from_pretrained arguments of a 4-bit (NF4, double-quantized) base: the QLoRA recipe. CUDA only."""
    import torch
    from transformers import BitsAndBytesConfig

    if not torch.cuda.is_available():
        raise RuntimeError("lora.load_in_4bit (QLoRA) needs a CUDA GPU: bitsandbytes 4-bit weights do not run on a CPU")
    dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return {
        "quantization_config": BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True, bnb_4bit_compute_dtype=dtype
        ),
        "dtype": dtype,
    }


def lora_config(lora: LoraSettings) -> Any:
    from peft import LoraConfig

    # peft annotates lora_alpha as int, but only scales by it (alpha / r): a float alpha is what it computes with.
    return LoraConfig(
        r=lora.r,
        lora_alpha=lora.alpha,  # type: ignore[arg-type]
        lora_dropout=lora.dropout,
        target_modules=lora.target_modules,
        task_type="CAUSAL_LM",
    )


def load_model(layout: Layout, cfg: TrainingConfig, src: str) -> Any:
    """The model to train from ``src`` (a full model folder, an adapter folder or a hub id) under ``cfg.lora``."""
    from transformers import AutoModelForCausalLM

    lora = cfg.lora
    adapter = is_adapter(src)
    kw = quantized_kwargs() if lora and lora.load_in_4bit else {}
    model: Any = AutoModelForCausalLM.from_pretrained(base_source(layout, cfg) if adapter else src, **kw)
    if kw:
        from peft import prepare_model_for_kbit_training

        model = prepare_model_for_kbit_training(
            model, use_gradient_checkpointing=bool(cfg.arg("gradient_checkpointing"))
        )
    if adapter:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, src, is_trainable=lora is not None)
        if lora is None:
            log.info("full fine-tuning from the adapter in %s: merged into its base first", src)
            return model.merge_and_unload()
        log.info("continuing the adapter in %s (its own r/alpha/targets)", src)
        return model
    if lora is None:
        return model
    from peft import get_peft_model

    model = get_peft_model(model, lora_config(lora))
    trainable, total = model.get_nb_trainable_parameters()
    log.info(
        "LoRA r=%d alpha=%g on %s: %d of %d parameters train", lora.r, lora.alpha, lora.target_modules, trainable, total
    )
    return model


def save_merged(layout: Layout, cfg: TrainingConfig, adapter_dir: Path, dest: Path) -> None:
    """Full weights of base + adapter, for `merge_final`: the base is loaded unquantized, so a QLoRA merge is exact."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    dtype = torch.bfloat16 if cfg.arg("bf16") else torch.float16 if cfg.arg("fp16") else torch.float32
    base = AutoModelForCausalLM.from_pretrained(base_source(layout, cfg), dtype=dtype)
    PeftModel.from_pretrained(base, str(adapter_dir)).merge_and_unload().save_pretrained(str(dest))
