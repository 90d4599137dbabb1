"""Tell a person what changed, once per scheduled run, through Apprise (ntfy, Slack, e-mail, JSON webhooks, ...).

Only a change sends a message: a new finding at or above `[notify] level`, a resolved one,
a heal applied, a heal given up, a daemon stopped on request; a CRITICAL still open is told
again at most every `repeat_seconds` (Alertmanager's repeat_interval is 4 h too). One
message per run holds all of it, ending with the path of the HTML report.

A channel that fails never fails the job: the sends run in a child process killed at its
deadline (healthkit.scheduled.notify_send), the failure is logged (`logs/healthkit-notify.log`),
what it missed is kept and sent with the next run's message, and the report shows
`notify.failed`. URLs come from healthkit.toml `[notify] urls` or HEALTHKIT_NOTIFY_URLS,
never from argv; they carry tokens, so a channel is only ever named by `describe_url`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from healthkit.core.findings import Evidence, Finding, Severity
from healthkit.scheduled.state_files import NOTIFY_STATE
from healthkit.system.fsutil import ReadProblem, atomic_write, read_json
from healthkit.system.jsonio import dumps
from healthkit.system.redact import describe_url, mask_secrets, url_secrets
from healthkit.system.shellcmd import command

if TYPE_CHECKING:
    from healthkit.core.report import Report
    from healthkit.core.workspace import Workspace

ENV = "HEALTHKIT_NOTIFY_URLS"
STATE_NAME = NOTIFY_STATE
LOG_NAME = "healthkit-notify.log"
STOPPED_CODE = "daemon.stopped"
_RANK = {"info": 0, "warning": 1, "critical": 2}
# What the message calls each kind of change, in the order it lists them.
KINDS = {
    "gave-up": "Healing gave up",
    "healed": "Healed",
    "heal-failed": "Heal did not hold",
    "stopped": "Stopped on request",
    "new": "New",
    "reminder": "Still open (reminder)",
    "resolved": "Resolved",
}


def urls(ws: Workspace) -> list[str]:
    """healthkit.toml's URLs, then the environment's (whitespace-separated: Apprise URLs may hold commas)."""
    return [*ws.settings.notify.urls, *os.environ.get(ENV, "").split()]


def channel_key(url: str) -> str:
    """A stable, non-reversible name for a channel in the state file."""
    import hashlib  # here, not at import: OpenSSL's start-up would cost every audit (the notify check imports this module)

    return hashlib.sha256(url.encode("utf-8")).hexdigest()[:16]


def state_path(ws: Workspace) -> Path:
    return ws.path(ws.settings.paths.logs) / STATE_NAME


def load_state(path: Path) -> dict[str, Any]:
    try:
        data = read_json(path)
    except ReadProblem:
        data = None
    if not isinstance(data, dict):
        data = {}
    data.setdefault("pending", {})
    data.setdefault("critical_told", {})
    return data


@dataclass(frozen=True)
class Event:
    """One line of the message: a change to one finding."""

    kind: str
    code: str
    severity: str
    title: str
    todo: str
    identity: str
    detail: str = ""  # who stopped it and why; what healing gave up on

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "code": self.code,
            "severity": self.severity,
            "title": self.title,
            "todo": self.todo,
            "identity": self.identity,
            "detail": self.detail,
        }


@dataclass
class Sent:
    """What one run's notification did, for the report and the closing summary."""

    events: list[Event] = field(default_factory=list)
    channels: list[dict[str, Any]] = field(default_factory=list)  # {channel, ok, error}
    title: str = ""
    body: str = ""

    @property
    def failed(self) -> list[dict[str, Any]]:
        return [c for c in self.channels if not c["ok"]]


def _todo(f: Finding, docs: dict[str, Any]) -> str:
    if f.recommendations:
        return f.recommendations[0]
    doc = docs.get(f.code)
    return doc.fix.split(". ")[0] if doc is not None and doc.fix else "see the report"


def events_for(
    report: Report,
    since: dict[str, Any],
    healed: list[Finding],
    heal_failed: list[Finding],
    level: str,
    repeat_s: float,
    told: dict[str, float],
    now: float,
    held: dict[str, str] | None = None,
) -> list[Event]:
    """This run's changes worth a message (see the module docstring for the rule); ``held``: why a finding was
    not healed this run (backing off, given up), by identity."""
    held = held or {}
    docs = report.code_docs
    floor = _RANK.get(level, 1)
    current = {f.identity: f for f in report.findings}
    out: dict[str, Event] = {}

    def ev(kind: str, f: Finding) -> Event:
        detail = f.problem[0] if kind in ("stopped", "gave-up") and f.problem else ""
        if f.identity in held:
            detail = f"not healed this run: {held[f.identity]}"
        return Event(kind, f.code, f.severity.value, f.title, _todo(f, docs), f.identity, detail)

    for f in healed:
        out[f.identity] = ev("healed", f)
    for f in heal_failed:
        out.setdefault(f.identity, ev("heal-failed", f))
    new_ids = {i["identity"] for i in since.get("new") or []}
    for ident in new_ids:
        hit = current.get(ident)
        if hit is None or ident in out or hit.code.startswith("notify."):
            continue
        if hit.code == STOPPED_CODE:
            out[ident] = ev("stopped", hit)
        elif hit.code == "heal.gave-up":
            out[ident] = ev("gave-up", hit)
        elif hit.severity.rank >= floor:
            out[ident] = ev("new", hit)
    for item in since.get("resolved") or []:
        ident = item["identity"]
        if (
            ident not in out
            and _RANK.get(str(item.get("severity")), 0) >= floor
            and not str(item.get("code")).startswith("notify.")
        ):
            out[ident] = Event(
                "resolved", str(item.get("code")), str(item.get("severity")), str(item.get("title")), "nothing", ident
            )
    for ident, f in current.items():
        if f.severity is Severity.CRITICAL and ident not in out and now - float(told.get(ident, 0)) >= repeat_s:
            out[ident] = ev("reminder", f)
    return list(out.values())


