"""The `healthkit` command: thin typer commands over library functions, imported lazily to start fast."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from .models import FailLevel
from .render import Format

EXIT_USAGE = 64
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
        from . import __version__

        sys.stdout.write(f"healthkit {__version__}\n")
        raise typer.Exit(0)


@app.callback()
def _root(
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True, help="print the version and exit")] = False,
) -> None:
    """Audit and repair long-running fine-tuning workspaces."""

PathArg = Annotated[Path, typer.Argument(help="workspace folder", show_default=True)]


def err(message: str) -> None:
    sys.stderr.write(message.rstrip("\n") + "\n")


def ask(question: str) -> bool:
    """A yes/no question on the terminal; end of input (Ctrl-D) or Ctrl-C answers no, without a traceback."""
    try:
        return typer.confirm(question, default=False, err=True)
    except (typer.Abort, EOFError, KeyboardInterrupt):
        err("")  # the prompt's line ends here
        return False


def _split(values: Optional[list[str]]) -> list[str]:
    return [v.strip() for item in values or [] for v in item.split(",") if v.strip()]


@app.command()
def audit(
    path: PathArg = Path("."),
    format: Annotated[Optional[Format], typer.Option("--format", "-f", help="report format (default: from --output's extension, else md)")] = None,
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="file, or folder for timestamped reports + latest.*")] = None,
    select: Annotated[Optional[list[str]], typer.Option("--select", help="only these checks, tags or codes (repeat or comma-separate)")] = None,
    ignore: Annotated[Optional[list[str]], typer.Option("--ignore", help="skip these checks, tags or codes")] = None,
    ascii: Annotated[bool, typer.Option("--ascii", help="no emoji or other non-ASCII characters")] = False,
    timeout: Annotated[Optional[float], typer.Option("--timeout", help="seconds each check may take")] = None,
    fail_level: Annotated[FailLevel, typer.Option("--fail-level", help="lowest verdict that gives a non-zero exit (and a JUnit failure)")] = FailLevel.WARNING,
    keep: Annotated[Optional[int], typer.Option("--keep", min=1, help="with a folder --output: reports of each format to keep (default 50)")] = None,
) -> None:
    """Inspect a training workspace and report what is wrong, with evidence you can re-run."""
    from .api import audit as run_audit
    from .output import report_format, write_report, write_stdout
    from .selectors import SelectorError
    from .workspace import WorkspaceError, take_early

    try:
        fmt = report_format(format.value if format else None, output)
    except ValueError as exc:
        err(f"healthkit: {exc}")
        raise typer.Exit(EXIT_USAGE)
    try:
        report = run_audit(take_early(path), select=_split(select), ignore=_split(ignore), timeout_s=timeout)
    except SelectorError as exc:
        err(f"healthkit: {exc}")
        raise typer.Exit(EXIT_USAGE)
    except WorkspaceError as exc:
        err(f"healthkit: {exc}")
        raise typer.Exit(3)
    if output is None:
        write_stdout(report.render(fmt, ascii=ascii, fail_level=fail_level))
    else:
        try:
            written = write_report(report, fmt, output, ascii=ascii, keep=keep, fail_level=fail_level)
        except OSError as exc:
            err(f"healthkit: cannot write the report to {output}: {exc.strerror or exc}")
            raise typer.Exit(3)
        for p in written:
            err(f"wrote {p}")
    if fmt != "nagios":
        err(report.summary_line())
    raise typer.Exit(report.exit_code_at(fail_level))


@app.command()
def schedule(
    path: PathArg = Path("."),
    every: Annotated[str, typer.Option("--every", help="how often: 5m, 15m, 1h, 6h, 1d")] = "15m",
    keep: Annotated[int, typer.Option("--keep", min=1, help="reports of each format to keep")] = 50,
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="reports folder (default: the workspace's reports/)")] = None,
    textfile_dir: Annotated[Optional[Path], typer.Option("--textfile-dir", help="also write Prometheus metrics for node_exporter's textfile collector here")] = None,
) -> None:
    """Print a crontab line and a systemd service + timer that audit this workspace on a schedule."""
    from .output import write_stdout
    from .schedule import ScheduleError, render_schedule

    try:
        text = render_schedule(path, every=every, keep=keep, reports=output, textfile_dir=textfile_dir)
    except ScheduleError as exc:
        err(f"healthkit: {exc}")
        raise typer.Exit(EXIT_USAGE)
    write_stdout(text)


@app.command()
def fix(
    path: PathArg = Path("."),
    safe: Annotated[bool, typer.Option("--safe", help="apply fixes that cannot lose work")] = False,
    unsafe: Annotated[bool, typer.Option("--unsafe", help="also apply fixes that may lose work or change training")] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="print the plans and change nothing")] = False,
    only: Annotated[Optional[list[str]], typer.Option("--only", help="only these finding codes, check ids or fix ids (repeat or comma-separate)")] = None,
    keep: Annotated[Optional[int], typer.Option("--keep", min=1, help="checkpoints to keep when no save_total_limit is declared (unsafe prune)")] = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="apply unsafe fixes without asking")] = False,
    wait: Annotated[float, typer.Option("--wait", min=0, help="seconds to wait for another fix run on this workspace (default: refuse at once)")] = 0.0,
) -> None:
    """Repair what the audit found: plans first, then results, then a re-audit (exit code: the re-audit's).

    Another fix run on the same workspace makes this one refuse (exit 3) unless --wait.
    """
    from .fix import FixError, FixOptions, Safety, run_fix
    from .output import write_stdout
    from .selectors import SelectorError
    from .workspace import WorkspaceError

    if safe == unsafe:
        err("healthkit fix: choose exactly one of --safe or --unsafe")
        raise typer.Exit(EXIT_USAGE)

    def confirm(plans: list) -> bool:
        if yes:
            return True
        if not sys.stdin.isatty():
            err("healthkit fix: unsafe fixes need --yes when not run interactively; nothing was changed")
            return False
        return ask(f"Apply {len(plans)} unsafe fix(es) shown above?")

    opts = FixOptions(level=Safety.UNSAFE if unsafe else Safety.SAFE, dry_run=dry_run, only=tuple(_split(only)),
                      keep=keep, wait_s=wait, confirm=confirm)

    class Utf8Out:  # UTF-8 whatever the locale, like the audit's report
        def write(self, text: str) -> int:
            write_stdout(text)
            return len(text)

    try:
        result = run_fix(path, opts, Utf8Out())  # type: ignore[arg-type]
    except SelectorError as exc:
        err(f"healthkit: {exc}")
        raise typer.Exit(EXIT_USAGE)
    except (WorkspaceError, FixError) as exc:
        err(f"healthkit: {exc}")
        raise typer.Exit(3)
    err(result.summary_line())
    raise typer.Exit(result.exit_code)


@app.command("checks")
def list_checks() -> None:
    """List the registered checks and the finding codes each can report."""
    from .output import write_stdout
    from .registry import default_registry

    reg = default_registry()
    lines = []
    for c in reg.sorted():
        tags = f" [{', '.join(c.tags)}]" if c.tags else ""
        lines.append(f"{c.id}: {c.title}{tags}  ({c.source})")
        for d in c.codes:
            lines.append(f"  {d.code:<28} {d.severity:<8} {d.title}")
    for e in reg.errors:
        lines.append(f"! {e.source}: {e.message}")
    write_stdout("\n".join(lines) + "\n")
    if reg.errors:
        raise typer.Exit(3)


@app.command()
def explain(code: Annotated[str, typer.Argument(help="finding code, e.g. daemon.dead")]) -> None:
    """Say what a finding code means, why it matters and how it is fixed."""
    from .output import write_stdout
    from .registry import default_registry

    docs = default_registry().code_docs()
    if code not in docs:
        close = [c for c in docs if code.split(".")[0] in c]
        err(f"unknown finding code {code!r}" + (f"; did you mean: {', '.join(close)}" if close else "; see `healthkit checks`"))
        raise typer.Exit(EXIT_USAGE)
    write_stdout(docs[code].render() + "\n")


@app.command()
def demo(
    keep: Annotated[bool, typer.Option("--keep", help="leave the demo workspace and its orphan process running")] = False,
    format: Annotated[Format, typer.Option("--format", "-f")] = Format.md,
    ascii: Annotated[bool, typer.Option("--ascii")] = False,
    exit_code: Annotated[bool, typer.Option("--exit-code", help="exit with the audit's verdict (2: the example is critical)")] = False,
    reports: Annotated[Optional[Path], typer.Option("--reports", help="also write example-machine.md/.json/.html into this folder")] = None,
) -> None:
    """Build the example machine (dead daemon, orphaned training, bloat, drift, no validation) and audit it."""
    from .demo import run_demo

    code = run_demo(keep=keep, fmt=format.value, ascii=ascii, reports=reports)
    raise typer.Exit(code if exit_code else 0)


# trainer commands: thin bodies, trainer code imported inside (the audit never imports it) -----------------
daemon_app = typer.Typer(help="Start, stop, pause, resume and inspect the training daemon.", no_args_is_help=True,
                         context_settings=HELP)
queue_app = typer.Typer(help="Add files to the training queue, list it, retry a failed file.", no_args_is_help=True, context_settings=HELP)
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
    reason: Annotated[Optional[str], typer.Option("--reason", help="why (recorded; the audit reports the stop as info)")] = None,
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
    reason: Annotated[Optional[str], typer.Option("--reason", help="why; shown in status until resume")] = None,
) -> None:
    """Hold training at the next step boundary (no new file starts either)."""
    from healthkit.trainer.commands import pause

    raise typer.Exit(pause(path, reason))


@daemon_app.command("resume")
def daemon_resume(path: PathArg = Path(".")) -> None:
    """Continue after a pause (clears paused_at and the reason)."""
    from healthkit.trainer.commands import resume

    raise typer.Exit(resume(path))


@daemon_app.command("systemd-unit")
def daemon_systemd_unit(
    path: PathArg = Path("."),
    user: Annotated[Optional[str], typer.Option("--user", help="User= of the service")] = None,
) -> None:
    """Print a systemd unit (Restart=on-failure) for those who prefer the system's supervisor."""
    from healthkit.trainer.commands import systemd_unit

    raise typer.Exit(systemd_unit(path, user))


@queue_app.command("add")
def queue_add(
    path: Annotated[Path, typer.Argument(help="workspace folder")],
    files: Annotated[list[Path], typer.Argument(help="JSONL files to queue")],
    priority: Annotated[Optional[int], typer.Option("--priority", "-p", min=0, max=9, help="0 runs first, 9 last (default 5)")] = None,
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
) -> None:
    """Put a failed file back in the queue: it resumes from its newest complete checkpoint (kept since it failed)."""
    from healthkit.trainer.commands import queue_retry as retry

    raise typer.Exit(retry(path, name))


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
    tiny_model: Annotated[bool, typer.Option("--tiny-model", help="add a random-init model and tokenizer: a full run on a CPU, offline")] = False,
    force: Annotated[bool, typer.Option("--force", help="rewrite config.json and README.md (with --detect: replace healthkit.toml)")] = False,
    detect: Annotated[bool, typer.Option("--detect", help="an existing setup: write healthkit.toml from what is detected, each setting with its evidence")] = False,
    print_: Annotated[bool, typer.Option("--print", help="with --detect: print healthkit.toml instead of writing it")] = False,
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
    from .detect import InitError, init_detect
    from .output import write_stdout

    try:
        text, written = init_detect(path, force=force, print_only=print_only)
    except InitError as exc:
        err(f"healthkit init: {exc}; nothing was written")
        raise typer.Exit(1)
    except OSError as exc:
        err(f"healthkit init: cannot write {path / 'healthkit.toml'}: {exc.strerror or exc}; nothing was written")
        raise typer.Exit(3)
    if written is None:
        write_stdout(text)
    else:
        err(f"wrote {written} (check each detected setting; a wrong guess is corrected there)")


def _click_exceptions() -> list:
    """The click exception modules in play: typer >= 0.20 vendors click as typer._click."""
    mods = []
    for name in ("typer._click.exceptions", "click.exceptions"):
        try:
            mods.append(__import__(name, fromlist=["UsageError"]))
        except ImportError:
            continue
    return mods


def main() -> None:
    """Console entry point: usage errors exit 64, never 2 (2 means CRITICAL here)."""
    mods = _click_exceptions()

    def classes(name: str) -> tuple:
        return tuple(getattr(m, name) for m in mods if hasattr(m, name))

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
