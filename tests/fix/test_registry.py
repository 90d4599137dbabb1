"""Fixes register like checks: through the `healthkit.fixes` entry points, declaring their codes and safeties."""

from __future__ import annotations

import pytest

from healthkit.core.findings import FixRef
from healthkit.core.registry import CodeDoc, default_registry
from healthkit.fix import plan
from healthkit.fix.plan import Safety, contract_errors, fixer, load_fixes
from healthkit.system.entrypoints import entry_points


def test_builtin_fixes_come_from_the_entry_point_group():
    eps = {ep.value for ep in entry_points(plan.ENTRY_POINT_GROUP)}
    assert eps == {ep.value for ep in plan._builtin_entry_points()}  # the fallback of a tree never installed
    assert eps == {f"healthkit.fix.{m}" for m in plan.BUILTIN_MODULES} | {"healthkit.trainer.fix_rewind"}
    fixes = load_fixes()
    assert {s.source.rsplit(".", 1)[0] for s in fixes.values()} == eps
    assert not plan.LOAD_ERRORS


def test_the_builtin_contract_holds():
    """Every FixRef a check declares names a registered fix that handles that code at that safety."""
    docs = default_registry().code_docs()
    assert contract_errors(docs, load_fixes()) == []


def doc(code: str, *fixes: FixRef) -> CodeDoc:
    return CodeDoc(code, "warning", "t", what="w", why="y", fix="f", fixes=fixes)


def test_a_fixref_naming_no_fix_fails_the_contract():
    docs = {"logs.too-big": doc("logs.too-big", FixRef("rotate-logs", "Rotate the log", "safe"))}
    assert contract_errors(docs, {}) == ["logs.too-big: FixRef 'rotate-logs' names no registered fix"]


def test_a_fixref_for_a_code_the_fix_does_not_handle_or_at_another_safety():
    fixes = load_fixes()
    docs = {
        "queue.stuck": doc(
            "queue.stuck", FixRef("kill-orphan", "Kill", "unsafe"), FixRef("requeue-stuck-file", "Requeue", "unsafe")
        )
    }
    got = contract_errors(docs, {k: fixes[k] for k in ("kill-orphan", "requeue-stuck-file")})
    assert got == [
        "queue.stuck: fix 'kill-orphan' does not declare that it handles queue.stuck",
        "queue.stuck: FixRef 'requeue-stuck-file' is unsafe but the fix can only be safe",
        "fix 'kill-orphan' handles daemon.orphaned-training, which no registered check reports",
    ]


def test_fixer_refuses_a_fix_without_codes_or_safety():
    with pytest.raises(ValueError, match="codes"):
        fixer("x-fix", order=1, codes=(), safety=Safety.SAFE)
    with pytest.raises(ValueError, match="safety"):
        fixer("x-fix", order=1, codes=("a.b",), safety="safe")  # type: ignore[arg-type]


def test_a_broken_fix_plugin_is_reported_and_the_rest_load(monkeypatch):
    class BrokenEP:
        name, value = "broken", "no_such_module_for_healthkit"

        def load(self):
            raise ImportError("no module named no_such_module_for_healthkit")

    monkeypatch.setattr(plan, "LOAD_ERRORS", [])
    load_fixes([BrokenEP()])
    assert plan.LOAD_ERRORS == [
        "fix plugin broken = no_such_module_for_healthkit failed to load: "
        "ImportError: no module named no_such_module_for_healthkit"
    ]
    assert "prune-checkpoints" in load_fixes()


def test_the_trainer_is_started_through_its_daemon_adapter():
    """The fix engine never imports the trainer: it asks the adapter registered under `healthkit.fix.daemon_adapters`."""
    from healthkit.fix.daemon_adapters import load_adapter

    assert [ep.value for ep in entry_points("healthkit.daemons") if ep.name == "trainer"] == [
        "healthkit.trainer.adapter:ADAPTER"
    ]
    adapter, why = load_adapter("trainer")
    assert why is None and adapter.name == "trainer" and adapter.module.endswith("healthkit.trainer.daemon")
    assert load_adapter("no-such-daemon") == (None, "no daemon adapter named 'no-such-daemon' is installed")


def test_a_check_whose_finding_carries_an_undeclared_fixref_is_a_loud_check_error(tmp_path):
    """The runner holds each finding to its code's CodeDoc: an undeclared FixRef is a bug in the check, shown as such."""
    from healthkit import CodeDoc as Doc
    from healthkit import Finding, Severity, check
    from healthkit.core.api import audit
    from healthkit.core.registry import Registry

    declared = FixRef("requeue-stuck-file", "Move it back", "safe")
    doc_ = Doc("x.thing", "warning", "A thing", what="w", why="y", fix="f", fixes=(declared,))

    @check("xthing", title="X", codes=[doc_])
    def xthing(ws):
        return [
            Finding(
                code="x.thing",
                severity=Severity.WARNING,
                title="t",
                problem=["p"],
                fixes=[FixRef("kill-orphan", "Kill", "unsafe")],
            )
        ]

    reg = Registry()
    reg.add(xthing, "test")
    report = audit(tmp_path, registry=reg)
    (r,) = report.results
    assert r.status.value == "unknown" and "does not declare: kill-orphan" in (r.error or ""), r


def test_a_codedoc_declaring_something_else_than_a_fixref_is_refused_at_registration():
    from healthkit import check
    from healthkit.core.registry import RegistrationError

    bad = CodeDoc("x.bad", "warning", "t", what="w", why="y", fix="f", fixes=("kill-orphan",))  # type: ignore[arg-type]

    with pytest.raises(RegistrationError, match="not a FixRef"):

        @check("xbad", title="X", codes=[bad])
        def xbad(ws):
            return []
