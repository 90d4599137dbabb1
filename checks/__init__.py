"""Built-in checks: one module per concern, registered through the `healthkit.checks` entry points."""

BUILTIN_MODULES = (
    "aside",
    "checkpoints",
    "config",
    "daemon",
    "disk",
    "drift",
    "files",
    "gpu",
    "goodput",
    "hook_cost",
    "ports",
    "queue",
    "slurm",
    "training",
    "trainsignal",
    "trust",
    "validation",
)