def compose(report: Report, events: list[Event], html: Path, earlier: list[dict[str, Any]]) -> tuple[str, str]:
    """The title and the plain-text body of one message.

    Its verdict leaves out the `notify` check's own findings: they are about the delivery this very message makes (a
    catch-up clears notify.failed), and the report the run ends with is refreshed after the send."""
    import dataclasses

    ws_name = Path(report.workspace).name or report.workspace
    report = dataclasses.replace(report, results=[r for r in report.results if r.check != "notify"])
    verdict = report.status.value.upper()
    kinds = [k for k in KINDS if any(e.kind == k for e in events)]
    title = f"healthkit {verdict}: {ws_name} on {report.hostname}" + (
        f" ({', '.join(KINDS[k].lower() for k in kinds)})" if kinds else ""
    )
    c = report.counts()
    lines = [
        f"Workspace: {report.workspace}",
        f"Host: {report.hostname}",
        f"Verdict: {verdict} ({c['critical']} critical, {c['warning']} warning, {c['info']} info)",
    ]
    for k in kinds:
        lines.append("")
        lines.append(f"{KINDS[k]}:")
        for e in events:
            if e.kind == k:
                lines.append(f"- [{e.severity}] {e.code}: {e.title}")
                if e.detail:
                    lines.append(f"  {e.detail}")
                if k not in ("resolved", "healed"):
                    lines.append(f"  what to do: {e.todo}")
    if earlier:
        lines += ["", "Not delivered earlier (sent again now):"]
        lines += [
            f"- {KINDS.get(e.get('kind', ''), e.get('kind'))}: {e.get('code')}: {e.get('title')} (at {e.get('at')})"
            for e in earlier
        ]
    lines += ["", f"Report: {html}"]
    return title, "\n".join(lines) + "\n"


# Apprise's notify types, best to worst: a message takes the worst of its lines, so ntfy, Slack and e-mail priority
# follow severity (a CRITICAL is `failure`, a WARNING `warning`, a heal or a resolution `success`).
NOTIFY_TYPES = ("success", "info", "warning", "failure")


def notify_type(events: list[Event] | list[dict[str, Any]]) -> str:
    """The Apprise type of a message holding these events (or pending ones as dicts): the worst of them."""
    worst = 0
    for e in events:
        kind, sev = (e.kind, e.severity) if isinstance(e, Event) else (str(e.get("kind")), str(e.get("severity")))
        if kind in ("healed", "resolved"):
            rank = 0
        else:
            rank = {"critical": 3, "warning": 2}.get(sev, 1)
        worst = max(worst, rank)
    return NOTIFY_TYPES[worst] if events else "info"


def send(channel_urls: list[str], title: str, body: str, timeout_s: float, kind: str = "info") -> list[dict[str, Any]]:
    """Send to each URL as Apprise type ``kind``; at most ``timeout_s`` (plus the child's start) whatever the channels
    do. Never raises."""
    job = json.dumps({"urls": channel_urls, "title": title, "body": body, "timeout": timeout_s, "type": kind})
    secrets = [s for u in channel_urls for s in url_secrets(u)]
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "healthkit.scheduled.notify_send"],
            input=job,
            capture_output=True,
            text=True,
            timeout=timeout_s + 15.0,
            env={**os.environ, "PYTHONIOENCODING": "utf-8"},
        )
        results = json.loads(proc.stdout.strip().splitlines()[-1]) if proc.stdout.strip() else None
        if not isinstance(results, list) or len(results) != len(channel_urls):
            why = mask_secrets((proc.stderr or "").strip()[-300:], secrets) or f"exit {proc.returncode}"
            results = [{"ok": False, "error": f"the sender failed: {why}"} for _ in channel_urls]
    except subprocess.TimeoutExpired:
        results = [
            {"ok": False, "error": f"the sender did not finish within {timeout_s + 15.0:g}s; killed"}
            for _ in channel_urls
        ]
    except (OSError, ValueError) as exc:
        results = [{"ok": False, "error": f"the sender could not run: {exc}"} for _ in channel_urls]
    return [
        {
            "channel": describe_url(u),
            "ok": bool(r.get("ok")),
            "error": mask_secrets(str(r["error"]), url_secrets(u)) if r.get("error") else None,
        }
        for u, r in zip(channel_urls, results)
    ]


