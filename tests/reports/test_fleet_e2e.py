"""The fleet chain end to end, with the real components: the job `healthkit schedule` prints, node_exporter's
textfile collector, Prometheus with the shipped rules, a federating Prometheus, Alertmanager with the shipped
route, and a webhook receiver in this test.

Two hosts are two node_exporters with their own textfile folders; host A has two workspaces, host B one.
A daemon killed on host A pages once, for that workspace and host; its heal resolves it; a workspace folder
removed between runs says so in its own series; host B going down makes its workspace's report stale; every
query of the shipped Grafana dashboard returns data. The configs run are the repository's files (alerts/),
with only addresses, intervals and `for:` durations replaced in copies.
"""

from __future__ import annotations

import http.server
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psutil
import pytest
import yaml

from tests.conftest import require_tool

# Real training or real services for seconds: `-m "not slow"` leaves it out.
pytestmark = pytest.mark.slow

ALERTS = Path(__file__).resolve().parents[2] / "alerts"
DEADLINE_S = 30.0  # per awaited condition; the whole test takes far less on an idle machine


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def until(what: str, probe: Callable[[], Any], timeout: float = DEADLINE_S) -> Any:
    """Poll ``probe`` until it returns something truthy; fail naming ``what`` at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(0.1)


def http_get(url: str) -> Any:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return json.loads(r.read()) if "json" in r.headers.get("Content-Type", "") else r.read()
    except OSError:
        return None


class Receiver:
    """Alertmanager's webhook receiver: keeps every payload with the time it arrived."""

    def __init__(self) -> None:
        self.payloads: list[tuple[float, dict[str, Any]]] = []
        received = self.payloads

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                received.append((time.monotonic(), json.loads(body)))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/healthkit"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def matching(self, alertname: str, status: str, since: float = 0.0) -> list[tuple[float, dict[str, Any]]]:
        return [
            (t, p)
            for t, p in list(self.payloads)
            if t >= since and p.get("status") == status and p.get("groupLabels", {}).get("alertname") == alertname
        ]


class Stack:
    """The running components and their ports; everything started is killed at teardown (by PID)."""

    def __init__(self, tmp: Path, procs: Any) -> None:
        self.tmp, self.procs = tmp, procs

    def start(self, name: str, argv: list[str], ready_url: str) -> None:
        log = open(self.tmp / f"{name}.log", "wb")  # noqa: SIM115 - closed with the process at teardown
        self.procs.popen(argv, stdout=log, stderr=subprocess.STDOUT, cwd=self.tmp)
        until(
            f"{name} to answer {ready_url} (log: {self.tmp / f'{name}.log'})", lambda: http_get(ready_url) is not None
        )

    def query(self, port: int, expr: str) -> list[dict[str, Any]]:
        data = http_get(f"http://127.0.0.1:{port}/api/v1/query?" + urllib.parse.urlencode({"query": expr}))
        assert data is None or data.get("status") == "success", data
        return data["data"]["result"] if data else []


def values(result: list[dict[str, Any]], label: str = "workspace") -> dict[str, float]:
    return {r["metric"].get(label, ""): float(r["value"][1]) for r in result}


# --- workspaces and their daemons -------------------------------------------------------------------------

DAEMON = "import time\nwhile True: time.sleep(1)\n"


def make_workspace(path: Path, step: int) -> None:
    """A home-grown training setup that healthkit.toml describes, training and healthy."""
    (path / "status").mkdir(parents=True)
    (path / "queue" / "inbox").mkdir(parents=True)
    (path / "config.json").write_text(json.dumps({"base_model": "tiny", "save_total_limit": 2, "eval_steps": 50}))
    (path / "training_daemon.py").write_text(DAEMON)
    (path / "healthkit.toml").write_text('[processes]\ndaemon = ["training_daemon.py"]\n')
    now = datetime.now(UTC)
    (path / "status" / "training_status.json").write_text(
        json.dumps(
            {
                "state": "training",
                "step": step,
                "total_steps": 1000,
                "loss": 2.0 - step / 1000,
                "val_loss": 2.1 - step / 1000,
                "val_train_gap": 0.1,
                "started_at": now.isoformat(),
                "updated_at": now.isoformat(),
            }
        )
    )
    t0 = now.timestamp() - 3600  # its event log, as a daemon writes it: an hour of training (goodput for the dashboard)
    (path / "logs").mkdir()
    (path / "logs" / "events.jsonl").write_text(
        "".join(
            json.dumps(e) + "\n"
            for e in (
                {"ts": t0, "event": "daemon-start"},
                {"ts": t0 + 1, "event": "file-start", "step": 0},
                {"ts": t0 + 60, "event": "training", "step": 0},
            )
        )
    )


