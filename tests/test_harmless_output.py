"""Worst days, output side: hostile names never run, never reach a terminal raw, never break JSON or Markdown."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from healthkit.system.safetext import md_code, md_document, unsurrogate, visible

from .conftest import make_healthy_workspace, run_cli, write_json

EVIL = "x$(touch PWNED)\x1b[2J<script>"


def hostile_workspace(base: Path) -> Path:
    ws = make_healthy_workspace(base)
    (ws / "queue" / "failed" / f"{EVIL}.jsonl").write_text("{}\n")
    write_json(
        ws / "queue" / "failed" / f"{EVIL}.error.json", {"error": "boom \x1b]8;;http://evil\x07link\x1b]8;;\x07"}
    )
    return ws


def test_helpers() -> None:
    assert visible("a\x1b[2Jb\udce9\n") == "a\\x1b[2Jb\\xe9\n"
    assert unsurrogate("ws\udce9") == "ws\\xe9"
    assert md_code("a``b") == "```a``b```" and md_code("`x") == "`` `x ``"
    assert md_document("t <b>\n```\n<b>\n```") == "t &lt;b>\n```\n<b>\n```"


def test_markdown_report_quotes_commands_and_escapes_controls_and_html(tmp_path: Path) -> None:
    ws = hostile_workspace(tmp_path / "ws")
    proc = run_cli("audit", str(ws))
    out = proc.stdout.decode("utf-8")
    assert "\x1b" not in out and "\x07" not in out
    assert "<script>" not in out.replace("`", "").split("```")[0] or "&lt;script>" in out
    retry = next(line for line in out.splitlines() if "Retry with" in line)
    cmd = retry.split("Retry with ", 1)[1].strip().strip("`")
    # Pasted into bash, the command names the file: it runs nothing (echo shows the words bash would pass).
    words = subprocess.run(
        ["bash", "-c", "printf '%s\\0' " + cmd.split("healthkit ", 1)[1]], capture_output=True, cwd=tmp_path
    ).stdout.split(b"\0")
    assert words[3] == os.fsencode(f"{EVIL}.jsonl")
    assert not (tmp_path / "PWNED").exists()


def test_fix_lines_quote_the_workspace_path(tmp_path: Path) -> None:
    ws = make_healthy_workspace(tmp_path / "my ws;rm -rf x")
    (ws / ".daemon.pid").write_text("999999 1\n")  # a dead daemon: daemon.dead has a safe fix
    out = run_cli("audit", str(ws)).stdout.decode()
    fix = [line for line in out.splitlines() if "- Fix: " in line]
    assert fix and all("'" + str(ws) + "'" in line for line in fix), fix


def test_json_is_valid_utf8_with_undecodable_names(tmp_path: Path) -> None:
    base = Path(os.fsdecode(os.fsencode(tmp_path) + b"/ws\xe9"))
    ws = hostile_workspace(base)
    os.mkdir(ws / "current_model" / os.fsdecode(b"checkpoint-\xe9"))
    raw = run_cli("audit", str(ws), "--format", "json").stdout
    raw.decode("utf-8")  # strict
    report = json.loads(raw)
    assert report["workspace"].endswith("ws\\xe9")


def test_prom_with_a_non_utf8_workspace_path(tmp_path: Path) -> None:
    base = Path(os.fsdecode(os.fsencode(tmp_path) + b"/ws\xe9"))
    ws = make_healthy_workspace(base)
    proc = run_cli("audit", str(ws), "--format", "prom")
    assert b"Traceback" not in proc.stderr, proc.stderr
    text = proc.stdout.decode("utf-8")
    assert 'workspace="' in text and "ws\\\\xe9" in text


def test_nagios_fix_dry_run_and_queue_list_escape_controls(tmp_path: Path) -> None:
    ws = hostile_workspace(tmp_path / "ws")
    nagios = run_cli("audit", str(ws), "--format", "nagios").stdout
    assert b"\x1b" not in nagios
    dry = run_cli("fix", str(ws), "--unsafe", "--dry-run")
    assert b"\x1b" not in dry.stdout and b"Traceback" not in dry.stderr
    listing = run_cli("queue", "list", str(ws))
    assert b"\x1b" not in listing.stdout and b"\x07" not in listing.stdout
    assert b"\\x1b[2J" in listing.stdout, listing.stdout


def test_a_latin1_workspace_keeps_its_history_index_and_fleet_row(tmp_path: Path) -> None:
    base = Path(os.fsdecode(os.fsencode(tmp_path) + b"/ws\xe9"))
    ws = make_healthy_workspace(base)
    other = make_healthy_workspace(tmp_path / "plain")
    out = tmp_path / "reports"
    proc = run_cli("audit", str(ws), str(other), "--output", f"{out}/")
    assert b"Traceback" not in proc.stderr, proc.stderr
    page = (out / "index.html").read_bytes().decode("utf-8")
    assert "ws\\xe9" in page and "plain" in page
    [folder] = [p for p in out.iterdir() if p.name.startswith("ws")]
    (folder / "latest.json").read_bytes().decode("utf-8")
    assert "report-" in (folder / "index.html").read_text(encoding="utf-8")
