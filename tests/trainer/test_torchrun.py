"""Several processes through the existing launcher: torchrun with two CPU ranks on the gloo backend."""

from __future__ import annotations

import json
import re
import shutil

import pytest

from healthkit.trainer.checkpoints import is_complete
from healthkit.trainer.daemon import start_daemon

from .conftest import all_logs, queue_file, read_json, wait_for

pytestmark = pytest.mark.slow


def test_two_process_torchrun_completes_a_file(make_ws, monkeypatch) -> None:
    # Each step takes at least 0.3 s, so checkpoint-5 lives for seconds, not for one poll on a loaded machine.
    monkeypatch.setenv("HEALTHKIT_TRAINER_STEP_SLEEP_S", "0.3")
    lay = make_ws(launcher="torchrun", nproc_per_node=2, max_steps=10, save_steps=5, eval_steps=5, save_total_limit=2)
    queue_file(lay, "a.jsonl", seed=1)
    start_daemon(lay.base)
    copies = lay.base.parent / "ckpt-copies"

    def done() -> bool:
        for p in lay.checkpoints.glob("checkpoint-*"):
            if is_complete(p) and not (copies / p.name).exists():
                try:
                    shutil.copytree(p, copies / p.name)
                except (OSError, shutil.Error):
                    shutil.rmtree(copies / p.name, ignore_errors=True)  # rotated away mid-copy: try the next one
        # The file reaches done/ a moment before rank 0 writes "completed": on a busy machine, wait for both.
        return bool(list(lay.done.glob("a.jsonl"))) and read_json(lay.status).get("state") == "completed"

    wait_for(done, 180, 0.1, "the torchrun file to finish\n" + all_logs(lay))
    log = (lay.logs / "train-a.log").read_text()
    ranks = dict(re.findall(r"\[train rank (\d) pid (\d+)\]", log))
    assert set(ranks) == {"0", "1"}  # two ranks really ran
    assert "torch.distributed.run" in " ".join(read_json(lay.daemon_state).get("child_cmd") or [])
    st = read_json(lay.status)
    assert st["state"] == "completed" and st["step"] == 10 and isinstance(st["val_loss"], float)
    assert st["pid"] == int(ranks["0"]) and read_json(lay.last_result)["pid"] == int(ranks["0"])  # rank 0 alone writes
    assert not [p for p in lay.status_dir.iterdir() if ".tmp-" in p.name]
    final = lay.models / "a"
    meta = json.loads((final / "healthkit_final.json").read_text())
    assert meta["global_step"] == 10
    from transformers import AutoModelForCausalLM

    AutoModelForCausalLM.from_pretrained(final)  # whole, loadable
    saved = sorted(copies.iterdir()) if copies.exists() else []
    assert saved, "no complete checkpoint was seen while training"
    for ck in saved:  # every checkpoint the two ranks wrote is whole: it loads, with its trainer state
        AutoModelForCausalLM.from_pretrained(ck)
        assert json.loads((ck / "trainer_state.json").read_text())["global_step"] == int(ck.name.split("-")[1])
