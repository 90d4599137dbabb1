"""The lease's writers: the daemon claims and renews `.daemon.lease`; its training child watches it and fences itself.

Why: on shared storage flock may be node-local or absent, so two hosts could each believe they hold a workspace. A
daemon claims a new *generation* by creating `.daemon.lease.gen-N` with O_EXCL (atomic on NFS and Lustre), refuses to
start while another host's lease is fresh, and renews ``renewed_at`` from a thread (no I/O on the step path). When it
cannot renew for ``fence_after`` seconds of its own monotonic clock (the lease length minus the clock-skew margin,
so before any reader calls it expired), or finds its generation superseded, it is *fenced*: training stops without
committing a checkpoint. A renewal that fails for lack of disk space is written through the reserve and, failing that,
is no reason to stop (the disk-full logic owns that). The training child runs a `LeaseGuard` the same way: it fences
itself when the lease is not renewed in time or names another host; when its daemon died on this host, it renews the
lease itself, so that an orphan runs on (and is adopted) exactly as before on one machine.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import secrets
import threading
import time
from pathlib import Path

from healthkit.contract.lease import HostId, Lease, lease_path, read_lease, this_host
from healthkit.system.procs import probe, start_time_matches

from .state import NO_SPACE_ERRNOS, write_using_reserve

log = logging.getLogger("healthkit.trainer.lease")

LEASE_SECONDS_ENV = "HEALTHKIT_LEASE_SECONDS"  # the daemon's lease length; default [daemon] lease_seconds
MARGIN_ENV = "HEALTHKIT_LEASE_MARGIN_SECONDS"  # default [thresholds] clock_skew_seconds
GENERATION_ENV = "HEALTHKIT_LEASE_GENERATION"  # given to the training child: the generation it trains under
DEFAULT_LEASE_SECONDS = 180.0
RENEWALS_PER_LEASE = 6


def fence_after(lease_s: float, margin_s: float) -> float:
    """Seconds without a renewal after which a holder stops training: before any reader can call the lease expired."""
    return lease_s - min(margin_s, lease_s / 2)


def lease_settings(base: Path) -> tuple[float, float]:
    """(lease length, clock-skew margin): the environment (tests), else healthkit.toml, else the defaults."""
    lease_s, margin_s = DEFAULT_LEASE_SECONDS, 60.0
    try:
        from healthkit.contract.settings import load_settings

        settings, _ = load_settings(base)
        lease_s = float(getattr(getattr(settings, "daemon", None), "lease_seconds", lease_s))
        margin_s = float(settings.thresholds.clock_skew_seconds)
    except Exception:
        pass
    try:
        lease_s = float(os.environ.get(LEASE_SECONDS_ENV) or lease_s)
        margin_s = float(os.environ.get(MARGIN_ENV) or margin_s)
    except ValueError:
        pass
    return lease_s, margin_s


class LeaseHeld(Exception):
    """Another host holds a fresh lease (or won the race for the next generation); nothing may start."""

    def __init__(self, message: str, lease: Lease | None = None):
        super().__init__(message)
        self.lease = lease


def _claim_path(path: Path, generation: int) -> Path:
    return path.with_name(f"{path.name}.gen-{generation}")


class LeaseKeeper:
    """The daemon's lease: ``acquire`` once (after the daemon lock), then ``start`` the renewing thread."""

    def __init__(
        self,
        pid_file: Path,
        workspace_id: str | None,
        pid: int,
        start_time: float,
        lease_s: float,
        margin_s: float,
        status_dir: Path | None = None,
    ):
        self.path = lease_path(pid_file)
        self.workspace_id = workspace_id
        self.pid, self.start_time = pid, start_time
        self.lease_s, self.margin_s = lease_s, margin_s
        self.fence_after = fence_after(lease_s, margin_s)
        self.status_dir = status_dir
        self.here: HostId = this_host()
        self.holder = secrets.token_hex(8)
        self.generation = 0
        self.acquired_at = 0.0
        self.fenced_why: str | None = None  # read by the daemon's loop: a plain attribute, no I/O
        self.last_ok = time.monotonic()
        self.renewals = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def fenced(self) -> bool:
        return self.fenced_why is not None

    def _lease(self, now: float, released: float | None = None) -> Lease:
        return Lease(
            self.here.host,
            self.here.boot_id,
            self.pid,
            self.start_time,
            self.generation,
            self.lease_s,
            now,
            self.acquired_at,
            self.workspace_id,
            self.holder,
            self.pid,
            released,
        )

    def _write(self, lease: Lease) -> None:
        write_using_reserve(self.path, json.dumps(lease.to_json(), sort_keys=True) + "\n", self.status_dir)

    def acquire(self) -> Lease | None:
        """Claim the next generation; the lease it replaces (or None). Raises LeaseHeld while another host's is fresh."""
        found = read_lease(self.path)
        prev = found.lease
        now = time.time()
        if prev is not None and not prev.is_local(self.here) and prev.fresh(now, self.margin_s):
            raise LeaseHeld(
                f"host {prev.host} holds the workspace's lease (generation {prev.generation}, daemon PID "
                f"{prev.pid} there), renewed {now - prev.renewed_at:.0f} s ago; it expires "
                f"{prev.expires_at(self.margin_s) - now:.0f} s from now unless renewed",
                prev,
            )
        if prev is not None and prev.is_local(self.here) and prev.fresh(now, self.margin_s) and prev.pid != self.pid:
            live = probe(prev.pid)  # where flock is missing (ENOSYS), a live daemon here is seen by its lease
            if (
                live.alive
                and live.info is not None
                and start_time_matches(live.info, prev.start_time)
                and prev.renewed_by in (None, prev.pid)
            ):
                raise LeaseHeld(
                    f"daemon PID {prev.pid} on this host holds the workspace's lease (generation {prev.generation})",
                    prev,
                )
        gen = max(prev.generation if prev else 0, self._newest_claim()) + 1
        try:
            fd = os.open(_claim_path(self.path, gen), os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
        except FileExistsError:
            raise LeaseHeld(f"another daemon claimed lease generation {gen} at the same moment") from None
        try:
            os.write(fd, f"{self.here.host} {self.pid} {self.holder}\n".encode())
        finally:
            os.close(fd)
        self.generation, self.acquired_at = gen, now
        self.last_ok = time.monotonic()
        self._write(self._lease(now))
        for old in self.path.parent.glob(f"{self.path.name}.gen-*"):
            try:
                if int(old.name.rsplit("-", 1)[1]) < gen - 1:
                    old.unlink()
            except (ValueError, OSError):
                pass
        log.info(
            "lease generation %d claimed on %s (lease %.0f s, fenced after %.0f s without renewal)",
            gen,
            self.here.host,
            self.lease_s,
            self.fence_after,
        )
        return prev

    def _newest_claim(self) -> int:
        best = 0
        for p in self.path.parent.glob(f"{self.path.name}.gen-*"):
            try:
                best = max(best, int(p.name.rsplit("-", 1)[1]))
            except ValueError:
                continue
        return best

    def renew(self) -> bool:
        """One renewal; False when it could not be written. Superseded: fenced at once."""
        t0 = time.monotonic()
        found = read_lease(self.path)
        cur = found.lease
        if cur is not None and (
            cur.generation > self.generation
            or (cur.generation == self.generation and cur.holder and cur.holder != self.holder)
        ):
            self.fenced_why = (
                f"lease generation {self.generation} was superseded by generation {cur.generation} "
                f"(host {cur.host}, PID {cur.pid})"
            )
            return False
        try:
            self._write(self._lease(time.time()))
        except OSError as exc:
            if exc.errno in NO_SPACE_ERRNOS:
                log.warning("lease renewal: disk full (%s); training goes on (the disk-full logic owns this)", exc)
                self.last_ok = t0  # no space is no reason to stop
                return False
            log.warning("lease renewal failed: %s", exc)
            return False
        self.last_ok = t0
        self.renewals += 1
        return True

    def check(self) -> None:
        """Fence when the last good renewal is older than fence_after on our own monotonic clock."""
        if self.fenced_why is None and time.monotonic() - self.last_ok > self.fence_after:
            self.fenced_why = (
                f"the lease could not be renewed for {time.monotonic() - self.last_ok:.0f} s (lease "
                f"{self.lease_s:.0f} s, margin {self.margin_s:.0f} s)"
            )

    def start(self) -> None:
        interval = max(0.05, self.lease_s / RENEWALS_PER_LEASE)

        def loop() -> None:
            while not self._stop.wait(interval):
                try:
                    self.renew()
                except Exception as exc:
                    log.warning("lease renewal failed: %s", exc)
                self.check()
                if self.fenced:
                    log.error("fenced: %s", self.fenced_why)
                    return

        self._thread = threading.Thread(target=loop, name="lease-renewal", daemon=True)
        self._thread.start()

    def release(self) -> None:
        """A clean stop: the lease says it holds nothing (only while it is still ours)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self.generation == 0 or self.fenced:
            return
        cur = read_lease(self.path).lease
        if cur is not None and cur.generation == self.generation and cur.holder == self.holder:
            try:
                now = time.time()
                self._write(self._lease(now, released=now))
            except OSError as exc:
                log.warning("lease not released: %s", exc)


class LeaseGuard:
    """The training child's side: a thread that watches the lease and sets ``fenced_why``; the step path reads only that.

    ``may_commit()`` (called once per checkpoint save) re-reads the lease: a checkpoint is committed only while the
    lease is this host's, of our generation (or a newer one a daemon on this host took when it adopted us), and fresh.
    """

    def __init__(self, pid_file: Path, generation: int, margin_s: float, status_dir: Path | None = None):
        self.path = lease_path(pid_file)
        self.generation = generation
        self.margin_s = margin_s
        self.status_dir = status_dir
        self.here = this_host()
        self.fenced_why: str | None = None
        self.last_ok = time.monotonic()
        self._seen_renewal: float | None = None
        self._stop = threading.Event()
        self.lease_s = 0.0
        self.fence_after = 0.0
        first = read_lease(self.path).lease
        if first is not None:
            self._adopt(first)

    @classmethod
    def from_env(cls, pid_file: Path, status_dir: Path | None = None) -> LeaseGuard | None:
        """The guard for a child its daemon started under a lease generation (None: no lease, e.g. a hand-run child)."""
        try:
            gen = int(os.environ.get(GENERATION_ENV) or 0)
        except ValueError:
            gen = 0
        if gen < 1:
            return None
        _, margin = lease_settings(pid_file.parent)
        guard = cls(pid_file, gen, margin, status_dir)
        return guard.start()

    def _adopt(self, lease: Lease) -> None:
        self.lease_s = lease.lease_seconds
        self.fence_after = fence_after(lease.lease_seconds, self.margin_s)

    def _judge(self, lease: Lease | None) -> str | None:
        """Why the lease no longer covers us, or None."""
        if lease is None:
            return None
        if not lease.is_local(self.here):
            return f"the lease is held by host {lease.host} (generation {lease.generation}), not this host"
        return None  # this host's: ours, or a newer generation a daemon here took when it adopted us

    def poll(self) -> None:
        found = read_lease(self.path)
        lease = found.lease
        why = self._judge(lease)
        if why:
            self.fenced_why = why
            return
        if lease is not None:
            if lease.generation > self.generation:  # a daemon on this host took the workspace and adopted us
                self.generation = lease.generation
            self._adopt(lease)
            if lease.renewed_at != self._seen_renewal and lease.released_at is None:
                self._seen_renewal = lease.renewed_at
                # The clock runs from the renewal, not from when we saw it (this host's lease: the same wall clock).
                self.last_ok = time.monotonic() - min(max(0.0, time.time() - lease.renewed_at), self.fence_after)
            elif not self._daemon_alive(lease):
                self._renew_for_dead_daemon(lease)
        self.check()

    def check(self) -> str | None:
        """Why training must stop now, or None: one monotonic read, no I/O (the step path calls this)."""
        if self.fenced_why is None and self.fence_after and time.monotonic() - self.last_ok > self.fence_after:
            self.fenced_why = f"the lease was not renewed for {time.monotonic() - self.last_ok:.0f} s"
        return self.fenced_why

    def _daemon_alive(self, lease: Lease) -> bool:
        live = probe(lease.pid)
        return live.alive and (live.info is None or start_time_matches(live.info, lease.start_time))

    def _renew_for_dead_daemon(self, lease: Lease) -> None:
        """Our daemon died on this host: keep its lease alive, so that no other host starts beside this training."""
        t0 = time.monotonic()
        now = time.time()
        mine = Lease(
            lease.host,
            lease.boot_id,
            lease.pid,
            lease.start_time,
            lease.generation,
            lease.lease_seconds,
            now,
            lease.acquired_at,
            lease.workspace_id,
            lease.holder,
            os.getpid(),
            None,
        )
        try:
            write_using_reserve(self.path, json.dumps(mine.to_json(), sort_keys=True) + "\n", self.status_dir)
        except OSError as exc:
            if exc.errno in NO_SPACE_ERRNOS or exc.errno == errno.EDQUOT:
                self.last_ok = t0
            return
        self._seen_renewal = now
        self.last_ok = t0

    def may_commit(self) -> bool:
        """Whether a checkpoint may be committed now (the lease is ours and fresh); sets ``fenced_why`` when not."""
        if self.fenced_why:
            return False
        lease = read_lease(self.path).lease
        why = self._judge(lease)
        if why is None and lease is not None and not lease.fresh(time.time(), 0.0) and lease.released_at is None:
            why = f"the lease expired {time.time() - lease.renewed_at - lease.lease_seconds:.0f} s ago"
        if why:
            self.fenced_why = why
            return False
        return True

    def start(self) -> LeaseGuard:
        def loop() -> None:
            while not self._stop.wait(max(0.05, (self.lease_s or 6.0) / RENEWALS_PER_LEASE)):
                try:
                    self.poll()
                except Exception as exc:
                    log.warning("lease check failed: %s", exc)
                if self.fenced_why:
                    log.error("fenced: %s; training stops without committing a checkpoint", self.fenced_why)
                    return

        threading.Thread(target=loop, name="lease-guard", daemon=True).start()
        return self

    def stop(self) -> None:
        self._stop.set()
