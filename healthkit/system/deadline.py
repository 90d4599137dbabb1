"""Work on a workspace in a forked child under a deadline: a hung mount blocks that child, never the run.

A process that touches a mount that stopped answering waits in the kernel and cannot be
interrupted from inside. So each workspace's audit runs in a child forked from this
(single-threaded) process: cheap (no new interpreter, the registry already imported), and a
child that misses its deadline is walked away from (and killed where the kernel lets it).
The child tells its parent, through a pipe, what it is doing (``phase``): a missed deadline
names what the workspace was blocked on ("listing current_model/"). Children keep neither
the caller's other descriptors (the cron line's flock) nor its stdout and stderr.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import pickle
import select
import signal
import struct
import time
from collections.abc import Callable, Iterator
from dataclasses import field
from typing import Any

from healthkit.system.records import identity_record

_PHASE_FD: int | None = None  # in a child: the pipe to its parent
UNINTERRUPTIBLE = "!"  # a phase text starting with it (a heal changing the workspace) is never killed at the deadline
_IDS = itertools.count(1)
_HEAD = struct.Struct("!cI")  # message kind (b"+" phase begins, b"-" ends, b"R" result, b"E" error), payload length


def _send(kind: bytes, payload: bytes) -> None:
    fd = _PHASE_FD
    if fd is None:
        return
    data = _HEAD.pack(kind, len(payload)) + payload
    try:
        while data:
            n = os.write(fd, data)
            data = data[n:]
    except OSError:
        pass  # a parent that walked away: nothing to tell


@contextlib.contextmanager
def phase(text: str) -> Iterator[None]:
    """Say what this process is about to do (a child tells its parent); free outside a child."""
    if _PHASE_FD is None:
        yield
        return
    ident = next(_IDS)
    _send(b"+", f"{ident} {text}".encode("utf-8", "backslashreplace"))
    try:
        yield
    finally:
        _send(b"-", str(ident).encode())


def in_child() -> bool:
    return _PHASE_FD is not None


@identity_record
class Outcome:
    """What became of one child: its result, or the error it raised, or the deadline it missed and on what."""

    key: Any
    result: Any = None
    error: str | None = None
    timed_out: bool = False
    blocked_on: list[str] = field(default_factory=list)
    elapsed_s: float = 0.0
    pid: int = 0
    exited: bool = (
        True  # False: still alive after the kill (in the kernel, on a dead mount), or left to finish a change
    )
    left_running: bool = False  # past the deadline inside an uninterruptible phase: not killed, walked away from
    signal: int | None = (
        None  # the signal that ended the child (not ours at the deadline): the caller may die the same way
    )

    def done_result(self) -> bool:
        return self.result is not None or self.error is not None and "ended without a result" not in self.error

    def blocked_words(self) -> str:
        return "; ".join(p.lstrip(UNINTERRUPTIBLE) for p in self.blocked_on) if self.blocked_on else "starting"


class _Child:
    def __init__(self, key: Any, pid: int, fd: int, started: float):
        self.key, self.pid, self.fd, self.started = key, pid, fd, started
        self.buf = b""
        self.open: dict[str, str] = {}
        self.result: Any = None
        self.error: str | None = None
        self.done = False

    def feed(self, data: bytes) -> None:
        self.buf += data
        while len(self.buf) >= _HEAD.size:
            kind, n = _HEAD.unpack_from(self.buf)
            if len(self.buf) < _HEAD.size + n:
                return
            payload = self.buf[_HEAD.size : _HEAD.size + n]
            self.buf = self.buf[_HEAD.size + n :]
            if kind == b"+":
                ident, _, text = payload.decode("utf-8", "replace").partition(" ")
                self.open[ident] = text
            elif kind == b"-":
                self.open.pop(payload.decode("ascii", "replace"), None)
            elif kind == b"R":
                self.result, self.done = pickle.loads(payload), True
            elif kind == b"E":
                self.error, self.done = payload.decode("utf-8", "replace"), True


def _child_main(fd: int, fn: Callable[[], Any], keep_fds: tuple[int, ...] = ()) -> None:
    """In the child: nothing inherited but the pipe (no flock descriptor, no stdout), run ``fn``, send what it gave."""
    global _PHASE_FD
    code = 0
    try:
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        null = os.open(os.devnull, os.O_RDWR)
        for std in (0, 1, 2):
            os.dup2(null, std)
        low = 3
        for keep in sorted({fd, *keep_fds}):  # everything else goes: the cron line's flock descriptor above all
            if keep >= low:
                os.closerange(low, keep)
                low = keep + 1
        os.closerange(low, _max_fd())
        _PHASE_FD = fd
        try:
            result = fn()
            _send(b"R", pickle.dumps(result, protocol=pickle.HIGHEST_PROTOCOL))
        except BaseException as exc:
            _send(b"E", f"{type(exc).__name__}: {exc}".encode("utf-8", "backslashreplace"))
            code = 1
    finally:
        os._exit(code)


def _max_fd() -> int:
    try:
        return os.sysconf("SC_OPEN_MAX")
    except (OSError, ValueError):
        return 65536


def run_children(
    jobs: list[tuple[Any, Callable[[], Any]]],
    deadline_s: float,
    parallel: int = 16,
    on_start: Callable[[Any, int], None] | None = None,
    keep_fds: tuple[int, ...] = (),
) -> list[Outcome]:
    """Run each ``fn`` of ``jobs`` in its own forked child, at most ``parallel`` at once, each under ``deadline_s``.

    Call only from a process with no other threads (fork copies one thread; a lock another thread held stays
    held in the child). A child past its deadline is sent SIGKILL and walked away from: its Outcome says
    ``timed_out`` and the phases it had open. Outcomes come back in the order of ``jobs``.
    """
    import gc

    gc.freeze()  # what the parent holds stays out of the children's collections: no copy-on-write of every page
    pending = list(jobs)
    running: dict[int, _Child] = {}
    outcomes: dict[int, Outcome] = {}
    order = {id(job): i for i, job in enumerate(jobs)}
    index = {}
    while pending or running:
        while pending and len(running) < parallel:
            job = pending.pop(0)
            key, fn = job
            r, w = os.pipe()
            pid = os.fork()
            if pid == 0:  # pragma: no cover - the child's coverage is not collected
                os.close(r)
                _child_main(w, fn, keep_fds)
            os.close(w)
            os.set_blocking(r, False)
            running[r] = _Child(key, pid, r, time.monotonic())
            index[r] = order[id(job)]
            if on_start is not None:
                on_start(key, pid)
        now = time.monotonic()
        wait = min(c.started + deadline_s for c in running.values()) - now
        ready, _, _ = select.select(list(running), [], [], max(0.0, min(wait, 1.0)))
        for r in ready:
            c = running[r]
            try:
                data = os.read(r, 1 << 20)
            except BlockingIOError:
                continue
            except OSError:
                data = b""
            if data:
                c.feed(data)
                if not c.done:
                    continue
            _finish(c, outcomes, index[r], timed_out=False)
            del running[r]
        now = time.monotonic()
        for r, c in list(running.items()):
            if now >= c.started + deadline_s:
                _finish(c, outcomes, index[r], timed_out=True)
                del running[r]
    return [outcomes[i] for i in range(len(jobs))]


def _finish(c: _Child, outcomes: dict[int, Outcome], i: int, timed_out: bool) -> None:
    elapsed = time.monotonic() - c.started
    os.close(c.fd)
    exited = True
    left = timed_out and any(p.startswith(UNINTERRUPTIBLE) for p in c.open.values())
    if left:
        exited = _reaped(c.pid, 0.0)  # a heal half-way through a change finishes in its child, under the fix lock
    elif timed_out:
        try:
            os.kill(c.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        exited = _reaped(c.pid, 0.2)
    status = None
    if not timed_out:
        status = _reaped_status(c.pid, 5.0)
    sig = os.WTERMSIG(status) if status is not None and os.WIFSIGNALED(status) else None
    error = (
        c.error
        if c.done or timed_out
        else (c.error or "the child ended without a result" + (f" (killed by signal {sig})" if sig else ""))
    )
    outcomes[i] = Outcome(c.key, c.result, error, timed_out, list(c.open.values()), elapsed, c.pid, exited, left, sig)


def _wait_child(pid: int, within_s: float) -> tuple[bool, int | None]:
    """(gone, wait status) of a child after waiting up to ``within_s``: gone once reaped here (its status) or
    elsewhere (None); (False, None) while it is still alive."""
    end = time.monotonic() + within_s
    pause = 0.0002  # a child that just sent its result exits within a millisecond: a fixed 10 ms nap cost every audit
    while True:
        try:
            done, status = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            return True, None
        if done:
            return True, status
        if time.monotonic() >= end:
            return False, None
        time.sleep(pause)
        pause = min(pause * 2, 0.01)


def _reaped_status(pid: int, within_s: float) -> int | None:
    """The wait status of a child that ended (None: not reaped within ``within_s``, or reaped elsewhere)."""
    return _wait_child(pid, within_s)[1]


def _reaped(pid: int, within_s: float) -> bool:
    """Wait up to ``within_s`` for a child to exit; False when it is still alive (left to exit when the kernel lets it)."""
    return _wait_child(pid, within_s)[0]


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


EARLY_CHILDREN: dict[str, EarlyChild] = {}  # forked by healthkit.console before the CLI loads, by absolute path


class EarlyChild:
    """A child forked at start-up that begins its work at once (``prepare``) and takes its instructions later.

    `healthkit audit PATH` forks it before the CLI is even imported: the child opens the workspace and starts its
    slow reads while this process imports the CLI and parses the options, as the in-process audit overlapped them;
    ``send`` gives it the options, ``wait`` waits for its result under the deadline, counted from the fork.
    """

    def __init__(
        self, key: Any, prepare: Callable[[], Any], finish: Callable[[Any, Any], Any], keep_fds: tuple[int, ...] = ()
    ):
        import gc

        gc.freeze()  # as in run_children: the child's collections leave the parent's objects (and their pages) alone
        r, w = os.pipe()
        ir, iw = os.pipe()
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child's coverage is not collected
            os.close(r)
            os.close(iw)

            def run() -> Any:
                state = prepare()
                chunks = []
                while True:
                    chunk = os.read(ir, 1 << 16)
                    if not chunk:
                        break
                    chunks.append(chunk)
                return finish(state, pickle.loads(b"".join(chunks)))

            _child_main(w, run, (*keep_fds, ir))
        os.close(w)
        os.close(ir)
        os.set_blocking(r, False)
        self.child = _Child(key, pid, r, time.monotonic())
        self.iw: int | None = iw

    def send(self, instructions: Any) -> None:
        data = pickle.dumps(instructions, protocol=pickle.HIGHEST_PROTOCOL)
        try:
            while data:
                n = os.write(self.iw, data)  # type: ignore[arg-type]
                data = data[n:]
        except OSError:
            pass  # the child is gone: wait() says why
        finally:
            os.close(self.iw)  # type: ignore[arg-type]
            self.iw = None

    def wait(self, deadline_s: float) -> Outcome:
        c = self.child
        outcomes: dict[int, Outcome] = {}
        while True:
            left = c.started + deadline_s - time.monotonic()
            if left <= 0:
                _finish(c, outcomes, 0, timed_out=True)
                return outcomes[0]
            ready, _, _ = select.select([c.fd], [], [], min(left, 1.0))
            if not ready:
                continue
            try:
                data = os.read(c.fd, 1 << 20)
            except BlockingIOError:
                continue
            except OSError:
                data = b""
            if data:
                c.feed(data)
                if not c.done:
                    continue
            _finish(c, outcomes, 0, timed_out=False)
            return outcomes[0]
