"""Trust: whether anything a workspace names (plugins, settings commands) may run, decided before any of it runs.

healthkit runs from root's cron and systemd. A workspace's healthkit.toml can name code
(`[checks] plugins`) and commands (`[processes] daemon_command`); whoever may write those
would run code as whoever runs healthkit. So, as git's `safe.directory` (CVE-2022-24765)
and sshd's `StrictModes` do, a workspace is trusted only when

- the user running healthkit owns it, or it is listed in a trust list only root can write
  (`/etc/healthkit/trusted.toml`, written by `healthkit trust PATH`; HEALTHKIT_TRUST_FILE
  names another one, for tests and packagers, and counts only under the same rules), and
- healthkit.toml, every plugin file and every file a settings command would run are owned
  by the workspace's owner or root and writable by no one else, nor are the folders above them.

An untrusted workspace is still audited by the built-in checks, read-only: no plugin is
loaded, no settings command runs, no fix that starts or signals a process is applied, and
the `trust` check reports each untrusted file (checks/trust.py). docs/security.md has the model.
"""

from __future__ import annotations

import os
import pwd
import shlex
import shutil
import stat
from dataclasses import field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from healthkit.system.records import record

if TYPE_CHECKING:
    from healthkit.contract.settings import Settings
    from healthkit.system.fsutil import Reader

UNTRUSTED_CODE = "trust.untrusted"  # the finding checks/trust.py reports (checks may not import each other)
TRUST_FILE_ENV = "HEALTHKIT_TRUST_FILE"
DEFAULT_TRUST_FILE = "/etc/healthkit/trusted.toml"
WRITABLE_BY_OTHERS = stat.S_IWGRP | stat.S_IWOTH


def trust_file() -> Path:
    return Path(os.environ.get(TRUST_FILE_ENV) or DEFAULT_TRUST_FILE)


def user_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return f"uid {uid}"


@record
class UntrustedFile:
    """A file (or a folder above it) that someone other than the workspace's owner or root could change."""

    path: str
    role: str  # "settings", "plugin", "command", "folder", "workspace"
    owner: str
    mode: str  # "0666"
    why: str

    def describe(self) -> str:
        return f"{self.path} ({self.role}; owner {self.owner}, mode {self.mode}): {self.why}"


_NOT_RUN = {
    "settings": "in a workspace that is not trusted: read for the built-in checks only",
    "plugin": "in a workspace that is not trusted: not loaded",
    "command": "in a workspace that is not trusted: not run",
}


@record
class Trust:
    """The verdict for one workspace: ``trusted`` or the reasons it is not, each a fact a person can check."""

    base: Path
    owner_uid: int
    runner_uid: int
    listed: bool
    workspace_problem: str | None = None
    files: tuple[UntrustedFile, ...] = ()
    notes: tuple[str, ...] = ()
    checked: tuple[UntrustedFile, ...] = field(default=())  # every file it would run, ``why`` empty when sound
    commands: tuple[str, ...] = ()  # the settings commands, as they would run

    @property
    def named(self) -> tuple[UntrustedFile, ...]:
        """The files a finding names: the unsound ones, and in a workspace not trusted as a whole, every file it would run."""
        if self.workspace_problem is None:
            return self.files
        bad = {f.path for f in self.files}
        rest = tuple(
            UntrustedFile(f.path, f.role, f.owner, f.mode, _NOT_RUN[f.role]) for f in self.checked if f.path not in bad
        )
        return self.files + rest

    @property
    def trusted(self) -> bool:
        return self.workspace_problem is None and not self.files

    @property
    def owner(self) -> str:
        return user_name(self.owner_uid)

    @property
    def runner(self) -> str:
        return user_name(self.runner_uid)

    def trust_command(self) -> str:
        """The command (run as root) that adds this workspace to the trust list."""
        return f"healthkit trust {shlex.quote(str(self.base))}"

    def problems(self) -> list[str]:
        return ([self.workspace_problem] if self.workspace_problem else []) + [f.describe() for f in self.named]


