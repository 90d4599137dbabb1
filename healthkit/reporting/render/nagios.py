"""Monitoring-plugin output for Nagios, Icinga and Sensu: one status line with perfdata, then one line per finding.

The first line is `HEALTHKIT <STATE> - <counts> | <perfdata>` with perfdata in the
plugin-guidelines syntax `label=value[UOM];[warn];[crit];[min];[max]`; the lines after
it are the plugin's long output. The CLI exits with the report's code (0-3), which is
what these monitors read as the state.
"""

from __future__ import annotations

import math
import re
from typing import TYPE_CHECKING, Any

from healthkit.core.findings import Status

if TYPE_CHECKING:
    from healthkit.core.report import Report

_LABEL_OK = re.compile(r"^[A-Za-z0-9_.-]+$")


def _number(v: Any) -> str | None:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or (isinstance(v, float) and not math.isfinite(v)):
        return None
    if isinstance(v, int) or float(v).is_integer() and abs(v) < 1e18:
        return str(int(v))
    return f"{v:.6f}".rstrip("0").rstrip(".")


def _perf(
    label: str, value: Any, uom: str = "", warn: str = "", crit: str = "", lo: Any = None, hi: Any = None
) -> str | None:
    """One perfdata item; None when the value is absent or not a number (it is then left out)."""
    v = _number(value)
    if v is None:
        return None
    name = label if _LABEL_OK.match(label) else "'" + label.replace("'", "''") + "'"
    lo_s, hi_s = _number(lo) or "", _number(hi) or ""
    tail = f";{warn};{crit};{lo_s}" + (f";{hi_s}" if hi_s else "")
    return f"{name}={v}{uom}{tail}"


def _line_safe(text: str) -> str:
    """Long output must not contain `|` (it starts perfdata) nor break lines."""
    return " ".join(text.replace("|", "/").split())


def perfdata(report: Report) -> list[str]:
    c = report.counts()
    unknown = sum(1 for r in report.results if r.status is Status.UNKNOWN) + len(report.load_errors)
    items = [
        f"critical={c['critical']};;;",
        f"warning={c['warning']};;;",
        f"info={c['info']};;;",
        f"unknown_checks={unknown};;;",
        f"checks={len(report.results)};;;",
        _perf("duration", round(report.duration_s, 3), "s", lo=0),
    ]
    facts = report.facts
    disk = got if isinstance(got := facts.get("disk"), dict) else {}
    items += [
        _perf("disk_free", disk.get("free_bytes"), "B", lo=0, hi=disk.get("total_bytes")),
        _perf("disk_free_pct", disk.get("free_percent"), "%", lo=0, hi=100),
    ]
    ck = got if isinstance(got := facts.get("checkpoints"), dict) else {}
    items += [_perf("checkpoints", ck.get("count"), lo=0), _perf("checkpoint_bytes", ck.get("bytes"), "B", lo=0)]
    t = got if isinstance(got := facts.get("training"), dict) else {}
    items += [
        _perf("step", t.get("step"), lo=0, hi=t.get("total_steps")),
        _perf("loss", t.get("loss")),
        _perf("val_loss", t.get("val_loss")),
        _perf("val_train_gap", t.get("val_train_gap")),
    ]
    gpu = got if isinstance(got := t.get("gpu"), dict) else {}
    items.append(_perf("gpu_temp", gpu.get("temperature_c")))
    return [i for i in items if i]


def render(report: Report, **_: Any) -> str:
    c = report.counts()
    state = report.status.value.upper()
    text = f"{c['critical']} critical, {c['warning']} warning"
    unknown = [r.check for r in report.sorted_results if r.status is Status.UNKNOWN]
    if unknown:
        text += f", could not check: {', '.join(unknown)}"
    if report.load_errors:
        text += f", {len(report.load_errors)} plugin(s) failed to load"
    lines = [f"HEALTHKIT {state} - {_line_safe(text)} | {' '.join(perfdata(report))}"]
    for f in report.findings:
        lines.append(_line_safe(f"[{f.severity.value.upper()}] {f.code}: {f.title}"))
    for r in report.sorted_results:
        if r.status is Status.UNKNOWN:
            lines.append(_line_safe(f"[UNKNOWN] {r.check}: {r.error or 'no verdict'}"))
    for e in report.load_errors:
        lines.append(_line_safe(f"[UNKNOWN] {e.source}: {e.message}"))
    from healthkit.system.safetext import visible

    return visible("\n".join(lines)) + "\n"  # names may hold escapes: none reaches the monitoring console raw
