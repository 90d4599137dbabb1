"""Do the configured monitor ports answer?"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable

from healthkit import CheckOutput, CodeDoc, Evidence, Finding, Healthy, Severity, check
from healthkit.core.workspace import Workspace
from healthkit.system.records import record

from ._common import q

DOWN = CodeDoc(
    "monitor.down",
    "warning",
    "A configured monitor port does not answer",
    what="A monitor port the workspace declares (healthkit.toml [monitor] ports, or the trainer daemon's port: config.json "
    "`monitor_port`, default 8080, while the daemon runs) fails an HTTP GET of [monitor] path (default /health) within "
    "[monitor] timeout_seconds: refused, accepted but no answer (a hung server), or an error status. "
    "[monitor] tcp_ports are only tested for a TCP connection.",
    why="Dashboards and health probes that rely on it see nothing; people think the run is unobserved or dead.",
    fix="Start the daemon (which serves the monitor), or correct the port in the settings.",
)


NOT_BOUND = CodeDoc(
    "monitor.not-bound",
    "warning",
    "The daemon runs without its monitor",
    what="The trainer daemon runs, but its HTTP monitor could bind neither its configured port nor any free one: "
    "status/daemon_state.json records `monitor_error` and no `monitor_port`.",
    why="Nothing serves /health, /metrics or the live page for this workspace: probes and dashboards see nothing, and a "
    "monitor on the configured port, if one answers, belongs to something else.",
    fix="Read `monitor_error` in status/daemon_state.json (or logs/daemon.log), free or change `monitor_port` in "
    "config.json, and restart the daemon.",
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
    from healthkit.contract.configschema import default

    d = default("monitor_port")
    return ([d] if isinstance(d, int) and d > 0 else []), True


def _daemon_alive(ws: Workspace) -> bool:
    pf = ws.pid_file
    if pf.state != "ok" or pf.pid is None:
        return False
    from healthkit.system.procs import probe

    return probe(pf.pid).alive


@record
class Probe:
    """What one probe saw. kind: "up", "refused", "unreachable" (no connection within the timeout),
    "no-answer" (connected, but no HTTP answer within the timeout: the hung monitor), "error-status"."""

    port: int
    kind: str
    detail: str = ""
    status: int | None = None
    body: str = ""


def _connect(host: str, port: int, timeout: float) -> socket.socket:
    # An ASCII host is passed as bytes: a str host makes socket import the IDNA codec,
    # which costs a cron audit more than the connection itself.
    target: str | bytes = host.encode("ascii") if host.isascii() else host
    return socket.create_connection((target, port), timeout=timeout)  # type: ignore[arg-type]


def _refused_or_unreachable(port: int, timeout: float, exc: OSError) -> Probe:
    if isinstance(exc, socket.timeout):
        return Probe(port, "unreachable", f"timed out after {timeout:g}s")
    if isinstance(exc, ConnectionRefusedError):
        return Probe(port, "refused", exc.strerror or "Connection refused")
    return Probe(port, "unreachable", exc.strerror or str(exc))


def probe_tcp(host: str, port: int, timeout: float) -> Probe:
    """A plain TCP port ([monitor] tcp_ports): up when it accepts a connection."""
    try:
        with _connect(host, port, timeout):
            return Probe(port, "up")
    except OSError as exc:
        return _refused_or_unreachable(port, timeout, exc)


def _read_until(conn: socket.socket, deadline: float, enough: Callable[[bytes], bool], data: bytes = b"") -> bytes:
    """Read until `enough(data)`, the peer closes, 64 KiB, or the deadline (socket.timeout, unless data is kept)."""
    while not enough(data) and len(data) < 65536:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError()
        conn.settimeout(left)
        chunk = conn.recv(4096)
        if not chunk:
            break
        data += chunk
    return data


def probe_http(host: str, port: int, path: str, timeout: float) -> Probe:
    """GET `path` with a raw socket (http.client costs a cron audit its import): up on a 2xx or 3xx answer.

    The whole exchange is bounded by `timeout`: a server that accepts and then never answers
    (a deadlocked handler) is "no-answer", not up.
    """
    deadline = time.monotonic() + timeout
    try:
        conn = _connect(host, port, timeout)
    except OSError as exc:
        return _refused_or_unreachable(port, timeout, exc)
    with conn:
        try:
            conn.sendall(f"GET {path} HTTP/1.0\r\nHost: {host}:{port}\r\nConnection: close\r\n\r\n".encode("latin-1"))
            data = _read_until(conn, deadline, lambda d: b"\r\n\r\n" in d)
        except TimeoutError:
            return Probe(port, "no-answer", f"connected, but no answer within {timeout:g}s")
        except OSError as exc:
            return Probe(port, "no-answer", f"connected, then {exc.strerror or exc}")
        # The body: an error's says why, a /health answer may name its workspace. Read what comes in time, up to the
        # Content-Length the answer declares (a server that keeps the connection open is not waited on past it).
        try:
            data = _read_until(conn, deadline, _body_complete, data)
        except OSError:
            pass
    head, _, body = data.partition(b"\r\n\r\n")
    parts = head.split(b"\r\n", 1)[0].split()
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/") or not parts[1].isdigit():
        why = "closed the connection without an answer" if not data else "answered, but not with HTTP"
        return Probe(port, "no-answer", f"connected, but it {why}")
    code = int(parts[1])
    if code >= 400:
        return Probe(port, "error-status", f"HTTP {code}", code, body[:200].decode("utf-8", "replace").strip())
    return Probe(port, "up", f"HTTP {code}", code, body[:2048].decode("utf-8", "replace").strip())


def _body_complete(data: bytes) -> bool:
    head, sep, body = data.partition(b"\r\n\r\n")
    if not sep:
        return False
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length" and value.strip().isdigit():
            return len(body) >= int(value.strip())
    return False  # no length: read until the server closes (HTTP/1.0, Connection: close) or the deadline


# Per kind: title, problem, root cause, recommendation. {host} {port} {path} {timeout} {detail} are filled in.
_KINDS = {
    "refused": (
        "Monitor on port {port} is down",
        "Nothing listens on {host}:{port} (connection refused)",
        "The process that serves it is not running, or it listens on another port",
        "Start the daemon (it serves the monitor) or fix the configured port",
    ),
    "unreachable": (
        "Monitor on port {port} does not accept connections",
        "No connection to {host}:{port}: {detail}",
        "Its server stopped accepting connections (a full accept queue), or a firewall drops them",
        "Check the process that owns the port (`ss -ltnp 'sport = :{port}'`) and restart it",
    ),
    "no-answer": (
        "Monitor on port {port} accepts connections but does not answer",
        "`GET {path}` on {host}:{port}: {detail}",
        "The server process is alive but hung: a deadlocked or blocked request handler (the classic hung monitor)",
        "Find the process that owns the port (`ss -ltnp 'sport = :{port}'`), look at its threads "
        "(`py-spy dump --pid PID`) and restart it",
    ),
    "other-workspace": (
        "Port {port} answers for another workspace's monitor",
        "`GET {path}` on {host}:{port}: {detail}",
        "Two workspaces are configured with the same port: another daemon holds it, and this workspace's "
        "monitor is elsewhere or not running",
        "Give each workspace its own `monitor_port` (or null for any free one) and restart this daemon; "
        "the port it bound is `monitor_port` in status/daemon_state.json",
    ),
    "error-status": (
        "Monitor on port {port} answers with an error ({detail})",
        "`GET {path}` on {host}:{port} answered {detail}",
        "The monitor runs and reports a problem: its answer says which",
        "Read the answer (below) and act on what it reports",
    ),
}


def _curl_observed(p: Probe, host: str, timeout: float) -> str:
    """What `curl -sS -m T -w '\\nHTTP %{http_code}' URL` prints in each case."""
    if p.kind in ("error-status", "other-workspace"):
        return f"{p.body}\nHTTP {p.status}".lstrip("\n")
    if p.kind == "refused":
        err = f"curl: (7) Failed to connect to {host} port {p.port}: Connection refused"
    elif p.kind == "no-answer" and "without an answer" in p.detail:
        err = "curl: (52) Empty reply from server"
    elif p.kind == "no-answer":
        err = f"curl: (28) Operation timed out after {timeout * 1000:.0f} milliseconds with 0 bytes received"
    elif p.detail.startswith("timed out"):
        err = f"curl: (28) Failed to connect to {host} port {p.port} after {timeout * 1000:.0f} ms: Timeout was reached"
    else:
        err = f"curl: (7) Failed to connect to {host} port {p.port}: {p.detail}"
    return f"{err}\nHTTP 000"


def named_workspace(p: Probe) -> str | None:
    """The workspace id an HTTP answer's JSON body names (our daemon's `/health`), or None when it names none."""
    if p.status is None or not p.body.startswith("{"):
        return None
    try:
        answer = json.loads(p.body)
    except ValueError:
        return None
    named = answer.get("workspace") if isinstance(answer, dict) else None
    return named if isinstance(named, str) and named else None


def _attributed(p: Probe, own_id: str | None, daemons_own: bool = False) -> Probe:
    """A monitor answering for another workspace is not this workspace's monitor (two daemons configured with one port:
    the second could not bind it). One that names no workspace (a monitor listed by hand) keeps the plain rule, except
    on the daemon's own port of a workspace that has an id: our daemon names it there, so a silent answer is another's."""
    named = named_workspace(p)
    if named is None and daemons_own and own_id and p.status is not None:
        return Probe(
            p.port,
            "other-workspace",
            f"its answer names no workspace; this workspace's daemon names {own_id}",
            p.status,
            p.body,
        )
    if named is None or named == own_id:
        return p
    try:
        where = json.loads(p.body).get("workspace_path")
    except (ValueError, AttributeError):
        where = None
    path = f" at {where}" if isinstance(where, str) and where else ""
    mine = (
        f"this workspace's id is {own_id}"
        if own_id
        else "this workspace has no id (.healthkit-id): its daemon never published one"
    )
    return Probe(p.port, "other-workspace", f"it answers for workspace {named}{path}; {mine}", p.status, p.body)


def _finding(ws: Workspace, p: Probe, tcp: bool) -> Finding:
    mon = ws.settings.monitor
    host, timeout, path = mon.host, mon.timeout_seconds, mon.path
    title, problem, cause, rec = (
        t.format(host=host, port=p.port, path=path, timeout=timeout, detail=p.detail) for t in _KINDS[p.kind]
    )
    if tcp:
        ev = Evidence(
            f"nc -zv -w {timeout:g} {host} {p.port}", f"nc: connect to {host} port {p.port} (tcp) failed: {p.detail}"
        )
    else:
        ev = Evidence(
            f"curl -sS -m {timeout:g} -w '\\nHTTP %{{http_code}}' http://{host}:{p.port}{path}",
            _curl_observed(p, host, timeout),
        )
    return Finding(
        code=DOWN.code,
        severity=Severity.WARNING,
        title=title,
        problem=[problem],
        impact=[
            "Dashboards and probes that read it see nothing"
            if p.kind != "error-status"
            else "Dashboards and probes that read it report the service unhealthy"
        ],
        evidence=[ev],
        root_cause=[cause],
        recommendations=[rec],
        urgency="short-term",
        data={
            "host": host,
            "port": p.port,
            "kind": p.kind,
            "detail": p.detail,
            "status": p.status,
            "path": None if tcp else path,
        },
    )


def _probe_all(ws: Workspace, http: list[int], tcp: list[int]) -> list[Probe]:
    """Every port at once: an audit waits for the slowest probe, not their sum."""
    mon = ws.settings.monitor
    jobs = [(port, False) for port in http] + [(port, True) for port in tcp]
    results: list[Probe | None] = [None] * len(jobs)

    def probe_one(i: int) -> None:
        port, plain = jobs[i]
        results[i] = (
            probe_tcp(mon.host, port, mon.timeout_seconds)
            if plain
            else probe_http(mon.host, port, mon.path, mon.timeout_seconds)
        )

    threads = [threading.Thread(target=probe_one, args=(i,), daemon=True) for i in range(len(jobs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(2 * mon.timeout_seconds + 1)
    return [r or Probe(jobs[i][0], "no-answer", "the probe itself did not finish") for i, r in enumerate(results)]


def _own_health_answer(p: Probe) -> Probe:
    """Our daemon's `/health` answers 503 with `{"healthy": false, "reason": ...}` while it waits, pauses or fails:
    the monitor works and says why; the cause is another check's finding (disk, training, ...), not `monitor.down`."""
    if p.kind != "error-status" or p.status != 503:
        return p
    try:
        answer = json.loads(p.body or "")
    except ValueError:
        return p
    if not isinstance(answer, dict) or answer.get("healthy") is not False:
        return p
    return Probe(
        p.port, "up", f"HTTP 503, reports the daemon unhealthy: {answer.get('reason') or 'no reason given'}", p.status
    )


