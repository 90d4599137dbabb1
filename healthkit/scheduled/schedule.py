"""`healthkit schedule`: a crontab line and a systemd service + timer that audit a workspace on a schedule.

Both run the same command: `healthkit audit PATH --output REPORTS/ --keep N` (history with
retention), and optionally a second audit that writes Prometheus metrics into
node_exporter's textfile folder. With `--heal` they run one command instead,
`healthkit fix PATH --safe --scheduled ...` (healthkit.scheduled.unattended): it heals what is safe under
the fix lock, with flap protection, tells a person what changed, and writes the report and the
textfile from the audit the fix ends with. The printed comments say what it heals and whom it
tells (channels by scheme and host only: their URLs carry tokens). Health verdicts (exit 1-3) are not failures of the job:
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
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

FLEET_NAME = "healthkit-fleet"  # the unit and textfile name of a job over several workspaces
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


def _settings(base: Path):  # -> Settings
    from healthkit.contract.settings import SettingsError, load_settings

    try:
        settings, _ = load_settings(base)
    except SettingsError as exc:
        raise ScheduleError(str(exc)) from None
    return settings


def _reports_folder(base: Path) -> Path:
    from healthkit.contract.settings import reports_folder

    return reports_folder(base, _settings(base))


def heal_comments(bases: Sequence[Path], every: str) -> list[str]:
    """What a `--heal` job heals, how it stops, and whom it tells: comment lines, never a token."""
    from healthkit.fix.plan import Safety, load_fixes

    fixes = sorted((s for s in load_fixes().values() if Safety.SAFE in s.safeties), key=lambda s: (s.order, s.id))
    healed = ", ".join(f"{s.id} ({'/'.join(s.codes)})" for s in fixes)
    lines = [
        f"# heals (safe fixes only, under the fix lock): {healed}",
        "#   never restarts a daemon stopped on request; never deletes what a person did not declare disposable",
    ]
    for base in bases:
        lines += _heal_policy(base, every, prefix=f"{base}: " if len(bases) > 1 else "")
    return lines


def _heal_policy(base: Path, every: str, prefix: str) -> list[str]:
    """One workspace's flap protection and notification channels ([heal], [notify]), as comment lines."""
    from healthkit.system.redact import describe_url

    settings = _settings(base)
    hs, ns = settings.heal, settings.notify
    backoff = f"{hs.backoff_seconds:g}s" if hs.backoff_seconds else f"one interval ({every})"
    lines = [
        f"# {prefix}stops healing a finding after {hs.max_attempts} heals in {hs.window_seconds:g}s that did not hold "
        f"(backoff {backoff}, doubling) and reports heal.gave-up; `healthkit fix --safe` by hand clears that"
    ]
    from_toml = [describe_url(u) for u in ns.urls]
    from_env = [describe_url(u) for u in os.environ.get("HEALTHKIT_NOTIFY_URLS", "").split()]
    if from_toml or from_env:
        who = ", ".join(from_toml + from_env)
        src = " and ".join(
            x
            for x, on in (
                ("healthkit.toml [notify] urls", from_toml),
                ("HEALTHKIT_NOTIFY_URLS, which the job's environment must hold too", from_env),
            )
            if on
        )
        lines.append(
            f"# {prefix}tells {who} of changes at or above {ns.level} (new, resolved, healed, gave up) and of an "
            f"open CRITICAL again every {ns.repeat_seconds:g}s; URLs from {src}"
        )
    else:
        lines.append(
            f"# {prefix}tells nobody: add Apprise URLs to healthkit.toml [notify] urls, or HEALTHKIT_NOTIFY_URLS in "
            "the job's environment (pip install 'healthkit[notify]')"
        )
    return lines


def _unit_arg(arg: str) -> str:
    """One ExecStart argument: systemd's quoting, with `%` and `$` escaped (they are specifiers there)."""
    arg = arg.replace("%", "%%").replace("$", "$$")
    if re.search(r"[\s\"'\\;]", arg) or not arg:
        return '"' + arg.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return arg


