"""File operations a fix may perform, each contained in the workspace and safe against a kill at any moment.

- `replace_file`: backup beside the file, then temp file in the same folder, fsync, rename:
  the file is always either old or new, never half-written.
- `delete_dir`: rename to a `.healthkit-trash-*` name in the same folder (atomic), then
  remove it with fd-relative operations that never follow a symlink; a run killed
  mid-delete leaves the whole folder or a trash folder `finish_interrupted` completes.
- Containment is by resolved-path comparison (`fsutil.is_within`), never string prefixes,
  and every delete works through a directory fd so a symlink swapped in mid-way is not followed.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

from healthkit.fix.kill_points import crash_point
from healthkit.system.fsutil import is_within
from healthkit.system.records import record


def sha256_hex(data: bytes) -> str:
    """A file's content digest. CPython's built-in SHA-256 when it has one: importing hashlib starts OpenSSL, which
    costs a dry run that plans one config edit more than its whole planning; the digest is the same."""
    try:
        from _sha256 import sha256  # CPython <= 3.11
    except ImportError:
        try:
            from _sha2 import sha256  # CPython >= 3.12
        except ImportError:
            from hashlib import sha256  # a build without them
    return sha256(data).hexdigest()


TRASH_PREFIX = ".healthkit-trash-"
TMP_MARK = ".healthkit-tmp-"


class Refused(Exception):
    """The operation would leave the workspace, follow a symlink, or touch something that is not what was planned."""


class ChangedSincePlan(Refused):
    """The target is not what the plan saw (content, identity or type changed)."""


# fingerprints ---------------------------------------------------------------------


def edit_target(base: Path, path: Path, rel: str) -> Path:
    """The file an edit of ``path`` rewrites: a symlink's target when it stays inside ``base``, else Refused.

    One rule for every fix that edits a file in place (config.json, a doc): a link never carries an edit out of the
    workspace."""
    target = path.resolve() if path.is_symlink() else path
    if not is_within(target, base):
        raise Refused(f"{rel} is a symlink out of the workspace; it is never edited")
    return target


@record
class FileFingerprint:
    ino: int
    size: int
    mtime_ns: int
    sha256: str


def file_fingerprint(path: Path, data: bytes | None = None) -> FileFingerprint:
    st = os.lstat(path)
    if data is None:
        data = read_nofollow(path)
    return FileFingerprint(st.st_ino, st.st_size, st.st_mtime_ns, sha256_hex(data))


def read_nofollow(path: Path, max_bytes: int = 64 * 1024 * 1024) -> bytes:
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise Refused(f"{path} is not a regular file")
        if st.st_size > max_bytes:
            raise Refused(f"{path} is larger than {max_bytes} bytes")
        chunks = []
        while True:
            chunk = os.read(fd, 1 << 20)
            if not chunk:
                break
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


@record
class TreeFingerprint:
    """A folder as seen without following symlinks: its inode and a digest of every entry's (path, type, size, mtime).

    A digest, not the entries themselves: a checkpoint of a million files is fingerprinted in bounded memory.
    """

    ino: int
    entries: str
    bytes: int
    files: int
    is_file: bool = (
        False  # a checkpoint that is one file (a Lightning .ckpt): its (size, mtime) stands for its contents
    )


def tree_fingerprint(path: Path | str, dir_fd: int | None = None, allow_file: bool = False) -> TreeFingerprint:
    st = os.stat(path, dir_fd=dir_fd, follow_symlinks=False)
    if allow_file and stat.S_ISREG(st.st_mode):
        return TreeFingerprint(
            st.st_ino, f"./{stat.S_IFREG}/{st.st_size}/{st.st_mtime_ns}", st.st_blocks * 512, 1, True
        )
    if not stat.S_ISDIR(st.st_mode):
        raise Refused(f"{path} is not a directory" + (" (it is a symbolic link)" if stat.S_ISLNK(st.st_mode) else ""))
    import hashlib

    digest = hashlib.sha256()
    total = st.st_blocks * 512
    files = 0
    for dirpath, dirnames, filenames, dfd in os.fwalk(path, dir_fd=dir_fd, follow_symlinks=False):
        dirnames.sort()  # a fixed walk order (the digest depends on it), one folder's names in memory at a time
        rel = os.path.relpath(dirpath, path)
        for name in sorted(dirnames + filenames):
            try:
                est = os.stat(name, dir_fd=dfd, follow_symlinks=False)
            except FileNotFoundError:
                continue
            entry = f"{os.path.normpath(os.path.join(rel, name))}\0{stat.S_IFMT(est.st_mode)}\0{est.st_size}\0{est.st_mtime_ns}\n"
            digest.update(entry.encode("utf-8", "surrogateescape"))
            total += est.st_blocks * 512
            files += 1
    return TreeFingerprint(st.st_ino, digest.hexdigest(), total, files)


# containment ------------------------------------------------------------------------


def contained(base: Path, path: Path) -> Path:
    """The real parent folder of ``path`` after checking it lies in ``base``; ``path`` itself must not be a symlink out."""
    parent = path.parent.resolve()
    if not is_within(parent, base):
        raise Refused(f"{path} is outside the workspace {base}")
    return parent


def _open_dir(real: Path, base: Path) -> int:
    fd = os.open(real, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        # The folder we opened must still be the one inside the workspace (not swapped after resolve()).
        # (Mutation testing: `or True` on the condition is equivalent wherever /proc is mounted, as on every Linux
        # this runs on; without /proc the check falls back to the resolved path.)
        actual = Path(os.readlink(f"/proc/self/fd/{fd}")) if os.path.exists(f"/proc/self/fd/{fd}") else real
        if not is_within(actual, base):
            raise Refused(f"{real} moved out of the workspace")
    except BaseException:
        os.close(fd)
        raise
    return fd


def fsync_dir(fd_or_path: int | Path) -> None:
    """Durability only: its mutants (and a skipped call) survive every test, as no test can cut the power."""
    try:
        fd = fd_or_path if isinstance(fd_or_path, int) else os.open(fd_or_path, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        if not isinstance(fd_or_path, int):
            os.close(fd)


# edits ------------------------------------------------------------------------------


def _write_new(dfd: int, name: str, data: bytes, mode: int, owner: tuple[int, int] | None) -> None:
    fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600, dir_fd=dfd)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fchmod(fd, mode)
        if owner is not None:
            try:
                os.fchown(fd, *owner)
            except OSError:
                pass
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        try:
            os.unlink(name, dir_fd=dfd)
        except OSError:
            pass
        raise
    os.close(fd)


def replace_file(base: Path, path: Path, new: bytes, expected_sha256: str, stamp: str) -> Path:
    """Replace ``path`` with ``new`` if it still has ``expected_sha256``; returns the backup's path.

    The backup (`<name>.bak-<stamp>`, the original bytes) is written and fsynced first;
    then a temp file in the same folder, fsync, rename, fsync of the folder.
    """
    real_parent = contained(base, path)
    name = path.name
    dfd = _open_dir(real_parent, base)
    try:
        st = os.stat(name, dir_fd=dfd, follow_symlinks=False)
        if not stat.S_ISREG(st.st_mode):
            raise Refused(f"{path} is not a regular file (a symlink or special file is never edited)")
        old = read_nofollow(real_parent / name)
        if sha256_hex(old) != expected_sha256:
            raise ChangedSincePlan(f"{path.name} changed since the plan was made")
        owner = (st.st_uid, st.st_gid)
        mode = stat.S_IMODE(st.st_mode)
        backup = f"{name}.bak-{stamp}"
        n = 1
        while True:
            try:
                _write_new(dfd, backup, old, mode, owner)
                break
            except FileExistsError:
                n += 1
                backup = f"{name}.bak-{stamp}-{n}"
        crash_point("edit:backup-written")
        tmp = f".{name}{TMP_MARK}{os.getpid()}"
        try:
            os.unlink(tmp, dir_fd=dfd)
        except FileNotFoundError:
            pass
        _write_new(dfd, tmp, new, mode, owner)
        crash_point("edit:before-replace")
        try:
            now = read_nofollow(real_parent / name)
            if sha256_hex(now) != expected_sha256:
                raise ChangedSincePlan(f"{path.name} changed while the fix ran")
            os.rename(tmp, name, src_dir_fd=dfd, dst_dir_fd=dfd)
        except BaseException:
            try:
                os.unlink(tmp, dir_fd=dfd)
            except OSError:
                pass
            raise
        fsync_dir(dfd)
        crash_point("edit:after-replace")
        return real_parent / backup
    finally:
        os.close(dfd)


# deletions --------------------------------------------------------------------------


def unlink_file(base: Path, path: Path, expected: FileFingerprint | None) -> int:
    """Remove one file (a symlink: the link only, never its target) if it is still what was planned."""
    real_parent = contained(base, path)
    dfd = _open_dir(real_parent, base)
    try:
        st = os.stat(path.name, dir_fd=dfd, follow_symlinks=False)
        if stat.S_ISDIR(st.st_mode):
            raise Refused(f"{path.name} is a directory; not removed")
        if expected is not None:
            if stat.S_ISREG(st.st_mode):
                now = file_fingerprint(real_parent / path.name)
                if (now.ino, now.sha256) != (expected.ino, expected.sha256):
                    raise ChangedSincePlan(f"{path.name} changed since the plan was made")
            elif st.st_ino != expected.ino:
                raise ChangedSincePlan(f"{path.name} changed since the plan was made")
        os.unlink(path.name, dir_fd=dfd)
        fsync_dir(dfd)
        return st.st_size
    finally:
        os.close(dfd)


def _purge(pfd: int, name: str) -> None:
    """Remove folder ``name`` in ``pfd`` and everything under it, never following a symlink."""
    tfd = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=pfd)
    try:
        first = True
        for ename, is_dir in _stream_entries(tfd):
            if is_dir:
                _purge_tree(tfd, ename)
            else:
                os.unlink(ename, dir_fd=tfd)
            if first:
                crash_point("prune:mid-delete")
                first = False
    finally:
        os.close(tfd)
    os.rmdir(name, dir_fd=pfd)
    fsync_dir(pfd)


def _stream_entries(dfd: int, batch: int = 4096) -> Any:
    """(name, is a folder) of a folder's entries, read in batches while they are removed: memory bounded by ``batch``,
    however many files a checkpoint holds (each batch is listed anew: what was removed is gone from the listing)."""
    while True:
        chunk = []
        with os.scandir(dfd) as it:
            for e in it:
                chunk.append((e.name, e.is_dir(follow_symlinks=False)))
                if len(chunk) >= batch:
                    break
        if not chunk:
            return
        yield from chunk


def _purge_tree(pfd: int, name: str) -> None:
    """Remove folder ``name`` in ``pfd`` depth first, in bounded memory, never following a symlink."""
    fd = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=pfd)
    try:
        for ename, is_dir in _stream_entries(fd):
            if is_dir:
                _purge_tree(fd, ename)
            else:
                os.unlink(ename, dir_fd=fd)
    finally:
        os.close(fd)
    os.rmdir(name, dir_fd=pfd)


def delete_dir(base: Path, path: Path, expected: TreeFingerprint | None, tag: str, allow_file: bool = False) -> int:
    """Delete folder ``path`` (never a symlink, never outside ``base``) if it is unchanged; returns bytes freed.

    ``allow_file``: a checkpoint that is one regular file (a Lightning `.ckpt`) goes the same way, through the trash.
    """
    real_parent = contained(base, path)
    name = path.name
    pfd = _open_dir(real_parent, base)
    try:
        # follow_symlinks=None (here and in every os.stat of this module) is an equivalent mutant: None is falsy.
        st = os.stat(name, dir_fd=pfd, follow_symlinks=False)
        if stat.S_ISLNK(st.st_mode):
            raise Refused(f"{name} is a symbolic link; its target is never deleted")
        is_file = allow_file and stat.S_ISREG(st.st_mode)
        if not stat.S_ISDIR(st.st_mode) and not is_file:
            raise Refused(f"{name} is not a directory")
        fp = tree_fingerprint(name, dir_fd=pfd, allow_file=is_file)
        if expected is not None and fp != expected:
            raise ChangedSincePlan(f"{name} changed since the plan was made")
        trash = f"{TRASH_PREFIX}{name}-{tag}"
        os.rename(name, trash, src_dir_fd=pfd, dst_dir_fd=pfd)
        fsync_dir(pfd)
        # A swap between the fingerprint and the rename (tests/test_mutation_edges.py swaps at the fsync above).
        st2 = os.stat(trash, dir_fd=pfd, follow_symlinks=False)
        if st2.st_ino != st.st_ino or stat.S_IFMT(st2.st_mode) != stat.S_IFMT(st.st_mode):
            os.rename(trash, name, src_dir_fd=pfd, dst_dir_fd=pfd)  # something was swapped in: put it back, untouched
            raise ChangedSincePlan(f"{name} was replaced while the fix ran")
        crash_point("prune:after-rename")
        if is_file:
            os.unlink(trash, dir_fd=pfd)
            fsync_dir(pfd)
        else:
            _purge(pfd, trash)
        crash_point("prune:after-delete")
        return fp.bytes
    finally:
        os.close(pfd)


def pending_trash(base: Path, folders: list[Path]) -> list[Path]:
    """Trash folders left by a run killed mid-delete (already decided for deletion), in these folders."""
    out = []
    for d in folders:
        try:
            if not is_within(d, base):
                continue
            for e in os.scandir(d):
                if e.name.startswith(TRASH_PREFIX):
                    out.append(Path(e.path))
        except OSError:
            continue
    return sorted(out)


def finish_trash(base: Path, path: Path) -> str:
    """Complete an interrupted deletion: a trash folder is removed; a trash symlink is unlinked (never followed)."""
    real_parent = contained(base, path)
    pfd = _open_dir(real_parent, base)
    try:
        st = os.stat(path.name, dir_fd=pfd, follow_symlinks=False)
        if stat.S_ISDIR(st.st_mode):
            _purge(pfd, path.name)
            return "removed"
        os.unlink(path.name, dir_fd=pfd)
        return "unlinked"
    finally:
        os.close(pfd)


def stale_temp_files(base: Path, folders: list[Path]) -> list[Path]:
    """Temp files of an edit killed before its rename (only fix runs, which hold the lock, create them)."""
    out = []
    for d in set(folders):
        try:
            if not is_within(d, base):
                continue
            for e in os.scandir(d):
                if TMP_MARK in e.name and e.name.startswith(".") and e.is_file(follow_symlinks=False):
                    out.append(Path(e.path))
        except OSError:
            continue
    return sorted(out)
