"""A tiny random-init causal LM and a tokenizer trained on the spot: full runs on a CPU, no network, no weights."""

from __future__ import annotations

import json
import random
from pathlib import Path

WORDS = ["the", "model", "learns", "a", "small", "language", "of", "loss", "steps", "data", "queue", "daemon", "checkpoint", "validation", "gradient", "token", "batch", "epoch", "value", "file", "status", "health", "disk", "memory", "train", "eval", "save", "resume", "pause", "stop", "run", "quick", "brown", "fox", "jumps", "over", "lazy", "dog", "while", "rivers", "flow", "into", "seas", "and", "winds", "carry", "seeds", "far", "away"]

# A few hundred of the most common English words: `init --tiny-model` trains its tokenizer on them too, so
# that ordinary chat text takes about a token per short word, not one per byte, and fits max_seq_length.
COMMON_WORDS = ["a", "about", "after", "again", "all", "also", "always", "am", "an", "and", "any", "are", "around", "as", "ask", "at", "away", "back", "be", "because", "been", "before", "being", "best", "better", "between", "big", "both", "but", "by", "call", "came", "can", "could", "day", "did", "different", "do", "does", "done", "down", "each", "end", "enough", "even", "every", "example", "few", "find", "first", "for", "found", "from", "get", "give", "go", "going", "good", "great", "had", "has", "have", "he", "help", "her", "here", "high", "him", "his", "how", "i", "if", "in", "into", "is", "it", "its", "just", "keep", "kind", "know", "last", "let", "life", "like", "line", "little", "long", "look", "made", "make", "many", "may", "me", "mean", "might", "more", "most", "much", "must", "my", "need", "never", "new", "next", "no", "not", "now", "number", "of", "off", "often", "old", "on", "once", "one", "only", "or", "other", "our", "out", "over", "own", "part", "people", "place", "point", "problem", "put", "question", "quite", "read", "really", "right", "said", "same", "say", "see", "seem", "she", "should", "show", "since", "small", "so", "some", "something", "sometimes", "still", "such", "sure", "take", "tell", "than", "thank", "that", "the", "their", "them", "then", "there", "these", "they", "thing", "think", "this", "those", "though", "thought", "three", "through", "time", "to", "today", "together", "too", "try", "two", "under", "understand", "until", "up", "us", "use", "used", "very", "want", "was", "water", "way", "we", "well", "went", "were", "what", "when", "where", "which", "while", "who", "why", "will", "with", "without", "word", "work", "world", "would", "write", "year", "yes", "yet", "you", "your", "please", "could", "explain", "code", "python", "error", "file", "help", "question", "answer", "thanks", "hello", "want", "learn", "simple", "list", "data", "function", "value", "week", "morning", "email", "meeting", "plan", "idea"]


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


def sample_texts(n: int, seed: int = 0, words: int = 12, vocabulary: tuple[str, ...] | list[str] = WORDS) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choice(vocabulary) for _ in range(rng.randint(words // 2, words))) + "." for _ in range(n)]


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
    words: tuple[str, ...] | list[str] = WORDS,
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
    corpus = sample_texts(400, seed) if words is WORDS else sample_texts(400, seed) + sample_texts(1600, seed, 16, words)
    tok.train_from_iterator(corpus, trainer)
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
