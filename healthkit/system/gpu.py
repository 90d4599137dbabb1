"""GPU memory and temperature through NVML, imported lazily; no GPU, no driver or no pynvml reads as "not available".

Used by the trainer's status callback and by the audit's gpu check, so it must stay
cheap to import: no torch, no pynvml at module level. Tests replace `_load_nvml`
with a fake module (the boundary), never the functions below it.
"""

from __future__ import annotations

import threading
from typing import Any

_lock = threading.Lock()
_state: dict[str, Any] = {"nvml": None, "tried": False, "error": None}


def _load_nvml() -> Any:
    """The `pynvml` module (from nvidia-ml-py), or None when it is not installed."""
    try:
        import pynvml
    except Exception:
        return None
    return pynvml


def _nvml() -> Any:
    """The initialised NVML module, initialised once per process; None when unavailable."""
    with _lock:
        if not _state["tried"]:
            _state["tried"] = True
            mod = _load_nvml()
            if mod is not None:
                try:
                    mod.nvmlInit()
                    _state["nvml"] = mod
                except Exception as exc:
                    _state["error"] = f"{type(exc).__name__}: {exc}"
            else:
                _state["error"] = "pynvml (nvidia-ml-py) is not installed"
        return _state["nvml"]


def reset() -> None:
    """Forget the cached NVML handle (tests, or after a driver reload)."""
    with _lock:
        _state.update(nvml=None, tried=False, error=None)


def unavailable_reason() -> str | None:
    """Why no GPU could be read, once a read was tried (None when it worked or was not tried)."""
    return _state["error"]


def _device_stats(nvml: Any, index: int) -> dict[str, Any]:
    handle = nvml.nvmlDeviceGetHandleByIndex(index)
    mem = nvml.nvmlDeviceGetMemoryInfo(handle)
    out: dict[str, Any] = {
        "index": index,
        "memory_used_mb": round(mem.used / 1024**2, 1),
        "memory_total_mb": round(mem.total / 1024**2, 1),
        "temperature_c": None,
        "name": None,
    }
    try:
        out["temperature_c"] = float(nvml.nvmlDeviceGetTemperature(handle, getattr(nvml, "NVML_TEMPERATURE_GPU", 0)))
    except Exception:
        pass
    try:
        name = nvml.nvmlDeviceGetName(handle)
        out["name"] = name.decode() if isinstance(name, bytes) else str(name)
    except Exception:
        pass
    return out


def read_all_gpu_stats() -> list[dict[str, Any]]:
    """Stats of every GPU NVML sees; [] when none (or NVML is unavailable or fails)."""
    nvml = _nvml()
    if nvml is None:
        return []
    try:
        count = int(nvml.nvmlDeviceGetCount())
        return [_device_stats(nvml, i) for i in range(count)]
    except Exception as exc:
        _state["error"] = f"{type(exc).__name__}: {exc}"
        return []


def read_gpu_stats(index: int = 0) -> dict[str, Any] | None:
    """`{memory_used_mb, memory_total_mb, temperature_c, name, index}` of one GPU, or None when not available."""
    nvml = _nvml()
    if nvml is None:
        return None
    try:
        if index >= int(nvml.nvmlDeviceGetCount()):
            return None
        return _device_stats(nvml, index)
    except Exception as exc:
        _state["error"] = f"{type(exc).__name__}: {exc}"
        return None
