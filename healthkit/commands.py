"""The work of `healthkit audit` (one workspace) and `healthkit fix` (one workspace, not scheduled), free of typer.

cli.py's typer commands and console.py's quick path (healthkit/quickargs.py) call these same functions, so a
command parsed without the CLI framework (a third of an audit's start-up) runs exactly what the typer command runs.
Exit codes leave as SystemExit, which typer and click pass through unchanged.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

from healthkit.core.findings import FailLevel

if TYPE_CHECKING:
    from collections.abc import Callable

EXIT_USAGE = 64


def err(message: str) -> None:
    sys.stderr.write(message.rstrip("\n") + "\n")


def ask(question: str) -> bool:
    """A yes/no question on the terminal; end of input (Ctrl-D) or Ctrl-C answers no, without a traceback."""
    import typer

    try:
        return typer.confirm(question, default=False, err=True)
    except (typer.Abort, EOFError, KeyboardInterrupt):
        err("")  # the prompt's line ends here
        return False


def split_values(values: list[str] | None) -> list[str]:
    """Repeated and comma-separated option values (--select a,b --select c) as one list."""
    return [v.strip() for item in values or [] for v in item.split(",") if v.strip()]


def report_format_or_exit(format_value: str | None, output: Path | None) -> str:
    """The report's format from --format, else --output's extension, else md; a usage error exits 64."""
    from healthkit.reporting.output import report_format

    try:
        return report_format(format_value, output)
    except ValueError as exc:
        err(f"healthkit: {exc}")
        raise SystemExit(EXIT_USAGE) from None


def audit_one(
    path: Path,
    fmt: str,
    output: Path | None,
    *,
    select: list[str],
    ignore: list[str],
    ascii: bool,
    timeout: float | None,
    fail_level: FailLevel,
    keep: int | None,
    textfile: Path | None,
    deadline: float = 60.0,
) -> None:
    """`healthkit audit PATH`: the report of one workspace on stdout or to --output; exits with its verdict.

    With a ``deadline`` (seconds) the audit runs in a forked child (healthkit.oneaudit): a workspace on a hung
    mount is UNKNOWN naming what blocked it, never a hang; 0 audits in this process."""
    from healthkit.core.selectors import SelectorError
    from healthkit.core.workspace import WorkspaceError, take_early

    def renderer_of_fmt() -> None:
        import healthkit.reporting.output  # noqa: F401
        from healthkit.reporting.render import renderer

        renderer(fmt)

    try:
        if deadline:
            from healthkit.oneaudit import audit_one_in_child

            report = audit_one_in_child(
                path,
                select=select,
                ignore=ignore,
                timeout_s=timeout,
                deadline_s=deadline,
                meanwhile=renderer_of_fmt,  # the report's modules, imported while the child audits (it has its options)
            )
        else:
            from healthkit.core.api import audit as run_audit  # in this process only without a deadline

            report = run_audit(take_early(path), select=select, ignore=ignore, timeout_s=timeout)
    except SelectorError as exc:
        err(f"healthkit: {exc}")
        raise SystemExit(EXIT_USAGE) from None
    except WorkspaceError as exc:
        err(f"healthkit: {exc}")
        raise SystemExit(3) from None
    from healthkit.reporting.output import write_report, write_stdout
    from healthkit.reporting.render import render

    if output is None:
        write_stdout(render(report, fmt, ascii=ascii, fail_level=fail_level))
    else:
        try:
            written = write_report(report, fmt, output, ascii=ascii, keep=keep, fail_level=fail_level)
        except OSError as exc:
            err(f"healthkit: cannot write the report to {output}: {exc.strerror or exc}")
            raise SystemExit(3) from None
        for p in written:
            err(f"wrote {p}")
    if textfile is not None:
        _write_textfile([report], textfile)
    if fmt != "nagios":
        err(report.summary_line())
    raise SystemExit(report.exit_code_at(fail_level))


def _write_textfile(reports: list, target: Path) -> None:
    from healthkit.scheduled.fleet import Audited, write_textfile

    try:
        err(f"wrote {write_textfile([Audited(Path(r.workspace), r) for r in reports], target)}")
    except OSError as exc:
        err(f"healthkit: cannot write the textfile {target}: {exc.strerror or exc}")
        raise SystemExit(3) from None


def confirm_unsafe(yes: bool) -> Callable[[list], bool]:
    """How a person's run agrees to unsafe plans: --yes, else a question on a terminal, else no."""

    def confirm(plans: list) -> bool:
        if yes:
            return True
        if not sys.stdin.isatty():
            err("healthkit fix: unsafe fixes need --yes when not run interactively; nothing was changed")
            return False
        return ask(f"Apply {len(plans)} unsafe fix(es) shown above?")

    return confirm


def fix_one(
    path: Path,
    *,
    unsafe: bool,
    dry_run: bool,
    only: list[str],
    keep: int | None,
    yes: bool,
    wait: float,
    deadline: float = 60.0,
    to: str | None = None,
) -> NoReturn:
    """`healthkit fix PATH` (not --scheduled): plans, then results, then a re-audit; exits with the re-audit's code
    (3 or 64 when it could not run)."""
    from healthkit.core.selectors import SelectorError
    from healthkit.core.workspace import WorkspaceError, take_early
    from healthkit.fix import FixError, FixOptions, Safety, run_fix
    from healthkit.reporting.output import Utf8Stdout
    from healthkit.scheduled.backoff import PersonFix

    if to is not None and not unsafe:
        err("healthkit fix: --to names where the unsafe rewind-to-checkpoint goes back to: use it with --unsafe")
        raise SystemExit(EXIT_USAGE)
    opts = FixOptions(
        level=Safety.UNSAFE if unsafe else Safety.SAFE,
        dry_run=dry_run,
        only=tuple(only),
        keep=keep,
        to=to,
        wait_s=wait,
        confirm=confirm_unsafe(yes),
        hooks=PersonFix(),
    )
    try:
        if deadline and (dry_run or not unsafe):  # nothing to ask a person: the run goes in a child under the deadline
            from healthkit.oneaudit import fix_in_child

            line, code = fix_in_child(path, opts, deadline, Utf8Stdout())
            err(line)
            raise SystemExit(code)
        # a dry run audits the workspace the console entry opened (and began reading) before the CLI loaded
        result = run_fix(take_early(path) if dry_run else path, opts, Utf8Stdout())  # type: ignore[arg-type]
    except SelectorError as exc:
        err(f"healthkit: {exc}")
        raise SystemExit(EXIT_USAGE) from None
    except (WorkspaceError, FixError) as exc:
        err(f"healthkit: {exc}")
        raise SystemExit(3) from None
    err(result.summary_line())
    raise SystemExit(result.exit_code)
