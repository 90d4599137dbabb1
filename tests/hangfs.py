"""A passthrough FUSE filesystem (fusepy, libfuse2) whose every operation can hang or fail with EIO, for real-fault tests.

Run as its own process: ``python tests/hangfs.py SOURCE MOUNTPOINT CONTROL``. It mirrors SOURCE at MOUNTPOINT.
CONTROL is a file outside the mount holding one word, read before each operation: ``ok`` (pass through),
``hang`` (the operation waits until the word changes: a mount that stopped answering) or ``eio`` (every
operation but the mount point's own stat fails with EIO: a half-dead disk).
"""

from __future__ import annotations

import errno
import os
import sys
import time

from fuse import FUSE, FuseOSError, Operations  # fusepy


class HangFS(Operations):
    def __init__(self, root: str, control: str):
        self.root = root
        self.control = control

    def _mode(self) -> str:
        try:
            with open(self.control) as fh:
                return fh.read().strip()
        except OSError:
            return "ok"

    def _gate(self, path: str) -> None:
        mode = self._mode()
        while mode == "hang":
            time.sleep(0.05)
            mode = self._mode()
        if mode == "eio" and path != "/":
            raise FuseOSError(errno.EIO)

    def _full(self, path: str) -> str:
        return os.path.join(self.root, path.lstrip("/"))

    def getattr(self, path, fh=None):
        if path != "/" or self._mode() == "hang":
            self._gate(path)
        try:
            st = os.lstat(self._full(path))
        except OSError as exc:
            raise FuseOSError(exc.errno) from None
        return {
            k: getattr(st, k)
            for k in ("st_atime", "st_ctime", "st_gid", "st_mode", "st_mtime", "st_nlink", "st_size", "st_uid")
        }

    def readdir(self, path, fh):
        self._gate(path)
        if self._mode() == "eio":
            raise FuseOSError(errno.EIO)
        return [".", ".."] + os.listdir(self._full(path))

    def readlink(self, path):
        self._gate(path)
        return os.readlink(self._full(path))

    def access(self, path, amode):
        self._gate(path)
        if not os.access(self._full(path), amode):
            raise FuseOSError(errno.EACCES)

    def open(self, path, flags):
        self._gate(path)
        return os.open(self._full(path), flags)

    def read(self, path, size, offset, fh):
        self._gate(path)
        os.lseek(fh, offset, os.SEEK_SET)
        return os.read(fh, size)

    def release(self, path, fh):
        return os.close(fh)

    def statfs(self, path):
        self._gate(path)
        sv = os.statvfs(self._full(path))
        return {
            k: getattr(sv, k)
            for k in (
                "f_bavail",
                "f_bfree",
                "f_blocks",
                "f_bsize",
                "f_favail",
                "f_ffree",
                "f_files",
                "f_flag",
                "f_frsize",
                "f_namemax",
            )
        }


def main() -> None:
    source, mountpoint, control = sys.argv[1:4]
    FUSE(
        HangFS(os.path.abspath(source), os.path.abspath(control)),
        mountpoint,
        foreground=True,
        nothreads=False,
        allow_other=False,
        ro=True,
    )


if __name__ == "__main__":
    main()
