"""The lease on one host: parsing and judging it, claiming generations, fencing by the monotonic clock, the child's
guard, and flock that answers ENOSYS (Lustre without -o flock). On one machine the audit says what it always said."""

from __future__ import annotations

import errno
import fcntl
import json
import os
import time

import pytest

from healthkit.contract.lease import Lease, lease_path, parse_lease, read_lease, this_host
from healthkit.core.api import audit
from healthkit.trainer import pidfile
from healthkit.trainer.layout import Layout
from healthkit.trainer.lease import LeaseGuard, LeaseHeld, LeaseKeeper, fence_after

from .conftest import write_json


def keeper(lay: Layout, lease_s: float = 2.0, margin_s: float = 0.5, pid: int | None = None) -> LeaseKeeper:
    return LeaseKeeper(lay.pid_file, "a" * 32, pid or os.getpid(), time.time(), lease_s, margin_s, lay.status_dir)


@pytest.fixture
def lay(tmp_path):
    lay = Layout.of(tmp_path)
    (tmp_path / "status").mkdir()
    return lay


def foreign(lay: Layout, renewed_ago: float, lease_s: float = 2.0, **kw) -> Lease:
    le = Lease(
        "node9",
        "boot-of-node9",
        4242,
        1000.0,
        kw.pop("generation", 3),
        lease_s,
        time.time() - renewed_ago,
        time.time() - 100,
        "b" * 32,
        "tok",
        4242,
        **kw,
    )
    (lay.base / ".daemon.lease").write_text(json.dumps(le.to_json()))
    return le


def test_lease_beside_the_pid_file():
    from pathlib import Path

    assert lease_path(Path("/w/.daemon.pid")) == Path("/w/.daemon.lease")
    assert lease_path(Path("/w/run/daemon.pidfile")) == Path("/w/run/daemon.pidfile.lease")


def test_parse_refuses_what_is_not_a_lease():
    assert parse_lease([]) == "it is not a JSON object"
    assert parse_lease({"host": "h", "boot_id": "b", "pid": 0, "generation": 1}) == "it has no valid pid"
    assert "renewed_at" in parse_lease(
        {
            "host": "h",
            "boot_id": "b",
            "pid": 5,
            "generation": 1,
            "start_time": 1,
            "lease_seconds": 3,
            "acquired_at": 1,
            "renewed_at": float("nan"),
        }
    )


def test_fresh_means_renewed_within_lease_plus_margin(lay):
    le = foreign(lay, renewed_ago=2.2)
    assert le.fresh(time.time(), margin_s=0.5) and not le.fresh(time.time(), margin_s=0.1)
    assert not le.is_local()
    here = this_host()
    assert Lease(here.host, here.boot_id, 1, 1.0, 1, 1.0, 1.0, 1.0).is_local()
    assert not Lease(here.host, "another-boot", 1, 1.0, 1, 1.0, 1.0, 1.0).is_local()  # a reboot is another life


def test_generations_are_claimed_once_and_the_superseded_holder_is_fenced(lay):
    a = keeper(lay)
    assert a.acquire() is None and a.generation == 1
    b = keeper(lay, pid=os.getpid())
    b.acquire()  # our own PID: not "another live daemon" (where flock works, the lock would have kept b out)
    assert b.generation == 2
    assert a.renew() is False and a.fenced and "superseded by generation 2" in a.fenced_why
    assert b.renew() is True and not b.fenced
    os.close(os.open(lay.base / ".daemon.lease.gen-3", os.O_CREAT | os.O_WRONLY))  # another daemon claimed 3 first
    c = keeper(lay)
    c.acquire()
    assert c.generation == 4  # it never reuses a claimed generation


def test_refuses_a_fresh_lease_of_another_host_and_takes_an_expired_one(lay):
    foreign(lay, renewed_ago=0.1)
    with pytest.raises(LeaseHeld, match="host node9 holds the workspace's lease"):
        keeper(lay).acquire()
    assert read_lease(lay.base / ".daemon.lease").lease.host == "node9"  # untouched
    foreign(lay, renewed_ago=10)
    k = keeper(lay)
    prev = k.acquire()
    assert prev.host == "node9" and k.generation == 4
    assert read_lease(lay.base / ".daemon.lease").lease.host == this_host().host


