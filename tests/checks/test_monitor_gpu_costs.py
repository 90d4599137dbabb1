"""monitor.down (real sockets), gpu.unhealthy (a fake NVML module at the boundary), monitoring.over-budget."""

from __future__ import annotations

import http.server
import socket
import threading
import time
from types import SimpleNamespace

import pytest

from healthkit.checks.ports import monitor_check, ports
from healthkit.core.detect import HEALTHKIT_SCHEMA_ID
from healthkit.core.workspace import Workspace
from healthkit.reporting.render import render
from healthkit.system import gpu as nvml

from .conftest import call, codes, evidence, make_ws, only, result, run

# --- monitor.down ------------------------------------------------------------------------------


@pytest.fixture
def listening():
    """A real socket listening on 127.0.0.1 that never speaks (plain TCP); its port."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)
    yield srv.getsockname()[1]
    srv.close()


class Server:
    """A real HTTP server on 127.0.0.1 in a thread: answers `status` to every GET and records the paths asked for.

    ``hang=True`` makes it a deadlocked server: each handler blocks on a lock that is never
    released while the test runs, so connections are accepted and never answered.
    """

    def __init__(self, status: int = 200, hang: bool = False, body: bytes = b"{}"):
        self.paths: list[str] = []
        self.stuck = threading.Lock()
        if hang:
            self.stuck.acquire()
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                server.paths.append(self.path)
                with server.stuck:  # the deadlock: held by the test, never by another request
                    pass
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def close(self) -> None:
        if self.stuck.locked():
            self.stuck.release()
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def serve():
    """Factory: `serve(status=200, hang=False)` starts a real HTTP server; all are closed after the test."""
    made: list[Server] = []

    def make(**kw) -> Server:
        made.append(Server(**kw))
        return made[-1]

    yield make
    for srv in made:
        srv.close()


@pytest.fixture
def closed_port():
    """A port nothing listens on (bound once to get a free number, then closed)."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


