"""Two real workspaces configured with one monitor port (issue 31, item 2): each daemon binds a port of its own, its
`/health` and live page name its workspace, and neither audit credits the other's monitor."""

from __future__ import annotations

import json
import socket
import urllib.error
import urllib.request

from healthkit.contract.wsid import read_workspace_id
from healthkit.trainer.daemon import start_daemon

from .conftest import all_logs, hk, read_json, wait_for


def _get(port: int, path: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as exc:  # a 503 /health is still an answer with a body
        return exc.code, exc.read()


def _audit(base) -> dict:
    r = hk("audit", str(base), "--format", "json", "--select", "monitor")
    assert "Traceback" not in r.stderr, r.stderr
    return json.loads(r.stdout)


def test_two_workspaces_on_one_port(make_ws) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    a, b = make_ws("a", monitor_port=port), make_ws("b", monitor_port=port)
    try:
        start_daemon(a.base)
        wait_for(lambda: read_json(a.daemon_state).get("ready_at"), 60, what="daemon a ready\n" + all_logs(a))
        start_daemon(b.base)
        wait_for(lambda: read_json(b.daemon_state).get("ready_at"), 60, what="daemon b ready\n" + all_logs(b))
        sa, sb = read_json(a.daemon_state), read_json(b.daemon_state)
        assert sa["monitor_port"] == port and sa.get("monitor_error") is None
        assert isinstance(sb["monitor_port"], int) and sb["monitor_port"] not in (0, port), (
            sb
        )  # any free one, published
        assert any(f"configured port {port}" in w for w in sb["warnings"]), sb["warnings"]

        for lay, st in ((a, sa), (b, sb)):
            wsid = read_workspace_id(lay.base)
            assert wsid
            _, body = _get(st["monitor_port"], "/health")
            assert json.loads(body)["workspace"] == wsid
            code, page = _get(st["monitor_port"], "/")
            assert code == 200 and str(lay.base).encode() in page and wsid.encode() in page

        for lay, st in ((a, sa), (b, sb)):
            rep = _audit(lay.base)
            assert [f["code"] for f in rep["findings"]] == [], rep["findings"]
            assert rep["healthy"][0]["details"][0].startswith(f"Port {st['monitor_port']} answers"), rep["healthy"]

        # b's port listed by hand, as before the daemon published its own: a's monitor answers there, and is not b's.
        (b.base / "healthkit.toml").write_text(f"[monitor]\nports = [{port}]\n")
        rep = _audit(b.base)
        assert [(f["code"], f["data"]["kind"]) for f in rep["findings"]] == [("monitor.down", "other-workspace")]
        assert read_workspace_id(a.base) in rep["findings"][0]["problem"][0]
    finally:
        for lay in (a, b):
            hk("daemon", "stop", str(lay.base))