def job_user(base: Path, as_root: bool = False) -> tuple[str, str | None]:
    """(who runs the job, why it is not the caller): root scheduling another user's workspace gives it to that user.

    Root starts nothing as root for a user (docs/security.md): the job runs as the workspace's
    owner, as systemd's User= and that user's crontab do, unless ``as_root`` asks for root on purpose.
    """
    from healthkit.contract.trust import user_name

    me = getpass.getuser()
    owner = base.stat().st_uid
    if os.geteuid() != 0 or owner == 0:
        return me, None
    if as_root:
        return me, f"runs as root on purpose (--as-root), although {user_name(owner)} owns the workspace"
    return user_name(
        owner
    ), f"runs as {user_name(owner)}, the workspace's owner (root starts nothing as root for a user)"


def _bases(path: Path | str | Sequence[Path | str]) -> list[Path]:
    """The workspace folders, absolute, each once; a missing one is refused here, not at 3 a.m."""
    from healthkit.scheduled.fleet import unique_paths

    bases = unique_paths([path] if isinstance(path, (str, os.PathLike)) else path)
    for base in bases:
        if not base.is_dir():
            raise ScheduleError(f"{base} is not a folder")
    if not bases:
        raise ScheduleError("no workspace given")
    return bases


def _fleet_user(bases: list[Path], as_root: bool) -> tuple[str, str | None]:
    """One job runs as one user: the workspaces' common owner (job_user); root refuses to guess between owners."""
    users = {job_user(base, as_root) for base in bases}
    if len(users) > 1:
        from healthkit.contract.trust import user_name

        owners = sorted({user_name(base.stat().st_uid) for base in bases})
        raise ScheduleError(
            f"these workspaces belong to different users ({', '.join(owners)}): one job runs as one "
            "user, so schedule each owner's workspaces on their own (or --as-root, on purpose)"
        )
    return users.pop()


@dataclass(frozen=True)
class _Job:
    """What the three texts (crontab line, service, timer) say about one scheduled job."""

    name: str
    what: str
    base: Path
    fleet: bool
    heal: bool
    every: str
    minutes: int
    reports: Path
    prom: Path | None
    runs: list[list[str]]
    about: list[str]
    user: str
    why_user: str | None

    @property
    def doing(self) -> str:
        return "heal and audit" if self.heal else "audit"


def build(
    path: Path | str | Sequence[Path | str],
    every: str = "15m",
    keep: int = 50,
    reports: Path | None = None,
    textfile_dir: Path | None = None,
    command: list[str] | None = None,
    heal: bool = False,
    as_root: bool = False,
) -> Schedule:
    """One job for one workspace, or for several (one process audits them all: one report each, one textfile)."""
    bases = _bases(path)
    base, fleet = bases[0], len(bases) > 1
    user, why_user = _fleet_user(bases, as_root)
    minutes = parse_every(every)
    if fleet and reports is None:
        raise ScheduleError(
            "several workspaces share one reports folder: give --output DIR "
            "(each workspace's history goes to DIR/<name>/, the fleet page to DIR/index.html)"
        )
    reports = reports.expanduser().absolute() if reports else _reports_folder(base)
    name = (
        FLEET_NAME if fleet else "healthkit-" + (re.sub(r"[^A-Za-z0-9_.-]+", "-", base.name).strip("-.") or "workspace")
    )
    prom = textfile_dir.expanduser().absolute() / f"{name}.prom" if textfile_dir else None
    job = _Job(
        name=name,
        what=f"{len(bases)} workspaces ({', '.join(map(str, bases))})" if fleet else str(base),
        base=base,
        fleet=fleet,
        heal=heal,
        every=every,
        minutes=minutes,
        reports=reports,
        prom=prom,
        runs=_job_commands(command or healthkit_command(), bases, heal, every, reports, keep, prom),
        about=heal_comments(bases, every)
        if heal
        else ["# read-only: heals nothing, tells nobody (add --heal for both)"],
        user=user,
        why_user=why_user,
    )
    return Schedule(name, _crontab(job), _service(job), _timer(job))


def _job_commands(
    exe: list[str], bases: list[Path], heal: bool, every: str, reports: Path, keep: int, prom: Path | None
) -> list[list[str]]:
    """The command(s) one run executes, as argument lists (quoted once, where they are printed)."""
    folder = f"{reports}{os.sep}"
    textfile = ["--textfile", str(prom)] if prom else []
    if heal:  # one command: heal, notify, then the reports and the textfile from the audit each fix ends with
        return [
            exe
            + [
                "fix",
                *map(str, bases),
                "--safe",
                "--scheduled",
                "--every",
                every,
                "--output",
                folder,
                "--keep-reports",
                str(keep),
                *textfile,
            ]
        ]
    if len(bases) > 1:  # one audit per workspace feeds both the history and the textfile
        return [exe + ["audit", *map(str, bases), "--output", folder, "--keep", str(keep), *textfile]]
    runs = [exe + ["audit", str(bases[0]), "--output", folder, "--keep", str(keep)]]
    if prom:
        runs.append(exe + ["audit", str(bases[0]), "--format", "prom", "--output", str(prom)])
    return runs


