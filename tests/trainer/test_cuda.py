"""On a CUDA machine: NVML reads what nvidia-smi reads, and bf16, LoRA and QLoRA train through the daemon.

CI has no GPU, so every test here skips there and says what is missing. On a GPU machine run
`python -m pytest tests/trainer/test_cuda.py -v` (docs/gpu.md). These are the real paths that the
CPU suite can only reach through fakes (tests/checks/test_monitor_gpu_costs.py) or refusals
(tests/trainer/test_chat_lora_units.py).
"""

from __future__ import annotations

import importlib.util
import json
import math
import shutil
import subprocess
from typing import Any

import pytest

from healthkit.system import gpu
from healthkit.trainer.daemon import start_daemon

from .conftest import all_logs, hk, queue_file, read_json, wait_for
from .test_daemon_e2e import queue_drained

pytestmark = pytest.mark.slow


def _need_cuda() -> None:
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU: torch.cuda.is_available() is False on this machine")


def _smi_rows() -> list[list[str]]:
    smi = shutil.which("nvidia-smi")
    if smi is None:
        pytest.skip("needs nvidia-smi (the NVIDIA driver's tools) to compare against")
    out = subprocess.run(
        [smi, "--query-gpu=index,name,memory.total,memory.used,temperature.gpu", "--format=csv,noheader,nounits"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    return [[c.strip() for c in line.split(",")] for line in out.splitlines() if line.strip()]


def test_nvml_reads_what_nvidia_smi_reads() -> None:
    """The real NVML path, not the fake: same GPUs, names and memory as the driver's own tool reports."""
    rows = _smi_rows()
    if importlib.util.find_spec("pynvml") is None:
        pytest.skip("needs nvidia-ml-py (pip install 'healthkit[gpu]')")
    gpu.reset()
    stats = gpu.read_all_gpu_stats()
    assert gpu.unavailable_reason() is None and len(stats) == len(rows), (stats, rows, gpu.unavailable_reason())
    for s, (index, name, total, _used, temp) in zip(stats, rows):
        assert s["index"] == int(index) and s["name"] == name, (s, name)
        assert abs(s["memory_total_mb"] - float(total)) <= 1.0, (s, total)
        assert 0 <= s["memory_used_mb"] <= s["memory_total_mb"]
        if temp.isdigit():
            assert s["temperature_c"] is not None and abs(s["temperature_c"] - float(temp)) <= 5, (s, temp)


def test_the_audit_reports_the_real_gpu(tmp_path) -> None:
    rows = _smi_rows()
    if importlib.util.find_spec("pynvml") is None:
        pytest.skip("needs nvidia-ml-py (pip install 'healthkit[gpu]')")
    r = hk("audit", str(tmp_path), "--select", "gpu", "--format", "json")
    assert "Traceback" not in r.stderr, r.stderr
    rep = json.loads(r.stdout)
    assert rep["facts"]["gpu"]["available"] is True, rep["facts"]
    seen = "\n".join(d for h in rep["healthy"] for d in h["details"]) + json.dumps(rep["findings"])
    for index, name, *_ in rows:
        assert f"GPU {index} ({name})" in seen, seen


VOCAB = 300  # tests/trainer/conftest.py tiny_model_dir
# The last training loss must be below this share of ln(vocabulary); measured on the CPU in fp32 with these
# settings: full 3.62 (0.63), LoRA r=8 5.33 (0.93): LoRA on a random-init base learns slowly.
LEARNT = {"full": 0.8, "lora-adapter": 0.97}
QLORA = {"r": 8, "alpha": 16, "dropout": 0.0, "load_in_4bit": True}
CASES: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    # name: (config overrides, what healthkit_final.json must say)
    "bf16-full": ({"bf16": True}, {"kind": "full", "precision": "bf16", "base_quantization": None}),
    "bf16-lora": (
        {"bf16": True, "lora": {"r": 8, "alpha": 16, "dropout": 0.0}},
        {"kind": "lora-adapter", "precision": "bf16", "base_quantization": None},
    ),
    "qlora": ({"bf16": True, "lora": QLORA}, {"kind": "lora-adapter", "precision": "bf16", "base_quantization": "nf4"}),
}


@pytest.mark.parametrize("case", list(CASES))
def test_trains_on_the_gpu_through_the_daemon_with_validation_and_audits_clean(make_ws, case: str) -> None:
    _need_cuda()
    if case == "qlora" and importlib.util.find_spec("bitsandbytes") is None:
        pytest.skip("QLoRA needs bitsandbytes (pip install bitsandbytes)")
    over, expect = CASES[case]
    lay = make_ws(max_steps=60, save_steps=20, eval_steps=20, logging_steps=5, learning_rate=5e-3, **over)
    (lay.base / "healthkit.toml").write_text("[thresholds]\ndisk_min_free_percent = 0\ndisk_min_free_bytes = 0\n")
    queue_file(lay, "a.jsonl", n=200)
    start_daemon(lay.base)
    wait_for(lambda: queue_drained(lay, 1), 600, 0.2, f"{case}: a.jsonl done\n" + all_logs(lay))
    final = read_json(lay.models / "a" / "healthkit_final.json")
    print(f"{case}: {json.dumps(final, sort_keys=True)}")  # for the record, with -s or -rA
    assert {k: final.get(k) for k in expect} == expect, final
    assert final["device"].startswith("cuda") and final["global_step"] == 60, final
    assert final["val_loss"] is not None and math.isfinite(final["val_loss"]), final
    # A random-init model starts near ln(vocabulary): well below it, it learnt in that precision, not only ran.
    assert final["loss"] < LEARNT[final["kind"]] * math.log(VOCAB), final
    wait_for(lambda: read_json(lay.daemon_state).get("state") == "idle", 60, what="daemon idle")
    r = hk("audit", str(lay.base), "--format", "json")
    assert "Traceback" not in r.stderr, r.stderr
    rep = json.loads(r.stdout)
    assert (r.returncode, [f["code"] for f in rep["findings"]]) == (0, []), rep["findings"]