def _log(ws: Workspace, lines: list[str]) -> None:
    path = ws.path(ws.settings.paths.logs) / LOG_NAME
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a", encoding="utf-8") as fh:
            for line in lines:
                fh.write(line + "\n")
    except OSError:
        pass  # the report's notify.failed says it as well


def notify_run(
    ws: Workspace,
    report: Report,
    since: dict[str, Any],
    healed: list[Finding],
    heal_failed: list[Finding],
    html: Path,
    now: float | None = None,
    held: dict[str, str] | None = None,
) -> Sent | None:
    """Decide, compose, send, remember. None when no URL is configured."""
    channel_urls = urls(ws)
    if not channel_urls:
        return None
    now = time.time() if now is None else now
    stamp = datetime.fromtimestamp(now, UTC).isoformat(timespec="seconds")
    ns = ws.settings.notify
    path = state_path(ws)
    state = load_state(path)
    events = events_for(
        report, since, healed, heal_failed, ns.level, ns.repeat_seconds, state["critical_told"], now, held
    )
    sent = Sent(events=events)
    secrets = [s for u in channel_urls for s in url_secrets(u)]
    todo: list[tuple[str, list[dict[str, Any]]]] = []
    for u in channel_urls:
        earlier = state["pending"].get(channel_key(u)) or []
        if events or earlier:
            todo.append((u, earlier))
    if todo:
        groups: dict[str, list[str]] = {}
        bodies: dict[str, tuple[str, str]] = {}
        for u, earlier in todo:  # channels that missed nothing share one message (one send, one child)
            key = json.dumps(earlier, sort_keys=True)
            bodies.setdefault(key, compose(report, events, html, earlier))
            groups.setdefault(key, []).append(u)
        results: dict[str, dict[str, Any]] = {}
        for key, members in groups.items():
            title, body = bodies[key]
            sent.title, sent.body = sent.title or title, sent.body or body
            kind = notify_type([*events, *json.loads(key)])
            for u, r in zip(members, send(members, title, body, ns.timeout_seconds, kind)):
                results[u] = r
        log_lines = []
        for u, earlier in todo:
            r = results[u]
            sent.channels.append(r)
            ck = channel_key(u)
            if r["ok"]:
                state["pending"].pop(ck, None)
                log_lines.append(f"{stamp} sent to {r['channel']}: {len(events)} change(s)")
            else:
                missed = earlier + [{**e.to_dict(), "at": stamp} for e in events]
                state["pending"][ck] = missed[-50:]
                log_lines.append(
                    mask_secrets(
                        f"{stamp} FAILED to send to {r['channel']}: {r['error']} (kept for the next run)", secrets
                    )
                )
        _log(ws, log_lines)
        if any(r["ok"] for r in sent.channels):
            for e in events:
                if e.severity == "critical":
                    state["critical_told"][e.identity] = now
    before = dumps({k: v for k, v in state.items() if k != "last"})
    open_critical = {f.identity for f in report.findings if f.severity is Severity.CRITICAL}
    state["critical_told"] = {k: v for k, v in state["critical_told"].items() if k in open_critical}
    state["pending"] = {k: v for k, v in state["pending"].items() if k in {channel_key(u) for u in channel_urls}}
    if todo or dumps({k: v for k, v in state.items() if k != "last"}) != before or not path.exists():
        # (a run that sent nothing and changed nothing writes nothing: the healthy case stays cheap)
        state["last"] = {"at": stamp, "channels": sent.channels, "changes": len(events)}
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, dumps(state))
    return sent


def state_findings(ws: Workspace, code: str) -> list[Finding]:
    """`notify.failed` (warning) when the last scheduled run could not deliver its message to some channel."""
    path = state_path(ws)
    if not path.exists():
        return []
    last = load_state(path).get("last")
    failed = [c for c in (last or {}).get("channels") or [] if isinstance(c, dict) and not c.get("ok")]
    if not failed or not last:  # no failed channel without a last run
        return []
    rel = ws.rel(path)
    log_rel = ws.rel(ws.path(ws.settings.paths.logs) / LOG_NAME)
    return [
        Finding(
            code=code,
            severity=Severity.WARNING,
            title=f"A notification could not be sent ({len(failed)} channel(s))",
            problem=[f"At {last.get('at')}: {c.get('channel')}: {c.get('error')}" for c in failed]
            + ["What it missed is sent again with the next run's message"],
            impact=["Nobody may hear of what this report shows until the channel works again"],
            evidence=[
                Evidence(
                    command("jq", ".last.channels", rel),
                    "; ".join(f"{c.get('channel')}: {c.get('error')}" for c in failed),
                ),
                Evidence(command("tail", log_rel), "one line per send, tokens masked"),
            ],
            recommendations=[
                "Check the channel (is the server up, the token still valid?): `apprise -vv -t test -b test URL`",
                "The URLs are in healthkit.toml [notify] urls or HEALTHKIT_NOTIFY_URLS",
            ],
            urgency="soon",
            data={"channels": [c.get("channel") for c in failed]},
        )
    ]
