"""File reading that never blocks or explodes, and disk usage measured the way `du` measures it."""

from __future__ import annotations

import errno
import json
import os
import shutil
import stat
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any, cast

from healthkit.system.records import record

# Size caps per kind of file: a PID or lock file is a line, a status file a few KB, a long run's history tens of MB.
CAP_TINY = 64 * 1024  # pid, lock, marker files
CAP_SETTINGS = 1024 * 1024  # healthkit.toml
CAP_DOC = 4 * 1024 * 1024  # CLAUDE.md, README.md, scripts read for detection
CAP_JSON = 16 * 1024 * 1024  # config.json, status files, daemon state
CAP_HISTORY = 256 * 1024 * 1024  # trainer_state.json (log_history), the fix journal, the event log

# The kinds of problem that are a finding about the file itself (checks/files.py): not what a file holds, but what it is.
FILE_FINDING_KINDS = ("not-regular", "too-large", "too-deep")
_SEEN_PROBLEMS: dict[str, ReadProblem] = {}
_SEEN_LOCK = threading.Lock()


class ReadProblem(Exception):
    """Why a file could not be read, in words a person can act on; ``kind`` is for code."""

    def __init__(self, kind: str, path: Path, message: str):
        super().__init__(message)
        self.kind = kind  # missing | symlink | not-regular | too-large | too-deep | permission | io | not-utf8 | json
        self.path = path
        self.message = message
        if kind in FILE_FINDING_KINDS:
            with _SEEN_LOCK:
                _SEEN_PROBLEMS[os.path.abspath(path)] = self


def _read_fine(path: Path) -> None:
    """A file read whole: an earlier problem recorded for it (a FIFO since replaced) is over."""
    if _SEEN_PROBLEMS:
        with _SEEN_LOCK:
            _SEEN_PROBLEMS.pop(os.path.abspath(path), None)


def file_problems(roots: list[Path]) -> list[ReadProblem]:
    """The files under ``roots`` this process found not regular, too large or nested too deep (by path)."""
    prefixes = [os.path.abspath(r).rstrip(os.sep) + os.sep for r in roots]
    with _SEEN_LOCK:
        found = list(_SEEN_PROBLEMS.items())
    return [p for k, p in sorted(found) if any(k.startswith(pre) for pre in prefixes)]


@record
class Reader:
    """Another user whose read permission a read must have: a workspace's owner, while root audits that workspace.

    Root can read anything; a report may be readable by others. So what root reads for a
    report from a user's workspace is only what that user could read: a `config.json` that
    is a symlink to /etc/shadow (or a hard link to it) is "not readable", never copied.
    """

    name: str
    uid: int
    gids: frozenset[int]

    def _grants(self, st: os.stat_result, usr: int, grp: int, oth: int) -> bool:
        if st.st_uid == self.uid:
            return bool(st.st_mode & usr)
        if st.st_gid in self.gids:
            return bool(st.st_mode & grp)
        return bool(st.st_mode & oth)

    def may_read(self, fd: int, st: os.stat_result) -> bool:
        """Whether this user could open the file open at ``fd``: its mode, and every folder on its real path."""
        if not self._grants(st, stat.S_IRUSR, stat.S_IRGRP, stat.S_IROTH):
            return False
        try:
            real = os.readlink(f"/proc/self/fd/{fd}")  # the file actually opened, whatever the path says now
        except OSError:
            return False
        for folder in Path(real).parents:
            try:
                dst = os.stat(folder)
            except OSError:
                return False
            if not self._grants(dst, stat.S_IXUSR, stat.S_IXGRP, stat.S_IXOTH):
                return False
        return True


