"""Fix safety levels, plans and outcomes, and the registry that maps a FixRef id to the code that plans it.

Applicability is ordered as in ruff: ``UNSAFE < SAFE``. A run asks for a level
(``--safe`` asks for SAFE, ``--unsafe`` for UNSAFE) and a plan is applied when
``plan.safety >= required``. A plan is computed from a fresh audit, shown in full
before anything changes, and re-validated by its ``apply`` (whatever changed since
the plan is left alone).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable

if TYPE_CHECKING:
    from ..models import Finding, FixRef
    from ..report import Report
    from ..workspace import Workspace
    from .journal import Journal


class Safety(enum.IntEnum):
    """How much a fix may cost; higher is safer. ``SAFE``: cannot lose work. ``UNSAFE``: may lose work or change training."""

    UNSAFE = 1
    SAFE = 2

    @classmethod
    def parse(cls, text: str) -> "Safety":
        return cls.SAFE if text == "safe" else cls.UNSAFE

    @property
    def label(self) -> str:
        return self.name.lower()


@dataclass(frozen=True)
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
    apply: Callable[["ApplyContext"], Outcome] | None = None
    blocked: str | None = None
    group: str | None = None
    finding_keys: list[str] = field(default_factory=list)

    def merge(self, other: "Plan") -> None:
        for c in other.codes:
            if c not in self.codes:
                self.codes.append(c)
        for k in other.finding_keys:
            if k not in self.finding_keys:
                self.finding_keys.append(k)


@dataclass
class PlanContext:
    """What a planner may look at: the workspace as audited, the report and the run's options."""

    ws: "Workspace"
    report: "Report"
    keep: int | None = None
    daemon_confirm_s: float = 3.0
    kill_grace_s: float = 10.0
    run_id: str = ""


@dataclass
class ApplyContext:
    """What an apply gets: the run's journal (one line per action) and its options."""

    ws: "Workspace"
    journal: "Journal"
    plan: Plan
    daemon_confirm_s: float = 3.0
    kill_grace_s: float = 10.0
    run_id: str = ""

    def record(self, action: str, target: str, result: str, message: str, **details: Any) -> None:
        self.journal.append(fix=self.plan.fix_id, codes=self.plan.codes, action=action, target=target,
                            result=result, message=message, details=details, run=self.run_id)


Planner = Callable[[PlanContext, "Finding", "FixRef"], list[Plan]]


@dataclass(frozen=True)
class FixSpec:
    id: str
    order: int
    planner: Planner


FIXES: dict[str, FixSpec] = {}


def fixer(fix_id: str, order: int) -> Callable[[Planner], Planner]:
    """Register the planner for a FixRef id (the ids the checks emit); ``order`` sorts plans for applying."""

    def deco(fn: Planner) -> Planner:
        if fix_id in FIXES:
            raise ValueError(f"fix {fix_id!r} is registered twice")
        FIXES[fix_id] = FixSpec(fix_id, order, fn)
        return fn

    return deco


def load_fixes() -> dict[str, FixSpec]:
    """Import the built-in fix families (each registers itself)."""
    from . import fixes_checkpoints, fixes_config, fixes_daemon, fixes_docs, fixes_queue  # noqa: F401

    return FIXES
