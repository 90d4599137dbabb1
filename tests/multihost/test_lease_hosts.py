"""A daemon on another host is judged by its lease: sibling namespaces over one folder, real processes, a power cut."""

from __future__ import annotations

import json
import subprocess
import sys
import time

from healthkit.contract.lease import lease_path, read_lease
from healthkit.core.api import audit

from .conftest import (
    FAKE_DAEMON,
    HOST_LOCAL_LOCKS,
    REPO,
    audit_from,
    lease_ws,
    wait_for,
)


def codes_of(report: dict) -> list[str]:
    return sorted(f["code"] for f in report["findings"])


def start_fake(host, ws, env=None):
    p = host.spawn([sys.executable, str(FAKE_DAEMON), str(ws)], cwd=ws, env=env)
    wait_for(
        lambda: any(x.startswith(("ready", "held", "locked")) for x in host.output(p)) or p.poll() is not None,
        what=f"the fake daemon on {host.name}",
    )
    return p


def test_remote_daemon_is_info_naming_its_host_never_pid_reused(tmp_path, hosts):
    ws = lease_ws(tmp_path / "ws", lease_s=30.0, margin_s=1.0)
    node1, login1 = hosts("node1"), hosts("login1")
    d = start_fake(node1, ws)
    assert node1.output(d)[-1] == "ready generation=1", node1.output(d)
    assert (ws / ".daemon.pid").read_text().split()[0] == "1"  # PID 1 of node1's namespace
    lease = read_lease(lease_path(ws / ".daemon.pid")).lease
    assert lease is not None and lease.host == "node1" and lease.pid == 1 and lease.workspace_id
    assert (ws / ".healthkit-id").read_text().strip() == lease.workspace_id

    report = audit_from(login1, ws, "daemon", "queue")  # a host that cannot see node1's processes
    assert codes_of(report) == ["daemon.remote"]
    f = report["findings"][0]
    assert f["severity"] == "info"
    assert "The daemon runs on node1, renewed" in f["problem"][0] and " s ago" in f["problem"][0]
    assert report["facts"]["daemon"]["state"] == "remote" and report["facts"]["daemon"]["host"] == "node1"
    # From this (root) namespace node1's process is visible under another PID: still no pid-reused, no orphan.
    assert [x.code for x in audit(ws, select=["daemon", "queue"], record_costs=False).findings] == ["daemon.remote"]


def test_power_cut_turns_critical_after_the_lease_and_names_host_and_renewal(tmp_path, hosts):
    lease_s, margin = 2.0, 0.5
    ws = lease_ws(tmp_path / "ws", lease_s=lease_s, margin_s=margin)
    node1, login1 = hosts("node1"), hosts("login1")
    start_fake(node1, ws)
    assert codes_of(audit_from(login1, ws, "daemon")) == ["daemon.remote"]
    node1.power_cut()
    cut = time.time()
    last = read_lease(lease_path(ws / ".daemon.pid")).lease
    assert last is not None

    def expired():
        r = audit(ws, select=["daemon"], record_costs=False)
        return r if [f.code for f in r.findings] == ["daemon.lease-expired"] else None

    r = wait_for(expired, timeout=30, what="daemon.lease-expired")
    seen = time.time()
    assert seen - last.renewed_at >= lease_s + margin  # never before the lease and the margin have passed
    assert seen - cut < lease_s + margin + 10
    f = r.findings[0]
    assert f.severity.value == "critical"
    assert "daemon on node1" in f.problem[0] and "last renewed" in f.problem[0]
    assert f.data["host"] == "node1" and f.data["generation"] == 1
    assert [x.code for x in audit(ws, select=["daemon"], record_costs=False).findings] == ["daemon.lease-expired"]
    assert "daemon.lease-expired" in codes_of(audit_from(login1, ws, "daemon"))