def _not_bound(ws: Workspace) -> Finding | None:
    """monitor.not-bound: the running daemon recorded that its monitor could not bind (trainer/daemon.py)."""
    st = ws.daemon_state
    if not st.is_object or st.data.get("monitor_port") or not st.data.get("monitor_error"):
        return None
    why = str(st.data.get("monitor_error"))
    return Finding(
        code=NOT_BOUND.code,
        severity=Severity.WARNING,
        title="The daemon runs without its monitor",
        problem=[f"The daemon could not bind its monitor: {why}"],
        impact=["Nothing serves /health, /metrics or the live page for this workspace"],
        evidence=[
            Evidence(
                f"jq '.monitor_port, .monitor_error' {q(ws, ws.path(ws.settings.paths.daemon_state))}",
                f"null\n{json.dumps(why)}",
            )
        ],
        root_cause=["Another process holds the configured port, and no free port could be bound either"],
        recommendations=["Free the port or change `monitor_port` in config.json, then restart the daemon"],
        urgency="short-term",
        data={"error": why},
    )


@check("monitor", title="Monitor endpoints", codes=[DOWN, NOT_BOUND], tags=["process"])
def monitor_check(ws: Workspace) -> CheckOutput:
    ps, daemons_own = ports(ws)
    tcp = list(ws.settings.monitor.tcp_ports)
    alive = _daemon_alive(ws) if daemons_own or ws.settings.paths.config_schema == "healthkit" else False
    unbound = _not_bound(ws) if alive else None
    if unbound is not None and daemons_own:
        ps = []  # the port config.json names is not this daemon's: whatever answers there is something else
        if not tcp:
            return CheckOutput(findings=[unbound])
    if not ps and not tcp:
        return CheckOutput(findings=[unbound] if unbound else [], notes=["no monitor port configured"])
    if daemons_own and not alive:
        if not tcp:
            return CheckOutput(
                notes=[f"the daemon is not running, so its monitor (port {ps[0]}) is not expected to answer"]
            )
        ps = []
    probes = _probe_all(ws, ps, tcp)
    if daemons_own:
        probes = [_own_health_answer(p) for p in probes]
    from healthkit.contract.wsid import read_workspace_id

    own_id = read_workspace_id(ws.base)
    probes = [_attributed(p, own_id, daemons_own) if i < len(ps) else p for i, p in enumerate(probes)]
    findings = ([unbound] if unbound else []) + [
        _finding(ws, p, i >= len(ps)) for i, p in enumerate(probes) if p.kind != "up"
    ]
    up = [p for p in probes if p.kind == "up"]
    details = [
        f"Port {p.port} answers" + (f" ({p.detail} on {ws.settings.monitor.path})" if p.status else "") for p in up
    ]
    healthy = [Healthy("Web monitors running", details)] if up else []
    return CheckOutput(findings=findings, healthy=healthy)
