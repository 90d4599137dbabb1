"""Fix safety levels, plans and outcomes, and the registry that maps a FixRef id to the code that plans it.

Fixes register through the `healthkit.fixes` entry-point group, as checks do through
`healthkit.checks`; each declares the finding codes it handles and the safeties it can
have, and `contract_errors` holds the checks' FixRefs to that.

Applicability is ordered as in ruff: ``UNSAFE < SAFE``. A run asks for a level
(``--safe`` asks for SAFE, ``--unsafe`` for UNSAFE) and a plan is applied when
``plan.safety >= required``. A plan is computed from a fresh audit, shown in full
before anything changes, and re-validated by its ``apply`` (whatever changed since
the plan is left alone).
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from healthkit.system.records import record

if TYPE_CHECKING:
    from healthkit.core.findings import Finding, FixRef
    from healthkit.core.report import Report
    from healthkit.core.workspace import Workspace
    from healthkit.fix.journal import Journal


class Safety(enum.IntEnum):
    """How much a fix may cost; higher is safer. ``SAFE``: cannot lose work. ``UNSAFE``: may lose work or change training."""

    UNSAFE = 1
    SAFE = 2

    @classmethod
    def parse(cls, text: str) -> Safety:
        return cls.SAFE if text == "safe" else cls.UNSAFE

    @property
    def label(self) -> str:
        return self.name.lower()


@record
class Outcome:
    """What applying one plan did: ``applied``, ``skipped`` (nothing changed, e.g. "changed since plan") or ``failed``."""

    status: str
    message: str
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.status == "applied"


def applied(message: str, **details: Any) -> Outcome:
    return Outcome("applied", message, details)


def skipped(message: str, **details: Any) -> Outcome:
    return Outcome("skipped", message, details)


def failed(message: str, **details: Any) -> Outcome:
    return Outcome("failed", message, details)


@dataclass
class Plan:
    """One fix for one or more findings, shown before it is applied.

    ``preview`` is what a person reads first: a unified diff for file edits, the paths
    and bytes for deletions, the exact argv for a process start or signal. ``blocked``
    says why the plan cannot be applied at all (it is shown, never applied). Plans with
    the same ``key`` are one action (start-daemon and adopt-orphan start one daemon);
    plans in the same ``group`` for one finding are alternatives (adopt or kill an
    orphan): the safest applicable one is chosen.
    """

    fix_id: str
    safety: Safety
    title: str
    preview: str
    codes: list[str]
    key: str
    order: int
    apply: Callable[[ApplyContext], Outcome] | None = None
    blocked: str | None = None
    group: str | None = None
    finding_keys: list[str] = field(default_factory=list)

    def merge(self, other: Plan) -> None:
        for c in other.codes:
            if c not in self.codes:
                self.codes.append(c)
        for k in other.finding_keys:
            if k not in self.finding_keys:
                self.finding_keys.append(k)


@dataclass
class PlanContext:
    """What a planner may look at: the workspace as audited, the report and the run's options."""

    ws: Workspace
    report: Report
    keep: int | None = None
    to: str | None = None  # `fix --to checkpoint-N`: where a rewind goes back to (else the finding's choice)
    daemon_confirm_s: float = 3.0
    kill_grace_s: float = 10.0
    run_id: str = ""
    level: Safety = Safety.SAFE  # the run's --safe/--unsafe: a planner may offer more under --unsafe


@dataclass
class ApplyContext:
    """What an apply gets: the run's journal (one line per action) and its options."""

    ws: Workspace
    journal: Journal
    plan: Plan
    daemon_confirm_s: float = 3.0
    kill_grace_s: float = 10.0
    run_id: str = ""

    def record(self, action: str, target: str, result: str, message: str, **details: Any) -> None:
        self.journal.append(
            fix=self.plan.fix_id,
            codes=self.plan.codes,
            action=action,
            target=target,
            result=result,
            message=message,
            details=details,
            run=self.run_id,
        )


Planner = Callable[[PlanContext, "Finding", "FixRef"], list[Plan]]
ENTRY_POINT_GROUP = "healthkit.fixes"


