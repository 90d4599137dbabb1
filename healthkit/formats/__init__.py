"""Run formats: one module per training stack's on-disk layout, between the workspace and the checks.

`base` holds the values a format gives (checkpoints, completeness, the run's record) and the
`RunFormat` interface; `registry` finds the formats (entry-point group `healthkit.formats`) and
which one a checkpoint folder is written in. The stacks: `hf` (transformers' Trainer, with its
`deepspeed` ZeRO and `fsdp` sharded variants), `lightning`, `accelerate`; `tensorboard` reads
event files behind the optional extra `healthkit[tensorboard]`.
"""

from healthkit.formats.base import Checkpoint, Completeness, DeclaredRetention, Recognised, RunFormat, RunRecord, Said

__all__ = ["Checkpoint", "Completeness", "DeclaredRetention", "Recognised", "RunFormat", "RunRecord", "Said"]
