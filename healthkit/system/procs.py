"""Processes as identities (PID *and* start time), PID files read without trust, argv matched without `pgrep -f`."""

from __future__ import annotations

import os
import shlex
import time
from collections.abc import Iterable
from pathlib import Path

import psutil

from healthkit.system.fsutil import ReadProblem, read_bytes
from healthkit.system.records import record
from healthkit.system.redact import redact_argv

SHELLS = frozenset({"sh", "bash", "dash", "zsh", "ksh", "fish", "csh", "tcsh", "busybox"})
NOT_WORKERS = frozenset(
    {"pgrep", "grep", "ps", "timeout", "watch", "tail", "less", "vim", "vi", "nano", "strace", "gdb"}
)
START_TIME_SLACK_S = 2.0


def pid_max() -> int:
    try:
        return int(Path("/proc/sys/kernel/pid_max").read_text().strip())
    except (OSError, ValueError):
        return 4194304


@record
class ProcInfo:
    pid: int
    ppid: int
    name: str
    cmdline: tuple[str, ...]
    create_time: float
    status: str
    cwd: str | None

    @property
    def alive(self) -> bool:
        return self.status not in (psutil.STATUS_ZOMBIE, psutil.STATUS_DEAD)

    def display_cmd(self, limit: int = 160) -> str:
        text = shlex.join(redact_argv(list(self.cmdline))) if self.cmdline else f"[{self.name}]"
        return text if len(text) <= limit else text[: limit - 1] + "…"

    def age_s(self, now: float | None = None) -> float:
        return max(0.0, (now or time.time()) - self.create_time)


@record
class Liveness:
    """Whether a PID names a live process: ``alive``, ``dead``, ``zombie`` (dead for us) or ``alive-eperm``."""

    state: str
    info: ProcInfo | None = None

    @property
    def alive(self) -> bool:
        return self.state in ("alive", "alive-eperm")


def proc_info(p: psutil.Process) -> ProcInfo:
    with p.oneshot():
        try:
            cmdline = tuple(p.cmdline())
        except (psutil.AccessDenied, psutil.ZombieProcess):
            cmdline = ()
        try:
            cwd = p.cwd()
        except (psutil.AccessDenied, psutil.ZombieProcess, psutil.NoSuchProcess, OSError):
            cwd = None
        try:
            ppid = p.ppid()
        except psutil.Error:
            ppid = 0
        return ProcInfo(p.pid, ppid, p.name(), cmdline, p.create_time(), p.status(), cwd)


def probe(pid: int) -> Liveness:
    """Probe one PID. EPERM means alive (someone else's process); a zombie is dead."""
    # Mutation testing: `pid < 0` is equivalent. kill(0, 0) probes our own process group, harmlessly,
    # and psutil has no process 0 on Linux, so PID 0 is dead either way.
    if pid <= 0:
        return Liveness("dead")
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return Liveness("dead")
    except PermissionError:
        pass
    except OverflowError:
        return Liveness("dead")
    try:
        info = proc_info(psutil.Process(pid))
    except psutil.NoSuchProcess:
        return Liveness("dead")
    except psutil.AccessDenied:
        return Liveness("alive-eperm")
    if info.status == psutil.STATUS_ZOMBIE:
        return Liveness("zombie", info)
    return Liveness("alive", info)


def scan_processes() -> list[ProcInfo]:
    """One pass over the process table; processes that vanish mid-scan are skipped."""
    out: list[ProcInfo] = []
    for p in psutil.process_iter():
        try:
            out.append(proc_info(p))
        except (psutil.NoSuchProcess, psutil.ZombieProcess):
            continue
        except psutil.AccessDenied:
            continue
    return out


def scan_argv() -> list[tuple[int, bytes | None]]:
    """Every PID with its raw argv (/proc/PID/cmdline), the cheap pass that `match_scanned` filters for several
    pattern sets. Reading the file costs a tenth of psutil's per-process start (its start-time read); None where it
    cannot be read (no /proc): `match_scanned` then asks psutil."""
    proc = getattr(psutil, "PROCFS_PATH", "/proc")
    table: list[tuple[int, bytes | None]] = []
    for pid in sorted(psutil.pids()):  # psutil.process_iter's order
        try:
            with open(f"{proc}/{pid}/cmdline", "rb") as f:
                table.append((pid, f.read()))
        except FileNotFoundError:  # gone since the listing
            continue
        except OSError:
            table.append((pid, None))
    return table


def match_scanned(table: list[tuple[int, bytes | None]], patterns: list[str]) -> list[ProcInfo]:
    """The processes of a `scan_argv` table whose argv matches one of ``patterns``, with full details.

    The raw argv only narrows the search: a process matches when an argv element is a pattern's first word or ends
    in it, so its bytes hold that word. psutil then reads the candidates' argv and details as for any process."""
    words = [os.fsencode(pattern.split()[0]) if pattern.split() else b"" for pattern in patterns]
    out: list[ProcInfo] = []
    for pid, raw in table:
        if raw is not None and not any(w in raw for w in words):
            continue
        try:
            p = psutil.Process(pid)
            argv = tuple(p.cmdline())
        except psutil.Error:  # gone, a zombie (no argv), or not ours to read
            continue
        if not argv_matches(argv, patterns):
            continue
        try:
            out.append(proc_info(p))
        except (psutil.NoSuchProcess, psutil.ZombieProcess, psutil.AccessDenied):
            continue
    return out


