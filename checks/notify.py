"""Notifications the scheduled job could not deliver (`logs/healthkit-notify.json`, written by healthkit.scheduled.notify)."""

from __future__ import annotations

from healthkit import CodeDoc, check
from healthkit.core.workspace import Workspace
from healthkit.scheduled.state_files import NOTIFY_STATE

FAILED = CodeDoc(
    "notify.failed",
    "warning",
    "A notification could not be sent",
    what="The scheduled job's last message did not reach one of the `[notify]` channels: refused, no answer within "
    "`[notify] timeout_seconds`, a bad URL, or Apprise not installed. The channel is named without its token.",
    why="Nobody may hear of a dead daemon or a full disk while the channel is broken. The job itself carried on: the "
    "report was written and what the channel missed is sent again with the next run's message.",
    fix="Make the channel work again (server up, token valid; `apprise -vv -t test -b test URL` tests one), or change "
    "the URL in healthkit.toml `[notify] urls` / HEALTHKIT_NOTIFY_URLS.",
    fix_safety="No automatic fix.",
)


@check("notify", title="Notifications", codes=[FAILED], tags=["unattended"])
def notify_check(ws: Workspace) -> list:
    if not (ws.path(ws.settings.paths.logs) / NOTIFY_STATE).exists():  # no scheduled send yet: nothing to import
        return []
    from healthkit.scheduled.notify import state_findings

    return state_findings(ws, FAILED.code)
