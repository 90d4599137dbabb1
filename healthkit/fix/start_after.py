"""Start a daemon once the training it must not run beside has ended.

The safe fix for an orphaned training under a daemon that is not known to adopt it (a
foreign setup without `processes.daemon_adopts = true`): starting that daemon now could
start a second training beside the first, on the same GPU and checkpoint folder. This
small detached process waits for each orphan, identified by PID *and* start time (a reused
PID is not the orphan), to end, then replaces itself with the daemon (same session, same
log). It never signals anything.

    python -m healthkit.fix.start_after --workspace WS --wait PID:START [--wait ...] [--poll S] -- DAEMON ARGV...
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from datetime import UTC, datetime

MODULE = "healthkit.fix.start_after"


def _running(pid: int, start: float) -> bool:
    import psutil

    try:
        p = psutil.Process(pid)
        return abs(p.create_time() - start) < 1.0 and p.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _say(text: str) -> None:
    print(f"{datetime.now(UTC).isoformat(timespec='seconds')} start_after[{os.getpid()}]: {text}", flush=True)


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if "--" not in args:
        print(
            "usage: python -m healthkit.fix.start_after --workspace WS --wait PID:START ... -- DAEMON ARGV",
            file=sys.stderr,
        )
        return 64
    cut = args.index("--")
    ap = argparse.ArgumentParser(prog=f"python -m {MODULE}")
    ap.add_argument("--workspace", required=True)
    ap.add_argument("--wait", action="append", default=[], metavar="PID:START")
    ap.add_argument("--poll", type=float, default=5.0)
    opts = ap.parse_args(args[:cut])
    command = args[cut + 1 :]
    if not command:
        print("no daemon command after --", file=sys.stderr)
        return 64
    waits = []
    for item in opts.wait:
        pid, _, start = item.partition(":")
        waits.append((int(pid), float(start)))
    _say(f"waiting for training PID {', '.join(str(p) for p, _ in waits)} to end before starting the daemon")
    while True:
        alive = [(p, s) for p, s in waits if _running(p, s)]
        if not alive:
            break
        time.sleep(opts.poll)
    _say("the training has ended; starting the daemon: " + " ".join(command))
    os.chdir(opts.workspace)
    os.execvp(command[0], command)
    return 0  # not reached


if __name__ == "__main__":
    sys.exit(main())
