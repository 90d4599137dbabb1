"""`audit()`: the library entry point used by the CLI, CI jobs and the fix engine's re-audit."""

from __future__ import annotations

import time
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path

from healthkit._version import __version__
from healthkit.contract.trust import UNTRUSTED_CODE
from healthkit.core.registry import Registry, default_registry
from healthkit.core.report import Report
from healthkit.core.runner import append_costs, run_checks
from healthkit.core.selectors import audit_names, require_known
from healthkit.core.workspace import Workspace


def audit(
    path: str | Path | Workspace,
    *,
    select: Iterable[str] = (),
    ignore: Iterable[str] = (),
    registry: Registry | None = None,
    timeout_s: float | None = None,
    record_costs: bool | None = None,
) -> Report:
    """Audit a workspace and return the report. Raises WorkspaceError when there is nothing to audit,
    SelectorError when a name in ``select``/``ignore`` matches no check, tag or code.

    ``select``/``ignore`` add to the lists in healthkit.toml: check ids, tags or
    finding codes (an ignored code is dropped from the report; its check still runs
    when it has other codes). ``record_costs`` (default: healthkit.toml's `[audit] record_cost`,
    off unless set) appends this audit's cost to monitoring_costs.json: the one write an audit may
    make in the audited tree, and only when the workspace opted in.
    """
    t0 = time.perf_counter()
    select, ignore = list(select), list(ignore)
    ws = path if isinstance(path, Workspace) else Workspace.open(path)
    t0 = min(t0, ws.started)  # opening the workspace and detection are part of the audit's time
    cs = ws.settings.checks
    ws.check_timeout_s = timeout_s or cs.timeout_seconds
    ws.prefetch()  # no-op when already started (healthkit.console starts it before the CLI loads)
    trusted = ws.trust.trusted  # decided before anything the workspace names is imported (healthkit.contract.trust)
    reg = registry or default_registry(cs.plugins if trusted else (), ws.base)
    require_known("--select", select, audit_names(reg))
    require_known("--ignore", ignore, audit_names(reg))
    sel = list(select) or list(cs.select)
    ign = list(cs.ignore) + list(ignore)
    chosen = reg.select(sel, ign)
    if not trusted:  # settings someone else may have written cannot hide that they were not trusted
        ign = [n for n in ign if not UNTRUSTED_CODE.startswith(n)]
        chosen += [c for c in reg.sorted() if c.id == "trust" and c not in chosen]
    from healthkit.system.deadline import phase

    with phase("running the checks"):
        results = run_checks(ws, chosen, ws.check_timeout_s, ign)
    duration = time.perf_counter() - t0
    notes: list[str] = []
    if ws.settings.audit.record_cost if record_costs is None else record_costs:
        note = append_costs(ws.path(ws.settings.paths.monitoring_costs), results, duration)
        if note:
            notes.append(note)
    return Report(
        workspace=str(ws.base),
        generated_at=datetime.now(UTC).isoformat(timespec="seconds"),
        version=__version__,
        results=results,
        load_errors=list(reg.errors),
        settings_file=str(ws.settings_path) if ws.settings_path else None,
        duration_s=duration,
        notes=notes,
        settings_inferred=[i.to_dict() for i in ws.inferred],
        code_docs=reg.code_docs(),
    )
