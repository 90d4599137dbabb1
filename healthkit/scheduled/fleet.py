"""Several workspaces in one process: audit each (one registry, one interpreter), then write their reports.

Sixteen workspaces on a host must not cost sixteen Python start-ups, and one workspace that
cannot be read must not hide the others: it gets a report of its own whose only result is an
UNKNOWN `workspace` check saying why, so every output (history, textfile, fleet page, exit
code) carries it like any other verdict.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from healthkit._version import __version__
from healthkit.core.findings import CheckResult, FailLevel, Status, fails_at, worst_status
from healthkit.core.report import Report

UNREADABLE_CHECK = "workspace"


@dataclass(frozen=True)
class Audited:
    """One workspace of the fleet: the folder as given (absolute) and its report."""

    path: Path
    report: Report

    @property
    def slug(self) -> str:
        return folder_name(self.path)


def folder_name(path: Path | str) -> str:
    """A stable, readable history folder name per workspace: `<last part>-<8 hex of the absolute path>`.

    The hash keeps `/srv/a/ws` and `/srv/b/ws` apart; the name keeps the folder recognisable.
    """
    text = os.path.abspath(os.fspath(path))
    name = re.sub(r"[^A-Za-z0-9_.-]+", "-", os.path.basename(text)).strip("-.") or "workspace"
    return f"{name[:40]}-{hashlib.sha256(text.encode('utf-8', 'surrogateescape')).hexdigest()[:8]}"


def unreadable_report(path: Path, reason: str) -> Report:
    """The report of a workspace that could not be audited at all: one UNKNOWN result that says why."""
    result = CheckResult(
        check=UNREADABLE_CHECK,
        title="Workspace readable",
        status=Status.UNKNOWN,
        findings=[],
        healthy=[],
        facts={},
        notes=[],
        duration_s=0.0,
        error=reason,
    )
    return Report(
        workspace=str(path),
        generated_at=datetime.now(UTC).isoformat(timespec="seconds"),
        version=__version__,
        results=[result],
    )


def unique_paths(paths: Iterable[Path | str]) -> list[Path]:
    """Absolute paths in the order given, each once (`ws` and `./ws` are one workspace)."""
    out: list[Path] = []
    for p in paths:
        a = Path(os.path.abspath(os.path.expanduser(os.fspath(p))))
        if a not in out:
            out.append(a)
    return out


def audit_many(
    paths: Iterable[Path | str],
    *,
    select: Iterable[str] = (),
    ignore: Iterable[str] = (),
    timeout_s: float | None = None,
) -> list[Audited]:
    """Audit every workspace in turn in this process; one that cannot be opened gets an UNKNOWN report, never an exception.

    (Each in a child under a deadline: healthkit.scheduled.fleetdeadline.audit_in_children, what the CLI runs.)
    The registry (entry points: every built-in check module) is loaded once and shared by the
    workspaces that load no plugins of their own; every workspace's slow reads (`du` of its
    checkpoints) start before the first audit. SelectorError (a usage error) still propagates.
    """
    from healthkit.core.api import audit
    from healthkit.core.registry import default_registry
    from healthkit.core.workspace import Workspace, WorkspaceError

    opened: list[tuple[Path, Workspace | str]] = []
    for path in unique_paths(paths):
        try:
            workspace = Workspace.open(path)
        except WorkspaceError as exc:
            opened.append((path, str(exc)))
            continue
        workspace.prefetch()  # every workspace's `du` and checkpoint survey start now and overlap the audits before it
        opened.append((path, workspace))
    shared = None
    out: list[Audited] = []
    for path, ws in opened:
        if isinstance(ws, str):
            out.append(Audited(path, unreadable_report(path, ws)))
            continue
        registry = None
        if not ws.settings.checks.plugins:
            if shared is None:
                shared = default_registry()
            registry = shared
        try:
            report = audit(ws, select=select, ignore=ignore, registry=registry, timeout_s=timeout_s)
        except WorkspaceError as exc:
            report = unreadable_report(path, str(exc))
        out.append(Audited(path, report))
    return out


def worst_exit(audited: list[Audited], fail_level: FailLevel | str = FailLevel.WARNING) -> int:
    """The exit code of the run: the worst verdict (under ``fail_level``) of any workspace."""
    failing = [s for a in audited for s in a.report.statuses() if fails_at(s, fail_level)]
    return worst_status(failing).exit_code if failing else 0


def history_folder(folder: Path, path: Path | str) -> Path:
    """Where one workspace's history lives in a fleet folder: `folder/<folder_name(path)>/` (audit and heal alike)."""
    return folder / folder_name(path)


