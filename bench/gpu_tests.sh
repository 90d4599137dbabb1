#!/usr/bin/env bash
# The CUDA-only tests on a GPU machine (CI has none): the real NVML path and bf16 / LoRA / QLoRA training
# through the daemon, then the CPU-refusal tests to see that they step aside where CUDA exists.
# Usage: bench/gpu_tests.sh [LOG_DIR]   (healthkit installed with the trainer and gpu extras, plus bitsandbytes)
set -uo pipefail
out=${1:-.}
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=index,name,driver_version,memory.total,memory.used,temperature.gpu --format=csv | tee "$out/nvidia-smi.txt"
python3 - <<'PY' | tee "$out/versions.txt"
import importlib.metadata as md, torch
print("torch", torch.__version__, "cuda", torch.version.cuda, "device", torch.cuda.get_device_name(0), "bf16", torch.cuda.is_bf16_supported())
for n in ("transformers", "accelerate", "peft", "bitsandbytes", "nvidia-ml-py", "healthkit"):
    try: print(n, md.version(n))
    except md.PackageNotFoundError: print(n, "missing")
PY
start=$(date +%s)
python3 -m pytest -p no:cacheprovider -v -rs --durations=0 tests/trainer/test_cuda.py 2>&1 | tee "$out/test_cuda.log"
rc=${PIPESTATUS[0]}
echo "test_cuda.py: exit $rc in $(( $(date +%s) - start )) s"
python3 -m pytest -p no:cacheprovider -q -rs tests/trainer/test_chat_lora_units.py 2>&1 | tail -15 | tee "$out/lora_units.log"
exit "$rc"