def test_fenced_by_its_own_monotonic_clock_when_it_cannot_renew(lay, monkeypatch):
    k = keeper(lay, lease_s=2.0, margin_s=0.5)
    k.acquire()
    assert fence_after(2.0, 0.5) == 1.5
    monkeypatch.setattr(k, "_write", lambda lease: (_ for _ in ()).throw(OSError(errno.EIO, "I/O error")))
    assert k.renew() is False
    k.check()
    assert not k.fenced
    k.last_ok -= 1.6
    k.check()
    assert k.fenced and "could not be renewed" in k.fenced_why


def test_a_full_disk_is_no_reason_to_stop(lay, monkeypatch):
    k = keeper(lay)
    k.acquire()
    k.last_ok -= 10
    monkeypatch.setattr(
        k, "_write", lambda lease: (_ for _ in ()).throw(OSError(errno.ENOSPC, "No space left on device"))
    )
    k.renew()
    k.check()
    assert not k.fenced


def test_release_says_the_lease_holds_nothing(lay):
    k = keeper(lay)
    k.acquire()
    k.release()
    le = read_lease(lay.base / ".daemon.lease").lease
    assert le.released_at is not None and not le.fresh(time.time(), 60)


def test_guard_fences_when_another_host_holds_the_lease(lay):
    k = keeper(lay)
    k.acquire()
    g = LeaseGuard(lay.pid_file, 1, 0.5, lay.status_dir)
    g.poll()
    assert g.fenced_why is None and g.may_commit()
    foreign(lay, renewed_ago=0.0, generation=2)
    g.poll()
    assert "held by host node9" in g.fenced_why and not g.may_commit()


def test_guard_renews_for_its_dead_daemon_and_fences_when_it_cannot(lay, monkeypatch):
    import subprocess
    import sys

    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    k = keeper(lay, pid=p.pid)  # the daemon that wrote the lease is gone
    k.acquire()
    g = LeaseGuard(lay.pid_file, 1, 0.5, lay.status_dir)
    g.poll()  # first sight of the renewal
    g.poll()  # no new renewal, its daemon is dead: the child renews it
    le = read_lease(lay.base / ".daemon.lease").lease
    assert le.renewed_by == os.getpid() and le.generation == 1 and g.fenced_why is None
    monkeypatch.setattr(
        "healthkit.trainer.lease.write_using_reserve",
        lambda *a: (_ for _ in ()).throw(OSError(errno.EROFS, "Read-only file system")),
    )
    g.last_ok -= 2
    g.poll()
    assert g.fenced_why and "not renewed" in g.fenced_why


def test_guard_follows_a_local_daemon_that_adopted_it(lay):
    k = keeper(lay)
    k.acquire()
    g = LeaseGuard(lay.pid_file, 1, 0.5, lay.status_dir)
    keeper(lay).acquire()  # a new daemon on this host (generation 2) adopts the running child
    g.poll()
    assert g.fenced_why is None and g.generation == 2 and g.may_commit()


def test_flock_enosys_is_caught_and_the_lease_fences(lay, monkeypatch):
    real = fcntl.flock

    def no_flock(fd, op):
        raise OSError(errno.ENOSYS, "Function not implemented")

    monkeypatch.setattr(pidfile.fcntl, "flock", no_flock)
    lock = pidfile.DaemonLock(lay)
    assert lock.acquire() is True  # no flock here: the daemon runs, the lease keeps others out
    assert pidfile.is_locked(lay) is False
    lock.release()
    monkeypatch.setattr(pidfile.fcntl, "flock", real)


def test_host_local_lock_hook(lay, monkeypatch):
    monkeypatch.setenv(pidfile.HOST_LOCAL_LOCKS_ENV, "1")
    assert pidfile.lock_path(lay).name == f".daemon.lock.{os.uname().nodename}"


