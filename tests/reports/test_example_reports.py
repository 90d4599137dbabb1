"""reports/ at the top of the repository holds the example machine's reports as `healthkit demo --reports` writes them.

The test builds the example machine, writes the three reports into tmp_path and compares them with
the committed ones after normalising what differs between runs and hosts: times and ages,
PIDs, the monitor port, paths, the host name, durations and the host's disk figures. Each
side is normalised with the volatile values its own JSON names, so a stray changed number
elsewhere still fails. To refresh them after a deliberate change:
`healthkit demo --reports reports/` (or HEALTHKIT_UPDATE_REPORTS=1 with this test).
"""

from __future__ import annotations

import difflib
import json
import os
import re
import shutil
from pathlib import Path

import pytest

from healthkit.core.api import audit
from healthkit.demo import EXAMPLE_FORMATS, EXAMPLE_NAME, EXAMPLE_PATH, build_example, write_example_reports

REPO = Path(__file__).resolve().parents[2]
REPORTS = REPO / "reports"

_RULES = [
    (re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(\+00:00|Z)?"), "<TIME>"),
    (re.compile(r"\b\d{4}-\d{2}-\d{2}\b(?!_)"), "<DATE>"),
    (re.compile(r"\b1\d{9}(\.\d+)?\b"), "<EPOCH>"),
    (re.compile(r"\S*/bin/python[0-9.]*"), "<PYTHON>"),
    (re.compile(r"<PYTHON> train\.py[^`\"\n<]*"), "<PYTHON> train.py <ARGS>"),
    (re.compile(r"\b(\d+[dhms] )*\d+[dhms]( ago)"), r"<AGE>\2"),
    (re.compile(r"running for \S+?:"), "running for <AGE>:"),
    (re.compile(r"(\"updated_ago\": )\"[^\"]*\""), r"\1<AGE>"),
    (re.compile(r"<PID> 1 \S+ "), "<PID> 1 <AGE> "),
    (re.compile(r"\d+(\.\d+)? ms\b"), "<MS> ms"),
    (re.compile(r"(\"duration_s\": )[0-9.e-]+"), r"\1<S>"),
    (re.compile(r"\d+(\.\d+)?[KMGTP]? / \d+(\.\d+)?[KMGTP]? used \(\d+%\)"), "<DISK> used"),
    (re.compile(r"\d+(\.\d+)?[KMGTP]? available"), "<DISK> available"),
    (re.compile(r"(\"(total_bytes|free_bytes|free_percent)\": )[0-9.]+"), r"\1<DISK>"),
]


def volatile(data: dict) -> dict[str, str]:
    """The values of this run that another run cannot share, from its own JSON report."""
    out = {data["workspace"]: "<WS>", str(Path(data["workspace"]).parent): "<TMP>"}
    for f in data["findings"]:
        if f["code"] == "daemon.dead":
            out[str(f["data"]["pid"])] = "<PID>"
        for o in f["data"].get("orphans") or []:
            out[str(o["pid"])] = "<PID>"
            argv = o["cmdline"]
            out[argv[argv.index("--monitor-port") + 1]] = "<PORT>"
    return out


def normalise(text: str, data: dict) -> str:
    for value, token in sorted(volatile(data).items(), key=lambda kv: -len(kv[0])):
        text = re.sub(rf"(?<![\w.]){re.escape(value)}(?![\w])", token, text)
    text = re.sub(rf"(?<=[\"`>( ]){re.escape(data['hostname'])}(?=[\"`<) ])", "<HOST>", text)
    for rx, repl in _RULES:
        text = rx.sub(repl, text)
    return text


def read_set(folder: Path) -> dict[str, str]:
    texts = {fmt: (folder / f"{EXAMPLE_NAME}.{fmt}").read_text(encoding="utf-8") for fmt in EXAMPLE_FORMATS}
    data = json.loads(texts["json"])
    return {fmt: normalise(t, data) for fmt, t in texts.items()}


@pytest.mark.slow
def test_reports_folder_matches_what_demo_writes(tmp_path: Path) -> None:
    ex = build_example(tmp_path / "training")
    try:
        report = audit(ex.base, record_costs=False)
    finally:
        ex.cleanup()
    written = write_example_reports(report, tmp_path / "out")
    assert [p.name for p in written] == [f"{EXAMPLE_NAME}.{f}" for f in EXAMPLE_FORMATS]
    if os.environ.get("HEALTHKIT_UPDATE_REPORTS") == "1":
        for p in written:
            shutil.copyfile(p, REPORTS / p.name)
    raw = {p.suffix[1:]: p.read_text(encoding="utf-8") for p in written}
    for fmt, text in raw.items():  # a stable path that means something to a reader, not the folder the demo used
        assert EXAMPLE_PATH in text and str(tmp_path) not in text and "pytest-of" not in text, fmt
    assert json.loads(raw["json"])["workspace"] == EXAMPLE_PATH
    fresh = read_set(tmp_path / "out")
    assert str(ex.base) not in fresh["md"] and str(ex.dead_pid) not in fresh["md"]  # the normaliser did its job
    for fmt in EXAMPLE_FORMATS:
        text = (REPORTS / f"{EXAMPLE_NAME}.{fmt}").read_text(encoding="utf-8")
        assert EXAMPLE_PATH in text and "pytest-of" not in text and "/tmp/" not in text, f"reports/{EXAMPLE_NAME}.{fmt}"
    committed = read_set(REPORTS)
    for fmt in EXAMPLE_FORMATS:
        if fresh[fmt] != committed[fmt]:
            diff = "\n".join(
                difflib.unified_diff(
                    committed[fmt].splitlines(),
                    fresh[fmt].splitlines(),
                    f"reports/{EXAMPLE_NAME}.{fmt}",
                    "demo now",
                    lineterm="",
                    n=1,
                )
            )
            pytest.fail(
                f"reports/{EXAMPLE_NAME}.{fmt} is out of date (healthkit demo --reports reports/):\n{diff[:4000]}"
            )


def test_normalising_keeps_a_real_change_visible(tmp_path: Path) -> None:
    """The normaliser hides run-to-run values only: a changed finding text still differs."""
    data = {
        "workspace": "/tmp/x/training",
        "hostname": "box",
        "findings": [{"code": "daemon.dead", "data": {"pid": 4242}}],
    }
    a = normalise("PID 4242 in /tmp/x/training at 2024-05-01T12:00:00+00:00 on `box`, 12.5 ms", data)
    assert a == "PID <PID> in <WS> at <TIME> on `<HOST>`, <MS> ms"
    assert normalise("PID 4243 in /tmp/x/training", data) != normalise("PID 4242 in /tmp/x/training", data)
