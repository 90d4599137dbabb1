"""`healthkit schedule`: a crontab line and a systemd service + timer that audit a workspace on a schedule.

Both run the same command: `healthkit audit PATH --output REPORTS/ --keep N` (history with
retention), and optionally a second audit that writes Prometheus metrics into
node_exporter's textfile folder. Health verdicts (exit 1-3) are not failures of the job:
the systemd unit lists them in SuccessExitStatus, so only healthkit itself breaking marks
the unit failed; a job that stops running is caught by the "report stale" alert.
"""

from __future__ import annotations

import getpass
import os
import re
import shlex
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

_EVERY_RE = re.compile(r"^\s*(\d+)\s*(m|min|mins|minutes?|h|hours?|d|days?)\s*$", re.IGNORECASE)


class ScheduleError(ValueError):
    """The schedule cannot be expressed, or the workspace's settings cannot be read."""


@dataclass(frozen=True)
class Schedule:
    name: str
    crontab: str
    service: str
    timer: str


def parse_every(text: str) -> int:
    """Minutes in `15m`, `1h`, `1d`; cron and OnCalendar need it to divide an hour or a day evenly."""
    m = _EVERY_RE.match(text)
    if not m:
        raise ScheduleError(f"--every {text!r}: use minutes, hours or days, e.g. 15m, 1h, 1d")
    n, unit = int(m.group(1)), m.group(2).lower()[0]
    minutes = n * {"m": 1, "h": 60, "d": 1440}[unit]
    if minutes < 1:
        raise ScheduleError("--every must be at least 1m")
    if minutes < 60 and 60 % minutes == 0 or minutes % 60 == 0 and 1440 % minutes == 0:
        return minutes
    raise ScheduleError(
        f"--every {text}: cron can only repeat evenly at a divisor of an hour (1, 2, 3, 4, 5, 6, 10, 12, 15, 20, 30m) "
        "or of a day (1, 2, 3, 4, 6, 8, 12h, 1d)"
    )


def cron_fields(minutes: int) -> str:
    if minutes < 60:
        return "* * * * *" if minutes == 1 else f"*/{minutes} * * * *"
    hours = minutes // 60
    if hours == 24:
        return "0 0 * * *"
    return "0 * * * *" if hours == 1 else f"0 */{hours} * * *"


def on_calendar(minutes: int) -> str:
    if minutes < 60:
        return f"*-*-* *:00/{minutes:02d}:00"
    hours = minutes // 60
    return "*-*-* 00:00:00" if hours == 24 else f"*-*-* 00/{hours:02d}:00:00"


def healthkit_command() -> list[str]:
    """The healthkit that runs now, by absolute path (cron's PATH is minimal and knows no virtualenv)."""
    beside = Path(sys.executable).parent / "healthkit"
    if beside.is_file() and os.access(beside, os.X_OK):
        return [str(beside.absolute())]
    found = shutil.which("healthkit")
    if found:
        return [str(Path(found).absolute())]
    return [str(Path(sys.executable).absolute()), "-m", "healthkit.cli"]


def _reports_folder(base: Path) -> Path:
    from .settings import SettingsError, reports_folder

    try:
        return reports_folder(base)
    except SettingsError as exc:
        raise ScheduleError(str(exc)) from None


def _unit_arg(arg: str) -> str:
    """One ExecStart argument: systemd's quoting, with `%` and `$` escaped (they are specifiers there)."""
    arg = arg.replace("%", "%%").replace("$", "$$")
    if re.search(r"[\s\"'\\;]", arg) or not arg:
        return '"' + arg.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return arg


def build(path: Path | str, every: str = "15m", keep: int = 50, reports: Path | None = None,
          textfile_dir: Path | None = None, command: list[str] | None = None) -> Schedule:
    base = Path(path).expanduser().absolute()
    if not base.is_dir():
        raise ScheduleError(f"{base} is not a folder")
    minutes = parse_every(every)
    reports = (reports.expanduser().absolute() if reports else _reports_folder(base))
    exe = command or healthkit_command()
    name = "healthkit-" + (re.sub(r"[^A-Za-z0-9_.-]+", "-", base.name).strip("-.") or "workspace")
    runs = [exe + ["audit", str(base), "--output", f"{reports}{os.sep}", "--keep", str(keep)]]
    if textfile_dir:
        prom = textfile_dir.expanduser().absolute() / f"{name}.prom"
        runs.append(exe + ["audit", str(base), "--format", "prom", "--output", str(prom)])

    shell = " ; ".join(" ".join(shlex.quote(a) for a in run) for run in runs)
    lock = shutil.which("flock")
    if lock:
        # no two runs at once (a slow disk can make one outlast the interval); systemd timers never overlap anyway
        shell = (f"mkdir -p {shlex.quote(str(reports))} && {lock} -n {shlex.quote(str(reports / '.healthkit.lock'))}"
                 f" sh -c {shlex.quote(shell)}")
    crontab = (
        f"# healthkit: audit {base} every {every}; results in {reports}/latest.md"
        + (f" and {runs[-1][-1]}" if textfile_dir else "") + "\n"
        + "# install: crontab -e, paste the next line (cron gives no locale; healthkit writes UTF-8 anyway)\n"
        + f"{cron_fields(minutes)} {shell.replace('%', chr(92) + '%')} >/dev/null 2>&1\n"
    )
    user = getpass.getuser()
    service = "\n".join([
        f"# /etc/systemd/system/{name}.service  (or ~/.config/systemd/user/ without User=, and systemctl --user)",
        "[Unit]",
        f"Description=healthkit audit of {base}",
        "",
        "[Service]",
        "Type=oneshot",
        *([f"User={user}"] if user != "root" else []),
        f"WorkingDirectory={str(base).replace('%', '%%')}",
        "Environment=LC_ALL=C.UTF-8 PYTHONIOENCODING=utf-8",
        *[f"ExecStart={' '.join(_unit_arg(a) for a in run)}" for run in runs],
        "# 1 warning, 2 critical, 3 unknown are verdicts in the report, not a failed job",
        "SuccessExitStatus=1 2 3",
        "Nice=10",
        "IOSchedulingClass=idle",
        "TimeoutStartSec=5min",
        "",
    ])
    timer = "\n".join([
        f"# /etc/systemd/system/{name}.timer  then: systemctl daemon-reload && systemctl enable --now {name}.timer",
        "[Unit]",
        f"Description=Run the healthkit audit of {base} every {every}",
        "",
        "[Timer]",
        f"OnCalendar={on_calendar(minutes)}",
        "Persistent=true",
        "AccuracySec=1min",
        "",
        "[Install]",
        "WantedBy=timers.target",
        "",
    ])
    return Schedule(name, crontab, service, timer)


def render_schedule(path: Path | str, **options: object) -> str:
    s = build(path, **options)  # type: ignore[arg-type]
    return "\n".join([
        "# --- cron ---", s.crontab,
        f"# --- systemd: {s.name}.service ---", s.service,
        f"# --- systemd: {s.name}.timer ---", s.timer,
    ])
