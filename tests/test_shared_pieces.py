"""The pieces several features share (docs/architecture.md "Shared pieces"): workspace id, event log, printed commands."""

from __future__ import annotations

import os
import subprocess

from healthkit.contract.events import EventLog, read_events
from healthkit.contract.wsid import WSID_FILE, ensure_workspace_id, read_workspace_id
from healthkit.system.shellcmd import command, quote_arg


def test_workspace_id_is_created_once_and_read_back(tmp_path):
    assert read_workspace_id(tmp_path) is None
    first = ensure_workspace_id(tmp_path)
    assert len(first) == 32 and ensure_workspace_id(tmp_path) == first == read_workspace_id(tmp_path)


def test_workspace_id_that_is_not_ours_or_a_fifo_is_no_id(tmp_path):
    (tmp_path / WSID_FILE).write_text("not an id\n")
    assert read_workspace_id(tmp_path) is None
    os.unlink(tmp_path / WSID_FILE)
    os.mkfifo(tmp_path / WSID_FILE)
    assert read_workspace_id(tmp_path) is None  # and it returned: a FIFO never blocks the read


def test_event_log_appends_reads_back_and_rotates(tmp_path):
    log = EventLog(tmp_path, rotate_bytes=400, clock=iter(range(100, 200)).__next__)
    for i in range(12):
        assert log.append("checkpoint", step=i * 10, file="a.jsonl")
    events, problems = read_events(tmp_path)
    assert problems == []
    assert (tmp_path / "events.jsonl.1").exists()
    steps = [e["step"] for e in events]
    assert steps == sorted(steps) and steps[-1] == 110 and len(steps) < 12  # the oldest generation was dropped


def test_event_log_keeps_an_event_it_cannot_write_and_writes_it_later(tmp_path):
    logs = tmp_path / "logs"
    logs.mkdir()
    log = EventLog(logs)
    os.chmod(logs, 0o500)
    try:
        if os.geteuid() == 0:  # root writes anyway: make the path a folder instead, an error for anyone
            os.chmod(logs, 0o700)
            (logs / "events.jsonl").mkdir()
        assert log.append("disk-wait", free_bytes=0) is False
    finally:
        os.chmod(logs, 0o700)
        if (logs / "events.jsonl").is_dir():
            (logs / "events.jsonl").rmdir()
    assert log.append("disk-resumed") is True
    assert [e["event"] for e in read_events(logs)[0]] == ["disk-wait", "disk-resumed"]


def test_event_log_skips_a_torn_line_and_reports_a_fifo(tmp_path):
    (tmp_path / "events.jsonl").write_bytes(b'{"ts": 1, "event": "idle"}\n{"ts": 2, "ev')
    assert [e["event"] for e in read_events(tmp_path)[0]] == ["idle"]
    os.unlink(tmp_path / "events.jsonl")
    os.mkfifo(tmp_path / "events.jsonl")
    events, problems = read_events(tmp_path)
    assert events == [] and [p.kind for p in problems] == ["not-regular"]


def test_printed_commands_name_the_same_file_when_pasted(tmp_path):
    names = ["x$(touch PWNED).jsonl", "it's here", "tab\there", "esc\x1b[2J", os.fsdecode(b"latin\xe9.jsonl")]
    for name in names:
        printed = command("printf", "%s", name)
        assert "\x1b" not in printed and "\t" not in printed
        out = subprocess.run(["bash", "-c", printed], cwd=tmp_path, capture_output=True, check=True).stdout
        assert out == os.fsencode(name)
    assert not (tmp_path / "PWNED").exists()
    assert quote_arg("plain") == "plain"
