"""Registry (entry points, plugins, loud registration errors) and runner (timeouts, crashes, costs)."""

from __future__ import annotations

import json
import os
import threading
import time
from dataclasses import dataclass

import pytest

from healthkit import CodeDoc, Finding, Severity, check
from healthkit.core.api import audit
from healthkit.core.registry import RegistrationError, Registry, default_registry
from healthkit.core.runner import run_checks
from healthkit.core.workspace import Workspace

DOC = CodeDoc("demo.bad", "warning", "Bad", what="w", why="y", fix="f")
BAD = Finding(code="demo.bad", severity=Severity.WARNING, title="Bad", problem=["it is bad"])


@check("ok", title="Always fine")
def ok_check(ws):
    return []


@check("bad", title="Always bad", codes=[DOC])
def bad_check(ws):
    return [BAD]


@check("crash", title="Crashes")
def crash_check(ws):
    raise RuntimeError("boom with token=supersecret123")


HANG = threading.Event()


@check("hang", title="Hangs like a dead NFS mount")
def hang_check(ws):
    HANG.wait(30)
    return []


@check("wrongtype", title="Returns a dict")
def wrong_type_check(ws):
    return {"not": "a list"}


def registry(*funcs):
    reg = Registry()
    for f in funcs:
        reg.add(f)
    return reg


def test_registration_is_loud_about_signatures():
    with pytest.raises(RegistrationError, match="exactly one argument"):

        @check("two", title="x")
        def two(a, b):
            return []

    with pytest.raises(RegistrationError, match="takes 0"):

        @check("none", title="x")
        def none(*args):
            return []

    import functools

    @check("defaults", title="x")  # a second argument with a default, or a partial: still one argument to give
    def defaults(ws, limit=3, *, strict=False):
        return []

    check("partial", title="x")(functools.partial(lambda a, ws: [], 1))

    with pytest.raises(RegistrationError, match="area.name"):
        check("c", title="x", codes=[CodeDoc("nodot", "warning", "t", "w", "y", "f")])(lambda ws: [])
    with pytest.raises(RegistrationError, match="lowercase"):
        check("Bad Id", title="x")(lambda ws: [])
    reg = registry(ok_check)
    with pytest.raises(RegistrationError, match="two checks claim"):
        reg.add(check("ok", title="dup")(lambda ws: []))


def _named(check_id: str, seconds: float, seen: dict):
    def body(ws):
        seen[check_id] = threading.current_thread().name
        time.sleep(seconds)
        return []

    body.__name__ = check_id
    return check(check_id, title=check_id)(body)


def test_fast_checks_share_one_runner_and_a_slow_one_gets_company(tmp_path):
    """A healthy workspace's checks run in turn on one thread (side by side they only fight for the GIL); a check
    inside one call for STALL_S makes another runner start, so the checks after it do not wait for it."""
    from healthkit.core.runner import STALL_S

    ws = Workspace.open(tmp_path)
    seen: dict[str, str] = {}
    fast = [_named(f"fast{i}", 0, seen) for i in range(5)]
    results = run_checks(ws, registry(*fast).sorted(), timeout_s=5)
    assert {r.status.value for r in results} == {"ok"} and set(seen.values()) == {"checks-0"}
    seen.clear()
    slow = _named("aslow", 3 * STALL_S + 0.5, seen)
    t0 = time.monotonic()
    results = {r.check: r for r in run_checks(ws, registry(slow, *fast).sorted(), timeout_s=2 * STALL_S + 0.2)}
    assert results["aslow"].status.value == "unknown" and "did not finish within" in results["aslow"].error
    assert all(results[f"fast{i}"].status.value == "ok" for i in range(5)), results
    assert seen["aslow"] == "checks-0" and {seen[f"fast{i}"] for i in range(5)} == {"checks-1"}
    assert time.monotonic() - t0 < 3 * STALL_S + 0.5  # the audit did not wait for the slow one


def test_a_check_that_never_started_says_so(tmp_path):
    from healthkit.core.runner import STALL_S

    seen: dict[str, str] = {}
    checks = registry(_named("aslow", STALL_S * 2, seen), _named("later", 0, seen)).sorted()
    results = {r.check: r for r in run_checks(Workspace.open(tmp_path), checks, timeout_s=STALL_S / 2)}
    assert "did not finish within" in results["aslow"].error
    assert "did not start within" in results["later"].error and "the checks before it did not finish" in (
        results["later"].error
    )


