"""Goodput: the share of the time with work queued that trained, and what each cause cost (healthkit.core.goodput).

From our trainer's event log (`logs/events.jsonl`, read through the bounded reader); for a run without one, an
estimate from the timed points its format recorded (log wall times, checkpoint save times), marked as such.
No finding: the figures go to the report (JSON `goodput`, Markdown, Prometheus, the fleet page).
"""

from __future__ import annotations

from healthkit import CheckOutput, check
from healthkit.contract.events import read_events
from healthkit.core.goodput import estimate, from_events
from healthkit.core.ownership import daemon_processes
from healthkit.core.workspace import Workspace

from ._common import parse_time


@check("goodput", title="Goodput", tags=["training"])
def goodput_check(ws: Workspace) -> CheckOutput:
    events, problems = read_events(ws.path(ws.settings.paths.logs), reader=ws.reader)
    notes = [f"{ws.rel(p.path)}: {p.message}" for p in problems]
    if events:
        progress = parse_time(ws.status_value("updated_at")) if ws.status.is_object else None
        g = from_events(events, ws.now, daemon_alive=bool(daemon_processes(ws)), last_progress=progress)
    else:
        rec = ws.run
        g = estimate(rec.times, f"an estimate from {rec.times_from}") if rec is not None and rec.times else None
    return CheckOutput(facts={"goodput": g.to_dict()} if g is not None else {}, notes=notes)
