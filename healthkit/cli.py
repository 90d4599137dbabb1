"""The `healthkit` command: thin typer commands over library functions, imported lazily to start fast."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from .render import Format

EXIT_USAGE = 64

app = typer.Typer(
    name="healthkit",
    help="Audit and repair long-running fine-tuning workspaces.\n\nExit codes: 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN, 64 usage error.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)

PathArg = Annotated[Path, typer.Argument(help="workspace folder", show_default=True)]


def err(message: str) -> None:
    sys.stderr.write(message.rstrip("\n") + "\n")


def _split(values: Optional[list[str]]) -> list[str]:
    return [v.strip() for item in values or [] for v in item.split(",") if v.strip()]


@app.command()
def audit(
    path: PathArg = Path("."),
    format: Annotated[Format, typer.Option("--format", "-f", help="report format")] = Format.md,
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="file, or folder for timestamped reports + latest.*")] = None,
    select: Annotated[Optional[list[str]], typer.Option("--select", help="only these checks, tags or codes (repeat or comma-separate)")] = None,
    ignore: Annotated[Optional[list[str]], typer.Option("--ignore", help="skip these checks, tags or codes")] = None,
    ascii: Annotated[bool, typer.Option("--ascii", help="no emoji or other non-ASCII characters")] = False,
    timeout: Annotated[Optional[float], typer.Option("--timeout", help="seconds each check may take")] = None,
    fail_level: Annotated[str, typer.Option("--fail-level", help="lowest verdict that gives a non-zero exit: warning|critical|unknown")] = "warning",
    keep: Annotated[Optional[int], typer.Option("--keep", min=1, help="with a folder --output: reports of each format to keep (default 50)")] = None,
) -> None:
    """Inspect a training workspace and report what is wrong, with evidence you can re-run."""
    from .api import audit as run_audit
    from .output import write_report, write_stdout
    from .workspace import WorkspaceError

    if fail_level not in ("warning", "critical", "unknown"):
        err(f"--fail-level must be warning, critical or unknown, not {fail_level!r}")
        raise typer.Exit(EXIT_USAGE)
    try:
        report = run_audit(path, select=_split(select), ignore=_split(ignore), timeout_s=timeout)
    except WorkspaceError as exc:
        err(f"healthkit: {exc}")
        raise typer.Exit(3)
    fmt = format.value
    if output is None:
        write_stdout(report.render(fmt, ascii=ascii))
    else:
        try:
            written = write_report(report, fmt, output, ascii=ascii, keep=keep)
        except OSError as exc:
            err(f"healthkit: cannot write the report to {output}: {exc.strerror or exc}")
            raise typer.Exit(3)
        for p in written:
            err(f"wrote {p}")
    if fmt != "nagios":
        err(report.summary_line())
    code = report.exit_code
    if fail_level == "critical" and code == 1:
        code = 0
    if fail_level == "unknown" and code in (1, 2):
        code = 0
    raise typer.Exit(code)


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
) -> None:
    """Build the example machine (dead daemon, orphaned training, bloat, drift, no validation) and audit it."""
    from .demo import run_demo

    raise typer.Exit(run_demo(keep=keep, fmt=format.value, ascii=ascii))


def main() -> None:
    """Console entry point: usage errors exit 64, never 2 (2 means CRITICAL here)."""
    import click

    try:
        rv = app(standalone_mode=False)
    except click.exceptions.NoArgsIsHelpError as exc:
        err(exc.format_message() if hasattr(exc, "format_message") else str(exc))
        sys.exit(EXIT_USAGE)
    except click.UsageError as exc:
        err(f"healthkit: {exc.format_message()}")
        if exc.ctx is not None:
            err(exc.ctx.get_usage())
        sys.exit(EXIT_USAGE)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.Abort:
        err("aborted")
        sys.exit(130)
    except KeyboardInterrupt:
        sys.exit(130)
    sys.exit(rv if isinstance(rv, int) else 0)


if __name__ == "__main__":
    main()