def scan_mentioning(words: Iterable[str]) -> list[ProcInfo]:
    """The processes whose argv may name one of ``words`` (its bytes hold it), with full details: a superset of
    those with an argv element that is, or ends in, one of them, for a caller that tells them apart; every other
    process costs one read of /proc/PID/cmdline instead of psutil's details (`scan_processes`)."""
    needles = [os.fsencode(w) for w in words]
    out: list[ProcInfo] = []
    for pid, raw in scan_argv():
        if raw is not None and not any(n in raw for n in needles):
            continue
        try:
            out.append(proc_info(psutil.Process(pid)))
        except psutil.Error:  # gone since the listing, or not ours to read (as scan_processes skips them)
            continue
    return out


def scan_matching(patterns: list[str]) -> list[ProcInfo]:
    """Processes whose argv matches one of ``patterns``: a cheap argv-only pass, full details for matches only."""
    return match_scanned(scan_argv(), patterns)


def ancestors(pid: int, limit: int = 64) -> list[int]:
    """PIDs above ``pid`` up to init; [] when it vanished."""
    try:
        return [p.pid for p in psutil.Process(pid).parents()][:limit]
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return []


@record
class PidFile:
    """A PID file as found: ``state`` is missing, ok or malformed (with ``reason``)."""

    path: Path
    state: str
    pid: int | None = None
    start_time: float | None = None
    reason: str = ""
    mtime: float | None = None
    preview: str = ""


def read_pid_file(path: Path) -> PidFile:
    """Parse `PID` or `PID START_TIME`; never follows a symlink, never blocks on a FIFO, never reads 10 MB."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return PidFile(path, "missing")
    except OSError as exc:
        return PidFile(path, "malformed", reason=f"cannot stat it: {exc.strerror}")
    try:
        raw = read_bytes(path, max_bytes=4096, follow_symlinks=False)  # (None: an equivalent mutant, as falsy)
    except ReadProblem as exc:
        reason = {
            "symlink": "it is a symbolic link, not a PID file",
            "too-large": f"it is {st.st_size} bytes, far too large for a PID file",
            "not-regular": "it is not a regular file",
            "directory": "it is a directory",
            "permission": "it is not readable (permission denied)",
        }.get(exc.kind, exc.message)
        return PidFile(path, "malformed", reason=reason, mtime=st.st_mtime)
    # Codec names are case-insensitive: the "UTF-8" and "ASCII" mutants of the next two lines are equivalent.
    preview = "".join(
        ch if ch.isprintable() or ch == "\n" else "?" for ch in raw[:64].decode("utf-8", "replace")
    ).rstrip("\n")
    text = raw.decode("ascii", "replace").strip()
    if not text:
        return PidFile(path, "malformed", reason="it is empty", mtime=st.st_mtime, preview=preview)
    parts = text.split()
    if len(parts) > 2:
        return PidFile(path, "malformed", reason="it holds more than a PID", mtime=st.st_mtime, preview=preview)
    digits = parts[0][1:] if parts[0].startswith("-") else parts[0]
    if not digits.isdigit():  # int() alone would also take "1_000", "+5" and " 5"
        return PidFile(path, "malformed", reason="it does not hold a number", mtime=st.st_mtime, preview=preview)
    pid = int(parts[0])
    if pid <= 0:
        return PidFile(path, "malformed", reason=f"{pid} is not a valid PID", mtime=st.st_mtime, preview=preview)
    if pid > pid_max():
        return PidFile(
            path, "malformed", reason=f"{pid} is larger than this system's pid_max", mtime=st.st_mtime, preview=preview
        )
    start: float | None = None
    if len(parts) == 2:
        try:
            start = float(parts[1])
        except ValueError:
            return PidFile(
                path, "malformed", reason="its second field is not a start time", mtime=st.st_mtime, preview=preview
            )
    return PidFile(path, "ok", pid=pid, start_time=start, mtime=st.st_mtime, preview=preview)


def _token_matches(token: str, pattern: str) -> bool:
    return token == pattern or os.path.basename(token) == pattern


def argv_matches(argv: tuple[str, ...] | list[str], patterns: list[str]) -> str | None:
    """The pattern this argv runs, or None.

    Unlike `pgrep -f`, a pattern must be a whole argv element (or its basename, or the
    module of ``-m``); shells and tools like grep whose *arguments* mention the
    pattern are never matches, so `bash -c "python train.py"` is not the trainer.
    """
    if not argv:
        return None
    exe = os.path.basename(argv[0])
    if exe in SHELLS or exe in NOT_WORKERS:
        return None
    for pattern in patterns:
        ptoks = pattern.split()
        if len(ptoks) > 1:
            # (`+ 2` is an equivalent mutant: the extra start position leaves too few elements to match.)
            for i in range(len(argv) - len(ptoks) + 1):
                if _token_matches(argv[i], ptoks[0]) and list(argv[i + 1 : i + len(ptoks)]) == ptoks[1:]:
                    return pattern
            continue
        # An option's own text is never what runs (`--log=/x/train.py`); `-m MODULE` needs no case of its own,
        # as MODULE is a whole element that matches by itself.
        if any(not tok.startswith("-") and _token_matches(tok, pattern) for tok in argv):
            return pattern
    return None


def start_time_matches(info: ProcInfo, expected: float | None) -> bool:
    return expected is None or abs(info.create_time - expected) <= START_TIME_SLACK_S
