"""`healthkit schedule`: a crontab line and systemd units that run the cron audit (validated where tools exist)."""

from __future__ import annotations

import shlex
import shutil
import subprocess

import pytest

from healthkit.scheduled.schedule import ScheduleError, build, cron_fields, on_calendar, parse_every

SYSTEMD_ANALYZE = shutil.which("systemd-analyze")


@pytest.mark.parametrize(
    "every,cron,calendar",
    [
        ("1m", "* * * * *", "*-*-* *:00/01:00"),
        ("15m", "*/15 * * * *", "*-*-* *:00/15:00"),
        ("30min", "*/30 * * * *", "*-*-* *:00/30:00"),
        ("1h", "0 * * * *", "*-*-* 00/01:00:00"),
        ("6h", "0 */6 * * *", "*-*-* 00/06:00:00"),
        ("1d", "0 0 * * *", "*-*-* 00:00:00"),
    ],
)
def test_intervals(every, cron, calendar):
    minutes = parse_every(every)
    assert cron_fields(minutes) == cron and on_calendar(minutes) == calendar


@pytest.mark.parametrize("every", ["7m", "90m", "5h", "0m", "soon", "2d"])
def test_intervals_cron_cannot_repeat_evenly_are_refused(every):
    with pytest.raises(ScheduleError):
        parse_every(every)


def test_crontab_line_runs_the_history_audit(tmp_path):
    ws = tmp_path / "my ws"
    ws.mkdir()
    s = build(ws, every="15m", keep=20, command=["/opt/venv/bin/healthkit"])
    line = [ln for ln in s.crontab.splitlines() if not ln.startswith("#")]
    assert len(line) == 1 and line[0].startswith("*/15 * * * * ")
    words = shlex.split(line[0][len("*/15 * * * * ") :])
    inner = shlex.split(words[words.index("-c") + 1]) if "-c" in words else words
    assert inner[:3] == ["/opt/venv/bin/healthkit", "audit", str(ws)]
    assert inner[inner.index("--output") + 1] == f"{ws}/reports/"
    assert inner[inner.index("--keep") + 1] == "20"
    assert line[0].endswith(">/dev/null 2>&1")


def test_reports_folder_follows_healthkit_toml_and_percent_is_escaped_for_cron(tmp_path):
    ws = tmp_path / "ws%1"
    ws.mkdir()
    (ws / "healthkit.toml").write_text('[paths]\nreports = "out/health"\n')
    s = build(ws, command=["/bin/healthkit"])
    line = [ln for ln in s.crontab.splitlines() if not ln.startswith("#")][0]
    assert "ws\\%1/out/health/" in line and "ws%1" not in line.replace("\\%", "")
    assert f"WorkingDirectory={tmp_path}/ws%%1" in s.service


def test_systemd_units(tmp_path):
    s = build(tmp_path, every="1h", textfile_dir=tmp_path / "textfile", command=["/opt/venv/bin/healthkit"])
    assert s.name == f"healthkit-{tmp_path.name}"
    assert "Type=oneshot" in s.service and "SuccessExitStatus=1 2 3" in s.service
    execs = [ln for ln in s.service.splitlines() if ln.startswith("ExecStart=")]
    assert execs[0] == f"ExecStart=/opt/venv/bin/healthkit audit {tmp_path} --output {tmp_path}/reports/ --keep 50"
    assert execs[1] == (
        f"ExecStart=/opt/venv/bin/healthkit audit {tmp_path} --format prom --output {tmp_path}/textfile/{s.name}.prom"
    )
    assert "OnCalendar=*-*-* 00/01:00:00" in s.timer and "Persistent=true" in s.timer
    assert "WantedBy=timers.target" in s.timer


@pytest.mark.skipif(SYSTEMD_ANALYZE is None, reason="systemd-analyze not installed (Debian package `systemd`)")
def test_systemd_analyze_accepts_the_units(tmp_path):
    import sys

    ws = tmp_path / "ws"
    ws.mkdir()
    s = build(ws, every="15m", command=[sys.executable, "-m", "healthkit.cli"])
    (tmp_path / f"{s.name}.service").write_text(s.service)
    (tmp_path / f"{s.name}.timer").write_text(s.timer)
    proc = subprocess.run(
        [SYSTEMD_ANALYZE, "verify", f"{s.name}.service", f"{s.name}.timer"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=30,
    )
    if (
        "Failed to" in proc.stderr
        and "system" in proc.stderr.lower()
        and proc.returncode != 0
        and "bus" in proc.stderr.lower()
    ):
        pytest.skip(f"systemd-analyze cannot run here: {proc.stderr.strip()[:200]}")
    assert proc.returncode == 0, proc.stderr
    assert s.name not in proc.stderr, proc.stderr  # no complaint about our units
    cal = subprocess.run([SYSTEMD_ANALYZE, "calendar", on_calendar(15)], capture_output=True, text=True, timeout=30)
    assert cal.returncode == 0, cal.stderr


def test_cli_prints_all_three_and_rejects_bad_intervals(cli, tmp_path):
    res = cli("schedule", tmp_path, "--every", "30m")
    assert res.exit_code == 0, res.output
    assert "*/30 * * * *" in res.stdout and "[Service]" in res.stdout and "[Timer]" in res.stdout
    res = cli("schedule", tmp_path, "--every", "7m")
    assert res.exit_code == 64 and "divisor" in res.stderr
    res = cli("schedule", tmp_path / "missing")
    assert res.exit_code == 64 and "not a folder" in res.stderr
