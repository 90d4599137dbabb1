"""The audit itself: findings, the check registry, the workspace view, detection, the runner and the report."""
