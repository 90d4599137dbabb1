"""Issue 9 end to end: chat data with assistant-only loss, LoRA adapters through the whole queue, start-up refusals."""

from __future__ import annotations

import json
import os
import re
import signal
from pathlib import Path

import pytest

from healthkit.trainer.daemon import start_daemon
from healthkit.trainer.layout import Layout
from healthkit.trainer.tiny import sample_chats, write_jsonl

from .conftest import all_logs, daemon_log, hk, read_json, wait_for
from .test_daemon_e2e import _audit, queue_drained, spawns

pytestmark = pytest.mark.slow

ANSWER = "I will do that."


def queue_chats(lay: Layout, name: str, n: int = 120, seed: int = 0) -> Path:
    from healthkit.trainer import queue as q

    return q.add(lay, write_jsonl(lay.base / "data" / name, sample_chats(n, seed=seed, answer=ANSWER)))


def mean_losses(model_dir: Path, chats: list[dict]) -> tuple[float, float]:
    """(loss on the assistant tokens only, loss on every token) of a trained model over ``chats``."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from healthkit.trainer.data import chat_features

    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir).eval()
    sums = {"assistant": [0.0, 0], "all": [0.0, 0]}
    with torch.no_grad():
        for c in chats:
            f = chat_features(tok, c["messages"], None, 48)
            ids = torch.tensor([f["input_ids"]])
            for key, labels in (("assistant", f["labels"]), ("all", f["input_ids"])):
                lab = torch.tensor([labels])
                n = int((lab[:, 1:] != -100).sum())
                sums[key][0] += float(model(input_ids=ids, labels=lab).loss) * n
                sums[key][1] += n
    return sums["assistant"][0] / sums["assistant"][1], sums["all"][0] / sums["all"][1]


def test_chat_full_finetune_learns_the_assistant_turn_and_a_bad_file_fails_by_line(make_ws) -> None:
    lay = make_ws(
        max_steps=120,
        learning_rate=1e-2,
        max_seq_length=48,
        logging_steps=10,
        save_steps=60,
        eval_steps=60,
        validation_split=0.1,
    )
    good = json.dumps(sample_chats(1, seed=9)[0])
    bad = {"messages": [{"role": "user", "content": "hi"}, {"role": "bot", "content": "x"}]}
    (lay.inbox / "p1-bad.jsonl").write_text(f"{good}\n{good}\n{json.dumps(bad)}\n")  # claimed first
    queue_chats(lay, "chat.jsonl", seed=3)
    start_daemon(lay.base)
    wait_for(lambda: queue_drained(lay, 1, 1), 300, 0.2, "chat.jsonl done, p1-bad.jsonl failed\n" + all_logs(lay))
    err = json.loads((lay.failed / "p1-bad.jsonl.error.json").read_text())["error"]
    assert "line 3: message 1 has an unknown role 'bot'" in err, err
    final = read_json(lay.models / "chat" / "healthkit_final.json")
    assert final["global_step"] == 120 and final["loss"] < 0.2, final  # the training loss: assistant tokens only
    assert final["val_loss"] < 0.2, final
    held = sample_chats(40, seed=77, answer=ANSWER)  # unseen random user turns
    assistant, every = mean_losses(lay.models / "chat", held)
    # The assistant turn is learnt; the user turns are random words, so no model could bring the loss over all tokens
    # near zero: the low training loss is the assistant-only loss, not a whole-sequence one.
    assert assistant < 0.2 and every > 1.0 and every > 5 * assistant, (assistant, every)


def _names(d: Path) -> set[str]:
    return {p.name for p in d.iterdir()}


def test_lora_adapter_checkpoints_resume_after_sigkill_chain_and_audit_clean(
    make_ws, monkeypatch: pytest.MonkeyPatch
) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("HEALTHKIT_TRAINER_STEP_SLEEP_S", "0.1")
    lay = make_ws(max_steps=20, monitor_port=port, max_seq_length=48, lora={"r": 4, "alpha": 8, "dropout": 0.0})
    (lay.base / "healthkit.toml").write_text("[thresholds]\ndisk_min_free_percent = 0\ndisk_min_free_bytes = 0\n")
    queue_chats(lay, "a.jsonl", n=60, seed=1)
    queue_chats(lay, "b.jsonl", n=60, seed=2)
    start_daemon(lay.base)
    wait_for(
        lambda: (
            (read_json(lay.status).get("step") or 0) >= 11 and read_json(lay.status).get("current_file") == "a.jsonl"
        ),
        120,
        what="step 11 of a.jsonl\n" + all_logs(lay),
    )
    ckpt = lay.checkpoints / "checkpoint-10"
    names = _names(ckpt)
    assert {
        "adapter_model.safetensors",
        "adapter_config.json",
        "optimizer.pt",
        "scheduler.pt",
        "trainer_state.json",
    } <= names
    assert not names & {"model.safetensors", "pytorch_model.bin"}, names  # the adapter only, never full weights
    os.killpg(read_json(lay.daemon_state)["child_pid"], signal.SIGKILL)
    wait_for(lambda: queue_drained(lay, 2), 240, 0.2, "both files to finish\n" + all_logs(lay))
    log = daemon_log(lay)
    assert "killed by signal SIGKILL" in log and spawns(lay, "a.jsonl") == 2 and spawns(lay, "b.jsonl") == 1
    resumed = re.findall(r"spawn file=a.jsonl pid=\d+ attempt=2 resume=(checkpoint-\d+)", log)
    assert resumed and int(resumed[0].split("-")[1]) >= 10, log
    for stem in ("a", "b"):
        final = lay.models / stem
        assert {"adapter_model.safetensors", "adapter_config.json"} <= _names(final) and not (
            final / "model.safetensors"
        ).exists()
        assert read_json(final / "healthkit_final.json")["kind"] == "lora-adapter"
    b = read_json(lay.models / "b" / "healthkit_final.json")
    assert b["global_step"] == 20 and b["started_from"].endswith("models/a")
    train_log = (lay.logs / "train-b.log").read_text() if (lay.logs / "train-b.log").exists() else all_logs(lay)
    assert "continuing the adapter in" in train_log and "models/a" in train_log
    assert _adapter(lay.models / "a") != _adapter(lay.models / "b")  # b trained the adapter further
    wait_for(lambda: read_json(lay.daemon_state).get("state") == "idle", 30, what="daemon idle")
    code, rep = _audit(lay)
    assert (code, [f["code"] for f in rep["findings"]]) == (0, []), rep["findings"]


def _adapter(d: Path) -> dict:
    from safetensors.torch import load_file

    return {k: v.sum().item() for k, v in load_file(str(d / "adapter_model.safetensors")).items()}


@pytest.mark.parametrize(
    "over, message",
    [
        ({"bf16": True}, "bf16 is true but this machine has no CUDA GPU"),
        ({"training_args": {"warmup_ration": 0.1}}, "training_args.warmup_ration: not a TrainingArguments field"),
        ({"chat_template": None, "_drop_template": True}, "is chat data but the tokenizer"),
    ],
)
def test_start_refused_with_exit_78_and_the_audit_says_why(make_ws, over: dict, message: str) -> None:
    import torch

    if torch.cuda.is_available() and "bf16" in over:
        pytest.skip("bf16 trains on this machine")
    drop = over.pop("_drop_template", False)
    lay = make_ws(**over)
    if drop:
        (lay.base / "models" / "base" / "chat_template.jinja").unlink()
    queue_chats(lay, "c.jsonl", n=20)
    r = hk("daemon", "start", str(lay.base), timeout=180)
    assert r.returncode == 78 and message in r.stderr, (r.returncode, r.stderr[-3000:])
    r = hk("audit", str(lay.base), "--format", "json", "--select", "daemon")
    found = [f for f in json.loads(r.stdout)["findings"] if f["code"] == "daemon.not-running"]
    assert found and any("The last start was refused" in p and message in p for p in found[0]["problem"]), found
