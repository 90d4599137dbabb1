"""Unattended operation: cron and systemd units, healing with flap protection, notifications, fleets."""
