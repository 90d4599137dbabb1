"""Prometheus text exposition for node_exporter's textfile collector: one gauge family per fact, all `healthkit_`.

Every sample carries a ``workspace`` label so several workspaces can share one textfile
(``render_many``: `healthkit audit WS1 WS2 --format prom`). No sample has a timestamp (the
textfile collector rejects them); staleness is judged per workspace from
`healthkit_last_run_timestamp_seconds` and from series that vanish, see alerts/healthkit.rules.yml.
prometheus_client formats the text when it is installed (extra ``prom``); without it the
same families are written by hand in the same format.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from healthkit.contract.states import DAEMON_LIVENESS, TRAINING_STATES

if TYPE_CHECKING:
    from healthkit.core.report import Report

_STATUS_HELP = "0 ok, 1 warning, 2 critical, 3 unknown (the monitoring-plugin convention)"


@dataclass
class Family:
    """One gauge: name, help, and its samples as (labels, value)."""

    name: str
    help: str
    samples: list[tuple[dict[str, str], float]] = field(default_factory=list)


def _num(value: Any) -> float | None:
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, (int, float)) and not (isinstance(value, float) and math.isnan(value)):
        return float(value)
    return None


def _timestamp(value: Any) -> float | None:
    """An ISO 8601 string or epoch seconds, as epoch seconds; None when it is neither."""
    if (n := _num(value)) is not None:
        return n
    if isinstance(value, str) and value:
        try:
            dt = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
        if dt.tzinfo is None:
            dt = dt.astimezone()  # a naive time is local time, as the daemon wrote it
        return dt.timestamp()
    return None


def gpu_devices(facts: dict[str, Any]) -> list[dict[str, Any]]:
    """GPU readings as the gpu check reported them (NVML, or the status file's); the status file's when it did not run."""
    gpu = facts.get("gpu")
    if isinstance(gpu, dict) and isinstance(gpu.get("devices"), list):
        return [d for d in gpu["devices"] if isinstance(d, dict)]
    training = facts.get("training")
    status_gpu = training.get("gpu") if isinstance(training, dict) else None
    return [{"index": 0, "source": "status", **status_gpu}] if isinstance(status_gpu, dict) else []


class _Gauges:
    """Families being collected for one report; a value that is absent (None, NaN, not a number) gives no sample."""

    def __init__(self, workspace: str) -> None:
        self.ws = {"workspace": workspace}
        self.out: list[Family] = []

    def __call__(self, name: str, help: str, value: Any, **labels: str) -> None:
        v = _num(value)
        if v is None:
            return
        fam = next((f for f in self.out if f.name == name), None)
        if fam is None:
            fam = Family(name, help)
            self.out.append(fam)
        fam.samples.append(({**self.ws, **labels}, v))


def _fact(facts: dict[str, Any], key: str) -> dict[str, Any] | None:
    value = facts.get(key)
    return value if isinstance(value, dict) and value else None


def _audit(gauge: _Gauges, report: Report) -> None:
    gauge(
        "healthkit_info",
        "healthkit version and host that wrote this file",
        1,
        version=report.version,
        hostname=report.hostname,
    )
    gauge("healthkit_status", f"Verdict of the whole audit: {_STATUS_HELP}", report.exit_code)
    gauge("healthkit_last_run_timestamp_seconds", "When the audit ran (Unix time)", _timestamp(report.generated_at))
    gauge("healthkit_audit_duration_seconds", "How long the audit took", report.duration_s)
    gauge("healthkit_load_errors", "Check plugins that failed to load", len(report.load_errors))
    for r in report.sorted_results:
        gauge("healthkit_check_status", f"Status of one check: {_STATUS_HELP}", r.status.exit_code, check=r.check)
    for r in report.sorted_results:
        gauge("healthkit_check_duration_seconds", "How long one check took", r.duration_s, check=r.check)
    for sev, n in report.counts().items():
        gauge("healthkit_findings", "Findings in the report, by severity", n, severity=sev)
    per_code: dict[tuple[str, str, str], int] = {}
    for f in report.findings:
        key = (f.code, f.severity.value, f.check)
        per_code[key] = per_code.get(key, 0) + 1
    for (code, sev, check), n in sorted(per_code.items()):
        gauge(
            "healthkit_finding_active",
            "Open findings by code (absent when resolved)",
            n,
            code=code,
            severity=sev,
            check=check,
        )


def _daemon(gauge: _Gauges, daemon: dict[str, Any]) -> None:
    state = str(daemon.get("state") or "unknown")
    gauge(
        "healthkit_daemon_up", "1 when the training daemon runs", state in ("running", "remote")
    )  # remote: a fresh lease
    for s in _states(DAEMON_LIVENESS, state):
        gauge("healthkit_daemon_state", "Daemon state (1 for the current one)", s == state, state=s)


def _training(gauge: _Gauges, training: dict[str, Any]) -> None:
    state = training.get("state")
    if isinstance(state, str) and state:
        for s in _states(TRAINING_STATES, state):
            gauge(
                "healthkit_training_state",
                "Training state from the status file (1 for the current one)",
                s == state,
                state=s,
            )
    gauge("healthkit_training_step", "Current training step", training.get("step"))
    gauge("healthkit_training_total_steps", "Steps the run will take", training.get("total_steps"))
    pct = _num(training.get("percent"))
    gauge("healthkit_training_progress_ratio", "Share of the run done (0-1)", None if pct is None else pct / 100)
    gauge("healthkit_training_loss", "Latest training loss", training.get("loss"))
    gauge("healthkit_training_val_loss", "Latest validation loss", training.get("val_loss"))
    gauge("healthkit_training_val_train_gap", "Validation loss minus training loss", training.get("val_train_gap"))
    gauge("healthkit_training_eta_seconds", "Estimated time to the end of the run", training.get("eta_seconds"))
    gauge(
        "healthkit_training_status_updated_timestamp_seconds",
        "When the trainer last wrote its status file (Unix time)",
        _timestamp(training.get("updated_epoch", training.get("updated_at"))),
    )


def _gpus(gauge: _Gauges, devices: list[dict[str, Any]]) -> None:
    for dev in devices:
        labels = {"gpu": str(dev.get("index", 0)), "source": str(dev.get("source") or "status")}
        used, total = _num(dev.get("memory_used_mb")), _num(dev.get("memory_total_mb"))
        gauge(
            "healthkit_gpu_memory_used_bytes",
            "GPU memory in use",
            None if used is None else used * 1024 * 1024,
            **labels,
        )
        gauge(
            "healthkit_gpu_memory_total_bytes",
            "GPU memory in all",
            None if total is None else total * 1024 * 1024,
            **labels,
        )
        gauge("healthkit_gpu_temperature_celsius", "GPU temperature", dev.get("temperature_c"), **labels)


def _history(gauge: _Gauges, history: dict[str, Any]) -> None:
    evals = [p for p in history.get("eval") or [] if isinstance(p, (list, tuple)) and len(p) == 2]
    count = history.get("eval_points")  # the facts keep a chart's worth of points; this is how many there were
    count = count if isinstance(count, int) and not isinstance(count, bool) else len(evals)
    gauge("healthkit_training_eval_points", "Validation evaluations in the newest checkpoint's log_history", count)
    if evals:
        gauge("healthkit_training_last_eval_step", "Step of the latest validation evaluation", evals[-1][0])


def _disk(gauge: _Gauges, disk: dict[str, Any]) -> None:
    path = {"path": str(disk.get("path") or "")}
    gauge(
        "healthkit_disk_total_bytes", "Size of the filesystem that holds the workspace", disk.get("total_bytes"), **path
    )
    gauge("healthkit_disk_free_bytes", "Free space on that filesystem", disk.get("free_bytes"), **path)
    fp = _num(disk.get("free_percent"))
    gauge("healthkit_disk_free_ratio", "Free share of that filesystem (0-1)", None if fp is None else fp / 100, **path)


def _checkpoints(gauge: _Gauges, ck: dict[str, Any]) -> None:
    gauge("healthkit_checkpoints", "Checkpoints on disk", ck.get("count"))
    gauge("healthkit_checkpoint_bytes", "Disk space the checkpoints use", ck.get("bytes"))
    gauge("healthkit_checkpoint_newest_step", "Step of the newest checkpoint", ck.get("newest_step"))
    gauge("healthkit_checkpoint_oldest_step", "Step of the oldest checkpoint", ck.get("oldest_step"))
    gauge("healthkit_checkpoint_limit", "Retention limit (save_total_limit) in force", ck.get("limit"))


def _goodput(gauge: _Gauges, g: dict[str, Any]) -> None:
    gauge("healthkit_goodput_ratio", "Share of the time with work queued that trained (0-1)", g.get("ratio"))
    for lost in g.get("lost") or []:
        if isinstance(lost, dict):
            gauge(
                "healthkit_lost_seconds",
                "Seconds with work queued that did not train, by cause",
                lost.get("seconds"),
                cause=str(lost.get("cause")),
            )


def families(report: Report) -> list[Family]:
    """The metrics of one report, in a stable order; a fact that is absent gives no sample."""
    gauge = _Gauges(report.workspace)
    _audit(gauge, report)
    facts = report.facts
    for key, write in (("daemon", _daemon), ("training", _training)):
        if (value := _fact(facts, key)) is not None:
            write(gauge, value)
    _gpus(gauge, gpu_devices(facts))
    for key, put in (("log_history", _history), ("disk", _disk), ("checkpoints", _checkpoints), ("goodput", _goodput)):
        if (value := _fact(facts, key)) is not None:
            put(gauge, value)
    return gauge.out


def _states(known: tuple[str, ...], current: str) -> list[str]:
    return list(known) + ([current] if current not in known else [])


def merged(reports: list[Report]) -> list[Family]:
    """The families of several reports as one exposition: each metric once, its samples told apart by `workspace`."""
    out: dict[str, Family] = {}
    for report in reports:
        for fam in families(report):
            into = out.setdefault(fam.name, Family(fam.name, fam.help))
            into.samples += fam.samples
    return list(out.values())


def render(report: Report, **_: Any) -> str:
    return _text(families(report))


def render_many(reports: list[Report]) -> str:
    """One textfile for several workspaces (`healthkit audit WS1 WS2 --format prom`)."""
    return _text(merged(reports))


def _text(fams: list[Family]) -> str:
    try:
        return _with_client(fams)
    except ImportError:
        return render_text(fams)


def _with_client(fams: list[Family]) -> str:
    from prometheus_client import CollectorRegistry, generate_latest
    from prometheus_client.core import GaugeMetricFamily

    from healthkit.system.safetext import unsurrogate

    class _Collector:
        def collect(self):
            for fam in fams:
                names = list(fam.samples[0][0]) if fam.samples else []
                g = GaugeMetricFamily(fam.name, fam.help, labels=names)
                for labels, value in fam.samples:
                    g.add_metric([unsurrogate(str(labels[n])) for n in names], value)  # a non-UTF-8 path: the text \xe9
                yield g

    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Collector())
    return generate_latest(registry).decode("utf-8")


def render_text(fams: list[Family]) -> str:
    """The text format (version 0.0.4) written by hand, for hosts without prometheus_client."""
    lines: list[str] = []
    for fam in fams:
        lines.append(f"# HELP {fam.name} {_escape(fam.help, quote=False)}")
        lines.append(f"# TYPE {fam.name} gauge")
        for labels, value in fam.samples:
            body = ",".join(f'{k}="{_escape(v)}"' for k, v in sorted(labels.items()))
            lines.append(f"{fam.name}{{{body}}} {_value(value)}" if body else f"{fam.name} {_value(value)}")
    return "\n".join(lines) + "\n" if lines else ""


def _escape(text: str, quote: bool = True) -> str:
    from healthkit.system.safetext import visible

    text = (
        visible(str(text)).replace("\\", "\\\\").replace("\n", "\\n")
    )  # an undecodable byte: the text \xe9, valid UTF-8
    return text.replace('"', '\\"') if quote else text


def _value(v: float) -> str:
    if math.isinf(v):
        return "+Inf" if v > 0 else "-Inf"
    if v == int(v) and abs(v) < 1e15:
        return f"{int(v)}.0"
    return repr(v)