def test_hung_and_crashing_checks_do_not_stop_the_rest(tmp_path):
    HANG.clear()
    ws = Workspace.open(tmp_path)
    t0 = time.monotonic()
    try:
        results = {
            r.check: r
            for r in run_checks(
                ws, registry(ok_check, bad_check, crash_check, hang_check, wrong_type_check).sorted(), timeout_s=0.5
            )
        }
    finally:
        HANG.set()
    assert time.monotonic() - t0 < 3
    assert results["hang"].status.value == "unknown" and "did not finish within 0.5s" in results["hang"].error
    assert results["crash"].status.value == "unknown" and "RuntimeError" in results["crash"].error
    assert "supersecret123" not in results["crash"].error
    assert results["wrongtype"].status.value == "unknown" and "returned dict" in results["wrongtype"].error
    assert results["bad"].findings[0].check == "bad"
    assert results["ok"].status.value == "ok"


def test_report_status_and_exit_codes(tmp_path):
    assert audit(tmp_path, registry=registry(ok_check), record_costs=False).exit_code == 0
    assert audit(tmp_path, registry=registry(ok_check, bad_check), record_costs=False).exit_code == 1
    rep = audit(tmp_path, registry=registry(bad_check, crash_check), record_costs=False)
    assert rep.exit_code == 3 and rep.status.value == "unknown"


def test_select_and_ignore_by_id_tag_or_code(tmp_path):
    reg = registry(ok_check, bad_check)
    assert [r.check for r in audit(tmp_path, registry=reg, select=["bad"], record_costs=False).results] == ["bad"]
    rep = audit(tmp_path, registry=reg, ignore=["demo.bad"], record_costs=False)
    assert rep.findings == [] and [r.check for r in rep.results] == ["ok"]
    rep = audit(tmp_path, registry=registry(ok_check, bad_check), select=["demo"], record_costs=False)
    assert [r.check for r in rep.results] == ["bad"]


def test_ignore_from_settings(tmp_path):
    (tmp_path / "healthkit.toml").write_text('[checks]\nignore = ["demo.bad"]\n')
    assert audit(tmp_path, registry=registry(bad_check), record_costs=False).findings == []


def test_costs_are_appended_and_kept_whole(tmp_path):
    reg = registry(ok_check, bad_check)
    (tmp_path / "monitoring_costs.json").write_text(json.dumps({"training": {"hook_share": 0.01}}))
    audit(tmp_path, registry=reg, record_costs=True)
    audit(tmp_path, registry=reg, record_costs=True)
    data = json.loads((tmp_path / "monitoring_costs.json").read_text())
    assert data["training"] == {"hook_share": 0.01}  # the trainer's section is kept
    assert len(data["audit_runs"]) == 2 and set(data["audit_runs"][0]["checks"]) == {"ok", "bad"}


def test_corrupt_costs_file_is_moved_aside_not_lost(tmp_path):
    (tmp_path / "monitoring_costs.json").write_text("{half a file")
    audit(tmp_path, registry=registry(ok_check), record_costs=True)
    aside = list(tmp_path.glob("monitoring_costs.json.corrupt-*"))
    assert len(aside) == 1 and aside[0].read_text() == "{half a file"


@dataclass
class FakeEP:
    name: str
    value: str
    obj: object = None
    error: Exception | None = None

    def load(self):
        if self.error:
            raise self.error
        return self.obj


def test_entry_points_broken_plugin_reported_rest_run(tmp_path):
    import healthkit.checks.disk

    reg = Registry()
    reg.load_entry_points(
        [
            FakeEP("broken", "nope.mod", error=ImportError("No module named nope")),
            FakeEP("disk", "healthkit.checks.disk", obj=healthkit.checks.disk),
            FakeEP("notacheck", "x:y", obj=object()),
        ]
    )
    assert list(reg.checks) == ["disk"]
    assert [e.source.split(" = ")[0] for e in reg.errors] == ["entry point broken", "entry point notacheck"]
    rep = audit(tmp_path, registry=reg, record_costs=False)
    assert rep.status.value == "unknown" and rep.load_errors


def test_builtins_register_through_entry_points():
    reg = default_registry()
    assert {
        "daemon",
        "checkpoints",
        "drift",
        "validation",
        "disk",
        "config",
        "training",
        "queue",
        "monitor",
        "gpu",
        "monitoring",
    } <= set(reg.checks)
    assert all(c.source.startswith("entry point") for c in reg.checks.values() if c.id in ("daemon", "disk"))
    codes = set(reg.code_docs())
    design = {
        "daemon.dead",
        "daemon.pid-reused",
        "daemon.not-running",
        "daemon.orphaned-training",
        "checkpoints.bloat",
        "checkpoints.no-retention",
        "checkpoints.incomplete",
        "config.doc-drift",
        "config.invalid",
        "validation.not-running",
        "validation.overfitting",
        "disk.low-space",
        "disk.forecast-full",
        "training.stalled",
        "queue.stuck",
        "monitor.down",
        "gpu.unhealthy",
        "monitoring.over-budget",
    }
    assert design <= codes