# the trust list ---------------------------------------------------------------------------------------


def _mode(st: os.stat_result) -> str:
    return f"{stat.S_IMODE(st.st_mode):04o}"


def unsafe_reason(st: os.stat_result, allowed_uids: set[int], folder: bool) -> str | None:
    """Why a file or folder with this stat could be changed by someone not in ``allowed_uids``, or None.

    A folder writable by others is safe only with the sticky bit (/tmp): there nobody may
    rename or delete an entry they do not own.
    """
    if st.st_uid not in allowed_uids:
        return f"owned by {user_name(st.st_uid)}, not by {' or '.join(user_name(u) for u in sorted(allowed_uids))}"
    if st.st_mode & WRITABLE_BY_OTHERS and not (folder and st.st_mode & stat.S_ISVTX):
        who = "everyone" if st.st_mode & stat.S_IWOTH else f"group {_group(st.st_gid)}"
        return f"writable by {who}"
    return None


def _group(gid: int) -> str:
    import grp

    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return str(gid)


def _chain_problems(path: Path, allowed: set[int], role: str) -> list[UntrustedFile]:
    """The file at ``path`` (after symlinks) and every folder above it, up to /, held to ``unsafe_reason``."""
    out: list[UntrustedFile] = []
    seen: set[str] = set()
    real = Path(os.path.realpath(path))
    lexical = Path(os.path.abspath(path))
    items: list[tuple[Path, str]] = [(real, role)]
    for chain in (real.parents, lexical.parents):
        items += [(p, "folder") for p in chain]
    for p, what in items:
        if str(p) in seen:
            continue
        seen.add(str(p))
        try:
            st = os.stat(p)
        except OSError as exc:
            if what != "folder":
                out.append(UntrustedFile(str(path), what, "?", "?", f"cannot be checked: {exc.strerror}"))
            continue
        why = unsafe_reason(st, allowed, folder=stat.S_ISDIR(st.st_mode))
        if why:
            shown = str(path) if what != "folder" and p == real and real == lexical else str(p)
            if what != "folder" and real != lexical:
                why = f"{why} (the target of {path})"
            out.append(UntrustedFile(shown, what, user_name(st.st_uid), _mode(st), why))
    return out


def read_trust_list(path: Path | None = None) -> tuple[frozenset[str], str | None]:
    """(listed folders, why the list is ignored): the list counts only when root alone can change it."""
    path = path or trust_file()
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return frozenset(), None
    except OSError as exc:
        return frozenset(), f"the trust list {path} cannot be read: {exc.strerror}"
    bad = _chain_problems(path, {0}, "trust list")
    if bad:
        return frozenset(), f"the trust list {path} is ignored: {bad[0].describe()}"
    del st
    import tomllib  # only when a trust list exists (most machines have none)

    try:
        data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        return frozenset(), f"the trust list {path} is ignored: {exc}"
    entries = data.get("trusted", [])
    if not isinstance(entries, list) or not all(isinstance(e, str) for e in entries):
        return frozenset(), f"the trust list {path} is ignored: `trusted` must be a list of folder paths"
    return frozenset(os.path.realpath(e) for e in entries), None


def add_to_trust_list(folder: Path, path: Path | None = None) -> tuple[Path, bool]:
    """Add ``folder`` (its real path) to the trust list, atomically, root-owned 0644; (list, whether it was added)."""
    path = path or trust_file()
    real = os.path.realpath(folder)
    entries: list[str] = []
    if path.exists():
        listed, why = read_trust_list(path)
        if why:
            raise PermissionError(why)
        import tomllib

        data = tomllib.loads(path.read_text(encoding="utf-8"))
        entries = list(data.get("trusted", []))
        if real in listed:
            return path, False
    entries.append(real)
    path.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
    body = "# Workspaces whose healthkit.toml, plugins and commands healthkit may run (written by `healthkit trust`).\n"
    body += "trusted = [\n" + "".join(f"  {_toml_str(e)},\n" for e in entries) + "]\n"
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
    try:
        os.write(fd, body.encode("utf-8"))
        os.fchmod(fd, 0o644)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    return path, True