def test_on_one_machine_a_local_lease_changes_nothing(tmp_path):
    """Our own host's lease leaves the PID-file rules as they were: a dead PID is still daemon.dead."""
    import subprocess
    import sys

    write_json(tmp_path / "config.json", {"base_model": "m"})
    (tmp_path / "queue" / "inbox").mkdir(parents=True)
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    (tmp_path / ".daemon.pid").write_text(f"{p.pid}\n")
    here = this_host()
    le = Lease(here.host, here.boot_id, p.pid, 1.0, 1, 180.0, time.time(), time.time())
    (tmp_path / ".daemon.lease").write_text(json.dumps(le.to_json()))
    assert [f.code for f in audit(tmp_path, select=["daemon"], record_costs=False).findings] == ["daemon.dead"]


def test_a_released_or_malformed_lease_of_another_host_is_not_a_daemon(tmp_path):
    write_json(tmp_path / "config.json", {"base_model": "m"})
    (tmp_path / "queue" / "inbox").mkdir(parents=True)
    (tmp_path / "queue" / "inbox" / "a.jsonl").write_text("{}\n")
    lay = Layout.of(tmp_path)
    foreign(lay, renewed_ago=1.0, released_at=time.time())
    assert [f.code for f in audit(tmp_path, select=["daemon"], record_costs=False).findings] == ["daemon.not-running"]
    (tmp_path / ".daemon.lease").write_text("{not json")
    assert [f.code for f in audit(tmp_path, select=["daemon"], record_costs=False).findings] == ["daemon.not-running"]


def test_remote_and_expired_leases_judged_by_content_not_mtime(tmp_path):
    write_json(tmp_path / "config.json", {"base_model": "m"})
    (tmp_path / "queue" / "inbox").mkdir(parents=True)
    (tmp_path / ".daemon.pid").write_text("1 1000.00\n")  # PID 1 here is init: never "reused" for another host's daemon
    lay = Layout.of(tmp_path)
    foreign(lay, renewed_ago=1.0)
    old = time.time() - 3600
    os.utime(tmp_path / ".daemon.lease", (old, old))  # an NFS attribute cache may show any mtime
    r = audit(tmp_path, select=["daemon"], record_costs=False)
    assert [f.code for f in r.findings] == ["daemon.remote"]
    assert r.findings[0].problem[0].startswith("The daemon runs on node9, renewed 1 s ago")
    foreign(lay, renewed_ago=600)
    os.utime(tmp_path / ".daemon.lease")  # a fresh mtime does not make it alive
    r = audit(tmp_path, select=["daemon"], record_costs=False)
    assert [(f.code, f.severity.value) for f in r.findings] == [("daemon.lease-expired", "critical")]
    assert "node9" in r.findings[0].problem[0] and "last renewed" in r.findings[0].problem[0]
    assert [x.id for x in r.findings[0].fixes] == ["start-daemon"]


def test_a_dead_hosts_stale_lock_is_no_reason_to_refuse_once_its_lease_expired(lay):
    """NFSv3 keeps a dead client's lock until that host reboots: held here by a live process standing in for it."""
    import subprocess
    import sys

    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import fcntl, sys, time\n"
            f"f = open({str(lay.lock_file)!r}, 'w'); fcntl.flock(f, fcntl.LOCK_EX); print('held', flush=True)\n"
            "time.sleep(60)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        foreign(lay, renewed_ago=0.1)
        assert pidfile.DaemonLock(lay).acquire() is False  # fresh: the lock stands
        assert pidfile.running_daemon(lay) is not None
        foreign(lay, renewed_ago=600)
        assert pidfile.running_daemon(lay) is None
        lock = pidfile.DaemonLock(lay)
        assert lock.acquire(before_pid_file=lambda: keeper(lay).acquire()) is True
        assert read_lease(lay.base / ".daemon.lease").lease.generation == 4  # node9's generation 3 is superseded
        lock.release()
    finally:
        holder.kill()
        holder.wait()
