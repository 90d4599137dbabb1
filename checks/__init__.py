"""Built-in checks: one module per concern, registered through the `healthkit.checks` entry points."""

BUILTIN_MODULES = (
    "aside", "checkpoints", "config", "daemon", "disk", "drift", "files", "gpu",
    "monitor", "monitoring", "queue", "training", "trust", "validation",
)
