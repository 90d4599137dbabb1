"""Is this workspace trusted to make healthkit run its plugins and settings commands? (healthkit/contract/trust.py decides.)"""

from __future__ import annotations

import os
import shlex

from healthkit import CheckOutput, CodeDoc, Evidence, Finding, Healthy, Severity, check
from healthkit.contract.trust import trust_file
from healthkit.core.workspace import Workspace

UNTRUSTED = CodeDoc(
    "trust.untrusted",
    "critical",
    "workspace not trusted: its plugins and settings commands were not run",
    what="The workspace is owned by another user than the one running healthkit and is not in the root-only trust list, "
    "or its healthkit.toml, a plugin file or a file a settings command runs (or a folder above one) can be changed by "
    "someone other than the workspace's owner or root. Each such file is named with its owner and mode.",
    why="healthkit runs from root's cron and systemd. Whoever can write a workspace's settings, plugins or daemon command "
    "would otherwise run code as root (as CVE-2022-24765 did for git). So no plugin was loaded, no settings command "
    "run, and no fix that starts or signals a process is applied; the built-in checks still audited it, read-only.",
    fix="If the files are as they should be: make them owned by the workspace's owner (or root) and writable by no one "
    "else (`chmod go-w FILE`), and, for another user's workspace, run as root `healthkit trust PATH` (adds it to "
    "/etc/healthkit/trusted.toml). Daemons healthkit starts for another user's workspace run as that user. "
    "docs/security.md has the model. No automatic fix: trusting is a person's decision.",
)


def _evidence(ws: Workspace) -> list[Evidence]:
    t = ws.trust
    out = [
        Evidence(f"stat -c '%U %a %n' {shlex.quote(str(ws.base))}", f"{t.owner} {_stat_mode(ws.base)} {ws.base}"),
        Evidence("id -un", t.runner),
    ]
    listed = "listed" if t.listed else "not listed"
    out.append(Evidence(f"cat {shlex.quote(str(trust_file()))}", f"{ws.base} {listed}"))
    for f in t.named:
        out.append(Evidence(f"stat -L -c '%U %a %n' {shlex.quote(f.path)}", f"{f.owner} {_stat_mode(f.path)} {f.path}"))
    return out


def _stat_mode(path: object) -> str:
    """The mode as `stat -c %a` prints it (no leading zero)."""
    try:
        return f"{os.stat(str(path)).st_mode & 0o7777:o}"
    except OSError:
        return "?"


@check("trust", title="Trust (who may make healthkit run code)", codes=[UNTRUSTED], tags=["security"])
def check_trust(ws: Workspace) -> CheckOutput:
    t = ws.trust
    if t.trusted:
        what = "owned by the user running healthkit" if t.owner_uid == t.runner_uid else f"listed in {trust_file()}"
        n = len(t.checked)
        return CheckOutput(
            healthy=[
                Healthy(
                    f"Workspace trusted ({what}); its settings and the files they run ({n} in all) "
                    "are writable only by its owner or root"
                )
            ],
            notes=list(t.notes),
        )
    named = t.named
    problem = t.problems() + [f"Not run: {c}" for c in t.commands]
    recs = []
    if t.files:
        recs.append(
            "Make each file named above owned by the workspace's owner or root and writable by no one else: "
            + "; ".join(
                f"`chmod go-w {shlex.quote(f.path)}`"
                if "writable" in f.why
                else f"`chown {shlex.quote(t.owner)} {shlex.quote(f.path)}`"
                for f in t.files
            )
        )
    if t.workspace_problem or t.owner_uid != t.runner_uid:
        recs.append(f"If you trust {t.owner} with code run by healthkit, run as root: `{t.trust_command()}`")
    return CheckOutput(
        findings=[
            Finding(
                code=UNTRUSTED.code,
                severity=Severity.CRITICAL,
                title="Workspace not trusted: its plugins and settings commands were not run"
                + (f" ({len(named)} file{'s' if len(named) != 1 else ''} named below)" if named else ""),
                problem=problem,
                impact=[
                    "No plugin was loaded and no command from healthkit.toml runs; `healthkit fix` applies no fix that starts "
                    "or signals a process. The built-in checks audited the workspace read-only"
                ],
                evidence=_evidence(ws),
                root_cause=[
                    "healthkit runs code named by a workspace only when that workspace is trusted (docs/security.md)"
                ],
                recommendations=recs,
                urgency="immediate",
                data={
                    "owner": t.owner,
                    "runner": t.runner,
                    "listed": t.listed,
                    "trust_command": t.trust_command(),
                    "files": [
                        {"path": f.path, "role": f.role, "owner": f.owner, "mode": f.mode, "why": f.why} for f in named
                    ],
                    "commands": list(t.commands),
                },
            )
        ],
        notes=list(t.notes),
    )
