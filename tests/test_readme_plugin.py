"""The README's plugin example, pasted as it is (issue 31, item 13): it runs in a workspace without logs/train.log,
and `healthkit checks` / `healthkit explain` know its code when given the workspace."""

from __future__ import annotations

import json
import re
from pathlib import Path

from .conftest import run_cli

README = Path(__file__).resolve().parents[1] / "README.md"


def _example() -> str:
    text = README.read_text(encoding="utf-8")
    section = text.split("### Writing a check", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.DOTALL).group(1)


def test_the_readme_plugin_example_works_as_pasted(tmp_path):
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "my_checks.py").write_text(_example())
    (ws / "healthkit.toml").write_text('[checks]\nplugins = ["my_checks.py"]\n')
    r = run_cli("audit", str(ws), "--format", "json", "--select", "logs")
    rep = json.loads(r.stdout)
    assert r.returncode == 0 and rep["status"] == "ok" and not rep["load_errors"], rep
    (ws / "logs").mkdir()
    (ws / "logs" / "train.log").write_text("x")
    assert run_cli("audit", str(ws), "--select", "logs").returncode == 0

    r = run_cli("explain", "logs.too-big")
    assert r.returncode == 64 and b"--workspace" in r.stderr
    r = run_cli("explain", "logs.too-big", "--workspace", str(ws))
    assert r.returncode == 0 and b"Training log over 1 GB" in r.stdout, r
    r = run_cli("checks", "--workspace", str(ws))
    assert r.returncode == 0 and b"logs.too-big" in r.stdout, r


def test_explain_suggests_only_close_codes_and_checks_columns_align():
    r = run_cli("explain", "daemon.ded")
    hint = r.stderr.decode().split("did you mean: ", 1)[1]
    assert hint.split(", ")[0] == "daemon.dead" and len(hint.split(", ")) <= 3, hint
    lines = [x for x in run_cli("checks").stdout.decode().splitlines() if x.startswith("  ")]
    cols = {re.search(r"\s(critical|warning|info)\s", x).start() for x in lines}  # the severity column
    assert len(cols) == 1, lines


def test_the_readme_jq_line_reads_one_report_and_a_list(tmp_path):
    """Issue 31 item 14: several workspaces print a JSON list; the README's jq line reads both shapes."""
    import subprocess

    from .conftest import require_tool

    jq = require_tool("jq", "jq")
    line = next(x for x in README.read_text(encoding="utf-8").splitlines() if "--format json | jq" in x)
    program = line.split("jq '", 1)[1].split("'", 1)[0]
    a, b = tmp_path / "a", tmp_path / "b"
    for ws in (a, b):
        ws.mkdir()
        (ws / "config.json").write_text('{"save_totl_limit": 1}')
    for args in ((str(a),), (str(a), str(b))):
        out = run_cli("audit", *args, "--format", "json").stdout
        r = subprocess.run([jq, "-c", program], input=out, capture_output=True, timeout=30)
        assert r.returncode == 0, r.stderr
