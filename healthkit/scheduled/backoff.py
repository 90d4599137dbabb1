"""Flap protection for scheduled heals: back off between heals of one finding, give up when healing does not hold.

A supervisor that restarts forever hides the real fault (an OOM kill, a full disk) and
burns the machine; systemd stops after `StartLimitBurst` starts in `StartLimitIntervalSec`
and Kubernetes backs off 10 s, 20 s, 40 s ... So a scheduled run (`healthkit fix --safe
--scheduled`) heals a finding, then waits `backoff_seconds` before healing it again,
twice as long after each heal; once `max_attempts` heals within `window_seconds` were each
followed by the finding coming back, it stops healing that finding, and the `heal` check
reports `heal.gave-up` with every attempt as evidence. A person's own `healthkit fix`
always applies and clears this state.

The state is one small JSON file beside the fix journal (`logs/healthkit-heal.json`),
replaced atomically under the fix lock. Only the scheduled run and a person's fix write it;
the audit only reads it.
"""

from __future__ import annotations

import math
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from healthkit.core.findings import Evidence, Finding, Severity
from healthkit.scheduled.state_files import HEAL_STATE
from healthkit.system.fsutil import ReadProblem, atomic_write, read_json
from healthkit.system.jsonio import dumps
from healthkit.system.safetext import md_code
from healthkit.system.shellcmd import command

if TYPE_CHECKING:
    from healthkit.core.workspace import Workspace
    from healthkit.fix.engine import FixRun

STATE_NAME = HEAL_STATE
# A run that starts a little before the wait is over (cron and timers start jobs a few seconds late, then
# early again) counts as on time: a quarter of the wait, so that a 1-minute schedule heals at the next run.
EARLY_SHARE = 0.25


def state_path(ws: Workspace) -> Path:
    return ws.path(ws.settings.paths.logs) / STATE_NAME


def iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat(timespec="seconds")


def load_state(path: Path) -> dict[str, Any]:
    """The state on disk; an unreadable or foreign file is an empty state (healing is then allowed, as before)."""
    try:
        data = read_json(path)
    except ReadProblem:
        return {"version": 1, "findings": {}}
    if not isinstance(data, dict) or not isinstance(data.get("findings"), dict):
        return {"version": 1, "findings": {}}
    return data


def save_state(path: Path, state: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, dumps(state))


def wait_after(attempts: int, backoff_s: float) -> float:
    """The wait after the ``attempts``-th heal: backoff, then twice that, then four times ..."""
    return backoff_s * (2 ** max(0, attempts - 1))


class ScheduledHeal:
    """The fix engine's hooks for a scheduled run: hold back what backs off or gave up, record what was applied."""

    def __init__(self, interval_s: float | None = None, now: float | None = None):
        self.interval_s = interval_s
        self.now = time.time() if now is None else now
        self.gave_up: list[dict[str, Any]] = []  # records that gave up in this run (for the message)
        self.held: list[tuple[str, str]] = []  # (finding identity, why) held back in this run
        self.path: Path | None = None
        self.state: dict[str, Any] = {"version": 1, "findings": {}}

    def _backoff(self, ws: Workspace) -> float:
        return ws.settings.heal.backoff_seconds or self.interval_s or ws.settings.heal.window_seconds / 8

    def choose(self, ws: Workspace, run: FixRun) -> None:
        """Before applying: note which healed findings came back, give up where healing did not hold, hold back plans."""
        hs = ws.settings.heal
        self.path = state_path(ws)
        self.state = load_state(self.path)
        recs: dict[str, Any] = self.state["findings"]
        present = {f.identity: f for f in run.before.findings}
        for ident in list(recs):
            rec = recs[ident]
            f = present.get(ident)
            if f is None:  # the heal held (or it went away by itself): start afresh next time
                del recs[ident]
                continue
            attempts = rec.setdefault("attempts", [])
            if attempts and not attempts[-1].get("came_back"):
                attempts[-1]["came_back"] = {
                    "at": iso(self.now),
                    "title": f.title,
                    "problem": f.problem[0] if f.problem else "",
                }
            if not rec.get("gave_up_at"):
                attempts[:] = [a for a in attempts if self.now - float(a.get("t", 0)) <= hs.window_seconds]
                if len(attempts) >= hs.max_attempts and all(a.get("came_back") for a in attempts):
                    rec["gave_up_at"] = iso(self.now)
                    self.gave_up.append({"identity": ident, **rec})
        self.state["interval_s"] = self.interval_s
        for p in list(run.chosen):
            why = next((w for w in (self._hold(ws, k) for k in p.finding_keys) if w), None)
            if why:
                run.chosen.remove(p)
                run.not_applied.append((p, why))
                self.held.extend((k, why) for k in p.finding_keys)
        if recs or self.path.exists():
            save_state(self.path, self.state)

    def _hold(self, ws: Workspace, ident: str) -> str | None:
        rec = self.state["findings"].get(ident)
        if not rec or not rec.get("attempts"):
            return None
        n = len(rec["attempts"])
        if rec.get("gave_up_at"):
            return (
                f"scheduled healing gave up at {rec['gave_up_at']}: healed {n} times and back each time "
                "(heal.gave-up); a person's `healthkit fix --safe` applies it"
            )
        wait = wait_after(n, self._backoff(ws))
        until = float(rec["attempts"][-1].get("t", 0)) + wait
        if self.now >= until - EARLY_SHARE * wait:
            rec.pop("held_back", None)
            return None
        not_before = iso(math.ceil(until))  # whole seconds, rounded up: a run at the time it names is never held back
        rec["held_back"] = {"until": not_before, "until_t": until, "attempts": n}
        return f"backing off: healed {n} time(s), the last at {rec['attempts'][-1].get('at')}; next heal not before {not_before}"

    def finished(self, ws: Workspace, run: FixRun) -> None:
        """After applying and the re-audit: one attempt per finding each applied plan was for."""
        if not run.outcomes or self.path is None:
            return
        after = {f.identity for f in (run.after.findings if run.after else [])}
        before = {f.identity: f for f in run.before.findings}
        recs = self.state["findings"]
        actions: dict[str, list[dict[str, str]]] = {}
        for plan, outcome in run.outcomes:
            for ident in plan.finding_keys:
                actions.setdefault(ident, []).append(
                    {"fix": plan.fix_id, "status": outcome.status, "done": (outcome.message.splitlines() or [""])[0]}
                )
        for ident, acts in actions.items():  # one attempt per finding and run, however many actions it took
            f = before.get(ident)
            rec = recs.setdefault(
                ident, {"code": f.code if f else ident.split("[")[0], "title": f.title if f else "", "attempts": []}
            )
            rec.pop("held_back", None)
            rec["attempts"].append(
                {
                    "at": iso(self.now),
                    "t": self.now,
                    "actions": acts,
                    "right_after": "still open" if ident in after else "resolved",
                }
            )
        save_state(self.path, self.state)


