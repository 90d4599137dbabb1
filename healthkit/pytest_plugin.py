"""pytest plugin: `pytest --healthkit PATH` turns each healthkit check into a test item.

A CI run then shows which check failed and why: a failing item's report is the
finding's text (problem, evidence to re-run, what to do), and `--junitxml` carries it to
the CI dashboard. Registered through the `pytest11` entry point, so it loads in every
pytest run of an environment that has healthkit: without `--healthkit` it does nothing
and imports nothing beyond this module.

A project's conftest.py can supply its own checks by implementing the hook
`pytest_healthkit_registry(config, path)` and returning a `healthkit.core.registry.Registry`.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from _pytest._code.code import TerminalRepr

    from healthkit.core.findings import CheckResult
    from healthkit.core.report import Report


class HealthkitHookspecs:
    @pytest.hookspec(firstresult=True)
    def pytest_healthkit_registry(self, config: pytest.Config, path: Path) -> Any:
        """Return the Registry to audit ``path`` with; None uses the installed checks."""


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("healthkit", "healthkit workspace audit")
    group.addoption(
        "--healthkit",
        action="append",
        default=[],
        metavar="PATH",
        help="audit this training workspace; each check becomes a test item (repeatable)",
    )
    group.addoption(
        "--healthkit-select",
        action="append",
        default=[],
        metavar="NAME",
        help="only these checks, tags or codes (comma-separated or repeated)",
    )
    group.addoption(
        "--healthkit-ignore", action="append", default=[], metavar="NAME", help="skip these checks, tags or codes"
    )
    group.addoption(
        "--healthkit-fail-level",
        default="warning",
        choices=("warning", "critical", "unknown"),
        help="lowest check status that fails its test (default: warning; unknown always fails)",
    )


def pytest_addhooks(pluginmanager: pytest.PytestPluginManager) -> None:
    pluginmanager.add_hookspecs(HealthkitHookspecs)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "healthkit: a healthkit check run as a test (--healthkit PATH)")


def _split(values: list[str]) -> list[str]:
    return [v.strip() for item in values for v in item.split(",") if v.strip()]


class CheckFailed(Exception):
    """A check's status is at or above the fail level; the message is the findings' text."""


class HealthkitItem(pytest.Item):
    """One check of one audited workspace."""

    def __init__(
        self,
        *,
        result: CheckResult | None = None,
        report: Report | None = None,
        failure: str | None = None,
        fail_level: str = "warning",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.result = result
        self.report = report
        self.failure = failure
        self.fail_level = fail_level
        self.add_marker("healthkit")

    def runtest(self) -> None:
        from healthkit.core.findings import fails_at
        from healthkit.reporting.render.junit import finding_text

        if self.failure is not None:
            raise CheckFailed(self.failure)
        r = self.result
        assert r is not None
        text = "\n\n".join(finding_text(f) for f in r.findings)
        if r.status.value == "unknown":
            raise CheckFailed(f"{r.check} ({r.title}) could not check: {r.error or '; '.join(r.notes) or 'no verdict'}")
        if fails_at(r.status, self.fail_level):
            raise CheckFailed(f"{r.check} ({r.title}) is {r.status.value.upper()}\n\n{text}")
        if text:  # below the fail level: keep it visible in the report
            self.add_report_section("call", "healthkit findings", text)

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style: Any = None) -> str | TerminalRepr:
        if isinstance(excinfo.value, CheckFailed):
            return str(excinfo.value)
        return super().repr_failure(excinfo, style=style)

    def reportinfo(self) -> tuple[Path, int | None, str]:
        where = Path(self.report.workspace) if self.report else self.path
        return where, None, f"healthkit check {self.name}"


class HealthkitWorkspace(pytest.Collector):
    """The checks of one workspace, audited once (before collection reports it, so a bad name is a usage error)."""

    def __init__(
        self, *, workspace: Path, report: Report | None = None, failure: str | None = None, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.workspace = workspace
        self.report = report
        self.failure = failure

    def collect(self) -> list[pytest.Item]:
        if self.report is None:
            return [HealthkitItem.from_parent(self, name="audit", failure=self.failure, path=self.workspace)]
        report = self.report
        level = self.config.getoption("healthkit_fail_level")
        items: list[pytest.Item] = [
            HealthkitItem.from_parent(
                self, name=r.check, result=r, report=report, fail_level=level, path=self.workspace
            )
            for r in report.sorted_results
        ]
        for e in report.load_errors:
            items.append(
                HealthkitItem.from_parent(
                    self,
                    name=f"load[{e.source}]",
                    report=report,
                    path=self.workspace,
                    failure=f"{e.source}: {e.message}",
                )
            )
        return items


def _audit(config: pytest.Config, ws: Path) -> tuple[Report | None, str | None]:
    """Audit one workspace: (report, None), or (None, why it cannot be audited). A name in
    --healthkit-select/--healthkit-ignore that matches nothing is the caller's mistake: pytest.UsageError (exit 4)."""
    from healthkit.contract.settings import SettingsError
    from healthkit.core.api import audit
    from healthkit.core.selectors import SelectorError
    from healthkit.core.workspace import WorkspaceError

    registry = config.hook.pytest_healthkit_registry(config=config, path=ws)
    try:
        return audit(
            ws,
            select=_split(config.getoption("healthkit_select")),
            ignore=_split(config.getoption("healthkit_ignore")),
            registry=registry,
        ), None
    except SelectorError as exc:
        raise pytest.UsageError(str(exc)) from None
    except (WorkspaceError, SettingsError, OSError) as exc:
        return None, f"healthkit cannot audit {ws}: {exc}"


def _nodeid(config: pytest.Config, name: str) -> str:
    """The workspace node's id, such that pytest shows it as ``name`` from where it was invoked.

    pytest reads a node id as a path under its rootdir and prints it relative to the invocation folder: run from a
    folder below the rootdir, a bare `healthkit:/ws` printed as `../healthkit:/ws`. The id carries the way from the
    rootdir to the invocation folder, which pytest then takes off again."""
    import os

    rel = os.path.relpath(config.invocation_params.dir, config.rootpath)
    return name if rel == "." or rel.startswith("..") else f"{Path(rel).as_posix()}/{name}"


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items: list[pytest.Item]) -> None:
    """Add the checks before -k/-m deselection runs, so `-k daemon` selects a check like any test.

    The workspace node is collected through pytest's own collect-report hooks, so the
    "collected N items" line, `--collect-only` and the deselection count include the checks."""
    from _pytest.runner import collect_one_node

    for raw in config.getoption("healthkit", default=None) or []:
        ws = Path(raw).expanduser().absolute()
        report, failure = _audit(config, ws)
        node = HealthkitWorkspace.from_parent(
            session,
            name=f"healthkit:{raw}",
            nodeid=_nodeid(config, f"healthkit:{raw}"),
            workspace=ws,
            path=ws,
            report=report,
            failure=failure,
        )
        rep = collect_one_node(node)
        node.ihook.pytest_collectreport(report=rep)
        items.extend(x for x in rep.result if isinstance(x, pytest.Item))
