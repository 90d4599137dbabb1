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


# Role markers are single special tokens; the end-of-turn token is EOS, so a trained
# assistant turn ends where generation should stop.
CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}<|endoftext|>{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)
ROLE_TOKENS = ["<|system|>", "<|user|>", "<|assistant|>"]


def sample_chats(n: int, seed: int = 0, words: int = 8, answer: str = "I will do that.") -> list[dict]:
    """Chat lines whose user turns are random words and whose assistant turn is always ``answer``."""
    return [{"messages": [{"role": "user", "content": t}, {"role": "assistant", "content": answer}]}
            for t in sample_texts(n, seed, words)]


def sample_texts(n: int, seed: int = 0, words: int = 12) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(words // 2, words))) + "." for _ in range(n)]


def write_jsonl(path: Path, texts: list, field: str = "text") -> Path:
    """One line per text (as ``{field: text}``), or per object as it is (chat lines)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(t if isinstance(t, dict) else {field: t}) + "\n" for t in texts), encoding="utf-8")
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
    """Save a GPT-2-shaped model with random weights and a byte-level BPE tokenizer (with a chat template) to ``dest``."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=["<|endoftext|>", "<pad>", *ROLE_TOKENS],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(sample_texts(400, seed), trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, eos_token="<|endoftext|>", bos_token="<|endoftext|>", pad_token="<pad>",
        model_max_length=n_positions, additional_special_tokens=ROLE_TOKENS,
    )
    fast.chat_template = CHAT_TEMPLATE
    dest.mkdir(parents=True, exist_ok=True)
    fast.save_pretrained(dest)
    torch.manual_seed(seed)
    cfg = GPT2Config(
        vocab_size=len(fast), n_positions=n_positions, n_embd=n_embd, n_layer=n_layer, n_head=n_head,
        bos_token_id=fast.bos_token_id, eos_token_id=fast.eos_token_id, pad_token_id=fast.pad_token_id,
    )
    GPT2LMHeadModel(cfg).save_pretrained(dest)
    return dest
