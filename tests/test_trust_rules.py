"""The trust rules one by one (healthkit/contract/trust.py): modes, owners, folders above, symlinks, commands, the trust list."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from healthkit.contract.settings import load_settings
from healthkit.contract.trust import (
    TRUST_FILE_ENV,
    add_to_trust_list,
    assess,
    command_files,
    make_dirs_for,
    read_trust_list,
    run_as_for,
)

from .trust_env import User, chown_tree, ensure_user, open_folder


@pytest.fixture
def eve() -> User:
    return ensure_user()


@pytest.fixture
def ws(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv(TRUST_FILE_ENV, str(tmp_path / "etc" / "trusted.toml"))
    base = tmp_path / "ws"
    base.mkdir()
    (base / "check_me.py").write_text("raise SystemExit('never imported by the trust decision')\n")
    (base / "healthkit.toml").write_text('[checks]\nplugins = ["check_me.py"]\n')
    return base


def verdict(base: Path):
    settings, spath = load_settings(base)
    return assess(base, settings, spath)


def test_own_workspace_with_sound_files_is_trusted(ws: Path) -> None:
    v = verdict(ws)
    assert v.trusted and not v.files
    assert {Path(f.path).name for f in v.checked} == {"healthkit.toml", "check_me.py"}


def test_group_writable_plugin_is_named_with_its_group(ws: Path) -> None:
    (ws / "check_me.py").chmod(0o664)
    v = verdict(ws)
    assert not v.trusted
    [f] = v.files
    assert f.path == str(ws / "check_me.py") and f.mode == "0664" and f.why.startswith("writable by group ")


def test_a_folder_others_may_write_is_untrusted_unless_sticky(ws: Path) -> None:
    sub = ws / "plugins"
    sub.mkdir()
    (sub / "p.py").write_text("")
    (ws / "healthkit.toml").write_text('[checks]\nplugins = ["plugins/p.py"]\n')
    sub.chmod(0o777)
    assert [f.path for f in verdict(ws).files] == [str(sub)]
    sub.chmod(0o1777)  # sticky, like /tmp: nobody may replace an entry they do not own
    assert verdict(ws).trusted


def test_a_plugin_symlinked_to_a_file_another_user_owns_is_untrusted(ws: Path, eve: User, tmp_path: Path) -> None:
    elsewhere = tmp_path / "eve.py"
    elsewhere.write_text("")
    os.chown(elsewhere, eve.uid, eve.gid)
    (ws / "check_me.py").unlink()
    (ws / "check_me.py").symlink_to(elsewhere)
    [f] = verdict(ws).files
    assert f.path == str(elsewhere) and f.owner == eve.name and "owned by hk_eve" in f.why and "the target of" in f.why


def test_command_files_are_the_program_and_existing_file_arguments(tmp_path: Path) -> None:
    (tmp_path / "run.sh").write_text("")
    found = command_files(["sh", "run.sh", "--config={base}/missing.json", "-c", "echo hi"], tmp_path)
    assert found[0].name in ("sh", "dash", "bash") and found[0].is_absolute()
    assert found[1:] == [tmp_path / "run.sh"]
    assert command_files(["./run.sh"], tmp_path) == [tmp_path / "./run.sh"]


def test_a_daemon_script_others_may_write_is_untrusted(ws: Path) -> None:
    (ws / "daemon.py").write_text("")
    (ws / "healthkit.toml").write_text('[processes]\ndaemon_command = ["python3", "{base}/daemon.py"]\n')
    (ws / "daemon.py").chmod(0o646)
    v = verdict(ws)
    assert [f.path for f in v.files] == [str(ws / "daemon.py")] and v.files[0].role == "command"
    assert v.commands == (f"[processes] daemon_command: python3 {ws}/daemon.py",)


def test_another_users_workspace_is_trusted_only_when_root_lists_it(ws: Path, eve: User, tmp_path: Path) -> None:
    chown_tree(ws, eve)
    v = verdict(ws)
    assert not v.trusted and "owned by hk_eve, not by root" in (v.workspace_problem or "")
    assert {Path(f.path).name for f in v.named} == {"healthkit.toml", "check_me.py"}
    listfile, added = add_to_trust_list(ws)
    assert added and listfile.stat().st_uid == 0 and oct(listfile.stat().st_mode & 0o777) == "0o644"
    assert add_to_trust_list(ws) == (listfile, False)  # idempotent
    assert str(ws) in read_trust_list(listfile)[0]
    assert verdict(ws).trusted
    (tmp_path / "etc").chmod(0o777)  # a folder above the list others may write: the list no longer counts
    v = verdict(ws)
    assert not v.trusted and any("ignored" in n for n in v.notes)


def test_daemons_for_another_users_workspace_run_as_its_owner(ws: Path, eve: User) -> None:
    assert run_as_for(ws) is None  # root's own workspace
    chown_tree(ws, eve)
    acct = run_as_for(ws)
    assert acct is not None and (acct.name, acct.uid, acct.gid) == (eve.name, eve.uid, eve.gid)
    assert acct.popen_kwargs()["user"] == eve.uid and acct.env({"HOME": "/root"})["HOME"] != "/root"


def test_folders_made_in_another_users_workspace_are_hers_and_never_follow_a_link(eve: User) -> None:
    d = open_folder("hk-trust-dirs-")
    try:
        base = d / "ws"
        base.mkdir()
        os.chown(base, eve.uid, eve.gid)
        make_dirs_for(base / "logs" / "deep", base)
        assert (base / "logs").stat().st_uid == eve.uid and (base / "logs" / "deep").stat().st_uid == eve.uid
        outside = d / "outside"
        outside.mkdir()
        (base / "trap").symlink_to(outside)
        with pytest.raises(OSError):
            make_dirs_for(base / "trap" / "x", base)
        assert not (outside / "x").exists()
    finally:
        import shutil

        shutil.rmtree(d, ignore_errors=True)


def test_a_plugin_that_cannot_be_found_is_a_load_error_not_a_trust_problem(ws: Path) -> None:
    """Issue 31 item 5: a misspelled plugin path is exit 3 with 'no such plugin file', as a syntax error is; no
    trust.untrusted with 'owner ?, mode ?' and advice to chown a file that does not exist."""
    import json

    from .conftest import run_cli

    (ws / "healthkit.toml").write_text('[checks]\nplugins = ["missing_plugin.py"]\n')
    assert verdict(ws).trusted
    r = run_cli("audit", str(ws), "--format", "json")
    rep = json.loads(r.stdout)
    assert r.returncode == 3, r
    assert "trust.untrusted" not in [f["code"] for f in rep["findings"]]
    assert "no such plugin file" in json.dumps(rep["load_errors"]) and "missing_plugin.py" in json.dumps(
        rep["load_errors"]
    )
