"""The workspace contract: the names, files and settings that the trainer writes and the audit reads.

State vocabularies, config.json's model and schema, healthkit.toml, the workspace id, the event log, the
monitoring-cost file, the retry checkpoints of a failed file, and whether the workspace's own code may run.
"""

# 0.1's `healthkit.contract` module held the state vocabularies; its names stay importable from here.
from healthkit.contract.states import *  # noqa: F403
from healthkit.contract.states import __all__ as __all__
