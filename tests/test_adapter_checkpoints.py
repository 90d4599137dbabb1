"""LoRA (peft) checkpoints: adapter_model.safetensors + adapter_config.json are the weights, for the audit and the trainer alike."""

from __future__ import annotations

from healthkit.core.api import audit
from healthkit.trainer.checkpoints import is_complete

from .conftest import make_checkpoint, write_json


def adapter_checkpoint(ckdir, step, config=True):
    d = make_checkpoint(ckdir, step)
    (d / "model.safetensors").unlink()
    (d / "config.json").unlink()
    (d / "adapter_model.safetensors").write_bytes(b"a" * 512)
    if config:
        write_json(d / "adapter_config.json", {"peft_type": "LORA", "r": 8})
    return d


def test_adapter_checkpoints_complete_incomplete_and_sized(tmp_path):
    ck = tmp_path / "current_model"
    good = adapter_checkpoint(ck, 10)
    no_config = adapter_checkpoint(ck, 20, config=False)
    no_weights = adapter_checkpoint(ck, 30)
    (no_weights / "adapter_model.safetensors").unlink()
    write_json(tmp_path / "config.json", {"base_model": "m", "save_steps": 10, "save_total_limit": 5})
    report = audit(tmp_path, select=["checkpoints"], record_costs=False)
    found = {f.data["checkpoint"]: f.data["missing"] for f in report.findings if f.code == "checkpoints.incomplete"}
    assert sorted(found) == ["checkpoint-20", "checkpoint-30"], found
    assert any("adapter_config.json is missing" in m for m in found["checkpoint-20"])
    assert any("no model weights" in m for m in found["checkpoint-30"])
    assert (is_complete(good), is_complete(no_config), is_complete(no_weights)) == (True, False, False)
    facts = report.results[0].facts["checkpoints"]
    assert facts["count"] == 3 and facts["bytes"] >= 2 * 512 + 3 * (1024 + 64)  # sized as full ones: du of the folders
