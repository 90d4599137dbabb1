"""The daemon's HTTP monitor on 127.0.0.1: `/health` (200 or 503), `/status` (JSON), `/metrics` (Prometheus text),
and a read-only live page: `/` (trainer/dashboard.py) with the data it fetches, `/history` and `/findings` (JSON)."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from healthkit.contract.states import DAEMON_STATES

Snapshot = Callable[[], dict[str, Any]]
PATHS = ["/", "/health", "/status", "/metrics", "/history", "/findings"]

METRICS = (
    ("step", "healthkit_training_step", "global step of the file being trained"),
    ("total_steps", "healthkit_training_total_steps", "steps this file will train"),
    ("loss", "healthkit_training_loss", "last training loss"),
    ("val_loss", "healthkit_training_val_loss", "last validation loss"),
    ("val_train_gap", "healthkit_training_val_train_gap", "validation loss minus training loss"),
    ("eta_seconds", "healthkit_training_eta_seconds", "estimated seconds left for this file"),
)


def _num(v: Any) -> str | None:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    return repr(float(v))


def _label(v: str) -> str:
    return v.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def render_metrics(snap: dict[str, Any]) -> str:
    out: list[str] = []

    def metric(name: str, help_: str, value: Any, labels: str = "", kind: str = "gauge") -> None:
        v = _num(value)
        if v is None:
            return
        if not any(line.startswith(f"# HELP {name} ") for line in out):
            out.extend([f"# HELP {name} {help_}", f"# TYPE {name} {kind}"])
        out.append(f"{name}{{{labels}}} {v}" if labels else f"{name} {v}")

    d = snap.get("daemon", {})
    t = snap.get("training", {})
    metric("healthkit_daemon_up", "1 while the daemon serves this endpoint", 1)
    metric("healthkit_daemon_healthy", "1 when /health answers 200", 1 if snap.get("healthy") else 0)
    for state in DAEMON_STATES:
        metric(
            "healthkit_daemon_state",
            "daemon state (1 for the current one)",
            1 if d.get("state") == state else 0,
            f'state="{state}"',
        )
    metric("healthkit_daemon_restarts", "restarts by the supervisor", d.get("restarts") or 0, kind="counter")
    for key, name, help_ in METRICS:
        metric(name, help_, t.get(key))
    gpu = t.get("gpu") or {}
    metric("healthkit_gpu_memory_used_mb", "GPU memory used (MB)", gpu.get("memory_used_mb"))
    metric("healthkit_gpu_memory_total_mb", "GPU memory total (MB)", gpu.get("memory_total_mb"))
    metric("healthkit_gpu_temperature_celsius", "GPU temperature", gpu.get("temperature_c"))
    for folder, n in sorted((snap.get("queue") or {}).items()):
        metric("healthkit_queue_files", "queue files per folder", n, f'folder="{_label(folder)}"')
    share = (snap.get("costs") or {}).get("hook_share")
    metric("healthkit_monitoring_hook_share", "monitoring hooks' share of training time", share)
    return "\n".join(out) + "\n"


class Monitor:
    def __init__(
        self,
        snapshot: Snapshot,
        port: int,
        host: str = "127.0.0.1",
        history: Snapshot | None = None,
        findings: Snapshot | None = None,
        workspace: str | None = None,
        workspace_path: str | None = None,
    ):
        """``workspace``: the workspace id (healthkit.contract.wsid) that `/health` names, so an audit credits only its own
        monitor; ``workspace_path``: what the live page's heading names."""
        self.snapshot = snapshot
        self.workspace = workspace
        self.workspace_path = workspace_path
        self.history = history or (lambda: {"file": None, "train": [], "eval": []})
        self.findings = findings or (lambda: {"available": False, "reason": "no reports folder"})
        monitor = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0]
                if path in ("/", "/history", "/findings"):
                    self._page(path)
                    return
                try:
                    snap = monitor.snapshot()
                except Exception as exc:
                    snap = {"healthy": False, "reason": f"snapshot failed: {exc}"}
                if path == "/health":
                    body = json.dumps(
                        {
                            "healthy": bool(snap.get("healthy")),
                            "reason": snap.get("reason"),
                            "workspace": monitor.workspace,
                            "workspace_path": monitor.workspace_path,
                        }
                    )
                    self._send(200 if snap.get("healthy") else 503, body, "application/json")
                elif path == "/status":
                    self._send(200, json.dumps(snap, indent=2, sort_keys=True, default=str), "application/json")
                elif path == "/metrics":
                    self._send(200, render_metrics(snap), "text/plain; version=0.0.4; charset=utf-8")
                else:
                    self._send(404, json.dumps({"error": "not found", "paths": PATHS}), "application/json")

            def _page(self, path: str) -> None:
                """The live page and its two data feeds; none of them reads the snapshot."""
                if path == "/":
                    from .dashboard import page

                    self._send(200, page(monitor.workspace_path, monitor.workspace), "text/html; charset=utf-8")
                    return
                source = monitor.history if path == "/history" else monitor.findings
                try:
                    body = source()
                except Exception as exc:
                    body = {"error": f"{type(exc).__name__}: {exc}"}
                self._send(200, json.dumps(body, default=str), "application/json")

            def _send(self, code: int, body: str, ctype: str) -> None:
                data = body.encode("utf-8")
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(data)))
                self.send_header("Cache-Control", "no-store")
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:  # quiet: scrapes are not news
                pass

        self.server = ThreadingHTTPServer((host, port), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.5}, name="healthkit-monitor", daemon=True
        )

    def start(self) -> Monitor:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
