"""One scheduled healing run of one workspace: heal what is safe, tell a person, write the report. One audit.

`heal_and_report` is what `healthkit fix PATH --safe --scheduled` runs (and what a job over
several workspaces calls once per workspace). Its order:

1. the fix engine under the fix lock, with the flap protection of healthkit.heal: it audits,
   applies the safe fixes that are not backing off or given up, and audits again only when
   it applied something (a healthy workspace costs one audit);
2. the `heal` check again on the final report (the state changed during the run);
3. the notification (healthkit.notify), which names the HTML report about to be written;
4. the `notify` check again, so that this run's report shows a channel that failed;
5. the history (`report-<stamp>.*`, `latest.*`, `index.html`) and, when asked, the Prometheus textfile.
"""

from __future__ import annotations

import dataclasses
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from .fix import FixOptions, FixRun, Safety, run_fix
from .heal import ScheduledHeal
from .models import Finding
from .notify import Sent, notify_run
from .report import Report
from .workspace import Workspace

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
    from .registry import default_registry
    from .runner import run_checks

    reg = default_registry(ws.settings.checks.plugins, ws.base)
    wanted = [c for c in reg.sorted() if c.id in check_ids and any(r.check == c.id for r in report.results)]
    if not wanted:
        return report
    fresh = {r.check: r for r in run_checks(ws, wanted, ws.settings.checks.timeout_seconds, list(ws.settings.checks.ignore))}
    results = [fresh.get(r.check, r) for r in report.results]
    return dataclasses.replace(report, results=results)


def _healed(run: FixRun) -> tuple[list[Finding], list[Finding]]:
    """Findings an applied fix was for: resolved by the re-audit (healed), or still open (the heal did not hold)."""
    targeted = {k for p, o in run.outcomes for k in p.finding_keys}
    healed = [f for f in run.resolved if f.identity in targeted]
    failed = [f for f in run.still_open if f.identity in targeted]
    return healed, failed


def heal_and_report(path: str | Path, reports: Path | None = None, keep: int | None = None, textfile: Path | None = None,
                    interval_s: float | None = None, out: TextIO | None = None, lock_wait_s: float = 60.0) -> ScheduledRun:
    """Heal one workspace on a schedule and write its report; raises what run_fix raises (WorkspaceError, FixError)."""
    from .history import planned_name, since_previous
    from .output import write_report

    policy = ScheduledHeal(interval_s=interval_s)
    run = run_fix(path, FixOptions(level=Safety.SAFE, wait_s=lock_wait_s, hooks=policy), out or sys.stdout)
    ws = Workspace.open(path)
    folder = (reports or ws.path(ws.settings.paths.reports)).expanduser().absolute()
    report = refresh(run.after or run.before, ws, ("heal",))
    healed, failed = _healed(run)
    sent = notify_run(ws, report, since_previous(report, folder), healed, failed,
                      folder / f"{planned_name(report, folder)}.html", held=dict(policy.held))
    if sent is not None:
        report = refresh(report, ws, ("notify",))
    written = write_report(report, "md", folder, keep=keep)
    if textfile is not None:
        written += write_report(report, "prom", textfile.expanduser().absolute())
    return ScheduledRun(run, report, written, sent, policy.held, [r["identity"] for r in policy.gave_up])
