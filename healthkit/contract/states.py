"""The workspace contract's vocabularies: written by the trainer, read by the audit, exported to monitoring.

Held here once so that the daemon's state file, its /metrics, the audit's checks and the
Prometheus renderer cannot disagree about which states exist (they once had three lists).
"""

from __future__ import annotations

# status/daemon_state.json "state": what the daemon (or its supervisor) says it is doing.
__all__ = ["DAEMON_LIVENESS", "DAEMON_STATES", "SUPERVISOR_MODULE", "SUPERVISOR_STATES", "TRAINING_STATES"]

DAEMON_STATES = ("running", "paused", "waiting", "stopped", "crashed", "idle", "gave-up")

# status/training_status.json "state": what the training run says it is doing.
TRAINING_STATES = ("training", "paused", "waiting", "completed", "crashed", "idle")

# status/supervisor_state.json "state": what our supervisor (`python -m SUPERVISOR_MODULE`) says it is doing.
SUPERVISOR_STATES = ("running", "stopped", "gave-up")
SUPERVISOR_MODULE = "healthkit.trainer.supervise"

# facts["daemon"]["state"]: what the audit concludes about the daemon process from the PID file and the
# process table, whatever the state file claims.
DAEMON_LIVENESS = ("running", "dead", "not-running", "pid-reused", "malformed")
