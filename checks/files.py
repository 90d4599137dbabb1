"""Files that are not what a workspace file must be: a FIFO or device, too large to read, or JSON nested too deep."""

from __future__ import annotations

from healthkit import CheckOutput, CodeDoc, Evidence, Finding, Severity, check
from healthkit.core.workspace import Workspace
from healthkit.system.fsutil import file_problems

from ._common import q

NOT_REGULAR = CodeDoc(
    "files.not-regular",
    "warning",
    "A workspace file is a FIFO, socket or device, not a regular file",
    what="A file the audit reads (config.json, the status file, a doc, daemon_state.json, a checkpoint's trainer_state.json "
    "or weights) is a named pipe, a socket or a device. The audit opens every file without blocking and reads only "
    "regular files, so it was not read.",
    why="Reading a FIFO blocks until someone writes to it: a monitor that read it would hang for ever, and everything the "
    "file should say (config, progress, state) is missing from this report.",
    fix="Replace it with the regular file it should be (`ls -l PATH` shows `p` for a FIFO). No automatic fix: healthkit "
    "never deletes what it cannot read.",
)

TOO_LARGE = CodeDoc(
    "files.too-large",
    "warning",
    "A workspace file is larger than the audit reads",
    what="A file the audit reads is larger than the cap for its kind (a status or config file 16 MB, a doc 4 MB, a "
    "trainer_state.json 256 MB, healthkit.toml 1 MB), so it was not read.",
    why="Reading it whole would cost the audit seconds and gigabytes of memory; what it holds is missing from this report.",
    fix="Find why the file grew (a log written into a status file, a sparse or corrupted file) and restore it. No "
    "automatic fix.",
)

TOO_DEEP = CodeDoc(
    "files.too-deep",
    "warning",
    "A workspace JSON file is nested too deep to parse",
    what="A JSON (or TOML) file the audit reads holds arrays or objects nested within each other beyond what the parser "
    "allows (tens of thousands deep). No program that writes a real config or history does that.",
    why="The parser gives up on it, so what it should say is missing from this report (before, it crashed the audit).",
    fix="Restore the file from a backup or from what wrote it. No automatic fix.",
)

_CODES = {"not-regular": NOT_REGULAR, "too-large": TOO_LARGE, "too-deep": TOO_DEEP}
_TITLES = {
    "not-regular": "is not a regular file",
    "too-large": "is too large to read",
    "too-deep": "is nested too deep to parse",
}


def _read_everything(ws: Workspace) -> None:
    """Every view that reads a workspace file, so its problems are known (each is read once per audit and cached)."""
    for view in ("config", "status", "daemon_state", "supervisor_state", "monitoring_costs", "docs", "run"):
        try:
            getattr(ws, view)
        except Exception:
            pass


@check("files", title="Workspace files readable", codes=[NOT_REGULAR, TOO_LARGE, TOO_DEEP], tags=["files"])
def files_check(ws: Workspace) -> CheckOutput:
    _read_everything(ws)
    roots = [ws.base] + ([ws.checkpoint_dir] if ws.checkpoint_dir != ws.base else [])
    findings = []
    for problem in file_problems(roots):
        doc = _CODES[problem.kind]
        rel = q(ws, problem.path)
        findings.append(
            Finding(
                code=doc.code,
                severity=Severity.WARNING,
                title=f"{ws.rel(problem.path)} {_TITLES[problem.kind]}",
                problem=[problem.message],
                impact=["What this file says is missing from this report"],
                evidence=[Evidence(f"ls -l {rel}", problem.message)],
                recommendations=[doc.fix],
                data={"path": str(problem.path), "kind": problem.kind},
            )
        )
    return CheckOutput(findings=findings)