def _cron_shell(runs: list[list[str]], reports: Path) -> str:
    """The runs as one shell line, under flock when it exists: no two runs at once (a slow disk can make one outlast
    the interval; systemd timers never overlap anyway)."""
    shell = " ; ".join(" ".join(shlex.quote(a) for a in run) for run in runs)
    lock = shutil.which("flock")
    if not lock:
        return shell
    return (
        f"mkdir -p {shlex.quote(str(reports))} && {lock} -n {shlex.quote(str(reports / '.healthkit.lock'))}"
        f" sh -c {shlex.quote(shell)}"
    )


def _crontab(job: _Job) -> str:
    results = f"{job.reports}/{'index.html' if job.fleet else 'latest.md'}" + (f" and {job.prom}" if job.prom else "")
    install_as = f"-u {job.user} " if job.why_user and job.user != getpass.getuser() else ""
    return (
        f"# healthkit: {job.doing} {job.what} every {job.every}; results in {results}\n"
        + "".join(line + "\n" for line in job.about)
        + (f"# {job.why_user}\n" if job.why_user else "")
        + f"# install: crontab {install_as}-e, paste the next line (cron gives no locale; healthkit writes UTF-8 anyway)\n"
        + f"{cron_fields(job.minutes)} {_cron_shell(job.runs, job.reports).replace('%', chr(92) + '%')} >/dev/null 2>&1\n"
    )


def _service(job: _Job) -> str:
    return "\n".join(
        [
            f"# /etc/systemd/system/{job.name}.service  (or ~/.config/systemd/user/ without User=, and systemctl --user)",
            "[Unit]",
            f"Description=healthkit {job.doing} of {job.what}",
            *job.about,
            "",
            "[Service]",
            "Type=oneshot",
            *([f"# {job.why_user}"] if job.why_user else []),
            *([f"User={job.user}"] if job.user != "root" else []),
            *([] if job.fleet else [f"WorkingDirectory={str(job.base).replace('%', '%%')}"]),
            "Environment=LC_ALL=C.UTF-8 PYTHONIOENCODING=utf-8",
            *(
                [
                    f"# notification URLs out of this file: EnvironmentFile=-/etc/healthkit/{job.name}.env "
                    "(HEALTHKIT_NOTIFY_URLS=..., mode 0600)"
                ]
                if job.heal
                else []
            ),
            *[f"ExecStart={' '.join(_unit_arg(a) for a in run)}" for run in job.runs],
            "# 1 warning, 2 critical, 3 unknown are verdicts in the report, not a failed job",
            "SuccessExitStatus=1 2 3",
            *(
                [
                    "# a daemon this job starts must outlive it (it leaves the job's process group) and not inherit a low priority",
                    "KillMode=process",
                ]
                if job.heal
                else ["Nice=10", "IOSchedulingClass=idle"]
            ),
            "TimeoutStartSec=5min",
            "",
        ]
    )


def _timer(job: _Job) -> str:
    return "\n".join(
        [
            f"# /etc/systemd/system/{job.name}.timer  then: systemctl daemon-reload && systemctl enable --now {job.name}.timer",
            "[Unit]",
            f"Description=Run the healthkit {job.doing} of {job.what} every {job.every}",
            "",
            "[Timer]",
            f"OnCalendar={on_calendar(job.minutes)}",
            "Persistent=true",
            "AccuracySec=1min",
            "",
            "[Install]",
            "WantedBy=timers.target",
            "",
        ]
    )


def render_schedule(path: Path | str | Sequence[Path | str], **options: object) -> str:
    s = build(path, **options)  # type: ignore[arg-type]
    return "\n".join(
        [
            "# --- cron ---",
            s.crontab,
            f"# --- systemd: {s.name}.service ---",
            s.service,
            f"# --- systemd: {s.name}.timer ---",
            s.timer,
        ]
    )
