"""GPU temperature and memory against thresholds, through NVML where a GPU exists ("not available" elsewhere)."""

from __future__ import annotations

from typing import Any

from healthkit import CheckOutput, CodeDoc, Evidence, Finding, Healthy, Severity, check
from healthkit.core.workspace import Workspace

from ._common import number

UNHEALTHY = CodeDoc(
    "gpu.unhealthy",
    "warning",
    "GPU temperature or memory beyond thresholds",
    what="A GPU reads hotter than the temperature limit or fuller than the memory limit (healthkit.toml [thresholds] "
    "gpu_max_temp_c, gpu_max_memory_percent), from NVML or from the training status file.",
    why="A hot GPU throttles (slower steps) or shuts down; memory at the limit is one batch away from an OOM crash.",
    fix="Check cooling and fan curves; lower the batch size or sequence length, or enable gradient checkpointing.",
)


def _judge(src: str, g: dict[str, Any], th: Any) -> list[str]:
    out = []
    temp, used, total = (
        number(g.get("temperature_c")),
        number(g.get("memory_used_mb")),
        number(g.get("memory_total_mb")),
    )
    if temp is not None and temp > th.gpu_max_temp_c:
        out.append(f"{src}: temperature {temp:.0f}°C is above {th.gpu_max_temp_c:g}°C")
    if used is not None and total:
        pct = 100.0 * used / total
        if pct > th.gpu_max_memory_percent:
            out.append(
                f"{src}: memory {used:.0f} MB / {total:.0f} MB ({pct:.0f}%) is above {th.gpu_max_memory_percent:g}%"
            )
    return out


def _describe(g: dict[str, Any]) -> str:
    parts = []
    used, temp = number(g.get("memory_used_mb")), number(g.get("temperature_c"))
    if used is not None:
        parts.append(f"{used:.0f} MB / {number(g.get('memory_total_mb')) or 0:.0f} MB")
    if temp is not None:
        parts.append(f"{temp:.0f}°C")
    return ", ".join(parts)


@check("gpu", title="GPU health", codes=[UNHEALTHY], tags=["gpu"])
def gpu_check(ws: Workspace) -> CheckOutput:
    from healthkit.system import gpu as nvml

    th = ws.settings.thresholds
    devices = nvml.read_all_gpu_stats()
    status_gpu = ws.status_value("gpu")
    sources: list[tuple[str, dict[str, Any]]] = [(f"GPU {d['index']} ({d.get('name') or 'NVML'})", d) for d in devices]
    if isinstance(status_gpu, dict) and not devices:
        sources.append(("GPU in the training status file", status_gpu))
    if not sources:
        return CheckOutput(
            notes=[f"GPU: not available ({nvml.unavailable_reason() or 'no GPU found'})"],
            facts={"gpu": {"available": False, "reason": nvml.unavailable_reason()}},
        )
    problems = [p for src, g in sources for p in _judge(src, g, th)]
    # The one place GPU readings become report facts (Prometheus reads them from here): NVML devices,
    # or the training status file's reading when NVML is not available here.
    readings = [{**d, "source": "nvml"} for d in devices] or [
        {
            "index": 0,
            "name": None,
            **{k: number(g.get(k)) for k in ("memory_used_mb", "memory_total_mb", "temperature_c")},
            "source": "status",
        }
        for _, g in sources
    ]
    facts = {"gpu": {"available": bool(devices), "devices": readings}}
    if problems:
        hot = any("temperature" in p for p in problems)
        sev = (
            Severity.CRITICAL
            if any((number(g.get("temperature_c")) or 0) > th.gpu_max_temp_c + 10 for _, g in sources)
            else Severity.WARNING
        )
        return CheckOutput(
            findings=[
                Finding(
                    code=UNHEALTHY.code,
                    severity=sev,
                    title="GPU beyond safe limits",
                    problem=problems,
                    impact=["Thermal throttling slows every step; at the limit the GPU shuts down"]
                    if hot
                    else ["One larger batch away from an out-of-memory crash"],
                    evidence=[
                        Evidence(
                            "nvidia-smi --query-gpu=index,name,temperature.gpu,memory.used,memory.total --format=csv",
                            "\n".join(f"{src}: {_describe(g)}" for src, g in sources),
                        )
                    ],
                    recommendations=[
                        "Check cooling"
                        if hot
                        else "Lower batch size or sequence length, or enable gradient checkpointing"
                    ],
                    urgency="immediate" if sev is Severity.CRITICAL else "short-term",
                    data=facts["gpu"],
                )
            ],
            facts=facts,
        )
    return CheckOutput(healthy=[Healthy("GPU healthy", [f"{src}: {_describe(g)}" for src, g in sources])], facts=facts)