@record
class FixSpec:
    """A registered fix: its id (what FixRefs name), the codes it handles and the safeties it can have.

    A fix whose safety depends on the workspace (pruning under a declared limit is safe, under
    a limit chosen now is not) declares both; the plan it returns carries the one in force.
    """

    id: str
    order: int
    planner: Planner
    codes: tuple[str, ...]
    safeties: frozenset[Safety]
    source: str = ""


FIXES: dict[str, FixSpec] = {}
LOAD_ERRORS: list[str] = []


def fixer(
    fix_id: str, order: int, *, codes: tuple[str, ...] | list[str], safety: Safety | tuple[Safety, ...]
) -> Callable[[Planner], Planner]:
    """Register the planner for a FixRef id; ``order`` sorts plans for applying.

    Refused loudly at import (like a malformed check): a second registration of one id, no
    codes, or a safety that is not a `Safety`.
    """
    safeties = frozenset(safety if isinstance(safety, tuple) else (safety,))
    if not codes or not all(isinstance(c, str) and "." in c for c in codes):
        raise ValueError(f"fix {fix_id!r} must declare the finding codes it handles, not {codes!r}")
    if not safeties or not all(isinstance(s, Safety) for s in safeties):
        raise ValueError(f"fix {fix_id!r} must declare its safety as Safety values, not {safety!r}")

    def deco(fn: Planner) -> Planner:
        if fix_id in FIXES and FIXES[fix_id].planner is not fn:
            raise ValueError(f"fix {fix_id!r} is registered twice")
        FIXES[fix_id] = FixSpec(fix_id, order, fn, tuple(codes), safeties, f"{fn.__module__}.{fn.__qualname__}")
        return fn

    return deco


_loaded = False
BUILTIN_MODULES = ("fixes_checkpoints", "fixes_config", "fixes_daemon", "fixes_docs", "fixes_queue", "fixes_slurm")


def _builtin_entry_points() -> list[Any]:
    """A source tree that was never installed has no entry points: load the built-ins directly (as checks do)."""
    from healthkit.system.entrypoints import EntryPoint

    return [EntryPoint(name.removeprefix("fixes_"), f"{__package__}.{name}") for name in BUILTIN_MODULES] + [
        EntryPoint(
            "rewind", "healthkit.trainer.fix_rewind"
        )  # the trainer's, named by string: the core never imports it
    ]


def load_fixes(entry_points: Any = None) -> dict[str, FixSpec]:
    """Import every module of the `healthkit.fixes` entry-point group (built-ins register the same way).

    A module that fails to import is recorded in LOAD_ERRORS (shown by `healthkit fix`) and the
    others still load, as for checks.
    """
    global _loaded
    if _loaded and entry_points is None:
        return FIXES
    if entry_points is None:
        from healthkit.system.entrypoints import entry_points as cached

        entry_points = cached(ENTRY_POINT_GROUP) or _builtin_entry_points()
    for ep in sorted(entry_points, key=lambda e: e.name):
        try:
            ep.load()
        except Exception as exc:
            msg = f"fix plugin {ep.name} = {ep.value} failed to load: {type(exc).__name__}: {exc}"
            if msg not in LOAD_ERRORS:
                LOAD_ERRORS.append(msg)
    _loaded = True
    return FIXES


def contract_errors(code_docs: dict[str, Any], fixes: dict[str, FixSpec]) -> list[str]:
    """Where the checks' declared FixRefs and the registered fixes disagree (empty when the contract holds).

    Each FixRef a code declares must name a registered fix that handles that code at that
    safety; each fix's codes must be documented by some check.
    """
    errors = []
    for code, doc in sorted(code_docs.items()):
        for ref in getattr(doc, "fixes", ()):
            spec = fixes.get(ref.id)
            if spec is None:
                errors.append(f"{code}: FixRef {ref.id!r} names no registered fix")
            elif code not in spec.codes:
                errors.append(f"{code}: fix {ref.id!r} does not declare that it handles {code}")
            elif Safety.parse(ref.safety) not in spec.safeties:
                errors.append(
                    f"{code}: FixRef {ref.id!r} is {ref.safety} but the fix can only be "
                    f"{'/'.join(sorted(s.label for s in spec.safeties))}"
                )
    for spec in sorted(fixes.values(), key=lambda s: s.id):
        for code in spec.codes:
            if code not in code_docs:
                errors.append(f"fix {spec.id!r} handles {code}, which no registered check reports")
    return errors
