"""Console entry point: start an audit's slow I/O before the CLI framework is even imported.

`du` over a checkpoint folder of 100,000 files takes as long as importing the CLI, so
for `healthkit audit PATH` (and `healthkit fix PATH --dry-run`, whose audit is the same read-only
audit) the `du` of PATH/current_model (the contract's checkpoint folder)
starts before anything else is imported, then the workspace is opened and its checkpoints
surveyed in the background; the audit command then uses that workspace. If an early guess
is wrong (another checkpoint folder, or opening fails), nothing is lost: the command measures
and opens what it needs itself, and the guessed `du` is ended before the process exits.
"""

from __future__ import annotations

import os
import sys
from typing import Any

# Options of `healthkit audit` and `healthkit fix` that take a value (tests/test_cli.py keeps them in step with the commands).
AUDIT_VALUE_OPTIONS = frozenset(
    {
        "--format",
        "-f",
        "--output",
        "-o",
        "--select",
        "--ignore",
        "--timeout",
        "--fail-level",
        "--keep",
        "--textfile",
        "--workspace-deadline",
    }
)
FIX_VALUE_OPTIONS = frozenset(
    {
        "--only",
        "--keep",
        "--to",
        "--wait",
        "--output",
        "-o",
        "--keep-reports",
        "--textfile",
        "--every",
        "--workspace-deadline",
    }
)


def early_workspace_path(argv: list[str]) -> str | None:
    """PATH of `healthkit audit [OPTIONS] [PATH]` or of `healthkit fix [OPTIONS] [PATH] --dry-run` (a dry run only
    reads, like an audit: a real fix first finishes what a killed run left half-done, so it opens the workspace
    itself), or None when argv is anything else."""
    if len(argv) < 2 or argv[1] not in ("audit", "fix"):
        return None
    if argv[1] == "fix" and "--dry-run" not in argv:
        return None
    value_options = AUDIT_VALUE_OPTIONS if argv[1] == "audit" else FIX_VALUE_OPTIONS
    positional: list[str] = []
    i = 2
    while i < len(argv):
        arg = argv[i]
        if arg == "--":
            positional += argv[i + 1 :]
            break
        if arg.startswith("-") and arg != "-":
            if "=" not in arg and arg in value_options:
                i += 1
            i += 1
            continue
        positional.append(arg)
        i += 1
    if len(positional) > 1 or "--help" in argv:
        return None
    return positional[0] if positional else "."


# The workspace contract's checkpoint folder (healthkit.contract.settings.PathSettings.checkpoints; tests/test_cli.py checks).
DEFAULT_CHECKPOINTS = "current_model"


def start_early(argv: list[str]) -> None:
    path = early_workspace_path(argv)
    if path is None:
        return
    guess = os.path.join(os.path.abspath(os.path.expanduser(path)), DEFAULT_CHECKPOINTS)
    # Before any import of the audit: du overlaps them (healthkit.system.fsutil.start_du_early). An audit does not even
    # stat the guess here: on a hung mount that stat would block this process, before any deadline exists.
    in_child = argv[1] == "audit" or not _deadline_off(argv)
    if in_child or os.path.isdir(guess):
        from healthkit.system.fsutil import start_du_early

        start_du_early(guess)
    if in_child:
        if argv[1] == "audit" and not _deadline_off(argv):
            from healthkit.oneaudit import start_early_audit

            start_early_audit(path)  # the audit's child, forked before any thread: it reads while the CLI loads
        return  # the audit (and a dry run) opens the workspace in a child under its deadline: no thread before the fork
    try:
        from healthkit.core.workspace import EARLY, Workspace

        ws = Workspace.open(path)
        ws.prefetch()
    except Exception:
        return
    EARLY[os.path.abspath(path)] = ws


def _deadline_off(argv: list[str]) -> bool:
    """`--workspace-deadline 0`: the command runs in this process, so opening the workspace early still pays."""
    for i, arg in enumerate(argv):
        value = (
            arg.split("=", 1)[1]
            if arg.startswith("--workspace-deadline=")
            else (argv[i + 1] if arg == "--workspace-deadline" and i + 1 < len(argv) else None)
        )
        if value is not None:
            try:
                return float(value) == 0
            except ValueError:
                return False
    return False


def main() -> None:
    import gc

    # A command lives for a fraction of a second and allocates tens of thousands of records and parsed JSON values,
    # none in a cycle: a young-generation collection every 700 allocations walks them again and again (~3% of an
    # audit). Every 50,000 still bounds what cycles an exception or a thread leaves.
    gc.set_threshold(50_000, 20, 20)
    start_early(sys.argv)
    from healthkit.quickargs import quick_command, run_quick

    command = quick_command(sys.argv)  # the everyday audit and dry run: no typer to import (healthkit/quickargs.py)
    if command is not None:

        def cli_main() -> None:
            run_quick(command)
    else:
        from healthkit.cli import main as cli_main

    # Only reads: an audit (one workspace or several), or a person's dry run (a quick command that is not an audit).
    auditing = len(sys.argv) > 1 and (sys.argv[1] == "audit" or (sys.argv[1] == "fix" and command is not None))
    if not auditing:
        cli_main()
        return
    from healthkit.system.fsutil import end_early_du

    # An audit (or a dry run) only reads, and everything it writes is closed (atomic renames) before
    # this point: skip the interpreter's module teardown, a sizeable share of a cron audit's time.
    code: Any = 0
    try:
        cli_main()
    except SystemExit as exc:
        code = exc.code
    try:
        end_early_du()  # a guess that was not the checkpoint folder: nothing may outlive the audit
        sys.stdout.flush()
        sys.stderr.flush()
    finally:
        os._exit(code if isinstance(code, int) else (0 if code is None else 1))


if __name__ == "__main__":
    main()