def start_daemon(procs: Any, ws: Path) -> subprocess.Popen:
    d = procs.popen([sys.executable, "training_daemon.py"], cwd=ws)
    until("the daemon to run", lambda: "training_daemon.py" in " ".join(psutil.Process(d.pid).cmdline()))
    (ws / ".daemon.pid").write_text(f"{d.pid} {psutil.Process(d.pid).create_time():.2f}\n")
    return d


def scheduled_job(*args: str | Path) -> str:
    """The shell command of the crontab line `healthkit schedule ARGS` prints (what cron would run)."""
    out = subprocess.run(
        [sys.executable, "-m", "healthkit.cli", "schedule", *map(str, args), "--every", "15m"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    line = next(ln for ln in out.splitlines() if ln.startswith("*/15 * * * * "))
    return line[len("*/15 * * * * ") :].removesuffix(" >/dev/null 2>&1").replace("\\%", "%")


def run_job(command: str) -> float:
    t0 = time.monotonic()
    subprocess.run(["sh", "-c", command], capture_output=True, timeout=120)
    return time.monotonic() - t0


# --- the shipped configs, made to run here ---------------------------------------------------------------


def rules_copy(tmp: Path) -> Path:
    text = (ALERTS / "healthkit.rules.yml").read_text(encoding="utf-8")
    shortened, n = re.subn(r"(?m)^(\s+for:) \S+$", r"\1 1s", text)
    assert n >= 6, "the rule file's for: durations were not found"
    out = tmp / "healthkit.rules.yml"
    out.write_text(shortened, encoding="utf-8")
    return out


def prometheus_config(tmp: Path, rules: Path, am_port: int, node_ports: list[int]) -> Path:
    cfg = yaml.safe_load((ALERTS / "prometheus.yml").read_text(encoding="utf-8"))
    cfg["global"].update(scrape_interval="1s", evaluation_interval="1s")
    cfg["rule_files"] = [str(rules)]
    cfg["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"] = [f"127.0.0.1:{am_port}"]
    (node,) = cfg["scrape_configs"]
    assert len(node["static_configs"][0]["targets"]) == 2
    node["static_configs"][0]["targets"] = [f"127.0.0.1:{p}" for p in node_ports]
    out = tmp / "prometheus.yml"
    out.write_text(yaml.safe_dump(cfg), encoding="utf-8")
    return out


def federate_config(tmp: Path, site_port: int) -> Path:
    cfg = yaml.safe_load((ALERTS / "prometheus-federate.yml").read_text(encoding="utf-8"))
    cfg["global"]["scrape_interval"] = "1s"
    cfg["scrape_configs"][0]["static_configs"][0]["targets"] = [f"127.0.0.1:{site_port}"]
    out = tmp / "prometheus-federate.yml"
    out.write_text(yaml.safe_dump(cfg), encoding="utf-8")
    return out


def alertmanager_config(tmp: Path, receiver_url: str) -> Path:
    cfg = yaml.safe_load((ALERTS / "alertmanager.yml").read_text(encoding="utf-8"))
    assert cfg["route"]["group_by"] == ["alertname", "instance"]
    cfg["route"].update(group_wait="1s", group_interval="1s")
    (receiver,) = cfg["receivers"]
    receiver["webhook_configs"][0]["url"] = receiver_url
    out = tmp / "alertmanager.yml"
    out.write_text(yaml.safe_dump(cfg), encoding="utf-8")
    return out


def dashboard_queries() -> list[tuple[str, str]]:
    """(panel title, PromQL) of every panel target, the template variables at `All` (`.*`)."""
    dash = json.loads((ALERTS / "grafana-dashboard.json").read_text(encoding="utf-8"))
    out = []
    for panel in dash["panels"]:
        for target in panel["targets"]:
            expr = re.sub(r"\$(instance|workspace)\b", ".*", target["expr"])
            assert "$" not in expr, expr
            out.append((panel["title"], expr))
    return out


# --- the test ----------------------------------------------------------------------------------------------


@pytest.fixture
def binaries() -> dict[str, str]:
    return {
        "prometheus": require_tool("prometheus", "prometheus"),
        "alertmanager": require_tool("prometheus-alertmanager", "prometheus-alertmanager"),
        "node_exporter": require_tool("prometheus-node-exporter", "prometheus-node-exporter"),
    }


def test_fleet_alerts_page_once_per_problem_and_resolve(tmp_path, procs, binaries):
    tmp = tmp_path
    host_a, host_b = tmp / "host-a", tmp / "host-b"
    a1, a2, b1 = host_a / "ws-llama", host_a / "ws-mistral", host_b / "ws-qwen"
    for i, ws in enumerate((a1, a2, b1)):
        make_workspace(ws, step=100 * (i + 2))
    daemons = {ws: start_daemon(procs, ws) for ws in (a1, a2, b1)}
    for host in (host_a, host_b):
        (host / "textfile").mkdir()

    job_a = scheduled_job(a1, a2, "--output", host_a / "reports", "--textfile-dir", host_a / "textfile")
    job_b = scheduled_job(b1, "--textfile-dir", host_b / "textfile")
    assert job_a.count(" audit ") == 1 and "--textfile" in job_a  # one audit per workspace feeds both outputs

    stack = Stack(tmp, procs)
    receiver = Receiver()
    ports = {k: free_port() for k in ("node_a", "node_b", "am", "prom", "global")}
    for host, key in ((host_a, "node_a"), (host_b, "node_b")):
        stack.start(
            key,
            [
                binaries["node_exporter"],
                f"--web.listen-address=127.0.0.1:{ports[key]}",
                "--collector.disable-defaults",
                "--collector.textfile",
                f"--collector.textfile.directory={host / 'textfile'}",
            ],
            f"http://127.0.0.1:{ports[key]}/metrics",
        )
    stack.start(
        "alertmanager",
        [
            binaries["alertmanager"],
            f"--config.file={alertmanager_config(tmp, receiver.url)}",
            f"--storage.path={tmp / 'am-data'}",
            f"--web.listen-address=127.0.0.1:{ports['am']}",
            "--cluster.listen-address=",
        ],
        f"http://127.0.0.1:{ports['am']}/-/ready",
    )
    prom_cfg = prometheus_config(tmp, rules_copy(tmp), ports["am"], [ports["node_a"], ports["node_b"]])
    stack.start(
        "prometheus",
        [
            binaries["prometheus"],
            f"--config.file={prom_cfg}",
            f"--storage.tsdb.path={tmp / 'prom-data'}",
            f"--web.listen-address=127.0.0.1:{ports['prom']}",
        ],
        f"http://127.0.0.1:{ports['prom']}/-/ready",
    )
    stack.start(
        "prometheus-global",
        [
            binaries["prometheus"],
            f"--config.file={federate_config(tmp, ports['prom'])}",
            f"--storage.tsdb.path={tmp / 'global-data'}",
            f"--web.listen-address=127.0.0.1:{ports['global']}",
        ],
        f"http://127.0.0.1:{ports['global']}/-/ready",
    )
    inst_a, inst_b = f"127.0.0.1:{ports['node_a']}", f"127.0.0.1:{ports['node_b']}"
    prom = ports["prom"]

    # One scheduled run per host: every workspace reported, with its host.
    run_job(job_a)
    run_job(job_b)
    seen = until(
        "healthkit_status of all three workspaces",
        lambda: (r := stack.query(prom, "healthkit_status")) and len(r) == 3 and r,
    )
    assert {(s["metric"]["workspace"], s["metric"]["instance"]) for s in seen} == {
        (str(a1), inst_a),
        (str(a2), inst_a),
        (str(b1), inst_b),
    }
    assert values(seen) == {str(a1): 0, str(a2): 0, str(b1): 0}, "the fleet starts healthy"

    # Kill A1's daemon (a PID file naming a process that exited), next scheduled run on host A.
    t_kill = time.monotonic()
    daemons[a1].kill()
    daemons[a1].wait()
    job_after_kill_s = run_job(job_a)
    t_alert, fired = until(
        "HealthkitDaemonDead at the receiver",
        lambda: (m := receiver.matching("HealthkitDaemonDead", "firing")) and m[0],
    )
    (alert,) = fired["alerts"]
    assert alert["labels"]["workspace"] == str(a1) and alert["labels"]["instance"] == inst_a
    assert alert["labels"]["severity"] == "critical"
    critical = stack.query(prom, 'ALERTS{alertstate="firing",severity="critical"}')
    assert [(c["metric"]["alertname"], c["metric"]["workspace"]) for c in critical] == [
        ("HealthkitDaemonDead", str(a1))
    ]

    # Every dashboard query has data (predict_linear needs two scrapes: waited for, not assumed).
    empty = {}
    for title, expr in dashboard_queries():
        result = until(f"dashboard panel {title!r}: {expr}", lambda expr=expr: stack.query(prom, expr))
        empty[title] = len(result)
    assert all(empty.values()), empty
    # The federating Prometheus has every workspace, with its host and its site.
    federated = until(
        "federated healthkit_status",
        lambda: (r := stack.query(ports["global"], 'healthkit_status{site="site-a"}')) and len(r) == 3 and r,
    )
    assert {s["metric"]["instance"] for s in federated} == {inst_a, inst_b}

    # Heal it the way a person (or `schedule --heal`) would, next run: the resolved notification arrives.
    t_heal = time.monotonic()
    fix = subprocess.run(
        [sys.executable, "-m", "healthkit.cli", "fix", str(a1), "--safe", "--only", "daemon.dead"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert fix.returncode == 0, fix.stdout + fix.stderr
    fix_s = time.monotonic() - t_heal
    job_after_heal_s = run_job(job_a)
    t_resolved, resolved = until(
        "the resolved HealthkitDaemonDead notification",
        lambda: (m := receiver.matching("HealthkitDaemonDead", "resolved", t_alert)) and m[0],
    )
    assert [(a["status"], a["labels"]["workspace"]) for a in resolved["alerts"]] == [("resolved", str(a1))]
    dead_notes = [p for _, p in receiver.payloads if p["groupLabels"].get("alertname") == "HealthkitDaemonDead"]
    assert {a["labels"]["workspace"] for p in dead_notes for a in p["alerts"]} == {str(a1)}, "only A1 ever paged"

    # A workspace folder removed between runs: its own series say so, the others keep theirs.
    before_b = values(stack.query(prom, "healthkit_training_step"))[str(b1)]
    daemons[a2].kill()
    daemons[a2].wait()
    shutil.rmtree(a2)
    run_job(job_a)
    until("A2's status to turn unknown", lambda: values(stack.query(prom, "healthkit_status")).get(str(a2)) == 3)
    assert values(stack.query(prom, 'healthkit_check_status{check="workspace"}')) == {str(a2): 3}
    steps = until(
        "A2's training series to go",
        lambda: (v := values(stack.query(prom, "healthkit_training_step"))) and str(a2) not in v and v,
    )
    assert steps == {str(a1): 200, str(b1): before_b}
    assert values(stack.query(prom, "healthkit_status"))[str(a1)] == 0
    page = (host_a / "reports" / "index.html").read_text(encoding="utf-8")
    assert str(a2) in page and "does not exist" in page and str(a1) in page

    # Host B goes down: its workspace's report is stale, per workspace; host A's are not.
    t_down = time.monotonic()
    node_b = next(p for p in procs.popens if "--collector.textfile" in p.args and str(host_b) in " ".join(p.args))
    node_b.kill()
    node_b.wait()
    t_stale, stale = until(
        "HealthkitReportStale for host B", lambda: (m := receiver.matching("HealthkitReportStale", "firing")) and m[0]
    )
    assert [(a["labels"]["workspace"], a["labels"]["instance"]) for a in stale["alerts"]] == [(str(b1), inst_b)]

    evidence = {
        "kill_to_alert_s": round(t_alert - t_kill, 2),
        "heal_to_resolved_s": round(t_resolved - t_heal, 2),
        "host_down_to_stale_s": round(t_stale - t_down, 2),
        "of_which_the_job_after_the_kill_s": round(job_after_kill_s, 2),
        "of_which_fix_s": round(fix_s, 2),
        "of_which_the_job_after_the_fix_s": round(job_after_heal_s, 2),
        "firing_payload": fired,
        "resolved_payload": resolved,
        "stale_payload": stale,
    }
    (tmp / "evidence.json").write_text(json.dumps(evidence, indent=2))
    if os.environ.get("HEALTHKIT_FLEET_EVIDENCE"):
        Path(os.environ["HEALTHKIT_FLEET_EVIDENCE"]).write_text(json.dumps(evidence, indent=2))


def test_alertmanager_groups_a_hosts_dead_daemons_into_one_notification(tmp_path, procs, binaries):
    """Three HealthkitDaemonDead alerts on one host (one per workspace) are one message; another host's is its own."""
    receiver, stack, port = Receiver(), Stack(tmp_path, procs), free_port()
    stack.start(
        "alertmanager",
        [
            binaries["alertmanager"],
            f"--config.file={alertmanager_config(tmp_path, receiver.url)}",
            f"--storage.path={tmp_path / 'am-data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--cluster.listen-address=",
        ],
        f"http://127.0.0.1:{port}/-/ready",
    )
    alerts = [
        {"labels": {"alertname": "HealthkitDaemonDead", "severity": "critical", "instance": host, "workspace": ws}}
        for host, ws in [
            ("gpu-a:9100", "/srv/one"),
            ("gpu-a:9100", "/srv/two"),
            ("gpu-a:9100", "/srv/three"),
            ("gpu-b:9100", "/srv/four"),
        ]
    ]
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}/api/v2/alerts",
        data=json.dumps(alerts).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(req, timeout=10) as r:
        assert r.status == 200
    until("a notification per host", lambda: len(receiver.matching("HealthkitDaemonDead", "firing")) >= 2)
    by_host = {
        p["groupLabels"]["instance"]: sorted(a["labels"]["workspace"] for a in p["alerts"])
        for _, p in receiver.matching("HealthkitDaemonDead", "firing")
    }
    assert by_host == {"gpu-a:9100": ["/srv/one", "/srv/three", "/srv/two"], "gpu-b:9100": ["/srv/four"]}
    assert len(receiver.payloads) == 2
