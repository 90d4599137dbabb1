"""The child process that sends one message through Apprise: the URLs come on stdin (never argv: `ps` shows argv).

Why a process of its own: a channel that hangs (a server that accepts and never answers,
a DNS lookup that stalls) cannot be interrupted inside a thread, and the scheduled job
must end on time whatever a channel does. The parent (healthkit.scheduled.notify.send) kills this
process at its deadline; here each URL is sent in its own thread, so one slow channel does
not hold back the others, and whatever has not answered by the deadline is reported as
such. Every error text is masked with the URL's own secrets before it leaves.

stdin: {"urls": [...], "title": str, "body": str, "timeout": seconds, "type": "info|success|warning|failure"}
stdout: one JSON line, [{"ok": bool, "error": str | null}] in the order of the URLs.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import threading
import time
from typing import Any

from healthkit.system.redact import mask_secrets, url_secrets


class _Collect(logging.Handler):
    """Apprise says why a send failed in its log, not in its return value: keep each thread's records."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.by_thread: dict[int, list[str]] = {}

    def emit(self, record: logging.LogRecord) -> None:
        self.by_thread.setdefault(record.thread or 0, []).append(record.getMessage())


def _send_one(
    apprise: Any, url: str, title: str, body: str, slot: dict[str, Any], logs: _Collect, kind: str = "info"
) -> None:
    try:
        a = apprise.Apprise()
        if not a.add(url):
            slot.update(ok=False, error="not a valid Apprise URL (or its plugin is missing)")
            return
        ok = bool(a.notify(title=title, body=body, notify_type=apprise.NotifyType(kind)))
        why = "; ".join(logs.by_thread.get(threading.get_ident(), [])[-2:])
        slot.update(ok=ok, error=None if ok else (why or "the channel refused the message"))
    except Exception as exc:
        slot.update(ok=False, error=f"{type(exc).__name__}: {exc}")


def main() -> None:
    job = json.loads(sys.stdin.read())
    urls: list[str] = list(job["urls"])
    deadline = time.monotonic() + float(job["timeout"])
    slots: list[dict[str, Any]] = [{} for _ in urls]
    try:
        import apprise
    except ImportError:
        slots = [{"ok": False, "error": "apprise is not installed: pip install 'healthkit[notify]'"} for _ in urls]
    else:
        logs = _Collect()
        logging.getLogger("apprise").addHandler(logs)
        kind = job.get("type") if job.get("type") in ("info", "success", "warning", "failure") else "info"
        threads = [
            threading.Thread(target=_send_one, args=(apprise, u, job["title"], job["body"], s, logs, kind), daemon=True)
            for u, s in zip(urls, slots)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join(max(0.0, deadline - time.monotonic()))
    out = []
    for url, slot in zip(urls, slots):
        if "ok" not in slot:
            slot = {"ok": False, "error": f"no answer within {float(job['timeout']):g}s (the channel hangs?)"}
        err = slot.get("error")
        out.append({"ok": slot["ok"], "error": mask_secrets(str(err), url_secrets(url)) if err else None})
    sys.stdout.write(json.dumps(out) + "\n")
    sys.stdout.flush()
    os._exit(0)  # threads still stuck in a hung channel must not hold the exit


if __name__ == "__main__":
    main()
