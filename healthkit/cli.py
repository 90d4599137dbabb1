"""The `healthkit` command: thin typer commands over library functions, imported lazily to start fast."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, NoReturn

import typer

from healthkit.commands import EXIT_USAGE, audit_one, err, fix_one, report_format_or_exit
from healthkit.commands import split_values as _split
from healthkit.core.findings import FailLevel
from healthkit.reporting.render import Format

HELP = {"help_option_names": ["-h", "--help"]}

app = typer.Typer(
    name="healthkit",
    help="Audit and repair long-running fine-tuning workspaces.\n\nExit codes: 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN, 64 usage error.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings=HELP,
)


def _version(value: bool) -> None:
    if value:
        from healthkit._version import __version__

        sys.stdout.write(f"healthkit {__version__}\n")
        raise typer.Exit(0)


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="print the version and exit")
    ] = False,
) -> None:
    """Audit and repair long-running fine-tuning workspaces."""


PathArg = Annotated[Path, typer.Argument(help="workspace folder", show_default=True)]


@app.command()
def audit(
    paths: Annotated[
        list[Path] | None,
        typer.Argument(
            help="workspace folder(s); several: one report each, one process", show_default=".", metavar="PATH..."
        ),
    ] = None,
    format: Annotated[
        Format | None,
        typer.Option("--format", "-f", help="report format (default: from --output's extension, else md)"),
    ] = None,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="file, or folder for timestamped reports + latest.*")
    ] = None,
    select: Annotated[
        list[str] | None, typer.Option("--select", help="only these checks, tags or codes (repeat or comma-separate)")
    ] = None,
    ignore: Annotated[list[str] | None, typer.Option("--ignore", help="skip these checks, tags or codes")] = None,
    ascii: Annotated[bool, typer.Option("--ascii", help="no emoji or other non-ASCII characters")] = False,
    timeout: Annotated[float | None, typer.Option("--timeout", help="seconds each check may take")] = None,
    fail_level: Annotated[
        FailLevel, typer.Option("--fail-level", help="lowest verdict that gives a non-zero exit (and a JUnit failure)")
    ] = FailLevel.WARNING,
    keep: Annotated[
        int | None,
        typer.Option("--keep", min=1, help="with a folder --output: reports of each format to keep (default 50)"),
    ] = None,
    textfile: Annotated[
        Path | None,
        typer.Option("--textfile", help="also write Prometheus metrics of every workspace here, from the same audit"),
    ] = None,
    workspace_deadline: Annotated[
        float,
        typer.Option(
            "--workspace-deadline",
            min=0,
            help="seconds each workspace's audit (opening and detection included) may take, in a child process; past it the workspace is UNKNOWN, naming what blocked it (0: no child, no deadline)",
        ),
    ] = 60.0,
) -> None:
    """Inspect training workspaces and report what is wrong, with evidence you can re-run.

    Several workspaces: each gets its report (with a folder --output: its history in DIR/<name>-<hash>/ and a
    fleet page DIR/index.html); --format prom writes one textfile for all (with a folder --output:
    DIR/healthkit.prom); the exit code is the worst verdict.
    """
    fmt = report_format_or_exit(format.value if format else None, output)
    if paths and len(paths) > 1:
        _audit_many(
            paths,
            fmt,
            output,
            textfile,
            select=_split(select),
            ignore=_split(ignore),
            ascii=ascii,
            timeout=timeout,
            fail_level=fail_level,
            keep=keep,
            deadline=workspace_deadline or None,
        )
    audit_one(
        paths[0] if paths else Path("."),
        fmt,
        output,
        select=_split(select),
        ignore=_split(ignore),
        ascii=ascii,
        timeout=timeout,
        fail_level=fail_level,
        keep=keep,
        textfile=textfile,
        deadline=workspace_deadline,
    )


def _audit_many(
    paths: list[Path],
    fmt: str,
    output: Path | None,
    textfile: Path | None,
    *,
    select: list[str],
    ignore: list[str],
    ascii: bool,
    timeout: float | None,
    fail_level: FailLevel,
    keep: int | None,
    deadline: float | None = None,
) -> None:
    """`healthkit audit WS1 WS2 ...`: every workspace from this one process (each in a forked child under
    ``deadline``); exits with the worst verdict."""
    from healthkit.core.selectors import SelectorError
    from healthkit.reporting.output import is_dir_target, write_stdout
    from healthkit.scheduled.fleet import FleetUsageError, audit_many, check_target, worst_exit, write_outputs

    state_dir = output if output is not None and is_dir_target(output) else (textfile.parent if textfile else None)
    try:
        check_target(fmt, output)
        if deadline:
            from healthkit.scheduled.fleet import unique_paths
            from healthkit.scheduled.fleetdeadline import audit_in_children

            audited = audit_in_children(
                unique_paths(paths),
                select=select,
                ignore=ignore,
                timeout_s=timeout,
                deadline_s=deadline,
                state_dir=state_dir,
            )
        else:
            audited = audit_many(paths, select=select, ignore=ignore, timeout_s=timeout)
    except (FleetUsageError, SelectorError) as exc:
        err(f"healthkit: {exc}")
        raise typer.Exit(EXIT_USAGE) from None
    try:
        text, written = write_outputs(audited, fmt, output, textfile, ascii=ascii, keep=keep, fail_level=fail_level)
    except OSError as exc:
        err(f"healthkit: cannot write the reports: {exc.strerror or exc} ({getattr(exc, 'filename', None) or output})")
        raise typer.Exit(3) from None
    if text is not None:
        write_stdout(text)
    _say_written(written, output)
    for a in audited:
        err(f"{a.path}: {a.report.summary_line()}")
    raise typer.Exit(worst_exit(audited, fail_level))


def _say_written(written: list[Path], folder: Path | None) -> None:
    """A few files by name; a fleet's many (every workspace's history) as one line that says where they are."""
    if len(written) <= 4 or folder is None:
        for p in written:
            err(f"wrote {p}")
        return
    named = [p for p in written if p.parent == folder.expanduser().absolute() or p.parent == folder]
    for p in named:
        err(f"wrote {p}")
    rest = len(written) - len(named)
    if rest:
        err(f"wrote {rest} more file(s): each workspace's reports in {folder}/<name>-<hash>/")


@app.command()
def schedule(
    paths: Annotated[
        list[Path] | None,
        typer.Argument(
            help="workspace folder(s); several: one job audits them all", show_default=".", metavar="PATH..."
        ),
    ] = None,
    every: Annotated[str, typer.Option("--every", help="how often: 5m, 15m, 1h, 6h, 1d")] = "15m",
    keep: Annotated[int, typer.Option("--keep", min=1, help="reports of each format to keep")] = 50,
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", help="reports folder (default: the workspace's reports/; needed for several)"),
    ] = None,
    textfile_dir: Annotated[
        Path | None,
        typer.Option(
            "--textfile-dir", help="also write Prometheus metrics for node_exporter's textfile collector here"
        ),
    ] = None,
    heal: Annotated[
        bool,
        typer.Option(
            "--heal", help="the job also applies the safe fixes (with flap protection, [heal]) and notifies ([notify])"
        ),
    ] = False,
    as_root: Annotated[
        bool,
        typer.Option(
            "--as-root", help="run as root: by default root schedules another user's workspace as that user (User=)"
        ),
    ] = False,
) -> None:
    """Print a crontab line and a systemd service + timer that audit these workspaces on a schedule."""
    from healthkit.reporting.output import write_stdout
    from healthkit.scheduled.schedule import ScheduleError, render_schedule

    try:
        text = render_schedule(
            paths or [Path(".")],
            every=every,
            keep=keep,
            reports=output,
            textfile_dir=textfile_dir,
            heal=heal,
            as_root=as_root,
        )
    except ScheduleError as exc:
        err(f"healthkit: {exc}")
        raise typer.Exit(EXIT_USAGE) from None
    write_stdout(text)


EXIT_NOPERM = 77  # sysexits' EX_NOPERM: not a health verdict


def report_trust(path: Path | str) -> tuple[int, str]:
    """`healthkit trust PATH`: (exit code, what to print). Root only; says what still keeps the workspace untrusted.

    A command's words, so it lives with the command; the rules it applies are healthkit.contract.trust's."""
    import os

    from healthkit.contract.settings import SettingsError, load_settings
    from healthkit.contract.trust import add_to_trust_list, assess, trust_file, user_name

    base = Path(path).expanduser().absolute()
    if not base.is_dir():
        return 64, f"healthkit trust: {base} is not a folder"
    if os.geteuid() != 0:
        return 77, (
            "healthkit trust: only root may change the trust list (it decides what healthkit, run as root, "
            f"will run); run it as root. {trust_file()} is unchanged"
        )
    try:
        listfile, added = add_to_trust_list(base)
    except (OSError, ValueError) as exc:
        return 3, f"healthkit trust: cannot update {trust_file()}: {exc}"
    lines = [
        f"{'added to' if added else 'already in'} {listfile}: {os.path.realpath(base)} (owner {user_name(base.stat().st_uid)})"
    ]
    try:
        settings, spath = load_settings(base)
    except SettingsError as exc:
        return 1, "\n".join(lines + [f"but its settings cannot be read, so nothing it names will run: {exc}"])
    verdict = assess(base, settings, spath)
    if verdict.trusted:
        owner = user_name(verdict.owner_uid)
        lines.append(f"its plugins and settings commands may now run; daemons healthkit starts for it run as {owner}")
        return 0, "\n".join(lines)
    lines.append(
        "but it stays untrusted until each of these is owned by its owner or root and writable by no one else:"
    )
    lines += [f"  {f.describe()}" for f in verdict.files]
    return 1, "\n".join(lines)


@app.command("trust")
def trust_cmd(path: Annotated[Path, typer.Argument(help="workspace folder to trust")]) -> None:
    """Trust a workspace owned by another user: its plugins and settings commands may run (root only; docs/security.md).

    Adds it to /etc/healthkit/trusted.toml (HEALTHKIT_TRUST_FILE names another list). Exit 77 when not root.
    """
    code, text = report_trust(path)
    (write_out if code == 0 else err)(text)
    raise typer.Exit(code)


def write_out(text: str) -> None:
    from healthkit.reporting.output import write_stdout

    write_stdout(text.rstrip("\n") + "\n")


@app.command()
def fix(
    paths: Annotated[
        list[Path] | None,
        typer.Argument(
            help="workspace folder; several only with --scheduled (one job heals them all)",
            show_default=".",
            metavar="PATH...",
        ),
    ] = None,
    safe: Annotated[bool, typer.Option("--safe", help="apply fixes that cannot lose work")] = False,
    unsafe: Annotated[
        bool, typer.Option("--unsafe", help="also apply fixes that may lose work or change training")
    ] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="print the plans and change nothing")] = False,
    only: Annotated[
        list[str] | None,
        typer.Option("--only", help="only these finding codes, check ids or fix ids (repeat or comma-separate)"),
    ] = None,
    keep: Annotated[
        int | None,
        typer.Option("--keep", min=1, help="checkpoints to keep when no save_total_limit is declared (unsafe prune)"),
    ] = None,
    to: Annotated[
        str | None,
        typer.Option(
            "--to",
            metavar="CHECKPOINT",
            help="the checkpoint `rewind-to-checkpoint` goes back to, e.g. checkpoint-600 (default: the newest complete one before the fault)",
        ),
    ] = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="apply unsafe fixes without asking")] = False,
    wait: Annotated[
        float,
        typer.Option(
            "--wait", min=0, help="seconds to wait for another fix run on this workspace (default: refuse at once)"
        ),
    ] = 0.0,
    scheduled: Annotated[
        bool,
        typer.Option(
            "--scheduled",
            help="the job `healthkit schedule --heal` prints: backs off and gives up ([heal]), notifies ([notify]), writes the report history",
        ),
    ] = False,
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", help="with --scheduled: reports folder (default: the workspace's reports/)"),
    ] = None,
    keep_reports: Annotated[
        int | None,
        typer.Option("--keep-reports", min=1, help="with --scheduled: reports of each format to keep (default 50)"),
    ] = None,
    textfile: Annotated[
        Path | None, typer.Option("--textfile", help="with --scheduled: also write Prometheus metrics to this file")
    ] = None,
    every: Annotated[
        str | None,
        typer.Option("--every", help="with --scheduled: the schedule's interval (the default first backoff)"),
    ] = None,
    workspace_deadline: Annotated[
        float,
        typer.Option(
            "--workspace-deadline",
            min=0,
            help="seconds the fix's audit may take in its child (--safe, any --dry-run, several with --scheduled); past it: UNKNOWN naming what blocked it; a fix being applied is never cut short (0: no child)",
        ),
    ] = 60.0,
) -> None:
    """Repair what the audit found: plans first, then results, then a re-audit (exit code: the re-audit's).

    Another fix run on the same workspace makes this one refuse (exit 3) unless --wait.
    A person's run always applies, and clears the scheduled job's backoff and give-up.
    """
    if safe == unsafe:
        _usage_error("healthkit fix: choose exactly one of --safe or --unsafe")
    paths = paths or [Path(".")]
    if scheduled and to is not None:
        _usage_error("healthkit fix: --to is for a person's rewind of one workspace, not --scheduled")
    if scheduled:
        _fix_scheduled(
            paths,
            unsafe=unsafe,
            dry_run=dry_run,
            only=only,
            output=output,
            keep_reports=keep_reports,
            textfile=textfile,
            every=every,
            wait=wait,
            deadline=workspace_deadline,
        )
        return
    if output is not None or keep_reports is not None or textfile is not None or every is not None:
        _usage_error("healthkit fix: --output, --keep-reports, --textfile and --every go with --scheduled")
    if len(paths) > 1:
        _usage_error(
            f"healthkit fix: one workspace at a time ({len(paths)} given); several go only with --scheduled "
            "(the job `healthkit schedule WS1 WS2 --heal --output DIR/` prints)"
        )
    fix_one(
        paths[0],
        unsafe=unsafe,
        dry_run=dry_run,
        only=_split(only),
        keep=keep,
        yes=yes,
        wait=wait,
        deadline=workspace_deadline,
        to=to,
    )


def _usage_error(message: str) -> NoReturn:
    err(message)
    raise typer.Exit(EXIT_USAGE)


def _fix_scheduled(
    paths: list[Path],
    unsafe: bool,
    dry_run: bool,
    only: list[str] | None,
    output: Path | None,
    keep_reports: int | None,
    textfile: Path | None,
    every: str | None,
    wait: float,
    deadline: float = 60.0,
) -> None:
    """`fix --safe --scheduled`: heal, notify and write the report from the audit the fix ends with
    (healthkit.scheduled.unattended)."""
    from healthkit.core.workspace import WorkspaceError
    from healthkit.fix import FixError
    from healthkit.reporting.output import Utf8Stdout
    from healthkit.scheduled.schedule import ScheduleError, parse_every
    from healthkit.scheduled.unattended import heal_and_report

    if unsafe or dry_run or only:
        err("healthkit fix: --scheduled heals with --safe only (no --unsafe, --dry-run or --only)")
        raise typer.Exit(EXIT_USAGE)
    if len(paths) > 1 and output is None:
        err(
            "healthkit fix: several workspaces need --output DIR/ (each history in DIR/<name>-<hash>/, the fleet page "
            "DIR/index.html)"
        )
        raise typer.Exit(EXIT_USAGE)
    try:
        interval_s = parse_every(every) * 60.0 if every else None
    except ScheduleError as exc:
        err(f"healthkit: {exc}")
        raise typer.Exit(EXIT_USAGE) from None

    if len(paths) > 1:
        _heal_many(
            paths,
            output,  # type: ignore[arg-type]  # several workspaces: checked above that --output is given
            keep_reports,
            textfile,
            interval_s,
            Utf8Stdout(),
            max(wait, 60.0),
            deadline=deadline or None,
        )
    path = paths[0]
    try:
        done = heal_and_report(
            path,
            reports=output,
            keep=keep_reports,
            textfile=textfile,
            interval_s=interval_s,
            out=Utf8Stdout(),  # type: ignore[arg-type]
            lock_wait_s=max(wait, 60.0),
        )
    except (WorkspaceError, FixError) as exc:
        err(f"healthkit: {exc}")
        _unknown_where_it_can(path, output, keep_reports, textfile, f"not healed: {exc}")
        raise typer.Exit(3) from None
    except OSError as exc:
        err(f"healthkit: cannot write the report: {exc.strerror or exc}")
        _unknown_where_it_can(
            path, output, keep_reports, textfile, f"the report could not be written: {exc.strerror or exc}"
        )
        raise typer.Exit(3) from None
    for p in done.written:
        err(f"wrote {p}")
    _report_run(done)
    err(done.report.summary_line())
    raise typer.Exit(done.exit_code)


def _unknown_where_it_can(path: Path, output: Path | None, keep: int | None, textfile: Path | None, why: str) -> None:
    """A scheduled run that could not heal or report (the lock held, a disk full) still leaves an UNKNOWN report
    saying why, in its history and its textfile, wherever either can be written: silence would read as healthy."""
    from healthkit.contract.settings import SettingsError, reports_folder
    from healthkit.reporting.output import write_report
    from healthkit.scheduled.fleet import unreadable_report

    report = unreadable_report(path.absolute(), why)
    try:
        folder = output if output is not None else reports_folder(path.absolute())
    except SettingsError:
        folder = path.absolute() / "reports"
    targets = [(folder.expanduser().absolute(), "md")] + (
        [(textfile.expanduser().absolute(), "prom")] if textfile else []
    )
    for target, fmt in targets:
        try:
            for p in write_report(report, fmt, target, keep=keep):
                err(f"wrote {p}")
        except OSError as exc:
            err(f"healthkit: the UNKNOWN report could not be written to {target} either: {exc.strerror or exc}")


def _report_run(done, prefix: str = "") -> None:  # done: healthkit.scheduled.unattended.ScheduledRun
    """What one scheduled heal sent and did, on stderr."""
    if done.sent is not None:
        for c in done.sent.channels:
            err(f"{prefix}notify {c['channel']}: {'sent' if c['ok'] else 'FAILED: ' + str(c['error'])}")
    err(prefix + done.fix.summary_line())


def _heal_many(
    paths: list[Path],
    output: Path,
    keep: int | None,
    textfile: Path | None,
    interval_s: float | None,
    out,
    lock_wait_s: float,
    deadline: float | None = None,
) -> None:
    """`fix WS1 WS2 --safe --scheduled --output DIR/`: each healed as alone, one fleet page, one textfile; worst verdict."""
    from healthkit.scheduled.unattended import heal_many

    try:
        done = heal_many(
            paths,
            output,
            keep=keep,
            textfile=textfile,
            interval_s=interval_s,
            out=out,
            lock_wait_s=lock_wait_s,
            deadline_s=deadline,
        )
    except OSError as exc:
        err(
            f"healthkit: cannot write the fleet page or textfile: {exc.strerror or exc} ({getattr(exc, 'filename', None) or output})"
        )
        raise typer.Exit(3) from None
    _say_written(done.written, output)
    for a in done.audited:
        if a.path in done.runs:
            _report_run(done.runs[a.path], prefix=f"{a.path}: ")
        else:
            err(f"{a.path}: {done.errors[a.path]}")
    for a in done.audited:
        err(f"{a.path}: {a.report.summary_line()}")
    raise typer.Exit(done.exit_code)


WorkspaceOpt = Annotated[
    Path | None,
    typer.Option(
        "--workspace", "-w", help="also load this workspace's plugins ([checks] plugins), under the trust rules"
    ),
]


def _registry_for(workspace: Path | None):
    """The registry `checks` and `explain` read: the built-ins, plus a trusted workspace's own plugins."""
    from healthkit.core.registry import default_registry
    from healthkit.core.workspace import WorkspaceError

    if workspace is None:
        return default_registry()
    from healthkit.core.workspace import Workspace

    try:
        ws = Workspace.open(workspace)
    except WorkspaceError as exc:
        err(f"healthkit: {exc}")
        raise typer.Exit(EXIT_USAGE) from None
    if not ws.trust.trusted:
        err(
            f"healthkit: {ws.base} is not trusted, so its plugins are not loaded: {'; '.join(ws.trust.problems) or 'see `healthkit audit`'}"
            " (`healthkit trust PATH`, docs/security.md); the built-in checks follow"
        )
        return default_registry()
    return default_registry(ws.settings.checks.plugins, ws.base)


@app.command("checks")
def list_checks(workspace: WorkspaceOpt = None) -> None:
    """List the registered checks and the finding codes each can report (with --workspace, its plugins' too)."""
    from healthkit.reporting.output import write_stdout

    reg = _registry_for(workspace)
    rows = [(c, d) for c in reg.sorted() for d in c.codes]
    width = max([len(d.code) for _, d in rows] + [28])
    lines = []
    for c in reg.sorted():
        tags = f" [{', '.join(c.tags)}]" if c.tags else ""
        lines.append(f"{c.id}: {c.title}{tags}  ({c.source})")
        for d in c.codes:
            lines.append(f"  {d.code:<{width}} {d.severity:<8} {d.title}")
    for e in reg.errors:
        lines.append(f"! {e.source}: {e.message}")
    write_stdout("\n".join(lines) + "\n")
    if reg.errors:
        raise typer.Exit(3)


@app.command()
def explain(
    code: Annotated[str, typer.Argument(help="finding code, e.g. daemon.dead")], workspace: WorkspaceOpt = None
) -> None:
    """Say what a finding code means, why it matters and how it is fixed (with --workspace, its plugins' codes too)."""
    import difflib

    from healthkit.reporting.output import write_stdout

    docs = _registry_for(workspace).code_docs()
    if code not in docs:
        close = difflib.get_close_matches(code, list(docs), n=3, cutoff=0.6)
        hint = "; see `healthkit checks`" + ("" if workspace else " (a plugin's code: add --workspace WS)")
        err(f"unknown finding code {code!r}" + (f"; did you mean: {', '.join(close)}" if close else hint))
        raise typer.Exit(EXIT_USAGE)
    write_stdout(docs[code].render() + "\n")


@app.command()
def demo(
    keep: Annotated[
        bool, typer.Option("--keep", help="leave the demo workspace and its orphan process running")
    ] = False,
    format: Annotated[Format, typer.Option("--format", "-f")] = Format.md,
    ascii: Annotated[bool, typer.Option("--ascii")] = False,
    exit_code: Annotated[
        bool, typer.Option("--exit-code", help="exit with the audit's verdict (2: the example is critical)")
    ] = False,
    reports: Annotated[
        Path | None, typer.Option("--reports", help="also write example-machine.md/.json/.html into this folder")
    ] = None,
) -> None:
    """Build the example machine (dead daemon, orphaned training, bloat, drift, no validation) and audit it."""
    from healthkit.demo import run_demo

    code = run_demo(keep=keep, fmt=format.value, ascii=ascii, reports=reports)
    raise typer.Exit(code if exit_code else 0)


# trainer commands: thin bodies, trainer code imported inside (the audit never imports it) -----------------
daemon_app = typer.Typer(
    help="Start, stop, pause, resume and inspect the training daemon.", no_args_is_help=True, context_settings=HELP
)
queue_app = typer.Typer(
    help="Add files to the training queue, list it, retry a failed file.", no_args_is_help=True, context_settings=HELP
)
app.add_typer(daemon_app, name="daemon")
app.add_typer(queue_app, name="queue")


@daemon_app.command("start")
def daemon_start(
    path: PathArg = Path("."),
    supervise: Annotated[bool, typer.Option("--supervise", help="restart the daemon on crash, with backoff")] = False,
    foreground: Annotated[bool, typer.Option("--foreground", help="run in this terminal instead of detaching")] = False,
) -> None:
    """Start the daemon; it adopts a training left running by a dead daemon instead of starting a second one."""
    from healthkit.trainer.commands import start

    raise typer.Exit(start(path, supervise=supervise, foreground=foreground))


@daemon_app.command("stop")
def daemon_stop(
    path: PathArg = Path("."),
    wait: Annotated[float, typer.Option("--wait", help="seconds to wait for the checkpoint and exit")] = 120.0,
    reason: Annotated[
        str | None, typer.Option("--reason", help="why (recorded; the audit reports the stop as info)")
    ] = None,
) -> None:
    """Stop at the next step boundary, after saving a checkpoint; it stays stopped until `daemon start` (no fix restarts it)."""
    from healthkit.trainer.commands import stop

    raise typer.Exit(stop(path, wait_s=wait, reason=reason))


@daemon_app.command("status")
def daemon_status(
    path: PathArg = Path("."),
    json_: Annotated[bool, typer.Option("--json", help="machine-readable")] = False,
) -> None:
    """Show the daemon, the training and the queue (exit 3 when no daemon runs)."""
    from healthkit.trainer.commands import status

    raise typer.Exit(status(path, as_json=json_))


@daemon_app.command("pause")
def daemon_pause(
    path: PathArg = Path("."),
    reason: Annotated[str | None, typer.Option("--reason", help="why; shown in status until resume")] = None,
) -> None:
    """Hold training at the next step boundary (no new file starts either)."""
    from healthkit.trainer.commands import pause

    raise typer.Exit(pause(path, reason))


@daemon_app.command("resume")
def daemon_resume(path: PathArg = Path(".")) -> None:
    """Continue after a pause (clears paused_at and the reason)."""
    from healthkit.trainer.commands import resume

    raise typer.Exit(resume(path))


@daemon_app.command("slurm-script")
def daemon_slurm_script(path: PathArg = Path(".")) -> None:
    """Print the Slurm batch script that runs the daemon (it execs the daemon; USR1 before the time limit: save, requeue)."""
    from healthkit.trainer.commands import slurm_script

    raise typer.Exit(slurm_script(path))


@daemon_app.command("systemd-unit")
def daemon_systemd_unit(
    path: PathArg = Path("."),
    user: Annotated[
        str | None,
        typer.Option(
            "--user", help="User= of the service (default, as root: the workspace's owner when that is another user)"
        ),
    ] = None,
) -> None:
    """Print a systemd unit (Restart=on-failure) for those who prefer the system's supervisor."""
    from healthkit.trainer.commands import systemd_unit

    raise typer.Exit(systemd_unit(path, user))


@queue_app.command("add")
def queue_add(
    path: Annotated[Path, typer.Argument(help="workspace folder")],
    files: Annotated[list[Path], typer.Argument(help="JSONL files to queue")],
    priority: Annotated[
        int | None, typer.Option("--priority", "-p", min=0, max=9, help="0 runs first, 9 last (default 5)")
    ] = None,
    move: Annotated[bool, typer.Option("--move", help="move the files instead of copying them")] = False,
    force: Annotated[bool, typer.Option("--force", help="queue a file even though the daemon would fail it")] = False,
) -> None:
    """Queue JSONL files for training, after checking every line (exit 65 for a file the daemon would fail, 78 for a config it refuses)."""
    from healthkit.trainer.commands import queue_add as add

    raise typer.Exit(add(path, files, priority=priority, move=move, force=force))


@queue_app.command("retry")
def queue_retry(
    path: Annotated[Path, typer.Argument(help="workspace folder")],
    name: Annotated[str, typer.Argument(help="the file's name in queue/failed/")],
    force: Annotated[bool, typer.Option("--force", help="retry it even though the daemon would fail it again")] = False,
) -> None:
    """Put a failed file back in the queue, after checking every line as `queue add` does (exit 65 for a file the daemon
    would fail again): it resumes from its newest complete checkpoint (kept since it failed)."""
    from healthkit.trainer.commands import queue_retry as retry

    raise typer.Exit(retry(path, name, force=force))


@queue_app.command("list")
def queue_list(
    path: PathArg = Path("."),
    json_: Annotated[bool, typer.Option("--json", help="machine-readable")] = False,
) -> None:
    """List the queue in the order files will run, and what is processing, done and failed (with why)."""
    from healthkit.trainer.commands import queue_list as listing

    raise typer.Exit(listing(path, as_json=json_))


@app.command("init")
def init_cmd(
    path: PathArg = Path("."),
    tiny_model: Annotated[
        bool, typer.Option("--tiny-model", help="add a random-init model and tokenizer: a full run on a CPU, offline")
    ] = False,
    force: Annotated[
        bool,
        typer.Option(
            "--force",
            help="rebuild the --tiny-model model (never replaces config.json or README.md; with --detect: replace healthkit.toml)",
        ),
    ] = False,
    detect: Annotated[
        bool,
        typer.Option(
            "--detect",
            help="an existing setup: write healthkit.toml from what is detected, each setting with its evidence",
        ),
    ] = False,
    print_: Annotated[
        bool, typer.Option("--print", help="with --detect: print healthkit.toml instead of writing it")
    ] = False,
) -> None:
    """Scaffold a training workspace (config.json, a README stating it, queue folders), or with --detect describe an existing one."""
    if detect:
        _init_detect(path, force=force, print_only=print_)
        return
    if print_:
        err("healthkit init: --print goes with --detect")
        raise typer.Exit(EXIT_USAGE)
    from healthkit.trainer.commands import init

    raise typer.Exit(init(path, tiny_model=tiny_model, force=force))


def _init_detect(path: Path, force: bool, print_only: bool) -> None:
    from healthkit.core.detect import InitError, init_detect
    from healthkit.reporting.output import write_stdout

    try:
        text, written = init_detect(path, force=force, print_only=print_only)
    except InitError as exc:
        err(f"healthkit init: {exc}; nothing was written")
        raise typer.Exit(1) from None
    except OSError as exc:
        err(f"healthkit init: cannot write {path / 'healthkit.toml'}: {exc.strerror or exc}; nothing was written")
        raise typer.Exit(3) from None
    if written is None:
        write_stdout(text)
    else:
        err(f"wrote {written} (check each detected setting; a wrong guess is corrected there)")


def _click_exceptions() -> list:
    """The click exception modules in play: typer >= 0.20 vendors click as typer._click; a separately installed
    click counts only once something imported it (nothing else can raise its exceptions), so it is never loaded here."""
    return [sys.modules[name] for name in ("typer._click.exceptions", "click.exceptions") if name in sys.modules]


def main() -> None:
    """Console entry point: usage errors exit 64, never 2 (2 means CRITICAL here)."""

    def classes(name: str) -> tuple:  # evaluated when an exception arrives: the modules loaded by then
        return tuple(getattr(m, name) for m in _click_exceptions() if hasattr(m, name))

    try:
        rv = app(standalone_mode=False)
    except classes("UsageError") as exc:  # includes BadParameter, NoSuchOption, NoArgsIsHelpError
        if type(exc).__name__ == "NoArgsIsHelpError":
            err(exc.ctx.get_help() if exc.ctx is not None else str(exc))
        else:
            err(f"healthkit: {exc.format_message()}")
            if exc.ctx is not None:
                err(exc.ctx.get_usage())
        sys.exit(EXIT_USAGE)
    except classes("Exit") as exc:
        sys.exit(exc.exit_code)
    except classes("Abort"):
        err("aborted")
        sys.exit(130)
    except KeyboardInterrupt:
        sys.exit(130)
    sys.exit(rv if isinstance(rv, int) else 0)


if __name__ == "__main__":
    main()
