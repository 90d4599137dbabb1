"""A stand-in daemon for the multi-host tests: the trainer's real lock and lease code, no training.

Run as `python fake_daemon.py WORKSPACE` (its argv matches the `training_daemon.py` pattern of the tests'
healthkit.toml). It takes the daemon lock, claims the lease, writes the PID file and renews the lease from the
trainer's own thread until it is fenced (exit 76) or killed. Each line it prints is one event for the test.
"""

import sys
import time

import psutil

from healthkit.contract.wsid import ensure_workspace_id
from healthkit.trainer.layout import EXIT_ALREADY_RUNNING, EXIT_FENCED, Layout
from healthkit.trainer.lease import LeaseHeld, LeaseKeeper, lease_settings
from healthkit.trainer.pidfile import DaemonLock

lay = Layout.of(sys.argv[1])
keeper: LeaseKeeper | None = None


def claim() -> None:
    global keeper
    me = psutil.Process()
    lease_s, margin_s = lease_settings(lay.base)
    keeper = LeaseKeeper(
        lay.pid_file, ensure_workspace_id(lay.base), me.pid, me.create_time(), lease_s, margin_s, lay.status_dir
    )
    keeper.acquire()


lock = DaemonLock(lay)
try:
    if not lock.acquire(before_pid_file=claim):
        print("locked", flush=True)
        sys.exit(EXIT_ALREADY_RUNNING)
except LeaseHeld as exc:
    print(f"held {exc}", flush=True)
    sys.exit(EXIT_ALREADY_RUNNING)
assert keeper is not None
keeper.start()
print(f"ready generation={keeper.generation}", flush=True)
while not keeper.fenced:
    time.sleep(0.02)
print(f"fenced after {time.monotonic() - keeper.last_ok:.2f}s: {keeper.fenced_why}", flush=True)
sys.exit(EXIT_FENCED)
