"""Helpers for the built-in check tests: small real workspaces written into tmp_path.

Each test writes only the files its check reads, then audits through the library
(`audit(path, select=[...])`) or calls the check function on `Workspace.open(path)`.
"""

from __future__ import annotations

import json
import os
import time
from datetime import UTC, datetime, timezone
from pathlib import Path
from typing import Any

from healthkit.core.api import audit
from healthkit.core.findings import CheckOutput, Finding
from healthkit.core.report import Report
from healthkit.core.workspace import Workspace


def write(base: Path, rel: str, content: Any) -> Path:
    """Write a file under the workspace: str as text, bytes as is, anything else as JSON."""
    p = base / rel
    p.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, bytes):
        p.write_bytes(content)
    elif isinstance(content, str):
        p.write_text(content, encoding="utf-8")
    else:
        p.write_text(json.dumps(content, indent=2), encoding="utf-8")
    return p


def make_ws(base: Path, files: dict[str, Any] | None = None, **named: Any) -> Path:
    """A workspace from `{relative path: content}`; keyword shortcuts for the usual files.

    ``config=``, ``status=``, ``toml=``, ``claude=`` (CLAUDE.md), ``readme=`` (README.md).
    """
    shortcuts = {
        "config": "config.json",
        "status": "status/training_status.json",
        "toml": "healthkit.toml",
        "claude": "CLAUDE.md",
        "readme": "README.md",
        "costs": "monitoring_costs.json",
    }
    for name, value in named.items():
        write(base, shortcuts[name], value)
    for rel, value in (files or {}).items():
        write(base, rel, value)
    return base


def checkpoint(
    base: Path, step: int, *, size: int = 0, state: dict[str, Any] | None = None, root: str = "current_model"
) -> Path:
    """An HF-layout checkpoint folder; ``size`` bytes of real (allocated) weights, ``state`` as trainer_state.json."""
    d = base / root / f"checkpoint-{step}"
    d.mkdir(parents=True, exist_ok=True)
    if size:
        (d / "adapter_model.safetensors").write_bytes(os.urandom(size))
        (d / "adapter_config.json").write_text(
            '{"peft_type": "LORA"}'
        )  # peft saves both: together they are the weights
    if state is not None:
        (d / "trainer_state.json").write_text(json.dumps(state))
    return d


def iso_ago(seconds: float, *, fmt: str = "utc") -> str:
    """A timestamp `seconds` ago: `utc` (+00:00), `z` (…Z), `naive` (local time, no offset), `offset` (+05:30)."""
    ts = time.time() - seconds
    if fmt == "naive":
        return datetime.fromtimestamp(ts).isoformat(timespec="seconds")
    if fmt == "offset":
        from datetime import timedelta

        return datetime.fromtimestamp(ts, timezone(timedelta(hours=5, minutes=30))).isoformat(timespec="seconds")
    text = datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds")
    return text.replace("+00:00", "Z") if fmt == "z" else text


def run(base: Path, check: str) -> Report:
    """Audit one check (by id) through the public library entry point.

    A check id can also be another check's tag (`disk`, `training`), so the check is
    selected by one of its finding codes, which names it alone.
    """
    spec = _registry().checks[check]
    report = audit(base, select=[spec.codes[0].code], record_costs=False)
    assert [r.check for r in report.results] == [check]
    return report


_REG: Any = None


def _registry() -> Any:
    from healthkit.core.registry import default_registry

    global _REG
    if _REG is None:
        _REG = default_registry()
    return _REG


def codes(report: Report) -> list[str]:
    return [f.code for f in report.findings]


def result(report: Report, check: str):
    return next(r for r in report.results if r.check == check)


def only(report: Report, code: str) -> Finding:
    found = [f for f in report.findings if f.code == code]
    assert len(found) == 1, [f.code for f in report.findings]
    return found[0]


def call(check_func: Any, base: Path) -> CheckOutput:
    """Call a check function directly on a freshly opened workspace; always a CheckOutput."""
    out = check_func(Workspace.open(base))
    return out if isinstance(out, CheckOutput) else CheckOutput(findings=out)


def evidence(f: Finding) -> dict[str, str]:
    return {e.command: e.observed for e in f.evidence}
