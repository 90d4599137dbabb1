"""Issue 25: a root audit never runs another user's code. Real users (hk_eve), real files, real CLI processes.

Root audits and fixes hk_eve's workspace, whose healthkit.toml names a plugin and a daemon
command: neither runs, and the trust.untrusted finding names both files, until root runs
`healthkit trust`; then the plugin loads and the daemon runs as hk_eve, never as root.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from healthkit.cli import app
from healthkit.contract.settings import load_settings
from healthkit.contract.trust import TRUST_FILE_ENV, assess, read_trust_list

from .trust_env import REPO, User, chown_tree, ensure_user, kill_workspace_processes, open_folder, python_for

PLUGIN = """\
import os
from healthkit import check
with open({out!r}, "a") as fh:
    fh.write(f"plugin ran as uid {{os.getuid()}}\\n")

@check("marker", title="marker")
def marker(ws):
    return []
"""
DAEMON = 'id -u > {out}\nwhile [ -d "$1" ]; do sleep 0.2; done\n'  # argv names the workspace: the cleanup finds it


@pytest.fixture(scope="session")
def eve() -> User:
    return ensure_user()


@pytest.fixture
def shared(tmp_path: Path):
    d = open_folder("hk-trust-")
    yield d
    kill_workspace_processes(d)
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def trust_list(shared: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A trust list of this test's own (root-owned, in a root-owned folder), named by HEALTHKIT_TRUST_FILE."""
    path = shared / "etc" / "trusted.toml"
    monkeypatch.setenv(TRUST_FILE_ENV, str(path))
    return path


def evil_workspace(base: Path, out: Path, owner: User | None) -> Path:
    """A workspace whose settings name a plugin and a daemon command, each of which leaves a mark in ``out``."""
    (base / "queue" / "inbox").mkdir(parents=True)
    (base / "queue" / "inbox" / "a.jsonl").write_text('{"text": "hello"}\n')
    (base / "evil.py").write_text(PLUGIN.format(out=str(out / "plugin-ran")))
    (base / "daemon.sh").write_text(DAEMON.format(out=str(out / "daemon-uid")))
    (base / "healthkit.toml").write_text(
        '[checks]\nplugins = ["evil.py"]\n[processes]\ndaemon_command = ["sh", "daemon.sh", "{base}"]\n'
    )
    out.mkdir(exist_ok=True)
    if owner is not None:
        chown_tree(base, owner)
        os.chown(out, owner.uid, owner.gid)
    return base


