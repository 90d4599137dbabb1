"""The pytest plugin: `pytest --healthkit PATH` makes each check a test; a failing check fails with the finding's text."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

pytest_plugins = ["pytester"]

CONFTEST = """
from healthkit import CheckOutput, Evidence, Finding, Healthy, Severity, check
from healthkit.core.registry import Registry


@check("disk", title="Disk space")
def disk(ws):
    return CheckOutput(healthy=[Healthy("Disk has room", ["120G free"])])


@check("daemon", title="Training daemon")
def daemon(ws):
    return [Finding("daemon.dead", Severity.CRITICAL, "Training daemon is dead",
                    problem=["PID file names process 4242, which does not exist"],
                    evidence=[Evidence("ps -p 4242", "(no such process)")],
                    recommendations=["Run `healthkit fix --safe` to remove the stale PID file"])]


@check("docs", title="Doc drift")
def docs(ws):
    return [Finding("config.doc-drift", Severity.WARNING, "CLAUDE.md says eval_steps 500", problem=["config.json: 100"])]


@check("gpu", title="GPU")
def gpu(ws):
    raise RuntimeError("nvidia-smi hung")


def pytest_healthkit_registry(config, path):
    reg = Registry()
    for c in (disk, daemon, docs, gpu):
        reg.add(c, "conftest")
    return reg
"""


def plugin_args() -> list[str]:
    """Load the plugin explicitly: works whether or not the installed distribution's `pytest11` entry point
    (named `healthkit.pytest_plugin`, so `-p` finds the same registration) already loads it."""
    return ["-p", "healthkit.pytest_plugin"]


@pytest.fixture
def ws(pytester: pytest.Pytester):
    pytester.makeconftest(CONFTEST)
    path = pytester.path / "workspace"
    path.mkdir()
    return path


def test_each_check_is_a_test_and_failures_carry_the_finding(pytester, ws):
    res = pytester.runpytest(
        *plugin_args(), "--healthkit", str(ws), "-rA", "--junitxml=junit.xml", "-p", "no:cacheprovider"
    )
    res.assert_outcomes(passed=1, failed=3)
    out = res.stdout.str()
    assert f"PASSED healthkit:{ws}::disk" in res.outlines
    for name in ("daemon", "docs", "gpu"):
        assert any(line.startswith(f"FAILED healthkit:{ws}::{name}") for line in res.outlines), name
    assert "PytestUnknownMarkWarning" not in out
    assert "daemon (Training daemon) is CRITICAL" in out
    assert "[critical] daemon.dead: Training daemon is dead" in out
    assert "PID file names process 4242, which does not exist" in out
    assert "$ ps -p 4242" in out
    assert "gpu (GPU) could not check: crashed: RuntimeError: nvidia-smi hung" in out
    assert "Traceback" not in out  # the finding, not the plugin's internals
    cases = {c.get("name"): c for c in ET.parse(pytester.path / "junit.xml").iter("testcase")}
    assert "Training daemon is dead" in cases["daemon"].find("failure").text
    assert cases["disk"].find("failure") is None


def test_fail_level_and_keyword_selection(pytester, ws):
    res = pytester.runpytest(
        *plugin_args(),
        "--healthkit",
        str(ws),
        "--healthkit-fail-level",
        "critical",
        "-k",
        "docs or disk",
        "-p",
        "no:cacheprovider",
    )
    res.assert_outcomes(passed=2, deselected=2)
    res = pytester.runpytest(
        *plugin_args(), "--healthkit", str(ws), "--healthkit-select", "docs", "-p", "no:cacheprovider"
    )
    res.assert_outcomes(failed=1)
    pytester.makepyfile(test_unit="def test_unit(): pass")
    res = pytester.runpytest(*plugin_args(), "--healthkit", str(ws), "-m", "not healthkit", "-p", "no:cacheprovider")
    res.assert_outcomes(passed=1, deselected=4)


def test_a_missing_workspace_is_one_failed_test(pytester, ws):
    res = pytester.runpytest(*plugin_args(), "--healthkit", str(ws / "nope"), "-p", "no:cacheprovider")
    res.assert_outcomes(failed=1)
    assert "does not exist" in res.stdout.str()


def test_without_the_option_it_adds_nothing(pytester, ws):
    pytester.makepyfile(test_one="def test_x(): pass")
    res = pytester.runpytest(*plugin_args(), "-p", "no:cacheprovider")
    res.assert_outcomes(passed=1)


def test_a_name_that_matches_nothing_is_a_usage_error(pytester, ws):
    """`--healthkit-select nope` is the caller's mistake: pytest's usage error (exit 4), not an INTERNALERROR traceback."""
    res = pytester.runpytest(
        *plugin_args(), "--healthkit", str(ws), "--healthkit-select", "nope", "-p", "no:cacheprovider"
    )
    assert res.ret == pytest.ExitCode.USAGE_ERROR == 4
    err = res.stderr.str()
    assert "--select 'nope' matches nothing" in err
    assert "INTERNALERROR" not in res.stdout.str() + err
    res = pytester.runpytest(
        *plugin_args(), "--healthkit", str(ws), "--healthkit-ignore", "dsik", "-p", "no:cacheprovider"
    )
    assert res.ret == 4 and "did you mean: disk" in res.stderr.str()


def test_the_collected_count_includes_the_checks(pytester, ws):
    """pytest's "collected N items" line counts the checks it then runs, with other tests and with --collect-only."""
    pytester.makepyfile(test_unit="def test_unit(): pass")
    res = pytester.runpytest(*plugin_args(), "--healthkit", str(ws), "-p", "no:cacheprovider")
    res.stdout.fnmatch_lines(["collected 5 items"])
    res.assert_outcomes(passed=2, failed=3)
    res = pytester.runpytest(*plugin_args(), "--healthkit", str(ws), "-k", "disk", "-p", "no:cacheprovider")
    res.stdout.fnmatch_lines(["collected 5 items / 4 deselected / 1 selected"])
    res = pytester.runpytest(*plugin_args(), "--healthkit", str(ws), "--collect-only", "-q", "-p", "no:cacheprovider")
    res.stdout.fnmatch_lines([f"healthkit:{ws}::disk", "*5 tests collected*"])


def test_the_test_id_is_the_same_from_a_folder_below_the_rootdir(pytester, ws):
    """Issue 31 item 15: run from a subfolder of the rootdir, the id read `../healthkit:/path::check`."""
    pytester.makeini("[pytest]\n")
    sub = pytester.mkdir("sub")
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(sub)
        res = pytester.runpytest(*plugin_args(), "--healthkit", str(ws), "-rA", "-p", "no:cacheprovider")
    assert f"PASSED healthkit:{ws}::disk" in res.outlines, res.outlines
