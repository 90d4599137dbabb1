"""Do the configured monitor ports answer?"""

from __future__ import annotations

import socket
import threading

from healthkit import CheckOutput, CodeDoc, Evidence, Finding, Healthy, Severity, check
from healthkit.workspace import Workspace

DOWN = CodeDoc(
    "monitor.down", "warning", "A configured monitor port does not answer",
    what="Nothing accepts connections on a monitor port the workspace declares: healthkit.toml [monitor] ports, or the "
         "trainer daemon's port (config.json `monitor_port`, default 8080) while the daemon runs.",
    why="Dashboards and health probes that rely on it see nothing; people think the run is unobserved or dead.",
    fix="Start the daemon (which serves the monitor), or correct the port in the settings.",
)


def ports(ws: Workspace) -> tuple[list[int], bool]:
    """The ports to probe, and whether they are the trainer daemon's own (expected only while it runs).

    healthkit.toml [monitor] ports are always probed. Otherwise, for our trainer, the port the
    daemon recorded (it may have picked a free one), else config.json's `monitor_port`, else
    the trainer's default; a foreign setup that declares no port is not probed at all.
    """
    if ws.settings.monitor.ports is not None:
        return list(ws.settings.monitor.ports), False
    if ws.settings.paths.config_schema != "healthkit":
        return [], False
    st = ws.daemon_state
    recorded = st.data.get("monitor_port") if st.is_object else None
    if isinstance(recorded, int) and not isinstance(recorded, bool) and recorded > 0:
        return [recorded], True
    key = ws.settings.config_keys.monitor_port
    if ws.config.is_object and key in ws.config.data:
        v = ws.config.data[key]
        return ([v] if isinstance(v, int) and not isinstance(v, bool) and v > 0 else []), True
    from healthkit.configschema import default

    d = default("monitor_port")
    return ([d] if isinstance(d, int) and d > 0 else []), True


def _daemon_alive(ws: Workspace) -> bool:
    pf = ws.pid_file
    if pf.state != "ok" or pf.pid is None:
        return False
    from healthkit.procs import probe

    return probe(pf.pid).alive


def probe_port(host: str, port: int, timeout: float) -> str | None:
    """None when the port accepts a connection; else why not."""
    try:
        # An ASCII host is passed as bytes: a str host makes socket import the IDNA codec,
        # which costs a cron audit more than the connection itself.
        target: str | bytes = host.encode("ascii") if host.isascii() else host
        with socket.create_connection((target, port), timeout=timeout):  # type: ignore[arg-type]
            return None
    except socket.timeout:
        return f"no answer within {timeout:g}s"
    except OSError as exc:
        return exc.strerror or str(exc)


@check("monitor", title="Monitor endpoints", codes=[DOWN], tags=["process"])
def monitor_check(ws: Workspace) -> CheckOutput:
    ps, daemons_own = ports(ws)
    if not ps:
        return CheckOutput(notes=["no monitor port configured"])
    if daemons_own and not _daemon_alive(ws):
        return CheckOutput(notes=[f"the daemon is not running, so its monitor (port {ps[0]}) is not expected to answer"])
    host, timeout = ws.settings.monitor.host, ws.settings.monitor.timeout_seconds
    results: list[str | None] = [None] * len(ps)

    def probe_one(i: int) -> None:
        results[i] = probe_port(host, ps[i], timeout)

    threads = [threading.Thread(target=probe_one, args=(i,), daemon=True) for i in range(len(ps))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout + 1)
    down = [(p, why) for p, why in zip(ps, results) if why]
    up = [p for p, why in zip(ps, results) if not why]
    findings = [Finding(
        code=DOWN.code, severity=Severity.WARNING, title=f"Monitor on port {p} is down",
        problem=[f"Nothing answers on {host}:{p} ({why})"],
        impact=["Dashboards and probes that read it see nothing"],
        evidence=[Evidence(f"curl -sS -m {timeout:g} http://{host}:{p}/health", f"curl: ({why})")],
        recommendations=["Start the daemon (it serves the monitor) or fix the configured port"],
        urgency="short-term", data={"host": host, "port": p},
    ) for p, why in down]
    healthy = [Healthy("Web monitors running", [f"Port {p} answers" for p in up])] if up else []
    return CheckOutput(findings=findings, healthy=healthy)
