"""The monitor's live page (`GET /`) and the short in-memory history behind `/history`.

The page is static: its script fetches `/status`, `/history` and `/findings` every few
seconds and writes what it gets with ``textContent`` and SVG nodes, never as markup, so a
file name or a finding text cannot inject anything. It has no controls: the monitor stays
read-only. The history keeps the last points of the file in training in memory only (the
durable record is trainer_state.json's log_history); it restarts with the daemon.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from pathlib import Path
from typing import Any, TypeGuard

from healthkit.system.fsutil import ReadProblem, read_json

HISTORY_POINTS = 1000
REFRESH_MS = 3000


def _num(v: Any) -> TypeGuard[float]:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and v == v and v not in (float("inf"), float("-inf"))


class LiveHistory:
    """(step, loss) and (step, val_loss) points of the current file, appended as the status file changes; thread-safe."""

    def __init__(self, maxlen: int = HISTORY_POINTS) -> None:
        self._lock = threading.Lock()
        self.file: str | None = None
        self.train: deque[tuple[float, float]] = deque(maxlen=maxlen)
        self.eval: deque[tuple[float, float]] = deque(maxlen=maxlen)
        self.updated: float | None = None

    def observe(self, status: dict[str, Any]) -> None:
        """Add the status file's loss and validation loss, each at the step where it was measured
        (`loss_step`, `val_loss_step`), once per measurement: never the latest value again at the current step."""
        with self._lock:
            if status.get("current_file") != self.file:
                self.file = status.get("current_file")
                self.train.clear()
                self.eval.clear()
            for points, key in ((self.train, "loss"), (self.eval, "val_loss")):
                step, value = status.get(f"{key}_step"), status.get(key)
                if _num(step) and _num(value) and (not points or step > points[-1][0]):
                    points.append((float(step), float(value)))
                    self.updated = time.time()

    def to_dict(self) -> dict[str, Any]:
        with self._lock:
            return {
                "file": self.file,
                "train": [list(p) for p in self.train],
                "eval": [list(p) for p in self.eval],
                "updated": self.updated,
                "max_points": self.train.maxlen,
            }


def latest_findings(reports: Path, shown: str | None = None) -> dict[str, Any]:
    """A summary of `<reports>/latest.json` (verdict and findings), or why there is none; ``looked_in`` names the file
    (as ``shown``, e.g. relative to the workspace), so a page that finds nothing says where it looked."""
    path = reports / "latest.json"
    latest = shown or str(path)
    where = {"looked_in": latest}
    try:
        data = read_json(path)
    except ReadProblem as exc:
        if exc.kind == "missing":
            return {
                "available": False,
                **where,
                "reason": f"no audit report yet in {latest} (where `healthkit schedule` writes, from healthkit.toml's "
                "[paths] reports; an `audit --output` to another folder is not read)",
            }
        return {"available": False, **where, "reason": exc.message}
    if not isinstance(data, dict) or not isinstance(data.get("findings"), list):
        return {"available": False, **where, "reason": f"{latest} is not a healthkit JSON report"}
    findings = [
        {"code": f.get("code"), "severity": f.get("severity"), "title": f.get("title")}
        for f in data["findings"]
        if isinstance(f, dict)
    ]
    return {
        "available": True,
        **where,
        "generated_at": data.get("generated_at"),
        "status": data.get("status"),
        "findings": findings,
    }


def workspace_findings(base: Path) -> dict[str, Any]:
    """`latest_findings` of the reports folder the workspace's settings name (read on each call: an edit applies)."""
    from healthkit.contract.settings import SettingsError, reports_folder

    try:
        folder = reports_folder(base)
    except SettingsError as exc:
        return {"available": False, "looked_in": None, "reason": f"reports folder unknown: {exc}"}
    latest = folder / "latest.json"
    inside = latest.is_relative_to(base)
    return latest_findings(folder, str(latest.relative_to(base)) if inside else str(latest))


PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'">
<meta name="viewport" content="width=device-width, initial-scale=1"><title>healthkit daemon: __WS_NAME__</title>
<style>
body{font-family:system-ui,sans-serif;margin:0 auto;max-width:980px;padding:12px 24px;color:#222}
h1{font-size:1.4em}h2{font-size:1.1em;border-bottom:2px solid #eee;margin-top:1.2em}
.grid{display:grid;grid-template-columns:repeat(auto-fit,minmax(200px,1fr));gap:8px}
.card{background:#f6f6f6;border-radius:6px;padding:8px 12px}.card b{display:block;font-size:.8em;color:#666;text-transform:uppercase}
.critical{color:#c62828}.warning{color:#b26a00}.info{color:#1565c0}.ok{color:#2e7d32}
#chart{width:100%;max-width:720px;height:auto;background:#fff;border:1px solid #ddd}#err{color:#c62828}
code{background:#eee;padding:0 .25em;border-radius:3px}
</style></head><body>
<h1>healthkit daemon <span id="health"></span></h1>
<p id="workspace">Workspace <code>__WS_PATH__</code> (id <code>__WS_ID__</code>)</p>
<p>Read-only view of this daemon; refreshes every __REFRESH_S__ s. <span id="updated"></span> <span id="err"></span></p>
<div class="grid">
<div class="card"><b>daemon state</b><span id="state">…</span></div>
<div class="card"><b>pause / stop</b><span id="control">…</span></div>
<div class="card"><b>file in training</b><span id="file">…</span></div>
<div class="card"><b>step</b><span id="step">…</span></div>
<div class="card"><b>ETA</b><span id="eta">…</span></div>
<div class="card"><b>loss / val_loss</b><span id="loss">…</span></div>
</div>
<h2>Loss</h2>
<svg id="chart" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 720 260" role="img" aria-label="training and validation loss"></svg>
<h2>Queue</h2><ul id="queue"></ul>
<h2>Latest audit</h2><p id="audit"></p><ul id="findings"></ul>
<script>
"use strict";
const NS = "http://www.w3.org/2000/svg";
const $ = (id) => document.getElementById(id);
function txt(id, v) { $(id).textContent = (v === null || v === undefined) ? "—" : String(v); }
function el(tag, attrs, text) {
  const n = document.createElementNS(NS, tag);
  for (const k in attrs) n.setAttribute(k, attrs[k]);
  if (text !== undefined) n.textContent = text;
  return n;
}
function li(parent, text, cls) { const n = document.createElement("li"); n.textContent = text; if (cls) n.className = cls; parent.appendChild(n); }
function eta(s) {
  if (typeof s !== "number") return null;
  const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60);
  return (h ? h + "h " : "") + m + "m " + Math.round(s % 60) + "s";
}
function fmt(v) { return typeof v === "number" ? v.toPrecision(4) : "—"; }
function chart(h) {
  const svg = $("chart"); while (svg.firstChild) svg.removeChild(svg.firstChild);
  const L = 56, T = 16, W = 720 - L - 12, H = 260 - T - 36, all = h.train.concat(h.eval);
  svg.appendChild(el("rect", {x: L, y: T, width: W, height: H, fill: "none", stroke: "#999"}));
  if (!all.length) { svg.appendChild(el("text", {x: 360, y: 130, "text-anchor": "middle", fill: "#666"}, "no loss logged yet")); return; }
  let x0 = Math.min(...all.map(p => p[0])), x1 = Math.max(...all.map(p => p[0]));
  let y0 = Math.min(...all.map(p => p[1])), y1 = Math.max(...all.map(p => p[1]));
  if (x1 === x0) { x0 -= 1; x1 += 1; } if (y1 === y0) { y0 -= 0.5; y1 += 0.5; }
  const sx = x => L + (x - x0) / (x1 - x0) * W, sy = y => T + H - (y - y0) / (y1 - y0) * H;
  for (let i = 0; i <= 4; i++) {
    const y = y0 + (y1 - y0) * i / 4;
    svg.appendChild(el("text", {x: L - 4, y: sy(y) + 4, "font-size": 10, "text-anchor": "end"}, y.toPrecision(3)));
    svg.appendChild(el("line", {x1: L, x2: L + W, y1: sy(y), y2: sy(y), stroke: "#eee"}));
  }
  svg.appendChild(el("text", {x: L, y: 256, "font-size": 10}, "step " + x0));
  svg.appendChild(el("text", {x: L + W, y: 256, "font-size": 10, "text-anchor": "end"}, "step " + x1));
  [[h.train, "#1f77b4", "training loss"], [h.eval, "#d62728", "validation loss"]].forEach(([pts, color, label], i) => {
    if (pts.length) svg.appendChild(el("polyline", {class: "series", "data-label": label, fill: "none", stroke: color,
      "stroke-width": 2, points: pts.map(p => sx(p[0]).toFixed(1) + "," + sy(p[1]).toFixed(1)).join(" ")}));
    // the legend sits in the bottom margin, between the step labels: inside the plot it hid the lines it names
    svg.appendChild(el("text", {class: "legend", x: L + W / 2 - 130 + 150 * i, y: 256, "font-size": 11, fill: color}, label + " (" + pts.length + ")"));
  });
}
function show(st, h, rep) {
  const d = st.daemon || {}, t = st.training || {}, q = st.queue || {};
  txt("health", st.healthy ? "(healthy)" : "(unhealthy: " + (st.reason || "?") + ")");
  $("health").className = st.healthy ? "ok" : "critical";
  txt("state", d.state); txt("file", t.current_file || d.current_file);
  txt("step", (t.step ?? "—") + " / " + (t.total_steps ?? "?"));
  txt("eta", eta(t.eta_seconds)); txt("loss", fmt(t.loss) + " / " + fmt(t.val_loss));
  txt("control", (d.state === "paused" ? "paused" + (d.pause_reason ? " (" + d.pause_reason + ")" : "") : "not paused") +
      (t.state === "stopping" ? "; stopping" : ""));
  const ql = $("queue"); ql.textContent = "";
  Object.keys(q).sort().forEach(k => li(ql, k + ": " + q[k]));
  chart(h);
  const fl = $("findings"); fl.textContent = "";
  if (!rep.available) { txt("audit", rep.reason); }
  else {
    txt("audit", "Verdict " + String(rep.status).toUpperCase() + " at " + rep.generated_at + ": " + rep.findings.length +
        " finding(s) (" + rep.looked_in + ")");
    rep.findings.forEach(f => li(fl, "[" + f.severity + "] " + f.code + ": " + f.title, String(f.severity)));
  }
  txt("updated", "Updated " + new Date().toLocaleTimeString() + ".");
}
async function refresh() {
  try {
    const get = p => fetch(p, {cache: "no-store"}).then(r => r.json());
    const [st, h, rep] = await Promise.all([get("/status"), get("/history"), get("/findings")]);
    show(st, h, rep); $("err").textContent = "";
  } catch (e) { txt("err", "monitor not reachable: " + e); }
}
refresh(); setInterval(refresh, __REFRESH_MS__);
</script></body></html>
""".replace("__REFRESH_MS__", str(REFRESH_MS)).replace("__REFRESH_S__", str(REFRESH_MS // 1000))


def page(workspace_path: str | None, workspace_id: str | None) -> str:
    """The live page naming its workspace (path and id), so that two daemons' pages are never mistaken."""
    from html import escape

    path = workspace_path or "?"
    return (
        PAGE.replace("__WS_NAME__", escape(Path(path).name or path))
        .replace("__WS_PATH__", escape(path))
        .replace("__WS_ID__", escape(workspace_id or "none"))
    )