def test_local_plugin_file_from_settings(tmp_path):
    (tmp_path / "my_checks.py").write_text(
        "from healthkit import check, Finding, Severity, CodeDoc\n"
        "D = CodeDoc('local.thing', 'warning', 'Thing', 'w', 'y', 'f')\n"
        "@check('local', title='Local', codes=[D])\n"
        "def local(ws):\n"
        "    return [Finding(code='local.thing', severity=Severity.WARNING, title='Thing', problem=['x'])]\n"
    )
    (tmp_path / "broken_plugin.py").write_text("raise SystemError('plugin blew up')\n")
    (tmp_path / "healthkit.toml").write_text(
        '[checks]\nplugins = ["my_checks.py", "broken_plugin.py"]\nselect = ["local"]\n'
    )
    rep = audit(tmp_path, record_costs=False)
    assert [f.code for f in rep.findings] == ["local.thing"]
    assert "plugin blew up" in rep.load_errors[0].message


def test_process_vanishing_mid_scan_is_skipped(monkeypatch):
    import psutil

    from healthkit.system import procs

    class Vanishing:
        pid = 999999
        info = {"cmdline": ["python", "train.py"]}

        def oneshot(self):
            raise psutil.NoSuchProcess(self.pid)

    real = psutil.process_iter
    monkeypatch.setattr(procs.psutil, "process_iter", lambda *a, **k: [Vanishing(), *real(*a, **k)])
    assert all(p.pid != 999999 for p in procs.scan_processes())
    monkeypatch.undo()
    # the argv pass reads /proc: a PID listed there that is gone when psutil looks is skipped too
    import subprocess
    import sys

    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    assert procs.match_scanned([(gone.pid, b"python\0train.py\0")], ["train.py"]) == []


def test_the_one_argv_pass_finds_what_psutil_finds(tmp_path):
    """scan_matching reads argv from /proc and asks psutil only about candidates; it finds the processes a full
    psutil pass finds, for a one-word and a two-word pattern, an option that only mentions the name included."""
    import subprocess
    import sys

    import psutil

    from healthkit.system import procs

    script = tmp_path / "train.py"
    script.write_text("import time\ntime.sleep(60)\n")
    kids = [
        subprocess.Popen([sys.executable, str(script)]),
        subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", "--log=train.py"]),
    ]
    ours = {k.pid for k in kids}  # other processes on a shared machine come and go between two passes
    try:
        for patterns in (["train.py"], [f"{os.path.basename(sys.executable)} {script}"], ["nothing-runs-this"], [""]):
            full = {
                p.pid for p in psutil.process_iter(["cmdline"]) if procs.argv_matches(p.info["cmdline"] or (), patterns)
            }
            assert {p.pid for p in procs.scan_matching(patterns)} & ours == full & ours, patterns
        assert {p.pid for p in procs.scan_matching(["train.py"])} & ours == {kids[0].pid}
    finally:
        for k in kids:
            k.kill()
            k.wait()


def test_hung_disk_usage_becomes_unknown_not_a_hang(tmp_path, monkeypatch):
    """A `du` that never returns (a dead network mount) is killed at the check timeout."""
    import psutil

    from healthkit.system import fsutil

    from .conftest import make_checkpoint, wait_for, write_json

    make_checkpoint(tmp_path / "current_model", 10)
    write_json(tmp_path / "config.json", {"base_model": "m"})
    hung = ["sleep", "30.5"]  # stands for du on a dead mount
    monkeypatch.setattr(fsutil, "_du_argv", lambda root: hung)
    t0 = time.monotonic()
    rep = audit(tmp_path, select=["checkpoints"], timeout_s=1.0, record_costs=False)
    assert time.monotonic() - t0 < 5
    assert rep.results[0].status.value == "unknown"

    def stand_in_alive() -> bool:
        for p in psutil.Process().children():
            try:
                if p.cmdline() == hung and p.status() != psutil.STATUS_ZOMBIE:
                    return True
            except psutil.Error:  # another child of this test process ending as we look
                continue
        return False

    assert wait_for(lambda: not stand_in_alive(), 10)  # killed, not left
