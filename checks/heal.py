"""Scheduled healing that backs off or gave up (`logs/healthkit-heal.json`, written by `healthkit fix --safe --scheduled`).

The rule lives in healthkit.scheduled.backoff (one home: the scheduled run decides, this check reports
what it decided); an audit only reads the state file, so a person's `healthkit audit` sees
a give-up too, not only the scheduled job's report.
"""

from __future__ import annotations

from healthkit import CodeDoc, check
from healthkit.core.workspace import Workspace
from healthkit.scheduled.state_files import HEAL_STATE

GAVE_UP = CodeDoc(
    "heal.gave-up",
    "critical",
    "Scheduled healing gave up: the finding came back after every heal",
    what="The scheduled job (`healthkit schedule --heal`) healed the same finding `[heal] max_attempts` times within "
    "`[heal] window_seconds`, and each time it came back. It no longer heals it; every attempt (when, what was done, "
    "what came back) is the evidence.",
    why="Something undoes the heal (the OOM killer, a full disk, a crash at start). Healing forever would hide it and burn "
    "the machine, the restart storm systemd's StartLimitBurst and Kubernetes' CrashLoopBackOff exist to stop.",
    fix="Find the cause (the daemon's logs, `journalctl -k | grep -i oom`, `dmesg`, `df -h`), then run "
    "`healthkit fix --safe PATH` yourself: a person's fix always applies and clears the give-up.",
    fix_safety="No automatic fix: by definition the automatic one did not hold.",
)
HELD_BACK = CodeDoc(
    "heal.held-back",
    "info",
    "Scheduled healing is backing off",
    what="The finding was healed by the scheduled job and came back; the job waits `[heal] backoff_seconds` (doubling "
    "after each heal) before healing it again, and says until when.",
    why="A heal that does not hold is retried less and less often, so that a fault that keeps coming back is noticed "
    "instead of being restarted in a loop.",
    fix="Wait for the next heal, or heal it now with `healthkit fix --safe PATH` (which clears the backoff).",
)


@check("heal", title="Scheduled healing", codes=[GAVE_UP, HELD_BACK], tags=["unattended"])
def heal_check(ws: Workspace) -> list:
    if not (ws.path(ws.settings.paths.logs) / HEAL_STATE).exists():  # never healed on a schedule: nothing to import
        return []
    from healthkit.scheduled.backoff import state_findings

    return state_findings(ws, (GAVE_UP.code, HELD_BACK.code))
