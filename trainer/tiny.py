"""A tiny random-init causal LM and a tokenizer trained on the spot: full runs on a CPU, no network, no weights."""

from __future__ import annotations

import json
import random
from pathlib import Path

WORDS = (
    "the model learns a small language of loss steps data queue daemon checkpoint validation gradient "
    "token batch epoch value file status health disk memory train eval save resume pause stop run "
    "quick brown fox jumps over lazy dog while rivers flow into seas and winds carry seeds far away"
).split()


def sample_texts(n: int, seed: int = 0, words: int = 12) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(words // 2, words))) + "." for _ in range(n)]


def write_jsonl(path: Path, texts: list[str], field: str = "text") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps({field: t}) + "\n" for t in texts), encoding="utf-8")
    return path


def build_tiny_model(
    dest: Path,
    *,
    vocab_size: int = 320,
    n_layer: int = 2,
    n_embd: int = 32,
    n_head: int = 2,
    n_positions: int = 128,
    seed: int = 0,
) -> Path:
    """Save a GPT-2-shaped model with random weights and a byte-level BPE tokenizer to ``dest``."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=["<|endoftext|>", "<pad>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(sample_texts(400, seed), trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, eos_token="<|endoftext|>", bos_token="<|endoftext|>", pad_token="<pad>",
        model_max_length=n_positions,
    )
    dest.mkdir(parents=True, exist_ok=True)
    fast.save_pretrained(dest)
    torch.manual_seed(seed)
    cfg = GPT2Config(
        vocab_size=len(fast), n_positions=n_positions, n_embd=n_embd, n_layer=n_layer, n_head=n_head,
        bos_token_id=fast.bos_token_id, eos_token_id=fast.eos_token_id, pad_token_id=fast.pad_token_id,
    )
    GPT2LMHeadModel(cfg).save_pretrained(dest)
    return dest