def _toml_str(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


# what a workspace would run ----------------------------------------------------------------------------


def command_files(argv: list[str], base: Path) -> list[Path]:
    """The files a settings command would run: its program (on PATH) and each argument naming a file that exists."""
    if not argv:
        return []
    found: list[Path] = []
    prog = argv[0]
    where = (base / prog) if "/" in prog and not os.path.isabs(prog) else Path(prog)
    resolved = str(where) if "/" in prog else shutil.which(prog)
    if resolved:
        found.append(Path(resolved))
    for arg in argv[1:]:
        val = arg.split("=", 1)[1] if arg.startswith("-") and "=" in arg else arg
        if not val or "\n" in val or len(val) > 4096:
            continue
        p = Path(val) if os.path.isabs(val) else base / val
        try:
            if p.is_file():
                found.append(p)
        except OSError:
            continue
    return found


def plugin_files(plugins: list[str], base: Path) -> list[tuple[str, Path | None]]:
    """(name, file) of each plugin: a .py path in the workspace, or where an importable module would load from."""
    import importlib.machinery

    out: list[tuple[str, Path | None]] = []
    for name in plugins:
        if name.endswith(".py"):
            out.append((name, base / name))
            continue
        try:
            spec = importlib.machinery.PathFinder.find_spec(name.split(".")[0])  # finds, imports nothing
        except (ImportError, ValueError):
            spec = None
        origin = getattr(spec, "origin", None) if spec else None
        out.append((name, Path(origin) if origin and os.path.isabs(origin) else None))
    return out


def assess(base: Path, settings: Settings, settings_path: Path | None, runner_uid: int | None = None) -> Trust:
    """Decide trust for a workspace from file ownership and modes alone: nothing it names is imported or run."""
    runner = os.geteuid() if runner_uid is None else runner_uid
    base = Path(os.path.abspath(base))
    try:
        owner = os.stat(base).st_uid
    except OSError as exc:
        return Trust(base, -1, runner, False, f"the workspace cannot be checked: {exc.strerror}")
    listed_set, list_note = read_trust_list()
    listed = os.path.realpath(base) in listed_set
    notes = (list_note,) if list_note else ()
    problem = None
    if owner != runner and not listed:
        problem = (
            f"the workspace {base} is owned by {user_name(owner)}, not by {user_name(runner)} who runs healthkit, "
            f"and is not in the trust list {trust_file()}"
        )
    allowed = {owner, 0}
    files: list[UntrustedFile] = []
    checked: list[UntrustedFile] = []

    def hold(path: Path, role: str) -> None:
        checked.append(_fact(path, role))
        files.extend(_chain_problems(path, allowed, role))

    if settings_path is not None:
        hold(settings_path, "settings")
    for _name, path in plugin_files(list(settings.checks.plugins), base):
        if path is not None and os.path.exists(path):  # one that cannot be found is a load error (exit 3), not trust
            hold(path, "plugin")
    commands: list[str] = []
    cmd = settings.processes.daemon_command
    if cmd:
        argv = [a.replace("{base}", str(base)) for a in cmd]
        commands.append("[processes] daemon_command: " + shlex.join(argv))
        for path in command_files(argv, base):
            hold(path, "command")
    unique: dict[str, UntrustedFile] = {}
    for f in files:
        unique.setdefault(f.path, f)
    return Trust(base, owner, runner, listed, problem, tuple(unique.values()), notes, tuple(checked), tuple(commands))


def _fact(path: Path, role: str) -> UntrustedFile:
    try:
        st = os.stat(path)
    except OSError as exc:
        return UntrustedFile(str(path), role, "?", "?", f"cannot be checked: {exc.strerror}")
    return UntrustedFile(str(path), role, user_name(st.st_uid), _mode(st), "")


# running as the workspace's owner ------------------------------------------------------------------------


@record
class Account:
    """The user a process started for a workspace runs as (systemd's User=): uid, primary gid, groups, home."""

    name: str
    uid: int
    gid: int
    groups: tuple[int, ...]
    home: str
    shell: str

    def popen_kwargs(self) -> dict[str, Any]:
        """subprocess arguments that drop to this account in the child, before exec (setgroups, setgid, setuid)."""
        return {"user": self.uid, "group": self.gid, "extra_groups": list(self.groups)}

    def env(self, env: dict[str, str]) -> dict[str, str]:
        """``env`` as a login of this account would see it: HOME, USER, LOGNAME (as systemd's User= sets them)."""
        return {**env, "HOME": self.home, "USER": self.name, "LOGNAME": self.name}


def drop_to(account: Account) -> None:
    """Become ``account`` for good in this process (before an exec): groups, then gid, then uid, as `runuser` does."""
    os.setgroups(list(account.groups))
    os.setgid(account.gid)
    os.setuid(account.uid)


class NoAccount(Exception):
    """The workspace's owner has no account to run as (a uid with no passwd entry)."""


def account_of(uid: int) -> Account:
    try:
        pw = pwd.getpwuid(uid)
    except KeyError:
        raise NoAccount(
            f"the workspace's owner uid {uid} has no account (no passwd entry); nothing is started for it"
        ) from None
    groups = tuple(sorted(set(os.getgrouplist(pw.pw_name, pw.pw_gid))))
    return Account(pw.pw_name, pw.pw_uid, pw.pw_gid, groups, pw.pw_dir or "/", pw.pw_shell)


def run_as_for(base: Path) -> Account | None:
    """Whom a process started for ``base`` must run as: its owner when root works on another user's workspace, else None.

    Root starts nothing as root for a user: a daemon of eve's workspace runs as eve.
    """
    if os.geteuid() != 0:
        return None
    owner = os.stat(base).st_uid
    return None if owner == 0 else account_of(owner)


def reader_for(base: Path) -> Reader | None:
    """The workspace's owner as a Reader while root audits another user's workspace (healthkit.system.fsutil.Reader), else None."""
    from healthkit.system.fsutil import Reader

    if os.geteuid() != 0:
        return None  # the kernel already holds us to our own permissions
    try:
        owner = os.stat(base).st_uid
    except OSError:
        return None
    if owner == 0:
        return None
    try:
        acct = account_of(owner)
        return Reader(acct.name, acct.uid, frozenset(acct.groups))
    except NoAccount:
        return Reader(f"uid {owner}", owner, frozenset())  # no account, no groups: only what "others" may read


def make_dirs_for(path: Path, base: Path) -> None:
    """Create the missing folders of ``path`` inside ``base``; when root works on another user's workspace, they belong to its owner.

    Each step is made and opened relative to its parent's descriptor without following a
    symlink, so a link planted in the workspace cannot make root create or chown elsewhere.
    """
    try:
        rel = Path(os.path.abspath(path)).relative_to(os.path.abspath(base))
    except ValueError:
        path.mkdir(parents=True, exist_ok=True)
        return
    owner = os.stat(base).st_uid
    chown = os.geteuid() == 0 and owner != 0
    gid = os.stat(base).st_gid
    fd = os.open(base, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for part in rel.parts:
            made = False
            try:
                os.mkdir(part, 0o755, dir_fd=fd)
                made = True
            except FileExistsError:
                pass
            nfd = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=fd)
            os.close(fd)
            fd = nfd
            if made and chown:
                os.fchown(fd, owner, gid)
    finally:
        os.close(fd)
