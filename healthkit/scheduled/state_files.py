"""The names of the scheduled job's state files in the workspace's logs folder, apart from the modules that write them.

The audit's `heal` and `notify` checks test whether these files exist before importing healthkit.scheduled.backoff
or healthkit.scheduled.notify: most workspaces have neither file, and an audit should not pay for those modules.
"""

from __future__ import annotations

HEAL_STATE = "healthkit-heal.json"  # healthkit.scheduled.backoff: backoff and give-up per finding
NOTIFY_STATE = "healthkit-notify.json"  # healthkit.scheduled.notify: the last message's delivery per channel
