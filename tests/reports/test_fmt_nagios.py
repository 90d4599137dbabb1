"""Nagios/Icinga/Sensu plugin output: one status line with standard perfdata, exit codes 0-3."""

from __future__ import annotations

import re

import pytest
from hkreports import make_report, write_state

from healthkit.reporting.render import render

# label=value[UOM];[warn];[crit];[min];[max]  (Nagios plugin development guidelines)
PERF = re.compile(r"^(?:'[^']+'|[^'= ]+)=-?\d+(?:\.\d+)?(?:s|%|B|c)?;[^; ]*;[^; ]*;[^; ]*(?:;[^; ]*)?$")


def test_status_line_and_perfdata():
    text = render(make_report(), "nagios")
    first, *rest = text.splitlines()
    assert first.startswith("HEALTHKIT CRITICAL - 1 critical, 2 warning | critical=1;;; warning=2;;; ")
    status, perf = first.split(" | ")
    assert "|" not in status
    items = perf.split(" ")
    assert all(PERF.match(i) for i in items), [i for i in items if not PERF.match(i)]
    perf_map = dict(i.split("=", 1) for i in items)
    assert perf_map["checkpoints"] == "12;;;0"
    assert perf_map["disk_free"] == f"{50 * 1024**3}B;;;0;{1000 * 1024**3}"
    assert perf_map["disk_free_pct"] == "5%;;;0;100"
    assert perf_map["step"] == "1000;;;0;4000"
    assert perf_map["val_loss"] == "1.4;;;"
    assert rest == [
        "[CRITICAL] daemon.dead: Training daemon is dead",
        "[WARNING] checkpoints.bloat: 12 checkpoints use 40.0G",
        "[WARNING] validation.not-running: Validation never ran",
    ]


def test_ok_and_unknown_lines():
    assert render(make_report({"daemon": []}, facts={}), "nagios").startswith(
        "HEALTHKIT OK - 0 critical, 0 warning | critical=0;;;"
    )
    text = render(make_report({"daemon": []}, facts={}, unknown=("disk",)), "nagios")
    assert text.startswith("HEALTHKIT UNKNOWN - 0 critical, 0 warning, could not check: disk | ")
    assert "[UNKNOWN] disk: did not finish within 10s" in text


@pytest.mark.parametrize(
    "findings,unknown,code,word",
    [
        ([], None, 0, "OK"),
        ([{"code": "disk.low-space", "severity": "warning", "title": "Disk | 95% full"}], None, 1, "WARNING"),
        ([{"code": "daemon.dead", "severity": "critical", "title": "Daemon dead"}], None, 2, "CRITICAL"),
        ([], "status file unreadable", 3, "UNKNOWN"),
    ],
)
def test_cli_exit_codes_follow_the_plugin_convention(workspace, cli, findings, unknown, code, word):
    write_state(workspace, findings, unknown=unknown)
    res = cli("audit", workspace, "--format", "nagios")
    assert res.exit_code == code, res.output
    first = res.stdout.splitlines()[0]
    assert first.startswith(f"HEALTHKIT {word} - ")
    assert first.count("|") == 1  # a `|` in a title must not start perfdata early
    assert res.stderr.strip() == ""  # nothing but the plugin output
