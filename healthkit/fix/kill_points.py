"""Kill injection for tests: ``HEALTHKIT_FIX_CRASH_AT=<point>[:N]`` SIGKILLs the fix run at the N-th (default 1st) pass of <point>.

Points: ``edit:backup-written``, ``edit:before-replace``, ``edit:after-replace``,
``prune:after-rename``, ``prune:mid-delete``, ``prune:after-delete``,
``pidfile:before-unlink``, ``queue:after-link``. Unset (always, outside tests), it costs
one dict lookup.
"""

from __future__ import annotations

import os
import signal

ENV = "HEALTHKIT_FIX_CRASH_AT"
_seen: dict[str, int] = {}


def crash_point(name: str) -> None:
    spec = os.environ.get(ENV)
    if not spec:
        return
    point, nth = spec, ""
    head, _, tail = spec.rpartition(":")
    if tail.isdigit():
        point, nth = head, tail
    if point != name:
        return
    _seen[name] = _seen.get(name, 0) + 1
    if _seen[name] >= int(nth or 1):
        os.kill(os.getpid(), signal.SIGKILL)
