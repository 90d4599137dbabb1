"""The report never contradicts itself: on the example machine and on stalled, eval-off and bad-PID workspaces.

Evidence is what its command prints (a conclusion belongs in Problem or Root Cause), and each
sentence holds for the data it stands on: no "Evaluation is configured" beside a config that
shows it is not, no "Training is progressing … Let it finish" beside `training.stalled`.
"""

from __future__ import annotations

import json
import re
import shlex
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from healthkit.core.api import audit
from healthkit.core.findings import Evidence, Finding
from healthkit.core.report import Report
from healthkit.demo import build_example
from healthkit.reporting.render import render
from healthkit.system.procs import pid_max

STAT_TYPE = r"(regular (empty )?file|directory|symbolic link|fifo|socket|(character|block) special file|weird file)"


def _jq_output(text: str) -> bool:
    """jq prints JSON values: the whole text is one, or each line is one (-c)."""

    def parses(s: str) -> bool:
        try:
            json.loads(s)
            return True
        except ValueError:
            return False

    return parses(text) or all(parses(line) for line in text.splitlines() if line.strip())


def _evidence_problem(ws: Path, e: Evidence) -> str | None:
    """Why this evidence's output cannot be what its command prints; None when it can."""
    argv = shlex.split(e.command)
    out = e.observed
    if "|" in argv:  # a pipeline: only its last command's output shape is known
        if argv[-2:] == ["wc", "-l"]:
            return None if re.fullmatch(r"\d+", out) else f"`{e.command}` cannot print {out!r}"
        return None
    if argv[:3] == ["stat", "-c", "%F %s bytes"]:
        ok = re.fullmatch(STAT_TYPE + r" \d+ bytes", out) or out.startswith("stat: cannot statx")
    elif argv[:3] == ["stat", "-c", "%y"]:
        ok = re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{9} [+-]\d{4}", out)
    elif argv[0] == "jq":
        ok = _jq_output(out)
    elif argv[0] == "cat" and len(argv) == 2 and (ws / argv[1]).is_file():
        ok = out == (ws / argv[1]).read_text(errors="replace").rstrip("\n")
    else:
        return None
    return None if ok else f"`{e.command}` cannot print {out!r}"


def _config_shown(f: Finding) -> dict | None:
    for e in f.evidence:
        if e.command.startswith("jq '{eval_strategy"):
            return json.loads(e.observed)
    return None


def _root_cause_problems(f: Finding) -> list[str]:
    """Root causes that their own evidence contradicts."""
    shown = _config_shown(f) if f.code == "validation.not-running" else None
    if shown is None:
        return []
    out = []
    text = " ".join(f.root_cause)
    if shown.get("eval_strategy") in (None, "no") and "Evaluation is configured" in text:
        out.append(f"says evaluation is configured while the config shows eval_strategy {shown.get('eval_strategy')!r}")
    no_data = shown.get("validation_file") is None and shown.get("validation_split") is None
    if no_data and "data exists" in text:
        out.append("says validation data exists while the config shows neither validation_file nor validation_split")
    return out


def contradictions(report: Report) -> list[str]:
    """Every sentence of the report that its own data contradicts."""
    ws = Path(report.workspace)
    found = []
    for f in report.findings:
        found += [f"{f.code}: {p}" for e in f.evidence if (p := _evidence_problem(ws, e))]
        found += [f"{f.code}: root cause {p}" for p in _root_cause_problems(f)]
    md = render(report, "md")
    if any(f.code == "training.stalled" for f in report.findings):
        found += [
            f"assessment beside training.stalled: {line}"
            for line in md.splitlines()
            if line.startswith("**Assessment:**") and ("Let it finish" in line or "is progressing" in line)
        ]
    return found


def _ago(hours: float) -> str:
    return (datetime.now(UTC) - timedelta(hours=hours)).isoformat(timespec="seconds")


def _status(base: Path, **changes) -> None:
    path = base / "status" / "training_status.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), **changes}))


@pytest.fixture
def example(tmp_path):
    made = []

    def make(name: str, **kw):
        made.append(build_example(tmp_path / name, checkpoints=6, ckpt_bytes=4096, **kw))
        return made[-1].base

    yield make
    for ex in made:
        ex.cleanup()


def stalled(make) -> Path:
    """The example machine five hours later: the orphan is gone too, its status says training."""
    base = make("stalled", start_processes=False)
    _status(base, updated_at=_ago(5))
    return base


def eval_off_defaults(make) -> Path:
    """Our trainer's config without eval_strategy and validation_split: jq shows null, the trainer's defaults apply."""
    base = make("eval-off-defaults", start_processes=False)
    cfg = json.loads((base / "config.json").read_text())
    for key in ("eval_strategy", "validation_split", "eval_steps"):
        cfg.pop(key)
    (base / "config.json").write_text(json.dumps(cfg))
    toml = (base / "healthkit.toml").read_text().replace('config_schema = "none"\n', "")
    (base / "healthkit.toml").write_text(toml)
    return base


def eval_off_null(make) -> Path:
    """A foreign config with eval_strategy and validation_split null."""
    base = make("eval-off-null", start_processes=False)
    cfg = json.loads((base / "config.json").read_text())
    cfg.update(eval_strategy=None, validation_split=None)
    (base / "config.json").write_text(json.dumps(cfg))
    return base


def bad_pid(make) -> Path:
    base = make("bad-pid", start_processes=False)
    (base / ".daemon.pid").write_text(f"{pid_max() + 5}\n")
    return base


def example_machine(make) -> Path:
    return make("example")


@pytest.mark.parametrize("build", [example_machine, stalled, eval_off_defaults, eval_off_null, bad_pid])
def test_no_sentence_contradicts_its_own_evidence(example, build):
    report = audit(build(example), record_costs=False)
    assert report.findings
    assert contradictions(report) == []


def test_each_workspace_shows_what_it_is_built_for(example):
    """The workspaces above really carry the cases (else the test above proves nothing)."""
    codes = {
        name: {f.code for f in audit(b(example), record_costs=False).findings}
        for name, b in (
            ("stalled", stalled),
            ("defaults", eval_off_defaults),
            ("null", eval_off_null),
            ("pid", bad_pid),
        )
    }
    assert "training.stalled" in codes["stalled"] and "daemon.dead" in codes["stalled"]
    assert "validation.not-running" in codes["defaults"] and "validation.not-running" in codes["null"]
    assert "daemon.pid-file-malformed" in codes["pid"] or any(c.startswith("daemon.") for c in codes["pid"])


def test_the_checker_catches_each_contradiction():
    """The checker itself: every kind of contradiction it looks for is caught on a hand-made finding."""
    ws = Path("/nonexistent")
    assert _evidence_problem(
        ws, Evidence("stat -c '%F %s bytes' .daemon.pid", "4194299 is larger than this system's pid_max")
    )
    assert _evidence_problem(ws, Evidence("stat -c '%F %s bytes' .daemon.pid", "regular file 8 bytes")) is None
    assert _evidence_problem(ws, Evidence("jq 'keys' status.json", "loss, state"))
    f = Finding(
        code="validation.not-running",
        severity="warning",
        title="t",
        problem=[],
        evidence=[
            Evidence(
                "jq '{eval_strategy, eval_steps, validation_file, validation_split}' config.json",
                json.dumps(
                    {"eval_strategy": None, "eval_steps": None, "validation_file": None, "validation_split": None}
                ),
            )
        ],
        root_cause=["Evaluation is configured and data exists, yet no eval loss is recorded"],
    )
    assert len(_root_cause_problems(f)) == 2