def write_histories(
    audited: list[Audited], folder: Path, fmt: str, ascii: bool = False, keep: int | None = None, **options: Any
) -> list[Path]:
    """Each workspace's history in its `history_folder`."""
    from healthkit.reporting.history import write_history

    written: list[Path] = []
    for a in audited:
        written += write_history(a.report, history_folder(folder, a.path), fmt, ascii=ascii, keep=keep, **options)
    return written


def write_fleet(audited: list[Audited], folder: Path | None, textfile: Path | None) -> list[Path]:
    """What a run over several workspaces writes once for all, after their histories: the fleet page
    `folder/index.html` (when a folder) and the one textfile (when asked). The audit and the healing job
    (healthkit.scheduled.unattended.heal_many) both end here."""
    from healthkit.reporting.fleetpage import write_fleet_page

    written: list[Path] = []
    if folder is not None:
        written.append(write_fleet_page(folder))
    if textfile is not None:
        written.append(write_textfile(audited, textfile))
    return written


def stdout_text(audited: list[Audited], fmt: str, ascii: bool = False, **options: Any) -> str:
    """All reports as one text: Markdown one after another, JSON as an array, Prometheus as one exposition."""
    from healthkit.reporting.render import render
    from healthkit.reporting.render.prom import render_many

    reports = [a.report for a in audited]
    if fmt == "prom":
        return render_many(reports)
    if fmt == "json":
        return "[\n" + ",\n".join(r.to_json().rstrip("\n") for r in reports) + "\n]\n"
    return "\n\n---\n\n".join(render(r, fmt, ascii=ascii, **options).rstrip("\n") for r in reports) + "\n"


# Formats that several reports can share one stream in (see stdout_text); the others need a folder.
SHAREABLE = ("md", "json", "prom")


class FleetUsageError(ValueError):
    """The outputs asked for cannot hold several reports (a usage error, exit 64, before anything is audited)."""


def check_target(fmt: str, output: Path | None) -> None:
    """Refuse, before auditing, an output that one report per workspace cannot go to."""
    from healthkit.reporting.output import is_dir_target

    if output is None:
        if fmt not in SHAREABLE:
            raise FleetUsageError(f"{fmt} reports of several workspaces need a folder: give --output DIR/")
    elif not is_dir_target(output) and fmt != "prom":
        raise FleetUsageError(
            f"several workspaces write one report each: give --output a folder (DIR/), "
            f"or --format prom for one textfile, not the file {output}"
        )


def write_textfile(audited: list[Audited], target: Path) -> Path:
    """One Prometheus textfile for all workspaces, replaced atomically (node_exporter never reads half)."""
    from healthkit.reporting.render.prom import render_many
    from healthkit.system.fsutil import atomic_write, utf8

    target.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(target, utf8(render_many([a.report for a in audited])))
    return target


def write_outputs(
    audited: list[Audited],
    fmt: str,
    output: Path | None,
    textfile: Path | None,
    ascii: bool = False,
    keep: int | None = None,
    **options: Any,
) -> tuple[str | None, list[Path]]:
    """Where the reports go (``check_target`` allowed it): (text for stdout, or None; the files written).

    Raises OSError when a file cannot be written; what was already written is whole (atomic writes).
    """
    from healthkit.reporting.output import is_dir_target

    text, written, folder = None, [], None
    if output is None:
        text = stdout_text(audited, fmt, ascii=ascii, **options)
    elif not is_dir_target(output):  # a file: only prom gets here
        written.append(write_textfile(audited, output))
    else:
        written += write_histories(audited, output, fmt, ascii=ascii, keep=keep, **options)
        folder = output
        if fmt == "prom" and textfile is None:  # node_exporter's collector reads DIR/*.prom, not the histories below
            textfile = output / COMBINED_TEXTFILE
    return text, written + write_fleet(audited, folder, textfile)


COMBINED_TEXTFILE = "healthkit.prom"  # `--format prom --output DIR/`: the one textfile for all, beside the histories
