"""healthkit.quickargs: the typer-free parse of the everyday `audit` and `fix --dry-run` gives the command exactly
what typer gives it, and leaves to typer every argv it does not fully understand."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from healthkit import cli, commands
from healthkit.cli import app
from healthkit.quickargs import quick_command

# Each argv after `healthkit`: the quick parser takes it, and must call the command as typer does.
TAKEN = [
    ["audit"],
    ["audit", "WS"],
    ["audit", "WS", "-f", "json"],
    ["audit", "--format=prom", "WS"],
    ["audit", "-f", "md", "-f", "html", "WS"],  # the last one wins, as in click
    ["audit", "WS", "-o", "out/report.json"],
    ["audit", "WS", "--output=reports", "--keep", "3"],
    ["audit", "WS", "--select", "disk,daemon", "--select", " gpu ", "--ignore", "queue"],
    ["audit", "--select=", "WS"],
    ["audit", "--select=a=b", "WS"],
    ["audit", "WS", "--ascii", "--ascii"],
    ["audit", "WS", "--timeout", "2.5", "--fail-level", "critical"],
    ["audit", "WS", "--timeout", " 1e1 ", "--keep=+7"],
    ["audit", "WS", "--textfile", "m.prom", "-f", "nagios"],
    ["fix", "--safe", "--dry-run"],
    ["fix", "WS", "--dry-run", "--safe"],
    ["fix", "--unsafe", "--dry-run", "WS", "--only", "disk,checkpoints.bloat", "--only", "x", "--keep", "2"],
    ["fix", "--safe", "--dry-run", "--wait=1.5", "-y", "WS"],
    ["fix", "--safe", "--dry-run", "--yes", "--wait", "0"],
]

# Left to typer: help, errors, several paths, anything the quick parser would have to guess about.
LEFT = [
    ["audit", "--help"],
    ["audit", "-h"],
    ["audit", "WS", "-fjson"],
    ["audit", "WS", "-f", "xml"],
    ["audit", "WS", "-f"],
    ["audit", "WS", "--format="],
    ["audit", "WS", "--keep", "0"],
    ["audit", "WS", "--keep", "x"],
    ["audit", "WS", "--timeout", "soon"],
    ["audit", "WS", "--fail-level", "WARNING"],
    ["audit", "A", "B"],
    ["audit", "--", "WS"],
    ["audit", "-"],
    ["audit", ""],
    ["audit", "WS", "--ascii=1"],
    ["audit", "WS", "--nope"],
    ["audit", "WS", "--select", "-x"],
    ["audit", "--ver"],
    ["--version"],
    ["checks"],
    ["fix", "WS", "--safe"],
    ["fix", "WS", "--dry-run"],
    ["fix", "WS", "--safe", "--unsafe", "--dry-run"],
    ["fix", "WS", "--safe", "--dry-run", "--scheduled"],
    ["fix", "WS", "--safe", "--dry-run", "--every", "15m"],
    ["fix", "--safe", "--dry-run", "--wait", "-1"],
    ["fix", "--safe", "--dry-run", "--wait", "nan"],
    ["fix", "A", "B", "--safe", "--dry-run"],
    ["fix", "--safe", "--dry-run", "-yy"],
]


def _calls(monkeypatch, module) -> list:
    calls: list = []

    def record(name):
        def call(*args, **kwargs):
            calls.append((name, args, kwargs))
            raise SystemExit(0)

        return call

    real_format = commands.report_format_or_exit
    monkeypatch.setattr(module, "audit_one", record("audit_one"))
    monkeypatch.setattr(module, "fix_one", record("fix_one"))
    monkeypatch.setattr(module, "report_format_or_exit", lambda *a: calls.append(("format", a, {})) or real_format(*a))
    return calls


@pytest.mark.parametrize("args", TAKEN, ids=" ".join)
def test_the_quick_parse_calls_the_command_as_typer_does(args, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    typer_calls = _calls(monkeypatch, cli)
    r = CliRunner().invoke(app, args)
    assert r.exit_code == 0, r.output
    monkeypatch.undo()
    monkeypatch.chdir(tmp_path)
    quick_calls = _calls(monkeypatch, commands)
    command = quick_command(["healthkit", *args])
    assert command is not None
    with pytest.raises(SystemExit):
        command()
    assert quick_calls == typer_calls and typer_calls


def test_every_quick_option_is_the_typer_commands_with_the_same_kind_and_keyword():
    import typer.main

    from healthkit.quickargs import _audit_options, _fix_options

    for name, table in (("audit", _audit_options()), ("fix", _fix_options())):
        params = {o: p for p in typer.main.get_command(app).commands[name].params for o in p.opts}
        for option, (keyword, convert, repeat) in table.items():
            p = params[option]
            assert (p.name, p.is_flag, p.multiple) == (keyword, convert is None, repeat), option


@pytest.mark.parametrize("args", LEFT, ids=" ".join)
def test_what_the_quick_parse_does_not_understand_is_left_to_typer(args, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert quick_command(["healthkit", *args]) is None


def test_an_unreadable_path_is_left_to_typer_which_refuses_it(tmp_path, monkeypatch):
    """click.Path is readable=True: an existing path this user cannot read is a usage error, not an audit."""
    ws = tmp_path / "ws"
    ws.mkdir()
    monkeypatch.setattr(os, "access", lambda path, mode, **kw: Path(path) != ws)  # as for a non-root user on mode 000
    assert quick_command(["healthkit", "audit", str(ws)]) is None
    assert quick_command(["healthkit", "audit", str(tmp_path / "missing")]) is not None
    r = CliRunner().invoke(app, ["audit", str(ws)])
    assert r.exit_code == 2 and "not readable" in r.output


def test_the_console_entry_audits_without_importing_typer(tmp_path):
    """The point of the quick path: `healthkit audit` and `healthkit fix --safe --dry-run` never import typer; the
    report, the exit code and the usage errors are the typer path's."""
    probe = (
        "import runpy, sys, os; sys.argv = ['healthkit'] + sys.argv[1:]; "
        "real = os._exit\n"
        "def exit_(code):\n"
        "    sys.stderr.write('typer loaded: %s\\n' % ('typer' in sys.modules)); sys.stderr.flush(); real(code)\n"
        "os._exit = exit_\n"
        "import atexit\n"
        "atexit.register(lambda: sys.stderr.write('typer loaded: %s\\n' % ('typer' in sys.modules)))\n"
        "runpy.run_module('healthkit.console', run_name='__main__')"
    )
    for args, loaded in (
        (["audit", str(tmp_path), "-f", "json"], "False"),
        (["fix", str(tmp_path), "--safe", "--dry-run"], "False"),
        (["audit", str(tmp_path), "-f", "xml"], "True"),
    ):
        r = subprocess.run([sys.executable, "-c", probe, *args], capture_output=True, text=True, timeout=60)
        assert f"typer loaded: {loaded}" in r.stderr, (args, r.stderr)
        if args[-1] == "xml":
            assert r.returncode == 64 and "xml" in r.stderr


def test_a_quick_audit_and_a_typer_audit_print_the_same(tmp_path):
    (tmp_path / "config.json").write_text('{"base_model": "m"}')
    args = ["audit", str(tmp_path), "-f", "json"]
    quick = subprocess.run([sys.executable, "-m", "healthkit.console", *args], capture_output=True, timeout=60)
    slow = subprocess.run([sys.executable, "-m", "healthkit.cli", *args], capture_output=True, timeout=60)

    def stable(value):  # the time of the report, timings and the disk's free bytes differ between two runs
        if isinstance(value, dict):
            return {k: stable(v) for k, v in value.items() if k not in ("generated_at", "duration_s", "free_bytes")}
        return [stable(v) for v in value] if isinstance(value, list) else value

    assert quick.returncode == slow.returncode
    assert stable(json.loads(quick.stdout)) == stable(json.loads(slow.stdout))
    assert quick.stderr == slow.stderr
