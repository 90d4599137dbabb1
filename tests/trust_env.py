"""A second, real user for the trust tests (issue 25): `hk_eve`, her workspaces, and a Python she can run.

CI runs as root and may create users. hk_eve is a system user without a home or a login
shell, created once (idempotent) and left in place: she owns nothing outside the test folders.
Test folders live under a `mkdtemp` made traversable (0755), because pytest's own tmp folder
(/tmp/pytest-of-root, 0700) is closed to her.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest

from .trainer.conftest import _kill_workspace_processes as kill_workspace_processes  # noqa: F401 - one home

EVE = "hk_eve"
REPO = Path(__file__).resolve().parents[1]


def _ci() -> bool:
    return os.environ.get("CI", "").lower() in ("true", "1", "yes")


def require(ok: bool, why: str) -> None:
    """Skip naming what is missing; under CI=true fail instead (CI runs as root and can make users)."""
    if ok:
        return
    if _ci():
        pytest.fail(f"{why}, and CI=true", pytrace=False)
    pytest.skip(why)


@dataclass(frozen=True)
class User:
    name: str
    uid: int
    gid: int

    def popen(self) -> dict:
        return {"user": self.uid, "group": self.gid, "extra_groups": []}


def ensure_user(name: str = EVE) -> User:
    require(os.geteuid() == 0, "the trust tests need root (to create a second user and to run healthkit as root)")
    try:
        pw = pwd.getpwnam(name)
    except KeyError:
        useradd = shutil.which("useradd")
        require(useradd is not None, "useradd not installed (Debian package `passwd`)")
        out = subprocess.run(
            [useradd, "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", name],
            capture_output=True,
            text=True,
        )
        if out.returncode not in (0, 9):  # 9: it exists (another run made it meanwhile)
            pytest.fail(f"useradd {name}: {out.stderr.strip()}")
        pw = pwd.getpwnam(name)
    return User(pw.pw_name, pw.pw_uid, pw.pw_gid)


def open_folder(prefix: str) -> Path:
    """A folder every user can traverse (its parents are /tmp), for workspaces hk_eve owns."""
    d = Path(tempfile.mkdtemp(prefix=prefix))
    d.chmod(0o755)
    return d


def runs_healthkit(python: str, user: User) -> str | None:
    """None when ``user`` can run ``python`` and import healthkit's trainer with it; else why not."""
    try:
        out = subprocess.run(
            [python, "-c", "import healthkit.trainer.daemon, torch, transformers"],
            capture_output=True,
            text=True,
            timeout=120,
            cwd="/",
            env={**os.environ, "HOME": "/"},
            **user.popen(),
        )
    except OSError as exc:
        return f"{user.name} cannot run {python}: {exc.strerror}"
    if out.returncode != 0:
        return f"{user.name} cannot import healthkit with {python}: {out.stderr.strip().splitlines()[-1:]}"
    return None


def python_for(user: User, where: Path) -> str:
    """A Python that both root and ``user`` can run, with this checkout's healthkit and its dependencies.

    Normally sys.executable. Where it lies in a folder the user cannot enter (a pyenv under
    /root, 0700), a venv is made in ``where`` from a system Python of the same version, with a
    .pth that adds this virtualenv's site-packages: same packages, an interpreter the user may run.
    healthkit itself requires this of a real machine too: the daemon it starts for eve runs as eve
    (see docs/security.md).
    """
    why = runs_healthkit(sys.executable, user)
    if why is None:
        return sys.executable
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    system = next(
        (p for p in (f"/usr/bin/python{version}", f"/usr/local/bin/python{version}") if os.access(p, os.X_OK)), None
    )
    require(system is not None, f"{why}; and no system python{version} to make one {user.name} can run")
    venv = where / "venv"
    subprocess.run([system, "-m", "venv", "--without-pip", str(venv)], check=True, capture_output=True)
    site = subprocess.run(
        [str(venv / "bin" / "python"), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    ours = sysconfig.get_paths()["purelib"]
    Path(site, "_healthkit_checkout.pth").write_text(f"import site; site.addsitedir({ours!r})\n")
    py = str(venv / "bin" / "python")
    why2 = runs_healthkit(py, user)
    if why2 is not None and _ci():  # CI's clone may lie in a folder she cannot enter (under /root, 0700)
        _let_traverse([Path(ours), REPO])
        why2 = runs_healthkit(py, user)
    require(why2 is None, f"{why}; and the venv made from {system} does not work either: {why2}")
    return py


def _let_traverse(paths: list[Path]) -> None:
    """Under CI only: add o+x (enter, not list) to the folders above ``paths`` that lack it, restored at exit.

    The checkout and its virtualenv are where CI cloned them; a 0700 parent (/root) would keep hk_eve
    from importing the very code under test. Search permission alone reveals no names.
    """
    import atexit
    import stat

    changed: list[tuple[Path, int]] = []
    for path in paths:
        for folder in [path, *path.parents]:
            mode = folder.stat().st_mode
            if not mode & stat.S_IXOTH and (folder, mode) not in changed:
                changed.append((folder, mode))
                folder.chmod(stat.S_IMODE(mode) | stat.S_IXOTH)

    def restore() -> None:
        for folder, mode in changed:
            folder.chmod(stat.S_IMODE(mode))

    atexit.register(restore)


def chown_tree(path: Path, user: User) -> None:
    for root, dirs, files in os.walk(path):
        for n in [*dirs, *files]:
            os.lchown(os.path.join(root, n), user.uid, user.gid)
    os.lchown(path, user.uid, user.gid)
