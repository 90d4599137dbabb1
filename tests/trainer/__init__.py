"""Trainer tests: real processes, real SIGKILL, real tiny Trainer runs (CPU, offline)."""
