"""One scheduled healing run of one workspace: heal what is safe, tell a person, write the report. One audit.

`heal_and_report` is what `healthkit fix PATH --safe --scheduled` runs; `heal_many` is what
`healthkit fix WS1 WS2 ... --safe --scheduled --output DIR/` runs: `heal_and_report` once per
workspace into the fleet layout (healthkit.scheduled.fleet), then the fleet page and one textfile. Its order:

1. the fix engine under the fix lock, with the flap protection of healthkit.scheduled.backoff: it audits,
   applies the safe fixes that are not backing off or given up, and audits again only when
   it applied something (a healthy workspace costs one audit);
2. the `heal` check again on the final report (the state changed during the run);
3. the notification (healthkit.scheduled.notify), which names the HTML report about to be written;
4. the `notify` check again, so that this run's report shows a channel that failed;
5. the history (`report-<stamp>.*`, `latest.*`, `index.html`) and, when asked, the Prometheus textfile.
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from healthkit.core.findings import Finding
from healthkit.core.report import Report
from healthkit.core.workspace import Workspace
from healthkit.fix import FixOptions, FixRun, Safety, run_fix
from healthkit.scheduled.backoff import ScheduledHeal
from healthkit.scheduled.notify import Sent, notify_run

REFRESHED = ("heal", "notify")


@dataclass
class ScheduledRun:
    fix: FixRun
    report: Report
    written: list[Path] = field(default_factory=list)
    sent: Sent | None = None
    held: list[tuple[str, str]] = field(default_factory=list)
    gave_up: list[str] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        return self.report.exit_code


def refresh(report: Report, ws: Workspace, check_ids: tuple[str, ...]) -> Report:
    """The report with these checks run again (on a fresh view of the workspace), their results replaced."""
    from healthkit.core.registry import default_registry
    from healthkit.core.runner import run_checks

    reg = default_registry(ws.settings.checks.plugins, ws.base)
    wanted = [c for c in reg.sorted() if c.id in check_ids and any(r.check == c.id for r in report.results)]
    if not wanted:
        return report
    fresh = {
        r.check: r for r in run_checks(ws, wanted, ws.settings.checks.timeout_seconds, list(ws.settings.checks.ignore))
    }
    results = [fresh.get(r.check, r) for r in report.results]
    return dataclasses.replace(report, results=results)


def _healed(run: FixRun) -> tuple[list[Finding], list[Finding]]:
    """Findings an applied fix was for: resolved by the re-audit (healed), or still open (the heal did not hold)."""
    targeted = {k for p, o in run.outcomes for k in p.finding_keys}
    healed = [f for f in run.resolved if f.identity in targeted]
    failed = [f for f in run.still_open if f.identity in targeted]
    return healed, failed


def heal_and_report(
    path: str | Path,
    reports: Path | None = None,
    keep: int | None = None,
    textfile: Path | None = None,
    interval_s: float | None = None,
    out: TextIO | None = None,
    lock_wait_s: float = 60.0,
) -> ScheduledRun:
    """Heal one workspace on a schedule and write its report; raises what run_fix raises (WorkspaceError, FixError)."""
    from healthkit.reporting.history import planned_name, since_previous
    from healthkit.reporting.output import write_report

    policy = ScheduledHeal(interval_s=interval_s)
    run = run_fix(path, FixOptions(level=Safety.SAFE, wait_s=lock_wait_s, hooks=policy), out or sys.stdout)
    ws = Workspace.open(path)
    folder = (reports or ws.path(ws.settings.paths.reports)).expanduser().absolute()
    report = refresh(run.after or run.before, ws, ("heal",))
    healed, failed = _healed(run)
    sent = notify_run(
        ws,
        report,
        since_previous(report, folder),
        healed,
        failed,
        folder / f"{planned_name(report, folder)}.html",
        held=dict(policy.held),
    )
    if sent is not None:
        report = refresh(report, ws, ("notify",))
    written = write_report(report, "md", folder, keep=keep)
    if textfile is not None:
        written += write_report(report, "prom", textfile.expanduser().absolute())
    return ScheduledRun(run, report, written, sent, policy.held, [r["identity"] for r in policy.gave_up])


@dataclass
class FleetHeal:
    """A healing run over several workspaces: every workspace's report, the runs that healed, the ones that could not."""

    audited: list  # list[healthkit.scheduled.fleet.Audited], in the order given
    runs: dict[Path, ScheduledRun] = field(default_factory=dict)
    errors: dict[Path, str] = field(default_factory=dict)
    written: list[Path] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        from healthkit.scheduled.fleet import worst_exit

        return worst_exit(self.audited)

    def add(self, path: Path, run: ScheduledRun | None, why: str | None, reports: Path, keep: int | None) -> None:
        """One workspace's outcome: its run, or the fleet audit's UNKNOWN report saying why, written to its history."""
        from healthkit.reporting.history import write_history
        from healthkit.scheduled.fleet import Audited, history_folder, unreadable_report

        if run is not None:
            self.runs[path] = run
            self.written += run.written
            self.audited.append(Audited(path, run.report))
            return
        why = why or "not healed"
        report = unreadable_report(path, why)
        self.errors[path] = why
        self.audited.append(Audited(path, report))
        try:
            self.written += write_history(report, history_folder(reports, path), "md", keep=keep)
        except OSError as exc:
            self.errors[path] = f"{why}; its report not written either: {exc.strerror or exc}"


