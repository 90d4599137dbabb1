"""The everyday argv of `healthkit audit PATH` and `healthkit fix PATH --dry-run`, parsed without typer.

Importing typer (and the click it vendors) is about a third of an audit's start-up, and a cron audit parses
the same few options every time. This parser takes only what it understands exactly as typer would (the
same values, the same defaults: tests/test_quickargs.py compares the two on many argvs) and answers None for
anything else, --help, a bad value, an unknown or attached option, several paths, `--`, so that typer
parses it and says what is wrong in its own words.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

# Each option: its names, the keyword it fills, and how its text becomes the value (None: a flag). A
# converter raises ValueError for a value typer would refuse; the quick path then leaves the argv to typer.
_Convert = Callable[[str], Any]
_Options = dict[str, tuple[str, "_Convert | None", bool]]  # --name -> (keyword, converter or None, repeatable)


def _enum_value(values: tuple[str, ...]) -> _Convert:
    def convert(text: str) -> str:
        if text not in values:
            raise ValueError(text)
        return text

    return convert


def _int_at_least(low: int) -> _Convert:
    def convert(text: str) -> int:
        n = int(text)
        if n < low:
            raise ValueError(text)
        return n

    return convert


def _float_at_least(low: float) -> _Convert:
    def convert(text: str) -> float:
        x = float(text)
        if not x >= low:  # NaN too
            raise ValueError(text)
        return x

    return convert


def _path(text: str) -> Path:
    """typer's Path: any name, but one that exists must be readable (click.Path's readable=True)."""
    if not text or (os.path.lexists(text) and not os.access(text, os.R_OK)):
        raise ValueError(text)
    return Path(text)


def _audit_options() -> _Options:
    """The options of `healthkit audit` (cli.audit)."""
    from healthkit.core.findings import FailLevel
    from healthkit.reporting.render import Format

    fmt = ("format", _enum_value(tuple(f.value for f in Format)), False)
    out = ("output", _path, False)
    return {
        "--format": fmt,
        "-f": fmt,
        "--output": out,
        "-o": out,
        "--select": ("select", str, True),
        "--ignore": ("ignore", str, True),
        "--ascii": ("ascii", None, False),
        "--timeout": ("timeout", float, False),
        "--fail-level": ("fail_level", _enum_value(tuple(f.value for f in FailLevel)), False),
        "--keep": ("keep", _int_at_least(1), False),
        "--textfile": ("textfile", _path, False),
        "--workspace-deadline": ("workspace_deadline", _float_at_least(0), False),
    }


def _fix_options() -> _Options:
    """The options of `healthkit fix` (cli.fix) that a person's dry run may carry; --scheduled and its
    options are typer's."""
    yes = ("yes", None, False)
    return {
        "--safe": ("safe", None, False),
        "--unsafe": ("unsafe", None, False),
        "--dry-run": ("dry_run", None, False),
        "--only": ("only", str, True),
        "--keep": ("keep", _int_at_least(1), False),
        "--to": ("to", str, False),
        "--yes": yes,
        "-y": yes,
        "--wait": ("wait", _float_at_least(0), False),
        "--workspace-deadline": ("workspace_deadline", _float_at_least(0), False),
    }


def _parse(args: list[str], options: _Options) -> tuple[list[Path], dict[str, Any]] | None:
    """PATHs and option values of args, or None when typer must parse them."""
    paths: list[Path] = []
    values: dict[str, Any] = {}
    i = 0
    while i < len(args):
        arg = args[i]
        i += 1
        if not arg.startswith("-"):
            try:
                paths.append(_path(arg))
            except ValueError:
                return None
            continue
        name, eq, text = arg.partition("=")
        spec = options.get(name)
        if spec is None or (eq and not name.startswith("--")):
            return None  # unknown, --help, `-`, `--`, attached short options: typer's
        key, convert, repeat = spec
        if convert is None:
            if eq:
                return None
            values[key] = True
            continue
        if not eq:
            if i >= len(args) or args[i].startswith("-"):
                return None
            text = args[i]
            i += 1
        try:
            value = convert(text)
        except ValueError:
            return None
        if repeat:
            values.setdefault(key, []).append(value)
        else:
            values[key] = value
    return paths, values


def quick_command(argv: list[str]) -> Callable[[], None] | None:
    """The command of argv (sys.argv) ready to run, for a one-workspace `audit` or a person's `fix --dry-run`;
    None when typer must parse argv."""
    if len(argv) < 2 or argv[1] not in ("audit", "fix"):
        return None
    from healthkit import commands

    if argv[1] == "audit":
        parsed = _parse(argv[2:], _audit_options())
        if parsed is None or len(parsed[0]) > 1:
            return None
        paths, v = parsed
        from healthkit.core.findings import FailLevel

        def run_audit() -> None:
            fmt = commands.report_format_or_exit(v.get("format"), v.get("output"))
            commands.audit_one(
                paths[0] if paths else Path("."),
                fmt,
                v.get("output"),
                select=commands.split_values(v.get("select")),
                ignore=commands.split_values(v.get("ignore")),
                ascii=v.get("ascii", False),
                timeout=v.get("timeout"),
                fail_level=FailLevel(v.get("fail_level", FailLevel.WARNING.value)),
                keep=v.get("keep"),
                textfile=v.get("textfile"),
                deadline=v.get("workspace_deadline", 60.0),
            )

        return run_audit
    parsed = _parse(argv[2:], _fix_options())
    if parsed is None or len(parsed[0]) > 1:
        return None
    paths, v = parsed
    if not v.get("dry_run") or v.get("safe", False) == v.get("unsafe", False):
        return None  # a real fix, or the usage error of neither/both levels: typer's

    def run_fix() -> None:
        commands.fix_one(
            paths[0] if paths else Path("."),
            unsafe=v.get("unsafe", False),
            dry_run=True,
            only=commands.split_values(v.get("only")),
            keep=v.get("keep"),
            yes=v.get("yes", False),
            wait=v.get("wait", 0.0),
            deadline=v.get("workspace_deadline", 60.0),
            to=v.get("to"),
        )

    return run_fix


def run_quick(command: Callable[[], None]) -> None:
    """Run a quick command as cli.main runs a typer one: Ctrl-C is `aborted`, exit 130; a closed pipe exits 1;
    the command's exit code otherwise."""
    import errno
    import sys

    try:
        command()
    except (EOFError, KeyboardInterrupt):
        from healthkit.commands import err

        err("")
        err("aborted")
        sys.exit(130)
    except OSError as exc:  # click's rule: a closed pipe on the way out exits 1, quietly
        if exc.errno != errno.EPIPE:
            raise
        sys.exit(1)
    sys.exit(0)