class PersonFix:
    """A person's own `healthkit fix` (not --scheduled, not --dry-run): it always applies, and clears the state."""

    def choose(self, ws: Workspace, run: FixRun) -> bool:
        """Clear the state before applying, so that the re-audit this run prints (and its exit code) no longer shows the
        backoff or the give-up it has just cleared; True when there was a state to clear."""
        try:
            state_path(ws).unlink()
        except FileNotFoundError:
            return False
        return True

    def finished(self, ws: Workspace, run: FixRun) -> None:
        return None


# the findings the `heal` check reports from the state --------------------------------------------


def _attempt_line(a: dict[str, Any]) -> str:
    back = a.get("came_back")
    came = (
        f"came back at {back.get('at')}: {back.get('title')}" + (f" ({back['problem']})" if back.get("problem") else "")
        if isinstance(back, dict)
        else "not seen again yet"
    )
    did = "; ".join(
        f"{x.get('fix')} {x.get('status')}: {x.get('done')}" for x in a.get("actions") or [] if isinstance(x, dict)
    )
    return f"{a.get('at')}: {did}; right after: {a.get('right_after', '?')}; {came}"


def state_findings(ws: Workspace, codes: tuple[str, str]) -> list[Finding]:
    """`heal.gave-up` (critical) per finding healing gave up on, `heal.held-back` (info) per heal waiting out its backoff."""
    gave_up_code, held_code = codes
    path = state_path(ws)
    if not path.exists():
        return []
    rel = ws.rel(path)
    out: list[Finding] = []
    now = time.time()
    for ident, rec in sorted(load_state(path)["findings"].items()):
        if not isinstance(rec, dict):
            continue
        attempts = [a for a in rec.get("attempts") or [] if isinstance(a, dict)]
        code, title = rec.get("code", "?"), rec.get("title", "")
        jq = f"jq '.findings[\"{ident}\"].attempts' {rel}"
        if rec.get("gave_up_at"):
            out.append(
                Finding(
                    code=gave_up_code,
                    severity=Severity.CRITICAL,
                    title=f"Scheduled healing gave up on {code}",
                    problem=[
                        f"{code} ({title}) was healed {len(attempts)} times and came back each time; "
                        f"scheduled runs stopped healing it at {rec['gave_up_at']}",
                        "Something keeps undoing the heal (an OOM kill, a full disk, a crash at start): healing again hides it",
                    ],
                    impact=[f"{code} stays open until a person acts"],
                    evidence=[Evidence(f"{jq} | jq '.[{i}]'", _attempt_line(a)) for i, a in enumerate(attempts)],
                    root_cause=["The fix worked for a while each time, then the problem returned"],
                    recommendations=[
                        "Find what undoes it: the daemon's logs, `journalctl -k | grep -i oom`, `dmesg`, `df -h`",
                        f"Then run {md_code(command('healthkit', 'fix', '--safe', ws.base))} yourself: it applies, and clears this state",
                    ],
                    urgency="immediate",
                    data={"identity": ident, "code": code, "attempts": len(attempts)},
                )
            )
        elif isinstance(rec.get("held_back"), dict) and float(rec["held_back"].get("until_t", 0)) > now:
            until = rec["held_back"].get("until")
            out.append(
                Finding(
                    code=held_code,
                    severity=Severity.INFO,
                    title=f"Healing {code} is backing off until {until}",
                    problem=[
                        f"{code} was healed {len(attempts)} time(s) and came back; scheduled runs wait until {until} "
                        "before healing it again"
                    ],
                    impact=[f"{code} stays open until then"],
                    evidence=[Evidence(f"{jq} | jq '.[{i}]'", _attempt_line(a)) for i, a in enumerate(attempts)],
                    recommendations=[
                        f"Heal it now yourself: {md_code(command('healthkit', 'fix', '--safe', ws.base))} (clears the backoff)"
                    ],
                    urgency="soon",
                    data={"identity": ident, "code": code, "until": until},
                )
            )
    return out
