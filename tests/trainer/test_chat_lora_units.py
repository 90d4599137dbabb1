"""Chat data (line checks, the assistant-only label mask), the config keys of issue 9, and the start-up refusals."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from healthkit.contract.config_model import parse_config
from healthkit.trainer.data import ChatDataset, DataError, chat_features, file_format, read_examples
from healthkit.trainer.layout import Layout
from healthkit.trainer.preflight import run_preflight
from healthkit.trainer.scaffold import init_workspace

from .conftest import FAST_CONFIG

transformers = pytest.importorskip("transformers")

CONVERSATION = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "What is the capital?"},
    {"role": "assistant", "content": "Paris is it."},
    {"role": "user", "content": "And then?"},
    {"role": "assistant", "content": "Done."},
]


@pytest.fixture(scope="module")
def tok(tiny_model_dir: Path):
    return transformers.AutoTokenizer.from_pretrained(tiny_model_dir)


def _labelled(tok, f: dict) -> str:
    return tok.decode([i for i, lab in zip(f["input_ids"], f["labels"]) if lab != -100])


def test_mask_covers_exactly_the_assistant_turns_and_their_end_of_turn(tok) -> None:
    f = chat_features(tok, CONVERSATION, None, 64)
    assert _labelled(tok, f) == "Paris is it.<|endoftext|>Done.<|endoftext|>"
    # The labels are the inputs where they are set (the model shifts them itself); nothing else is trained on.
    assert all(lab in (-100, i) for i, lab in zip(f["input_ids"], f["labels"]))
    toks = tok.convert_ids_to_tokens(f["input_ids"])
    first = next(k for k, lab in enumerate(f["labels"]) if lab != -100)
    assert toks[first - 1] == "<|assistant|>"  # the generation prompt is context, not target
    assert len(f["input_ids"]) == len(f["labels"]) == len(f["attention_mask"])


def test_mask_with_a_template_override_and_truncation(tok) -> None:
    template = (
        "{% for m in messages %}[{{ m['role'] }}] {{ m['content'] }}\n{% endfor %}"
        "{% if add_generation_prompt %}[assistant] {% endif %}"
    )
    f = chat_features(tok, CONVERSATION[1:3], template, 64)
    assert _labelled(tok, f) == "Paris is it.\n"
    long = [{"role": "user", "content": "word " * 60}, {"role": "assistant", "content": "ok"}]
    ds = ChatDataset(tok, [(3, CONVERSATION), (7, long)], 32, name="f.jsonl")  # wholly cut off: dropped and counted
    assert ds.dropped == [7] and len(ds) == 1
    cut = chat_features(tok, CONVERSATION, None, 30)  # partly cut: what is left of the assistant still trains
    assert len(cut["input_ids"]) == 30 and _labelled(tok, cut) == "Par"


def test_a_template_that_is_not_prefix_stable_is_refused_not_guessed(tok) -> None:
    moving = "{{ messages | length }}{% for m in messages %}{{ m['content'] }}{% endfor %}"
    with pytest.raises(DataError, match="line 2: the chat template does not render"):
        ChatDataset(tok, [(2, CONVERSATION)], 64, template=moving, name="f.jsonl")


@pytest.mark.parametrize(
    "line, why",
    [
        ({"messages": [{"role": "user", "content": "hi"}, {"role": "robot", "content": "x"}]}, "unknown role 'robot'"),
        ({"messages": [{"role": "user", "content": "hi"}]}, "no assistant turn"),
        (
            {"messages": [{"role": "user", "content": ["hi"]}, {"role": "assistant", "content": "x"}]},
            "content is not a string",
        ),
        ({"messages": []}, "'messages' is not a non-empty list"),
        ({"text": "plain"}, "a text line in a chat file"),
    ],
)
def test_bad_chat_lines_name_their_line_number_and_why(tmp_path: Path, line: dict, why: str) -> None:
    good = {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}
    p = tmp_path / "c.jsonl"
    p.write_text(json.dumps(good) + "\n\n" + json.dumps(line) + "\n")
    with pytest.raises(DataError) as e:
        read_examples(p, "auto")
    assert "line 3: " in str(e.value) and why in str(e.value)


def test_auto_decides_per_file_and_a_mixed_file_is_bad(tmp_path: Path) -> None:
    chat = tmp_path / "chat.jsonl"
    chat.write_text('\n{"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]}\n')
    text = tmp_path / "text.jsonl"
    text.write_text('{"text": "a"}\n')
    assert read_examples(chat, "auto") == (
        "chat",
        [(2, [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}])],
    )
    assert read_examples(text, "auto") == ("text", ["a"]) and file_format(chat, "auto") == "chat"
    with pytest.raises(DataError, match="line 2: a chat line in a text file"):
        read_examples(chat, "text")
    with pytest.raises(DataError, match=r"line 2: a chat line in a text file"):
        read_examples(_mixed(tmp_path), "auto")


def _mixed(tmp_path: Path) -> Path:
    p = tmp_path / "mixed.jsonl"
    p.write_text(
        '{"text": "a"}\n{"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]}\n'
    )
    return p


def test_config_keys_validate_and_trainer_owned_args_are_refused() -> None:
    cfg, errors = parse_config(
        {
            "base_model": "m",
            "data_format": "chat",
            "chat_template": "{{ x }}",
            "lora": {"r": 4, "target_modules": ["c_attn"]},
            "training_args": {"warmup_ratio": 0.1},
        }
    )
    assert cfg is not None and cfg.lora.r == 4 and cfg.lora.alpha == 16 and cfg.arg("warmup_ratio") == 0.1, errors
    _, errors = parse_config({"base_model": "m", "lora": {"rank": 4}})
    assert errors and errors[0][0] == "/lora/rank"
    _, errors = parse_config({"base_model": "m", "training_args": {"output_dir": "/x"}})
    assert errors and "training_args.output_dir is the trainer's own" in errors[0][1]
    cfg, _ = parse_config({"base_model": "m", "seed": 1, "training_args": {"seed": 7}})
    assert cfg.arg("seed") == 7  # training_args wins over the top-level key of the same name


def _ws(tmp_path: Path, tiny_model_dir: Path, **over) -> Layout:
    init_workspace(tmp_path / "ws", **{**FAST_CONFIG, **over})
    shutil.copytree(tiny_model_dir, tmp_path / "ws" / "models" / "base")
    return Layout.of(tmp_path / "ws")


@pytest.mark.parametrize(
    "over, message",
    [
        ({"bf16": True}, "bf16 is true but this machine has no CUDA GPU"),
        ({"training_args": {"fp16": True}}, "fp16 is true but this machine has no CUDA GPU"),
        ({"training_args": {"warmup_ration": 0.1}}, "training_args.warmup_ration: not a TrainingArguments field"),
        ({"training_args": {"lr_scheduler_type": "sideways"}}, "training_args.lr_scheduler_type: "),
        (
            {"training_args": {"gradient_accumulation_steps": "4"}},
            "training_args.gradient_accumulation_steps: must be int",
        ),
        ({"training_args": {"warmup_ratio": 2}}, "training_args.warmup_ratio: must be a number in [0, 1)"),
        (
            {"lora": {"load_in_4bit": True}},
            "lora.load_in_4bit (QLoRA) loads the base model in 4 bits through bitsandbytes, which needs a CUDA GPU",
        ),
    ],
)
def test_preflight_refuses_what_cannot_train_here(
    tmp_path: Path, tiny_model_dir: Path, over: dict, message: str
) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("these refusals are for a machine without CUDA")
    pf = run_preflight(_ws(tmp_path, tiny_model_dir, **over), drift=False)
    assert any(message in e for e in pf.errors), pf.errors


def test_preflight_accepts_good_training_args_and_lora(tmp_path: Path, tiny_model_dir: Path) -> None:
    over = {
        "lora": {"r": 4},
        "training_args": {
            "lr_scheduler_type": "cosine",
            "warmup_ratio": 0.1,
            "max_grad_norm": 0.5,
            "optim": "adamw_torch",
            "gradient_checkpointing": True,
        },
    }
    pf = run_preflight(_ws(tmp_path, tiny_model_dir, **over), drift=False)
    assert pf.ok, pf.errors


def test_preflight_refuses_chat_data_without_a_template(tmp_path: Path, tiny_model_dir: Path) -> None:
    lay = _ws(tmp_path, tiny_model_dir)
    (lay.base / "models" / "base" / "chat_template.jinja").unlink()
    assert run_preflight(lay, drift=False).ok  # no chat data queued: nothing to render
    (lay.inbox / "c.jsonl").write_text(
        '{"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]}\n'
    )
    pf = run_preflight(lay, drift=False)
    assert any("c.jsonl is chat data but the tokenizer" in e and "no chat template" in e for e in pf.errors), pf.errors
    cfg = json.loads(lay.config.read_text())
    lay.config.write_text(json.dumps({**cfg, "chat_template": "{% for m in messages %}{{ m['content'] }}{% endfor %}"}))
    assert run_preflight(lay, drift=False).ok


def test_init_tiny_model_tokenizer_has_a_chat_template(tmp_path: Path) -> None:
    from healthkit.trainer.preflight import has_chat_template

    init_workspace(tmp_path / "ws", tiny_model=True)
    base = tmp_path / "ws" / "models" / "base"
    assert has_chat_template(base)
    tok = transformers.AutoTokenizer.from_pretrained(base)
    f = chat_features(tok, CONVERSATION[1:3], None, 64)
    assert _labelled(tok, f) == "Paris is it.<|endoftext|>"