def read_bytes(
    path: Path, max_bytes: int = CAP_JSON, follow_symlinks: bool = True, reader: Reader | None = None
) -> bytes:
    """Read a regular file without ever blocking (FIFOs, devices) or reading without bound.

    ``reader``: read only what that user could read (see Reader), else ReadProblem("permission").
    """
    flags = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)
    if not follow_symlinks:
        flags |= getattr(os, "O_NOFOLLOW", 0)
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        raise ReadProblem("missing", path, f"{path} does not exist") from None
    except PermissionError:
        raise ReadProblem("permission", path, f"{path} is not readable (permission denied)") from None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            kind = "symlink" if not follow_symlinks else "io"
            msg = f"{path} is a symbolic link" if not follow_symlinks else f"{path}: too many levels of symbolic links"
            raise ReadProblem(kind, path, msg) from None
        if exc.errno == errno.ENXIO:  # opening a FIFO/socket with no writer, or a socket
            raise ReadProblem("not-regular", path, f"{path} is not a regular file") from None
        raise ReadProblem("io", path, f"{path} could not be opened: {os_error_words(exc, '')[:-2]}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            kind = "directory" if stat.S_ISDIR(st.st_mode) else "not-regular"
            raise ReadProblem(kind, path, f"{path} is not a regular file ({_kind_name(st.st_mode)})")
        if reader is not None and not reader.may_read(fd, st):
            raise ReadProblem(
                "permission",
                path,
                f"{path} is not readable by {reader.name}, the workspace's owner: not read "
                "(a file its owner cannot read never reaches a report; docs/security.md)",
            )
        if st.st_size > max_bytes:
            raise ReadProblem("too-large", path, f"{path} is {st.st_size} bytes, more than the {max_bytes} we read")
        chunks = []
        remaining = max_bytes + 1
        while remaining > 0:
            try:
                chunk = os.read(fd, min(remaining, 1 << 20))
            except OSError as exc:
                raise ReadProblem("io", path, f"{path} could not be read: {os_error_words(exc, '')[:-2]}") from None
            if not chunk:
                break
            chunks.append(chunk)
            remaining -= len(chunk)
        data = b"".join(chunks)
        if len(data) > max_bytes:
            raise ReadProblem("too-large", path, f"{path} grew past the {max_bytes} bytes we read")
        _read_fine(path)
        return data
    finally:
        os.close(fd)


def open_regular(path: Path, max_bytes: int | None = None) -> Any:
    """An open binary file object for a regular file (for head/tail reads), opened without blocking; else ReadProblem.

    A FIFO, socket or device in place of a file never blocks the opener: it is ReadProblem("not-regular").
    ``max_bytes``: a larger file is ReadProblem("too-large").
    """
    flags = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        raise ReadProblem("missing", path, f"{path} does not exist") from None
    except PermissionError:
        raise ReadProblem("permission", path, f"{path} is not readable (permission denied)") from None
    except OSError as exc:
        if exc.errno == errno.ENXIO:
            raise ReadProblem("not-regular", path, f"{path} is not a regular file") from None
        raise ReadProblem(
            "io", path, f"{path} could not be opened: {exc.strerror} ({errno.errorcode.get(exc.errno or 0, exc.errno)})"
        ) from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            kind = "directory" if stat.S_ISDIR(st.st_mode) else "not-regular"
            raise ReadProblem(kind, path, f"{path} is not a regular file ({_kind_name(st.st_mode)})")
        if max_bytes is not None and st.st_size > max_bytes:
            raise ReadProblem("too-large", path, f"{path} is {st.st_size} bytes, more than the {max_bytes} we read")
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def regular_size(path: Path) -> tuple[int | None, str | None]:
    """(size, None) of a regular file by lstat-free stat, or (None, why not): a FIFO is "a FIFO", never "empty"."""
    try:
        st = os.stat(path)
    except OSError as exc:
        return None, exc.strerror or str(exc)
    if not stat.S_ISREG(st.st_mode):
        return None, f"not a regular file ({_kind_name(st.st_mode)})"
    return st.st_size, None


def os_error_words(exc: OSError, path: Path | str | None = None) -> str:
    """An OSError as a person reads it, with its errno name and path: "EIO (Input/output error): /mnt/ckpt"."""
    name = errno.errorcode.get(exc.errno or 0, str(exc.errno))
    where = path if path is not None else exc.filename
    return f"{name} ({exc.strerror or exc}){f': {where}' if where is not None else ''}"


def _kind_name(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    return "not a file"


def read_text(path: Path, max_bytes: int = CAP_JSON, follow_symlinks: bool = True, reader: Reader | None = None) -> str:
    data = read_bytes(path, max_bytes, follow_symlinks, reader)
    if b"\x00" in data[:8192]:
        raise ReadProblem("binary", path, f"{path} is binary, not text")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ReadProblem("not-utf8", path, f"{path} is not valid UTF-8 (byte {exc.start})") from None


def read_json(
    path: Path, max_bytes: int = CAP_JSON, reader: Reader | None = None, duplicates: list[str] | None = None
) -> Any:
    """A JSON file read through `read_text`; nesting too deep for the parser is ReadProblem("too-deep").

    ``duplicates``: when given, every key an object states twice is appended to it (the last one wins, as in json).
    """
    return parse_json(read_text(path, max_bytes, reader=reader), path, duplicates)


def parse_json(text: str | bytes, path: Path, duplicates: list[str] | None = None) -> Any:
    """json.loads whose every failure is a ReadProblem (``json``, or ``too-deep`` for a RecursionError)."""
    hook = None
    if duplicates is not None:

        def hook(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
            out: dict[str, Any] = {}
            for k, v in pairs:
                if k in out and k not in duplicates:
                    duplicates.append(k)
                out[k] = v
            return out

    try:
        return json.loads(text, object_pairs_hook=hook)
    except json.JSONDecodeError as exc:
        raise ReadProblem(
            "json",
            path,
            f"{path} is not valid JSON: {exc.msg.removesuffix(' at')} at line {exc.lineno} column {exc.colno}",
        ) from None
    except RecursionError:
        raise ReadProblem(
            "too-deep",
            path,
            f"{path} is nested too deep to parse (JSON arrays/objects within each other beyond what the parser allows)",
        ) from None
    except UnicodeDecodeError:
        raise ReadProblem("not-utf8", path, f"{path} is not valid UTF-8") from None


@record
class DiskUsage:
    """What `du` reports for a tree: allocated bytes, each inode once, symlinks not followed."""

    bytes: int
    files: int | None = None  # entries walked (None when GNU du measured it)
    errors: tuple[str, ...] = ()


def disk_usage(root: Path, seen: set[tuple[int, int]] | None = None) -> DiskUsage:
    """Walk ``root`` like ``du -s``: st_blocks*512, each inode once, never following symlinks.

    ``seen`` may be shared between calls: like du across its arguments, a hard-linked
    file or a folder already counted under an earlier root is not counted again.
    """
    seen = set() if seen is None else seen
    total = files = 0
    errors: list[str] = []
    try:
        st = os.lstat(root)
    except OSError as exc:
        return DiskUsage(0, 0, (f"{root}: {exc.strerror}",))
    key = (st.st_dev, st.st_ino)
    if key in seen:
        return DiskUsage(0, 0, ())
    seen.add(key)
    total += st.st_blocks * 512
    if not stat.S_ISDIR(st.st_mode):
        return DiskUsage(total, 1, ())
    stack = [os.fspath(root)]
    while stack:
        d = stack.pop()
        try:
            it = os.scandir(d)
        except OSError as exc:
            errors.append(f"{d}: {exc.strerror}")
            continue
        with it:
            for entry in it:
                try:
                    est = entry.stat(follow_symlinks=False)
                except OSError as exc:
                    errors.append(f"{entry.path}: {exc.strerror}")
                    continue
                is_dir = stat.S_ISDIR(est.st_mode)
                if est.st_nlink > 1 or is_dir:
                    key = (est.st_dev, est.st_ino)
                    if key in seen:
                        continue
                    seen.add(key)
                total += est.st_blocks * 512
                files += 1
                if is_dir:
                    stack.append(entry.path)
    return DiskUsage(total, files, tuple(errors))


_EARLY_DU: dict[str, subprocess.Popen] = {}


def _du_argv(root: Path | str) -> list[str] | None:
    du = shutil.which("du")
    if not du or not sys.platform.startswith("linux"):
        return None
    return [du, "-B1", "-0", "-P", "--max-depth=1", "--", os.fspath(root)]


def start_du_early(root: Path | str) -> None:
    """Start the `du` of a folder the audit will very likely measure, before the audit has imported anything.

    On a large checkpoint folder `du` is most of an audit's time, and importing the audit is
    most of the rest: started first, the two overlap. `disk_usage_children` takes this output
    when it measures that very folder; one it never asks for is ended by `end_early_du`.
    """
    argv = _du_argv(root)
    key = os.path.abspath(root)
    if argv is None or key in _EARLY_DU:
        return
    try:
        _EARLY_DU[key] = subprocess.Popen(
            argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL
        )
    except OSError:
        pass


def early_du_fds() -> tuple[int, ...]:
    """The pipe descriptors of the early `du` runs, which a child that takes their output must keep."""
    fds = []
    for proc in _EARLY_DU.values():
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                fds.append(stream.fileno())
    return tuple(fds)


def end_early_du() -> None:
    """Stop every early `du` that no measurement took (a guessed folder that was not the checkpoint folder).

    Killed, not waited for: a `du` stuck on a dead mount dies when the kernel lets it, and the exiting
    audit must not hang on it (init reaps it).
    """
    while _EARLY_DU:
        _, proc = _EARLY_DU.popitem()
        try:
            proc.kill()
        except OSError:
            pass


def _run_du(root: Path, timeout_s: float) -> tuple[bytes, bytes, str] | None:
    """(stdout, stderr, the root as du prints it) of `du --max-depth=1` over ``root``, the early one when it was
    started; None without GNU du."""
    proc = _EARLY_DU.pop(os.path.abspath(root), None)
    argv = _du_argv(root)
    if argv is None:
        return None
    try:
        if proc is None:
            proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
    except OSError:
        return None
    try:
        out, err = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise TimeoutError(f"du did not finish within {timeout_s:g}s (a hung or very slow filesystem?)") from None
    except OSError:
        return None
    return out, err, cast("list[str]", proc.args)[-1]  # our argv: a list of str


def _parse_du(stdout: bytes, stderr: bytes, printed_root: str) -> tuple[dict[str, DiskUsage], DiskUsage] | None:
    errors = tuple(line for line in stderr.decode("utf-8", "replace").splitlines() if line)
    children: dict[str, DiskUsage] = {}
    total: DiskUsage | None = None
    for rec in stdout.split(b"\0"):
        size, sep, name = rec.partition(b"\t")
        if not sep:
            continue
        path = os.fsdecode(name)
        if path == printed_root:
            total = DiskUsage(int(size), None, errors)
        else:
            children[os.path.basename(path)] = DiskUsage(int(size), None, tuple(e for e in errors if path in e))
    return (children, total) if total is not None else None


def disk_usage_children(root: Path, timeout_s: float = 600.0) -> tuple[dict[str, DiskUsage], DiskUsage]:
    """`du` of each folder directly inside ``root`` and of ``root`` as a whole, in one walk.

    One `du --max-depth=1` needs no listing first, so it can start the moment the audit
    knows the folder; without GNU du, the same figures from a Python walk. A child that
    is a symlink or a file is not a folder of its own here: it counts in the total only.
    """
    ran = _run_du(root, timeout_s)
    parsed = _parse_du(*ran) if ran is not None and ran[0] else None
    if parsed is not None:
        return parsed
    seen: set[tuple[int, int]] = set()
    children = {}
    try:
        entries = sorted(os.scandir(root), key=lambda e: e.name)
    except OSError as exc:
        return {}, DiskUsage(0, 0, (f"{root}: {exc.strerror}",))
    for e in entries:
        if e.is_dir(follow_symlinks=False):
            children[e.name] = disk_usage(Path(e.path), seen)
    rest = disk_usage(root, seen)  # the folder itself and whatever the children did not hold
    total = sum(u.bytes for u in children.values()) + rest.bytes
    return children, DiskUsage(total, None, tuple(e for u in [*children.values(), rest] for e in u.errors))


def human_bytes(n: float) -> str:
    for unit in ("B", "K", "M", "G", "T"):
        if abs(n) < 1024 or unit == "T":
            return f"{n:.0f}{unit}" if unit == "B" else f"{n:.1f}{unit}"
        n /= 1024
    return f"{n:.1f}T"


def is_within(path: Path, root: Path) -> bool:
    """Containment by resolved path comparison, never by string prefix."""
    try:
        path.resolve().relative_to(root.resolve())
        return True
    except ValueError:
        return False


def atomic_write(path: Path, data: bytes | str, mode: int | None = None, durable: bool = True) -> None:
    """Write via a temporary file in the same folder, fsync, rename: readers see old or new, never half.

    ``durable=False`` skips the fsyncs (for caches and logs that may be lost on power failure
    but must never be seen half-written).
    """
    if isinstance(data, str):
        data = data.encode("utf-8")
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}-{threading.get_ident()}")
    fd = os.open(
        tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_CLOEXEC", 0), 0o644 if mode is None else mode
    )
    try:
        view = memoryview(data)
        while view:
            n = os.write(fd, view)
            view = view[n:]
        if durable:
            os.fsync(fd)
    except BaseException:
        os.close(fd)
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    os.close(fd)
    if mode is None:
        try:
            os.chmod(tmp, stat.S_IMODE(os.stat(path).st_mode))
        except OSError:
            pass
    try:
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    if not durable:
        return
    try:
        dfd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError:
        pass


def utf8(text: str) -> bytes:
    """UTF-8 bytes whatever the locale; a path that arrived undecodable (surrogate-escaped) keeps its bytes."""
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        try:
            return text.encode("utf-8", "surrogateescape")
        except UnicodeEncodeError:
            return text.encode("utf-8", "backslashreplace")