def heal_many(
    paths: list[Path] | tuple[Path, ...],
    reports: Path,
    keep: int | None = None,
    textfile: Path | None = None,
    interval_s: float | None = None,
    out: TextIO | None = None,
    lock_wait_s: float = 60.0,
    deadline_s: float | None = None,
) -> FleetHeal:
    """Heal and report every workspace in this one process, each as `heal_and_report` would alone.

    Flap protection and notification state stay per workspace (they live in each workspace and in its
    history folder `reports/<folder_name>/`, the layout of the fleet audit). A workspace that cannot be
    opened, whose fix lock stays held, or whose heal or report fails, gets the fleet audit's UNKNOWN
    report saying why, and the others go on. Then the fleet page and ONE textfile from the audits the
    fixes ended with. Raises OSError only when the fleet page or the textfile cannot be written.

    ``deadline_s``: each workspace is healed in a child forked from this process (healthkit.scheduled.fleetdeadline): one
    whose audit hangs on a mount is UNKNOWN, naming what blocked it; one applying a fix is never killed half-way.
    """
    from healthkit.scheduled.fleet import unique_paths, write_fleet

    stream = out or sys.stdout
    reports = reports.expanduser().absolute()
    options: dict[str, Any] = {"keep": keep, "interval_s": interval_s, "lock_wait_s": lock_wait_s}
    if deadline_s is not None:
        from healthkit.scheduled.fleetdeadline import heal_in_children

        def heal_one(path: Path, text: TextIO) -> tuple[ScheduledRun | None, str | None]:
            return _heal_here(path, reports, text, **options)

        healed: Iterable[tuple[Path, Any, str | None]] = heal_in_children(
            unique_paths(paths), heal_one, stream=stream, deadline_s=deadline_s
        )
    else:
        healed = _heal_each(unique_paths(paths), reports, stream, **options)
    done = FleetHeal(audited=[])
    for path, run, why in healed:
        done.add(path, run, why, reports, keep)
    done.written += write_fleet(done.audited, reports, textfile)
    return done


def _heal_each(
    paths: list[Path], reports: Path, stream: TextIO, **options: Any
) -> Iterator[tuple[Path, ScheduledRun | None, str | None]]:
    for path in paths:
        stream.write(f"== {path}\n")
        yield (path, *_heal_here(path, reports, stream, **options))


def _heal_here(path: Path, reports: Path, stream: TextIO, **options: Any) -> tuple[ScheduledRun | None, str | None]:
    """(the run, None), or (None, why it could not heal or report) for one workspace, in this process (the one
    `heal_many` runs in, or the child healthkit.scheduled.fleetdeadline forks for it)."""
    from healthkit.core.workspace import WorkspaceError
    from healthkit.fix import FixError
    from healthkit.scheduled.fleet import history_folder

    folder = history_folder(reports, path)
    try:
        folder.mkdir(parents=True, exist_ok=True)  # a folder, even when the name looks like a file (`run.v2-<hash>`)
        return heal_and_report(path, reports=folder, out=stream, **options), None
    except WorkspaceError as exc:
        return None, str(exc)
    except FixError as exc:
        return None, f"not healed: {exc}"
    except OSError as exc:
        return None, f"not healed or not reported: {exc.strerror or exc} ({getattr(exc, 'filename', None) or folder})"
    except Exception as exc:
        return None, f"not healed: {type(exc).__name__}: {exc}"
