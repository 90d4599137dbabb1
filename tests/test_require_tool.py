"""The skip helper: a missing tool is a skip that names it, and a failure under CI=true."""

from __future__ import annotations

import pytest

from .conftest import require_tool


def test_a_present_tool_is_its_path():
    assert require_tool("sh", "dash").endswith("/sh")


def test_missing_tool_skips_naming_it_outside_ci(monkeypatch):
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match=r"no-such-tool-x not installed \(Debian package `pkg-x`\)"):
        require_tool("no-such-tool-x", "pkg-x")


def test_missing_tool_fails_in_ci(monkeypatch):
    monkeypatch.setenv("CI", "true")
    with pytest.raises(
        pytest.fail.Exception, match=r"no-such-tool-x not installed \(Debian package `pkg-x`\), and CI=true"
    ):
        require_tool("no-such-tool-x", "pkg-x")
