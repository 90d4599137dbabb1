"""Built-in checks: one module per concern, registered through the `healthkit.checks` entry points."""

BUILTIN_MODULES = (
    "aside", "checkpoints", "config", "daemon", "disk", "drift", "gpu",
    "hook_cost", "ports", "queue", "slurm", "training", "trust", "validation",
)