@pytest.fixture
def silent_port():
    """A port whose accept queue is full: the kernel drops new SYNs, so a connect hangs until its timeout."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(0)
    port = srv.getsockname()[1]
    held = []
    for _ in range(16):
        c = socket.socket()
        c.settimeout(0.2)
        try:
            c.connect(("127.0.0.1", port))
        except OSError:
            c.close()
            break
        held.append(c)
    else:
        pytest.skip("could not fill the accept queue on this kernel")
    yield port
    for c in held:
        c.close()
    srv.close()


def monitor_ws(tmp_path, ports_, timeout=1.0, extra=""):
    return make_ws(tmp_path, toml=f"[monitor]\nports = {list(ports_)}\ntimeout_seconds = {timeout}\n{extra}")


def test_http_monitor_answering_is_up_and_asked_for_the_health_path(tmp_path, serve):
    srv = serve()
    report = run(monitor_ws(tmp_path, [srv.port]), "monitor")
    assert codes(report) == [] and result(report, "monitor").status.value == "ok"
    assert [(h.title, h.details) for h in report.healthy] == [
        ("Web monitors running", [f"Port {srv.port} answers (HTTP 200 on /health)"])
    ]
    assert srv.paths == ["/health"]
    monitor_ws(tmp_path, [srv.port], extra='path = "/ping"\n')
    assert codes(run(tmp_path, "monitor")) == [] and srv.paths[-1] == "/ping"


def test_refused_port_is_down(tmp_path, serve, closed_port):
    srv = serve()
    report = run(monitor_ws(tmp_path, [srv.port, closed_port]), "monitor")
    f = only(report, "monitor.down")
    assert f.severity.value == "warning" and f.title == f"Monitor on port {closed_port} is down"
    assert f.problem == [f"Nothing listens on 127.0.0.1:{closed_port} (connection refused)"]
    assert evidence(f) == {
        f"curl -sS -m 1 -w '\\nHTTP %{{http_code}}' http://127.0.0.1:{closed_port}/health": f"curl: (7) Failed to connect to 127.0.0.1 port {closed_port}: Connection refused\nHTTP 000"
    }
    assert f.data["kind"] == "refused" and f.data["port"] == closed_port
    assert report.healthy[0].details == [f"Port {srv.port} answers (HTTP 200 on /health)"]


def test_deadlocked_server_that_accepts_but_never_answers_is_down(tmp_path, serve):
    """The classic hung monitor: TCP connect succeeds, the GET never gets an answer."""
    srv = serve(hang=True)
    f = only(run(monitor_ws(tmp_path, [srv.port], timeout=0.5), "monitor"), "monitor.down")
    assert f.title == f"Monitor on port {srv.port} accepts connections but does not answer"
    assert f.problem == [f"`GET /health` on 127.0.0.1:{srv.port}: connected, but no answer within 0.5s"]
    assert f.data["kind"] == "no-answer" and "hung" in f.root_cause[0]
    assert srv.paths == ["/health"]  # it really got the request, and really never answered


def test_error_status_is_its_own_problem(tmp_path, serve):
    srv = serve(status=503)
    f = only(run(monitor_ws(tmp_path, [srv.port]), "monitor"), "monitor.down")
    assert f.title == f"Monitor on port {srv.port} answers with an error (HTTP 503)"
    assert f.data["kind"] == "error-status" and f.data["status"] == 503
    assert list(evidence(f).values()) == ["{}\nHTTP 503"]


def test_a_socket_that_never_speaks_http_is_no_answer_but_up_as_a_tcp_port(tmp_path, listening):
    f = only(run(monitor_ws(tmp_path, [listening], timeout=0.3), "monitor"), "monitor.down")
    assert f.data["kind"] == "no-answer"
    make_ws(tmp_path, toml=f"[monitor]\nports = []\ntcp_ports = [{listening}]\n")
    report = run(tmp_path, "monitor")
    assert codes(report) == [] and report.healthy[0].details == [f"Port {listening} answers"]


def test_tcp_port_refused_keeps_the_connect_test(tmp_path, closed_port):
    make_ws(tmp_path, toml=f"[monitor]\nports = []\ntcp_ports = [{closed_port}]\n")
    f = only(run(tmp_path, "monitor"), "monitor.down")
    assert f.data["kind"] == "refused" and f.data["path"] is None
    assert evidence(f) == {
        f"nc -zv -w 1 127.0.0.1 {closed_port}": f"nc: connect to 127.0.0.1 port {closed_port} (tcp) failed: Connection refused"
    }


def test_port_that_never_accepts_is_bounded_by_the_timeout(tmp_path, silent_port):
    monitor_ws(tmp_path, [silent_port], timeout=0.3)
    t0 = time.monotonic()
    report = run(tmp_path, "monitor")
    took = time.monotonic() - t0
    f = only(report, "monitor.down")
    assert (
        f.problem == [f"No connection to 127.0.0.1:{silent_port}: timed out after 0.3s"]
        and f.data["kind"] == "unreachable"
    )
    assert (
        took >= 0.25
    )  # it waited for its timeout (an upper bound is the next test's job, with room for a busy machine)


def test_ports_probed_in_parallel(tmp_path, silent_port, closed_port, serve):
    """Four ports of 1 s each: probed one after another they take at least 3 s; in parallel about 1."""
    hung = serve(hang=True)
    monitor_ws(tmp_path, [silent_port, silent_port, hung.port, closed_port], timeout=1.0)
    t0 = time.monotonic()
    assert codes(run(tmp_path, "monitor")) == ["monitor.down"] * 4
    assert time.monotonic() - t0 < 2.9


def test_port_from_config_and_defaults(tmp_path):
    ours = {"$schema": HEALTHKIT_SCHEMA_ID}  # config.json as `healthkit init` writes it
    make_ws(tmp_path, config={**ours, "monitor_port": 8123})
    assert ports(Workspace.open(tmp_path)) == ([8123], True)
    make_ws(tmp_path, config={**ours, "monitor_port": None})
    assert call(monitor_check, tmp_path).notes == ["no monitor port configured"]
    make_ws(tmp_path, config={**ours, "monitor_port": True})
    assert ports(Workspace.open(tmp_path)) == ([], True)
    make_ws(tmp_path, config=ours)
    assert ports(Workspace.open(tmp_path)) == ([8080], True)
    make_ws(tmp_path, config={**ours, "monitor_port": 8123}, toml="[monitor]\nports = [9001, 9002]\n")
    assert ports(Workspace.open(tmp_path)) == ([9001, 9002], False)


def test_trainer_port_is_the_recorded_one_and_only_expected_while_the_daemon_runs(tmp_path, procs):
    """A stopped daemon's monitor being down is not a finding; a running daemon's is."""
    import json as _json
    import sys as _sys

    import psutil as _psutil

    make_ws(tmp_path, config={"$schema": HEALTHKIT_SCHEMA_ID, "monitor_port": 0})
    (tmp_path / "status").mkdir(exist_ok=True)
    (tmp_path / "status" / "daemon_state.json").write_text(_json.dumps({"monitor_port": 9}))  # closed port
    assert ports(Workspace.open(tmp_path)) == ([9], True)
    out = call(monitor_check, tmp_path)
    assert out.findings == [] and "not expected to answer" in out.notes[0]
    d = procs.popen([_sys.executable, "-c", "import time; time.sleep(60)"])
    (tmp_path / ".daemon.pid").write_text(f"{d.pid} {_psutil.Process(d.pid).create_time():.3f}\n")
    assert codes(run(tmp_path, "monitor")) == ["monitor.down"]


def test_our_daemons_health_503_with_its_reason_is_an_answer_not_a_down_monitor(tmp_path, procs, serve):
    """Our daemon's /health says 503 and why while it waits for disk or is paused: the monitor works; the cause is
    another check's finding. A foreign monitor's 503, or ours without that body, is still monitor.down."""
    import json as _json
    import sys as _sys

    import psutil as _psutil

    waiting = serve(status=503, body=b'{"healthy": false, "reason": "waiting for disk space"}')
    make_ws(tmp_path, config={"$schema": HEALTHKIT_SCHEMA_ID, "monitor_port": 0})
    (tmp_path / "status").mkdir(exist_ok=True)
    (tmp_path / "status" / "daemon_state.json").write_text(_json.dumps({"monitor_port": waiting.port}))
    d = procs.popen([_sys.executable, "-c", "import time; time.sleep(60)"])
    (tmp_path / ".daemon.pid").write_text(f"{d.pid} {_psutil.Process(d.pid).create_time():.3f}\n")
    report = run(tmp_path, "monitor")
    assert codes(report) == []
    assert "reports the daemon unhealthy: waiting for disk space" in report.healthy[0].details[0]
    broken = serve(status=503)  # a 503 that is not our health answer
    (tmp_path / "status" / "daemon_state.json").write_text(_json.dumps({"monitor_port": broken.port}))
    assert codes(run(tmp_path, "monitor")) == ["monitor.down"]
    foreign = serve(status=503, body=b'{"healthy": false, "reason": "x"}')
    monitor_ws(tmp_path, [foreign.port])
    assert codes(run(tmp_path, "monitor")) == ["monitor.down"]


def test_foreign_setup_without_declared_ports_is_not_probed(tmp_path):
    make_ws(tmp_path, config={}, toml='[paths]\nconfig_schema = "none"\n')
    assert ports(Workspace.open(tmp_path)) == ([], False)


# --- gpu.unhealthy --------------------------------------------------------------------------


class FakeNVML:
    """The slice of pynvml the audit uses; each device is (name, used MiB, total MiB, temperature °C or None)."""

    NVML_TEMPERATURE_GPU = 0

    def __init__(self, devices, *, init_error: Exception | None = None, count_error: Exception | None = None):
        self.devices = devices
        self.init_error = init_error
        self.count_error = count_error
        self.inits = 0

    def nvmlInit(self):
        self.inits += 1
        if self.init_error:
            raise self.init_error

    def nvmlDeviceGetCount(self):
        if self.count_error:
            raise self.count_error
        return len(self.devices)

    def nvmlDeviceGetHandleByIndex(self, i):
        return i

    def nvmlDeviceGetMemoryInfo(self, h):
        _, used, total, _ = self.devices[h]
        return SimpleNamespace(used=used * 1024**2, total=total * 1024**2, free=(total - used) * 1024**2)

    def nvmlDeviceGetTemperature(self, h, sensor):
        temp = self.devices[h][3]
        if temp is None:
            raise RuntimeError("NVMLError_NotSupported")
        return temp

    def nvmlDeviceGetName(self, h):
        return self.devices[h][0].encode()


@pytest.fixture
def fake_nvml(monkeypatch):
    """Install a fake pynvml through healthkit.system.gpu._load_nvml; `fake_nvml(None)` means pynvml is not installed."""

    def install(module):
        monkeypatch.setattr(nvml, "_load_nvml", lambda: module)
        nvml.reset()
        return module

    yield install
    nvml.reset()


def test_healthy_gpu(tmp_path, fake_nvml):
    fake = fake_nvml(FakeNVML([("NVIDIA H200", 716, 24576, 44)]))
    report = run(make_ws(tmp_path), "gpu")
    assert codes(report) == []
    assert [(h.title, h.details) for h in report.healthy] == [
        ("GPU healthy", ["GPU 0 (NVIDIA H200): 716 MB / 24576 MB, 44°C"])
    ]
    assert report.facts["gpu"]["available"] is True and fake.inits == 1


def test_hot_gpu_is_a_warning_and_very_hot_is_critical(tmp_path, fake_nvml):
    fake_nvml(FakeNVML([("A100", 1000, 40960, 88), ("A100", 1000, 40960, 50)]))
    f = only(run(make_ws(tmp_path), "gpu"), "gpu.unhealthy")
    assert f.severity.value == "warning"
    assert f.problem == ["GPU 0 (A100): temperature 88°C is above 85°C"]
    assert f.evidence[0].command.startswith("nvidia-smi --query-gpu=")
    assert f.evidence[0].observed == "GPU 0 (A100): 1000 MB / 40960 MB, 88°C\nGPU 1 (A100): 1000 MB / 40960 MB, 50°C"
    fake_nvml(FakeNVML([("A100", 1000, 40960, 97)]))
    f = only(run(tmp_path, "gpu"), "gpu.unhealthy")
    assert f.severity.value == "critical" and f.urgency == "immediate"


def test_full_gpu_memory(tmp_path, fake_nvml):
    fake_nvml(FakeNVML([("L4", 23800, 24000, None)]))  # no temperature sensor
    f = only(run(make_ws(tmp_path), "gpu"), "gpu.unhealthy")
    assert f.problem == ["GPU 0 (L4): memory 23800 MB / 24000 MB (99%) is above 95%"]
    assert f.recommendations == ["Lower batch size or sequence length, or enable gradient checkpointing"]


def test_gpu_thresholds_from_settings(tmp_path, fake_nvml):
    fake_nvml(FakeNVML([("T4", 100, 16000, 70)]))
    make_ws(tmp_path, toml="[thresholds]\ngpu_max_temp_c = 65\n")
    assert codes(run(tmp_path, "gpu")) == ["gpu.unhealthy"]


def test_no_pynvml_is_not_available(tmp_path, fake_nvml):
    fake_nvml(None)
    r = result(run(make_ws(tmp_path), "gpu"), "gpu")
    assert r.status.value == "ok" and r.findings == []
    assert r.notes == ["GPU: not available (pynvml (nvidia-ml-py) is not installed)"]


def test_no_driver_is_not_available(tmp_path, fake_nvml):
    fake_nvml(FakeNVML([], init_error=RuntimeError("Driver Not Loaded")))
    r = result(run(make_ws(tmp_path), "gpu"), "gpu")
    assert r.notes == ["GPU: not available (RuntimeError: Driver Not Loaded)"]
    assert r.facts["gpu"] == {"available": False, "reason": "RuntimeError: Driver Not Loaded"}


def test_gpu_falling_off_the_bus_is_not_a_crash(tmp_path, fake_nvml):
    fake_nvml(FakeNVML([("A100", 1, 2, 3)], count_error=RuntimeError("GPU is lost")))
    r = result(run(make_ws(tmp_path), "gpu"), "gpu")
    assert r.error is None and r.notes == ["GPU: not available (RuntimeError: GPU is lost)"]


def test_gpu_from_the_status_file_when_nvml_is_unavailable(tmp_path, fake_nvml):
    fake_nvml(None)
    make_ws(
        tmp_path,
        status={"state": "training", "gpu": {"memory_used_mb": "716", "memory_total_mb": 24576, "temperature_c": 91}},
    )
    f = only(run(tmp_path, "gpu"), "gpu.unhealthy")
    assert f.problem == ["GPU in the training status file: temperature 91°C is above 85°C"]
    assert f.evidence[0].observed == "GPU in the training status file: 716 MB / 24576 MB, 91°C"


def test_nvml_wins_over_the_status_file(tmp_path, fake_nvml):
    fake_nvml(FakeNVML([("A100", 1000, 40960, 40)]))
    make_ws(tmp_path, status={"gpu": {"temperature_c": 99}})
    assert codes(run(tmp_path, "gpu")) == []


# --- monitoring.over-budget -------------------------------------------------------------------


def costs(train_time=None, share=None, **hooks):
    tr = {"updated_at": "2025-11-17T10:00:00+00:00", "step": 2693}
    if train_time is not None:
        tr["train_time_s"] = train_time
    if share is not None:
        tr["hook_share"] = share
    if hooks:
        tr["hooks"] = {
            name: {"calls": 100, "total_s": total, "max_s": total / 50, "timeouts": 0} for name, total in hooks.items()
        }
    return {
        "audit_runs": [{"at": "2025-11-17T10:00:00+00:00", "total_s": 0.2, "checks": {"disk": 0.01}}],
        "training": tr,
    }


@pytest.mark.parametrize(
    "hook_s,expected",
    [
        (4.0, []),  # 4%: within budget
        (5.0, []),  # exactly 5% is not over
        (6.0, [("monitoring.over-budget", "warning")]),  # over 5%
        (10.0, [("monitoring.over-budget", "warning")]),  # exactly 10% is not critical
        (12.0, [("monitoring.over-budget", "critical")]),  # over 10%
    ],
)
def test_budget_thresholds(tmp_path, hook_s, expected):
    make_ws(tmp_path, costs=costs(train_time=100.0, status_write=hook_s))
    report = run(tmp_path, "monitoring")
    assert [(f.code, f.severity.value) for f in report.findings] == expected


def test_over_budget_names_the_costliest_hook(tmp_path):
    make_ws(tmp_path, costs=costs(train_time=100.0, status_write=1.0, gpu_query=7.0))
    f = only(run(tmp_path, "monitoring"), "monitoring.over-budget")
    assert f.problem[0] == "Training-side hooks took 8.0% of training time (budget 5%, critical above 10%)"
    assert f.problem[1].startswith("gpu_query: 7.000s over 100 calls")
    assert f.recommendations == ["Make the costliest hook (gpu_query) cheaper or less frequent"]
    assert list(evidence(f)) == ["jq '.training' monitoring_costs.json"]
    assert f.data["share"] == pytest.approx(0.08)


def test_cheap_monitoring_is_healthy(tmp_path):
    make_ws(tmp_path, costs=costs(train_time=1000.0, status_write=2.0))
    report = run(tmp_path, "monitoring")
    assert codes(report) == []
    assert report.healthy[0].details[0] == "hooks take 0.20% of training time"


def test_recorded_share_without_hook_details(tmp_path):
    make_ws(tmp_path, costs=costs(train_time=100.0, share=0.2))
    f = only(run(tmp_path, "monitoring"), "monitoring.over-budget")
    assert f.severity.value == "critical"


def test_thresholds_from_settings_for_costs(tmp_path):
    make_ws(tmp_path, costs=costs(train_time=100.0, x=3.0), toml="[thresholds]\nmonitoring_warn_share = 0.02\n")
    assert codes(run(tmp_path, "monitoring")) == ["monitoring.over-budget"]


@pytest.mark.parametrize(
    "content,note,status",
    [
        (None, "no monitoring_costs.json yet", "ok"),
        ({"audit_runs": []}, "monitoring_costs.json has no training section (no trainer hook costs recorded)", "ok"),
        ({"training": {"step": 3}}, "monitoring_costs.json records no hook share", "ok"),
        ("[1, 2]", "monitoring_costs.json unusable: not an object", "unknown"),
    ],
)
def test_costs_file_absent_or_incomplete(tmp_path, content, note, status):
    make_ws(tmp_path, {"monitoring_costs.json": content} if content is not None else None)
    r = result(run(tmp_path, "monitoring"), "monitoring")
    assert (r.notes, r.status.value, r.findings) == ([note], status, [])


def test_corrupt_costs_file_is_unknown(tmp_path):
    make_ws(tmp_path, {"monitoring_costs.json": '{"training": '})
    r = result(run(tmp_path, "monitoring"), "monitoring")
    assert r.status.value == "unknown" and r.error is None and "not valid JSON" in r.notes[0]


def test_malformed_hook_entries_are_skipped(tmp_path):
    data = costs(train_time=100.0, good=8.0)
    data["training"]["hooks"].update({"bad": "oops", "worse": {"total_s": "n/a"}})
    make_ws(tmp_path, costs=data)
    f = only(run(tmp_path, "monitoring"), "monitoring.over-budget")
    assert f.data["share"] == pytest.approx(0.08)


def test_this_machine_without_nvml_reads_not_available(tmp_path):
    """No fake: on a machine without pynvml (CI, this test's default) the check says so and finds nothing."""
    try:
        import pynvml  # noqa: F401
    except Exception:
        pass
    else:
        pytest.skip("pynvml is installed here: the real-GPU path is not what this test is about")
    nvml.reset()
    try:
        r = result(run(make_ws(tmp_path), "gpu"), "gpu")
    finally:
        nvml.reset()
    assert r.findings == [] and r.error is None
    assert r.notes == ["GPU: not available (pynvml (nvidia-ml-py) is not installed)"]


def test_a_few_seconds_of_training_are_not_judged_unless_a_hook_hung(tmp_path):
    """One-off writes dominate the first seconds; a cut-off hook is news at any time."""
    make_ws(tmp_path, costs=costs(train_time=2.0, status_write=0.5))
    report = run(tmp_path, "monitoring")
    assert codes(report) == [] and "only 2.0s of training recorded" in result(report, "monitoring").notes[0]
    hung = costs(train_time=2.0, status_write=0.5)
    hung["training"]["hooks"]["status_write"]["timeouts"] = 1
    make_ws(tmp_path, costs=hung)
    assert codes(run(tmp_path, "monitoring")) == ["monitoring.over-budget"]


def test_nvml_readings_reach_prometheus(tmp_path, fake_nvml):
    """The gpu check's facts are what the .prom file exports, per device (they once went nowhere)."""
    fake_nvml(FakeNVML([("NVIDIA H200", 716, 24576, 44), ("NVIDIA H200", 2048, 24576, 51)]))
    text = render(run(make_ws(tmp_path), "gpu"), "prom")
    samples = {
        line.split(" ")[0]: float(line.split(" ")[1]) for line in text.splitlines() if line.startswith("healthkit_gpu_")
    }
    ws = f'workspace="{tmp_path}"'
    assert samples[f'healthkit_gpu_temperature_celsius{{gpu="0",source="nvml",{ws}}}'] == 44
    assert samples[f'healthkit_gpu_temperature_celsius{{gpu="1",source="nvml",{ws}}}'] == 51
    assert samples[f'healthkit_gpu_memory_used_bytes{{gpu="1",source="nvml",{ws}}}'] == 2048 * 1024**2


def test_status_file_gpu_reaches_prometheus_without_nvml(tmp_path, fake_nvml):
    fake_nvml(None)
    make_ws(
        tmp_path,
        status={"state": "training", "gpu": {"memory_used_mb": 716, "memory_total_mb": 24576, "temperature_c": 61}},
    )
    text = render(run(tmp_path, "gpu"), "prom")
    assert f'healthkit_gpu_temperature_celsius{{gpu="0",source="status",workspace="{tmp_path}"}} 61.0' in text


def _live_daemon(tmp_path, procs) -> None:
    """A live process recorded in .daemon.pid: the daemon is running as far as the audit can tell."""
    import sys as _sys

    import psutil as _psutil

    d = procs.popen([_sys.executable, "-c", "import time; time.sleep(60)"])
    (tmp_path / ".daemon.pid").write_text(f"{d.pid} {_psutil.Process(d.pid).create_time():.3f}\n")


def test_a_monitor_answering_for_another_workspace_is_not_credited(tmp_path, serve):
    """Issue 31 item 2: /health names its workspace id; only this workspace's id (or none, a hand-listed monitor) counts."""
    import json as _json

    from healthkit.contract.wsid import ensure_workspace_id

    other = serve(
        body=_json.dumps(
            {"healthy": True, "reason": None, "workspace": "a" * 32, "workspace_path": "/srv/other"}
        ).encode()
    )
    monitor_ws(tmp_path, [other.port])
    mine = ensure_workspace_id(tmp_path)
    f = only(run(tmp_path, "monitor"), "monitor.down")
    assert (
        f.data["kind"] == "other-workspace" and f.title == f"Port {other.port} answers for another workspace's monitor"
    )
    assert f.problem == [
        f"`GET /health` on 127.0.0.1:{other.port}: it answers for workspace {'a' * 32} at /srv/other; "
        f"this workspace's id is {mine}"
    ]
    assert "HTTP 200" in next(iter(evidence(f).values()))
    ours = serve(body=_json.dumps({"healthy": True, "workspace": mine}).encode())
    monitor_ws(tmp_path, [ours.port])
    assert codes(run(tmp_path, "monitor")) == []


def test_a_daemon_that_could_not_bind_is_monitor_not_bound(tmp_path, procs, serve):
    """The daemon recorded that its monitor is not bound: a warning of its own, and the config port's answer (another
    workspace's daemon holds it) is not probed as if it were this daemon's."""
    import json as _json

    from healthkit.checks.ports import NOT_BOUND

    squatter = serve()
    make_ws(tmp_path, config={"$schema": HEALTHKIT_SCHEMA_ID, "monitor_port": squatter.port})
    (tmp_path / "status").mkdir(exist_ok=True)
    why = f"monitor not started: port {squatter.port} on 127.0.0.1: Address already in use"
    (tmp_path / "status" / "daemon_state.json").write_text(_json.dumps({"monitor_port": None, "monitor_error": why}))
    _live_daemon(tmp_path, procs)
    report = run(tmp_path, "monitor")
    f = only(report, "monitor.not-bound")
    assert f.severity.value == "warning" and NOT_BOUND.severity == "warning" and why in f.problem[0]
    assert report.healthy == [] and squatter.paths == []


def test_the_daemons_own_port_answering_without_this_workspace_is_not_its_monitor(tmp_path, procs, serve):
    """Where the workspace has an id (its daemon names it in /health), an answer naming no workspace on the daemon's
    port is something else's; without an id (a daemon from before ids) the plain rule stays."""
    import json as _json

    from healthkit.contract.wsid import ensure_workspace_id

    silent = serve(body=b'{"healthy": true}')
    make_ws(tmp_path, config={"$schema": HEALTHKIT_SCHEMA_ID, "monitor_port": 0})
    (tmp_path / "status").mkdir(exist_ok=True)
    (tmp_path / "status" / "daemon_state.json").write_text(_json.dumps({"monitor_port": silent.port}))
    _live_daemon(tmp_path, procs)
    assert codes(run(tmp_path, "monitor")) == []
    ensure_workspace_id(tmp_path)
    f = only(run(tmp_path, "monitor"), "monitor.down")
    assert f.data["kind"] == "other-workspace" and "names no workspace" in f.problem[0]
