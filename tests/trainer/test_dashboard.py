"""The monitor's live page: units for the in-memory history and the routes, and a real daemon seen through Chromium."""

from __future__ import annotations

import json
import re
import socket
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from healthkit.trainer.daemon import start_daemon
from healthkit.trainer.dashboard import latest_findings, workspace_findings
from healthkit.trainer.health_server import Monitor
from tests import chromium

from .conftest import all_logs, hk, queue_file, read_json, wait_for


def _get(port: int, path: str) -> tuple[int, str, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as r:
            return r.status, r.headers.get("Content-Type", ""), r.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers.get("Content-Type", ""), exc.read().decode()


def test_latest_findings_summarises_or_says_why_not(tmp_path: Path) -> None:
    latest = tmp_path / "latest.json"
    missing = latest_findings(tmp_path)
    assert missing["available"] is False and missing["looked_in"] == str(latest)
    assert missing["reason"].startswith(f"no audit report yet in {latest} (where `healthkit schedule` writes")
    latest.write_text("{not json")
    assert latest_findings(tmp_path)["available"] is False and "not valid JSON" in latest_findings(tmp_path)["reason"]
    latest.write_text(
        json.dumps(
            {
                "status": "warning",
                "generated_at": "t",
                "findings": [
                    {"code": "checkpoints.bloat", "severity": "warning", "title": "<b>12</b>", "evidence": ["long"]}
                ],
            }
        )
    )
    assert latest_findings(tmp_path)["findings"] == [
        {"code": "checkpoints.bloat", "severity": "warning", "title": "<b>12</b>"}
    ]


def test_the_live_page_reads_reports_where_the_settings_and_schedule_put_them(tmp_path: Path) -> None:
    """healthkit.toml's `[paths] reports` is where `healthkit schedule` writes and where the live page reads; when
    nothing is there the page says where it looked (issue 24 item 4)."""
    from healthkit.scheduled.schedule import render_schedule

    ws, elsewhere = tmp_path / "ws", tmp_path / "audits"
    ws.mkdir()
    (ws / "healthkit.toml").write_text(f'[paths]\nreports = "{elsewhere}"\n')
    (ws / "reports").mkdir()
    (ws / "reports" / "latest.json").write_text(
        json.dumps({"status": "ok", "findings": []})
    )  # not the configured place
    assert f"--output {elsewhere}/" in render_schedule(ws)
    got = workspace_findings(ws)
    assert (
        got["available"] is False
        and got["looked_in"] == str(elsewhere / "latest.json")
        and str(elsewhere) in got["reason"]
    )
    elsewhere.mkdir()
    (elsewhere / "latest.json").write_text(
        json.dumps(
            {
                "status": "warning",
                "generated_at": "t",
                "findings": [{"code": "disk.low-space", "severity": "warning", "title": "Disk 93% full"}],
            }
        )
    )
    m = Monitor(lambda: {}, 0, findings=lambda: workspace_findings(ws)).start()
    try:
        feed = json.loads(_get(m.port, "/findings")[2])
        assert feed["available"] and feed["findings"][0]["code"] == "disk.low-space"
        assert feed["looked_in"] == str(elsewhere / "latest.json")
        assert "rep.looked_in" in _get(m.port, "/")[2]  # the page shows it beside the verdict
    finally:
        m.stop()
    (ws / "healthkit.toml").unlink()  # the default: the workspace's reports/, said relative to it
    assert workspace_findings(ws) == {
        "available": True,
        "looked_in": "reports/latest.json",
        "generated_at": None,
        "status": "ok",
        "findings": [],
    }
    (ws / "healthkit.toml").write_text("[paths\n")
    assert workspace_findings(ws)["reason"].startswith("reports folder unknown: ")


def test_monitor_routes_page_and_feeds_and_keeps_status_metrics(tmp_path: Path) -> None:
    snap = {"healthy": True, "daemon": {"state": "running"}, "training": {"step": 3}, "queue": {"pending": 1}}
    m = Monitor(lambda: snap, 0, history=lambda: {"train": [[1, 2.0]], "eval": []}, findings=lambda: 1 / 0).start()
    try:
        code, ctype, body = _get(m.port, "/")
        assert code == 200 and ctype.startswith("text/html") and "fetch(" in body and "/history" in body
        assert "<form" not in body and "method" not in body.lower().replace("createelementns", "")  # read-only page
        assert json.loads(_get(m.port, "/status")[2]) == snap
        assert "healthkit_training_step 3.0" in _get(m.port, "/metrics")[2]
        assert json.loads(_get(m.port, "/history")[2])["train"] == [[1, 2.0]]
        assert (
            "ZeroDivisionError" in json.loads(_get(m.port, "/findings")[2])["error"]
        )  # a failing feed is JSON, not a crash
        assert _get(m.port, "/nope")[0] == 404
        assert m.server.server_address[0] == "127.0.0.1"
    finally:
        m.stop()


def _step(dom: str) -> int | None:
    m = re.search(r'<span id="step">(\d+) / (\d+)</span>', dom)
    return int(m.group(1)) if m else None


@pytest.mark.slow
def test_live_dashboard_of_a_real_daemon_in_chromium(make_ws, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("HEALTHKIT_TRAINER_STEP_SLEEP_S", "0.3")  # slow enough to watch
    lay = make_ws(max_steps=400, monitor_port=port, eval_steps=20, save_steps=50)
    (lay.base / "reports").mkdir()
    (lay.base / "reports" / "latest.json").write_text(
        json.dumps(
            {
                "status": "warning",
                "generated_at": "2024-05-01T12:00:00Z",
                "findings": [
                    {"code": "config.doc-drift", "severity": "warning", "title": "<img src=x onerror=alert(1)> drifts"}
                ],
            }
        )
    )
    queue_file(lay, "watched.jsonl", n=400, seed=4)
    start_daemon(lay.base)
    try:
        wait_for(lambda: (read_json(lay.status).get("step") or 0) >= 3, 180, 0.2, "training to start\n" + all_logs(lay))
        url = f"http://127.0.0.1:{port}/"
        first = chromium.dump_dom(url, budget_ms=3000)
        assert "watched.jsonl" in first.stdout, first.stdout[-3000:] + first.log[-2000:]
        step1 = _step(first.stdout)
        assert step1 is not None, first.stdout

        def later() -> int | None:
            s2 = _step(chromium.dump_dom(url, budget_ms=3000).stdout)
            return s2 if s2 is not None and s2 > step1 else None

        step2 = wait_for(later, 120, 1.0, "a higher step in a later dump")
        dom = chromium.dump_dom(url, budget_ms=3000)
        assert re.search(
            r'<polyline class="series" data-label="training loss"[^>]* points="[^"]+ [^"]+"', dom.stdout
        ), dom.stdout
        assert "&lt;img src=x onerror=alert(1)&gt; drifts" in dom.stdout and "<img" not in dom.stdout
        # issue 31: the page names its workspace, and the legend sits below the plot (y 256 > its bottom, 240)
        assert str(lay.base) in dom.stdout and (lay.base / ".healthkit-id").read_text().strip() in dom.stdout
        legends = re.findall(r'<text class="legend"[^>]* y="(\d+)"', dom.stdout)
        assert legends and all(int(y) > 240 for y in legends), dom.stdout
        assert dom.script_errors == [], dom.script_errors
        shot = tmp_path / "dashboard.png"
        chromium.screenshot(url, shot, size=(1000, 1000), budget_ms=3000)
        chromium.assert_not_blank(shot)
        chromium.keep(shot, "dashboard.png")
        assert step2 > step1
    finally:
        hk("daemon", "stop", str(lay.base))


def _eval_points(text: str) -> list[tuple[float, float]]:
    """The validation points an HTML report's SVG chart draws (pixel positions), from its polyline."""
    m = re.search(r'<polyline class="series" data-label="validation loss"[^>]* points="([^"]+)"', text)
    return [tuple(map(float, p.split(","))) for p in m.group(1).split()] if m else []


@pytest.mark.slow
def test_a_real_daemon_charts_each_evaluation_once_at_its_step(make_ws, monkeypatch: pytest.MonkeyPatch) -> None:
    """The live page's /history and the HTML report's chart hold as many validation points as the checkpoint's
    log_history has eval_loss entries, at those steps (issue 24 item 3): never the latest value at the current step."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("HEALTHKIT_TRAINER_STEP_SLEEP_S", "0.25")  # evaluations seconds apart: /history sees each
    lay = make_ws(max_steps=100, monitor_port=port, eval_steps=10, save_steps=20, save_total_limit=5, logging_steps=2)
    queue_file(lay, "charted.jsonl", n=200, seed=5)
    start_daemon(lay.base)
    try:
        ck = lay.base / "current_model" / "checkpoint-40" / "trainer_state.json"
        wait_for(
            lambda: ck.is_file() and (read_json(lay.status).get("step") or 0) >= 45,
            300,
            0.2,
            "checkpoint-40 and step 45\n" + all_logs(lay),
        )
        evals = [(float(e["step"]), float(e["eval_loss"])) for e in read_json(ck)["log_history"] if "eval_loss" in e]
        assert [e[0] for e in evals] == [10.0, 20.0, 30.0, 40.0]
        hist = json.loads(_get(port, "/history")[2])
        live = [tuple(p) for p in hist["eval"] if p[0] <= 40]
        assert live == evals, (hist, evals)
        assert all(p[0] % 10 == 0 for p in hist["eval"]), hist  # every point at an evaluation's step
        page = hk("audit", str(lay.base), "--format", "html", "--select", "validation,training,checkpoints").stdout
        m = re.search(r"(\d+) validation evaluations \(latest [0-9.]+ at step (\d+)", page)
        assert m, page[-3000:]
        count, latest = int(m.group(1)), int(m.group(2))
        # evaluations ran at 10, 20, ... latest: the newest checkpoint's, plus the status file's newer one at its own step
        assert latest % 10 == 0 and latest >= 40 and count == latest // 10, (count, latest)
        assert len(_eval_points(page)) == count
    finally:
        hk("daemon", "stop", str(lay.base))