def test_second_host_cannot_start_while_the_lease_is_fresh_even_with_host_local_locks(tmp_path, hosts):
    ws = lease_ws(tmp_path / "ws", lease_s=30.0, margin_s=1.0)
    node1, node2 = hosts("node1"), hosts("node2")
    start_fake(node1, ws, env=HOST_LOCAL_LOCKS)
    before = (ws / ".daemon.pid").read_bytes()
    p2 = start_fake(node2, ws, env=HOST_LOCAL_LOCKS)  # its own flock succeeds: only the lease keeps it out
    assert p2.wait(timeout=30) == 73
    assert any(x.startswith("held host node1 holds the workspace's lease") for x in node2.output(p2)), node2.output(p2)
    assert (ws / ".daemon.pid").read_bytes() == before  # the loser wrote nothing
    assert read_lease(lease_path(ws / ".daemon.pid")).lease.host == "node1"


def test_fix_safe_starts_nothing_while_another_host_holds_a_fresh_lease(tmp_path, hosts):
    ws = lease_ws(tmp_path / "ws", lease_s=30.0, margin_s=1.0)
    (ws / "healthkit.toml").write_text(
        (ws / "healthkit.toml")
        .read_text()
        .replace("[daemon]", f'daemon_command = ["{sys.executable}", "{FAKE_DAEMON}", "{{base}}"]\n[daemon]')
    )
    start_fake(hosts("node1"), ws, env=HOST_LOCAL_LOCKS)
    (ws / ".daemon.pid").unlink()  # what a local audit once called daemon.not-running, with a start offered
    out = subprocess.run(
        [sys.executable, "-m", "healthkit.cli", "fix", str(ws), "--safe", "--yes"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        env={**__import__("os").environ, **HOST_LOCAL_LOCKS},
    )
    assert out.returncode in (0, 1), out.stdout + out.stderr
    journal = ws / "logs" / "healthkit-fix.jsonl"
    assert not journal.exists() or '"start"' not in journal.read_text(), journal.read_text()
    assert "daemon.remote" not in out.stdout or "Start the daemon" not in out.stdout, out.stdout
    assert read_lease(lease_path(ws / ".daemon.pid")).lease.host == "node1"
    assert not (ws / ".daemon.pid").exists()
    from healthkit.core.workspace import Workspace
    from healthkit.fix.fixes_daemon import _start_refusal

    assert "host node1 holds the workspace's lease" in (_start_refusal(Workspace.open(ws)) or "")


def test_a_host_that_cannot_renew_fences_itself_before_another_may_start(tmp_path, hosts):
    """Where flock is node-local, the lease is the only fence: node1 loses write access to the storage (its mount goes
    read-only and empty, as when the storage is gone), stops before its lease can expire, and node2 starts only after
    it expired."""
    lease_s, margin = 3.0, 1.0
    ws = lease_ws(tmp_path / "ws", lease_s=lease_s, margin_s=margin)
    node1, node2 = hosts("node1"), hosts("node2")
    gone = tmp_path / "gone"
    gone.mkdir()
    d1 = node1.spawn([sys.executable, str(FAKE_DAEMON), str(ws)], cwd=tmp_path, env=HOST_LOCAL_LOCKS)
    wait_for(lambda: "ready generation=1" in node1.output(d1), what="node1's daemon")
    import psutil

    ns_pid = psutil.Process(d1.pid).children()[0].pid
    subprocess.run(["nsenter", "-t", str(ns_pid), "-m", "mount", "-r", "--bind", str(gone), str(ws)], check=True)
    cut = time.monotonic()
    started = None
    while started is None and time.monotonic() - cut < 30:
        p2 = start_fake(node2, ws, env=HOST_LOCAL_LOCKS)
        if "ready generation=2" in node2.output(p2):
            started = time.monotonic()
        else:
            assert p2.wait(timeout=30) == 73, node2.output(p2)
    assert started is not None, "node2 never started"
    fenced = [x for x in node1.output(d1) if x.startswith("fenced after")]
    assert d1.wait(timeout=10) == 76 and fenced, node1.output(d1)
    took = float(fenced[0].split()[2].rstrip("s:"))
    assert took <= lease_s - margin + 1.0  # fenced at lease - margin on its own clock (plus one renewal interval)
    assert started - cut >= lease_s  # node2 only once node1's lease and the margin had passed
    lease = read_lease(lease_path(ws / ".daemon.pid")).lease
    assert lease.host == "node2" and lease.generation == 2
    assert json.loads((ws / ".daemon.lease").read_text())["generation"] == 2