def hk(python: str, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    """The real CLI, as root, with the interpreter ``python``."""
    return subprocess.run(
        [python, "-m", "healthkit.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=REPO,
        env=dict(os.environ),
    )


def findings(python: str, ws: Path) -> dict[str, dict]:
    r = hk(python, "audit", str(ws), "--format", "json")
    assert r.stdout.startswith("{"), r.stdout[-2000:] + r.stderr[-2000:]
    return {f["code"]: f for f in json.loads(r.stdout)["findings"]}


def wait_for(pred, timeout: float = 30.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")


def test_eve_workspace_runs_nothing_as_root_until_trusted(eve: User, shared: Path, trust_list: Path) -> None:
    python = python_for(eve, shared)
    out = shared / "out"
    ws = evil_workspace(shared / "ws", out, eve)

    found = findings(python, ws)
    assert not (out / "plugin-ran").exists(), "root's audit loaded hk_eve's plugin"
    f = found["trust.untrusted"]
    assert f["severity"] == "critical"
    named = {Path(x["path"]).name: x for x in f["data"]["files"]}
    assert {"evil.py", "daemon.sh", "healthkit.toml"} <= set(named), named
    assert named["evil.py"]["owner"] == eve.name and named["evil.py"]["mode"] == "0644"
    assert f["data"]["trust_command"] == f"healthkit trust {ws}"
    assert any(f"healthkit trust {ws}" in r for r in f["recommendations"])
    assert "marker" not in {
        c["check"] for c in json.loads(hk(python, "audit", str(ws), "--format", "json").stdout)["checks"]
    }

    fixed = hk(python, "fix", str(ws), "--safe")
    assert "not trusted" in fixed.stdout and "start-daemon" in fixed.stdout, fixed.stdout
    assert "[1] applied" not in fixed.stdout
    assert not (out / "daemon-uid").exists(), "root's fix ran hk_eve's daemon command"
    assert not (out / "plugin-ran").exists()

    # `healthkit trust`: root decides; now the plugin loads and the daemon command runs, as hk_eve
    t = hk(python, "trust", str(ws))
    assert t.returncode == 0, t.stdout + t.stderr
    assert str(ws) in read_trust_list(trust_list)[0]
    assert "trust.untrusted" not in findings(python, ws)
    assert (out / "plugin-ran").read_text().splitlines() == ["plugin ran as uid 0"]  # in root's own audit: trusted code
    fixed = hk(python, "fix", str(ws), "--safe")
    assert "[1] applied  start-daemon" in fixed.stdout, fixed.stdout + fixed.stderr
    assert f"as {eve.name} (uid {eve.uid}" in fixed.stdout  # the plan says whom it runs as
    uid = wait_for(
        lambda: (out / "daemon-uid").exists() and (out / "daemon-uid").read_text().strip(), what="the daemon command"
    )
    assert int(uid) == eve.uid, f"the daemon command ran as uid {uid}, not as {eve.name} ({eve.uid})"
    log = ws / "logs" / "healthkit-daemon-start.log"
    assert log.stat().st_uid == eve.uid and (ws / "logs").stat().st_uid == eve.uid


def test_healthkit_trust_is_root_only(eve: User, shared: Path, trust_list: Path) -> None:
    python = python_for(eve, shared)
    ws = evil_workspace(shared / "ws", shared / "out", eve)
    r = subprocess.run(
        [python, "-m", "healthkit.cli", "trust", str(ws)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd="/",
        env={**os.environ, "HOME": "/"},
        **eve.popen(),
    )
    assert r.returncode == 77, r.stdout + r.stderr
    assert "only root" in r.stderr and not trust_list.exists()


def test_root_owned_workspace_runs_its_plugin(tmp_path: Path, trust_list: Path) -> None:
    """The positive control: the same workspace owned by root (who runs healthkit) is trusted and its plugin runs."""
    import sys

    ws = evil_workspace(tmp_path / "ws", tmp_path / "out", None)
    found = findings(sys.executable, ws)
    assert "trust.untrusted" not in found
    assert (tmp_path / "out" / "plugin-ran").read_text().splitlines() == ["plugin ran as uid 0"]


@pytest.mark.parametrize("loose", ["healthkit.toml", "evil.py", "daemon.sh", "."])
def test_writable_by_others_is_untrusted_even_when_root_owns_it(tmp_path: Path, trust_list: Path, loose: str) -> None:
    """A root-owned healthkit.toml (or plugin, or command script, or the folder) anyone may write: untrusted."""
    import sys

    out = tmp_path / "out"
    ws = evil_workspace(tmp_path / "ws", out, None)
    (ws / loose).chmod(0o777 if loose == "." else 0o666)
    found = findings(sys.executable, ws)
    assert not (out / "plugin-ran").exists()
    named = {x["path"]: x for x in found["trust.untrusted"]["data"]["files"]}
    target = str(ws) if loose == "." else str(ws / loose)
    assert target in named, named
    assert named[target]["mode"] == ("0777" if loose == "." else "0666") and named[target]["owner"] == "root"
    assert "writable by everyone" in named[target]["why"]


def test_a_trust_list_others_can_write_is_ignored(eve: User, shared: Path, trust_list: Path) -> None:
    ws = evil_workspace(shared / "ws", shared / "out", eve)
    trust_list.parent.mkdir()
    trust_list.write_text(f'trusted = ["{ws}"]\n')
    settings, spath = load_settings(ws)
    assert assess(ws, settings, spath).trusted
    trust_list.chmod(0o666)
    verdict = assess(ws, settings, spath)
    assert not verdict.trusted and any("is ignored" in n and "writable by everyone" in n for n in verdict.notes)


def test_untrusted_settings_cannot_hide_the_finding(eve: User, shared: Path, trust_list: Path) -> None:
    import sys

    ws = evil_workspace(shared / "ws", shared / "out", eve)
    (ws / "healthkit.toml").write_text(
        '[checks]\nplugins = ["evil.py"]\nignore = ["trust", "security"]\nselect = ["disk"]\n'
    )
    assert "trust.untrusted" in findings(sys.executable, ws)


def test_schedule_as_root_for_eve_runs_as_eve(eve: User, shared: Path) -> None:
    ws = shared / "ws"
    ws.mkdir()
    os.chown(ws, eve.uid, eve.gid)
    r = CliRunner().invoke(app, ["schedule", str(ws)])
    assert r.exit_code == 0, r.output
    assert f"User={eve.name}\n" in r.output
    assert f"crontab -u {eve.name} -e" in r.output
    r = CliRunner().invoke(app, ["schedule", str(ws), "--as-root"])
    assert r.exit_code == 0, r.output
    assert "User=" not in r.output.replace("without User=", "") and "--as-root" in r.output


SECRET = "SECRET-7f3a9c-not-for-reports"


def _secret_files(shared: Path) -> tuple[Path, Path]:
    """Root-only files a report must never quote: JSON and Markdown that checks would otherwise read and cite."""
    vault = shared / "vault"
    vault.mkdir(mode=0o700)
    js = vault / "secret.json"
    js.write_text(json.dumps({"learning_rate": 0.987654321, "api_note": SECRET, "state": SECRET, "step": 12345678}))
    md = vault / "secret.md"
    md.write_text(f"# notes\n\n- Learning rate: 0.987654321\n- Save steps: 12345678\n\n{SECRET}\n")
    state = vault / "trainer_state.json"  # a sound trainer_state: the checkpoint rules would quote what it says
    state.write_text(
        json.dumps(
            {
                "global_step": 5,
                "best_model_checkpoint": f"/models/{SECRET}",
                "log_history": [{"step": 5, "loss": 0.987654321, "eval_loss": 0.987654321}],
            }
        )
    )
    for p in (js, md, state):
        p.chmod(0o644)  # readable by anyone who could enter the folder: hk_eve cannot
    return js, md, state


@pytest.mark.parametrize(
    "victim",
    [
        "config.json",
        "CLAUDE.md",
        "status/training_status.json",
        "queue/failed/a.jsonl.error.json",
        "current_model/checkpoint-5/trainer_state.json",
    ],
)
@pytest.mark.parametrize("target", ["shadow", "vault", "hardlink"])
def test_root_audit_copies_nothing_eve_cannot_read(
    eve: User, shared: Path, trust_list: Path, victim: str, target: str
) -> None:
    """config.json, CLAUDE.md, the status file, a queue error file: a link to /etc/shadow or to a root-only file (or a
    hard link to one) is reported as unreadable, never quoted."""
    import sys

    from healthkit.trainer.scaffold import init_workspace

    ws = shared / "ws"
    init_workspace(ws)
    js, md, state = _secret_files(shared)
    secret = md if victim.endswith(".md") else state if victim.endswith("trainer_state.json") else js
    source = {"shadow": Path("/etc/shadow"), "vault": secret, "hardlink": secret}[target]
    if target == "shadow":
        require_shadow = source.exists() and source.stat().st_size > 0
        if not require_shadow:
            pytest.skip("/etc/shadow is empty or missing here")
    if victim.startswith("current_model/"):  # a complete HF checkpoint whose trainer_state.json is the link
        from .conftest import make_checkpoint

        make_checkpoint(ws / "current_model", 5)
    dest = ws / victim
    dest.parent.mkdir(parents=True, exist_ok=True)
    if victim.startswith("queue/failed/"):  # a failed queue file: its error file's reason is quoted as evidence
        (ws / "queue" / "failed" / "a.jsonl").write_text('{"text": "x"}\n')
    dest.unlink(missing_ok=True)
    if target == "hardlink":
        secret_copy = (
            shared / "root-only.txt"
        )  # a root-only file in a folder eve may enter, hard-linked in her workspace
        secret_copy.write_bytes(source.read_bytes())
        secret_copy.chmod(0o600)
        os.link(secret_copy, dest)
    else:
        dest.symlink_to(source)
    chown_tree(ws, eve)
    if target == "hardlink":
        os.chown(dest, 0, 0)  # the link shares the root-owned inode
    secrets = [SECRET, "0.987654321", "12345678"]
    if target == "shadow":
        secrets = [
            line.split(":")[0] + ":" + line.split(":")[1]
            for line in source.read_text().splitlines()
            if line.count(":") > 2 and len(line.split(":")[1]) > 2
        ]
    for fmt in ("md", "json", "html"):
        r = subprocess.run(
            [sys.executable, "-m", "healthkit.cli", "audit", str(ws), "--format", fmt],
            capture_output=True,
            text=True,
            timeout=120,
            cwd=REPO,
        )
        assert r.stdout, r.stderr
        leaked = [s for s in secrets if s in r.stdout or s in r.stderr]
        assert not leaked, f"{victim} -> {target}: the {fmt} report quotes {leaked}"
        if fmt == "json" and victim == "config.json":
            said = json.dumps([f for f in json.loads(r.stdout)["findings"] if f["code"] == "config.invalid"])
            assert "not readable by hk_eve, the workspace's owner" in said, said[:3000]


def test_daemon_unit_printed_by_root_for_eve_runs_as_eve(eve: User, shared: Path) -> None:
    ws = shared / "ws"
    ws.mkdir()
    os.chown(ws, eve.uid, eve.gid)
    r = CliRunner().invoke(app, ["daemon", "systemd-unit", str(ws)])
    assert r.exit_code == 0, r.output
    assert f"User={eve.name}\n" in r.output
    r = CliRunner().invoke(app, ["daemon", "systemd-unit", str(ws), "--user", "root"])
    assert "User=root\n" in r.output
