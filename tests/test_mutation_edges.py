"""The edges that `make mutants` found unguarded after tests/test_mutation_rules.py: each test here failed on a
surviving mutant of process identity, the fix's file operations or checkpoint completeness.

Where the kernel will not produce a case for root (EPERM, a process that vanishes between two calls, a swap
between a rename and the next stat), the boundary call is replaced for that test alone and the rule's answer
is checked; everything else uses real files and real processes.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from healthkit.fix import fileops
from healthkit.fix.fileops import (
    TMP_MARK,
    TRASH_PREFIX,
    ChangedSincePlan,
    FileFingerprint,
    Refused,
    delete_dir,
    replace_file,
    tree_fingerprint,
    unlink_file,
)
from healthkit.formats import hf_checkpoints as ck
from healthkit.system import procs
from healthkit.system.fsutil import ReadProblem
from healthkit.system.procs import PidFile, argv_matches, probe, read_pid_file

from .conftest import make_checkpoint

# PID files: the whole record, for every way a file can be wrong ------------------------------------------


@pytest.mark.parametrize(
    "content, reason, preview",
    [
        (b"", "it is empty", ""),
        (b" \t\n", "it is empty", " ?"),  # blanks shown, a control character masked
        (b"1 2 3\n", "it holds more than a PID", "1 2 3"),
        (b"12X\n", "it does not hold a number", "12X"),
        (b"1_000\n", "it does not hold a number", "1_000"),
        (b"+5\n", "it does not hold a number", "+5"),
        (b"--5\n", "it does not hold a number", "--5"),
        (b"-\n", "it does not hold a number", "-"),
        (b"0\n", "0 is not a valid PID", "0"),
        (b"99999999999\n", "99999999999 is larger than this system's pid_max", "99999999999"),
        (b"123 soon  \n", "its second field is not a start time", "123 soon  "),  # trailing blanks shown as written
    ],
)
def test_a_malformed_pid_file_is_reported_whole(tmp_path, content, reason, preview):
    p = tmp_path / "d.pid"
    p.write_bytes(content)
    assert read_pid_file(p) == PidFile(p, "malformed", reason=reason, mtime=os.lstat(p).st_mtime, preview=preview)


def test_a_good_and_a_missing_pid_file_are_reported_whole(tmp_path):
    p = tmp_path / "d.pid"
    assert read_pid_file(p) == PidFile(p, "missing")
    p.write_bytes(b"4242 1700000000.5\n")
    assert read_pid_file(p) == PidFile(
        p, "ok", pid=4242, start_time=1700000000.5, mtime=os.lstat(p).st_mtime, preview="4242 1700000000.5"
    )


def test_a_pid_file_that_cannot_be_stat_ed_or_is_a_folder(tmp_path):
    (tmp_path / "afile").write_text("x")
    p = tmp_path / "afile" / "d.pid"  # a path through a regular file: ENOTDIR, not "missing"
    assert read_pid_file(p) == PidFile(p, "malformed", reason="cannot stat it: Not a directory")
    d = tmp_path / "dir.pid"
    d.mkdir()
    assert read_pid_file(d) == PidFile(d, "malformed", reason="it is a directory", mtime=os.lstat(d).st_mtime)


def test_a_pid_file_is_read_up_to_4096_bytes_and_no_further(tmp_path):
    p = tmp_path / "d.pid"
    p.write_bytes(b"4242" + b" " * 4092)  # exactly 4096 bytes: read
    assert read_pid_file(p).pid == 4242
    p.write_bytes(b"4242" + b" " * 4093)
    assert read_pid_file(p).reason == "it is 4097 bytes, far too large for a PID file"


@pytest.mark.parametrize(
    "kind, message, reason",
    [
        ("permission", "x is not readable (permission denied)", "it is not readable (permission denied)"),
        (
            "io",
            "x could not be read: Input/output error",
            "x could not be read: Input/output error",
        ),  # no wording of ours
    ],
)
def test_a_pid_file_the_kernel_will_not_hand_over(tmp_path, monkeypatch, kind, message, reason):
    """Root reads any file, so the refusals are raised at the read; the reason must still say what happened."""
    p = tmp_path / "d.pid"
    p.write_text("1\n")

    def refuse(path, **_kw):
        raise ReadProblem(kind, path, message)

    monkeypatch.setattr(procs, "read_bytes", refuse)
    assert read_pid_file(p) == PidFile(p, "malformed", reason=reason, mtime=os.lstat(p).st_mtime)


# probing a PID ----------------------------------------------------------------------------------------


def test_pid_1_is_alive():
    """In a container the daemon is often PID 1: probing it must never call it dead."""
    assert probe(1).alive


def test_probing_a_process_sends_it_no_signal(tmp_path):
    code = (
        "import signal, sys, time\n"
        "def on(n, _f):\n"
        "    print(signal.Signals(n).name, flush=True)\n"
        "for s in (signal.SIGHUP, signal.SIGUSR1, signal.SIGTERM, signal.SIGINT):\n"
        "    signal.signal(s, on)\n"
        "print('ready', flush=True)\n"
        "while True: time.sleep(0.05)\n"
    )
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "ready"
        assert probe(child.pid).state == "alive"
        os.kill(child.pid, signal.SIGUSR1)  # the positive signal: anything the probe sent arrives before it
        lines: list[str] = []
        while not lines or lines[-1] not in ("SIGUSR1", ""):  # "": the child is gone
            lines.append(child.stdout.readline().strip())
        assert lines == ["SIGUSR1"], lines
    finally:
        child.kill()
        child.wait()


def test_a_process_that_vanishes_between_kill_and_psutil_is_dead(monkeypatch):
    def gone(pid):
        raise psutil.NoSuchProcess(pid)

    monkeypatch.setattr(procs.psutil, "Process", gone)
    assert probe(os.getpid()) == procs.Liveness("dead")


def test_someone_elses_process_is_alive_even_when_it_cannot_be_read(monkeypatch):
    """EPERM from kill(0) and AccessDenied from psutil: another user's process, alive, and never ours to start beside."""

    def eperm(pid, sig):
        raise PermissionError(1, "Operation not permitted")

    def denied(pid):
        raise psutil.AccessDenied(pid)

    monkeypatch.setattr(procs.os, "kill", eperm)
    monkeypatch.setattr(procs.psutil, "Process", denied)
    got = probe(os.getpid())
    assert got == procs.Liveness("alive-eperm") and got.alive


# argv identity ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "argv, patterns, want",
    [
        (
            ["python", "other.py", "--script=/x/train.py"],
            ["train.py"],
            None,
        ),  # an option naming the file is not running it
        (["python", "--log", "-/train.py"], ["train.py"], None),
        (
            ["python", "-m", "healthkit.trainer.daemon"],
            ["torchrun train.py", "healthkit.trainer.daemon"],
            "healthkit.trainer.daemon",
        ),  # a multi-word pattern that fails does not end the search
    ],
)
def test_argv_edges(argv, patterns, want):
    assert argv_matches(argv, patterns) == want


# the fix's file operations ---------------------------------------------------------------------------------


class Stop(Exception):
    """Stands for the SIGKILL that `HEALTHKIT_FIX_CRASH_AT` sends: the operation ends at that point."""


def _stop_at(monkeypatch, point: str) -> list[str]:
    passed: list[str] = []

    def crash_point(name: str) -> None:
        passed.append(name)
        if name == point:
            raise Stop(name)

    monkeypatch.setattr(fileops, "crash_point", crash_point)
    return passed


def _doc(tmp_path) -> tuple[Path, Path, str]:
    base = tmp_path / "ws"
    base.mkdir()
    doc = base / "README.md"
    doc.write_bytes(b"old\n")
    return base, doc, hashlib.sha256(b"old\n").hexdigest()


@pytest.mark.parametrize(
    "point, doc_bytes, backup, temp",
    [
        ("edit:backup-written", b"old\n", True, False),
        ("edit:before-replace", b"old\n", True, True),  # the temp is left for stale_temp_files to clear
        ("edit:after-replace", b"new\n", True, False),
    ],
)
def test_an_edit_stopped_at_each_crash_point_leaves_the_file_whole(
    tmp_path, monkeypatch, point, doc_bytes, backup, temp
):
    base, doc, sha = _doc(tmp_path)
    _stop_at(monkeypatch, point)
    with pytest.raises(Stop):
        replace_file(base, doc, b"new\n", sha, "S")
    assert doc.read_bytes() == doc_bytes
    assert (base / "README.md.bak-S").exists() is backup and (
        not backup or (base / "README.md.bak-S").read_bytes() == b"old\n"
    )
    assert bool(list(base.glob(f"*{TMP_MARK}*"))) is temp


def test_an_edit_sees_a_write_that_lands_while_it_runs_and_keeps_it(tmp_path, monkeypatch):
    base, doc, sha = _doc(tmp_path)

    def someone_writes(name: str) -> None:
        if name == "edit:before-replace":
            doc.write_bytes(b"written meanwhile\n")

    monkeypatch.setattr(fileops, "crash_point", someone_writes)
    with pytest.raises(ChangedSincePlan, match="README.md changed while the fix ran"):
        replace_file(base, doc, b"new\n", sha, "S")
    assert doc.read_bytes() == b"written meanwhile\n" and (base / "README.md.bak-S").read_bytes() == b"old\n"
    assert not list(base.glob(f"*{TMP_MARK}*"))  # our temp is gone, theirs is kept


def _ckpt(tmp_path) -> tuple[Path, Path]:
    base = tmp_path / "ws"
    d = base / "current_model" / "checkpoint-1"
    (d / "sub").mkdir(parents=True)
    (d / "w").write_bytes(b"x" * 10)
    (d / "sub" / "b").write_bytes(b"y" * 5)
    return base, d


@pytest.mark.parametrize(
    "point, left",
    [
        ("prune:after-rename", "trash"),  # whole, under the trash name that finish_interrupted completes
        ("prune:after-delete", "nothing"),
    ],
)
def test_a_delete_stopped_at_each_crash_point(tmp_path, monkeypatch, point, left):
    base, d = _ckpt(tmp_path)
    passed = _stop_at(monkeypatch, point)
    with pytest.raises(Stop):
        delete_dir(base, d, tree_fingerprint(d), "t")
    trash = d.parent / f"{TRASH_PREFIX}checkpoint-1-t"
    assert not d.exists() and passed[-1] == point
    if left == "trash":
        assert (trash / "w").read_bytes() == b"x" * 10 and (trash / "sub" / "b").read_bytes() == b"y" * 5
    else:
        assert list(d.parent.iterdir()) == []


def _swap_after_rename(monkeypatch, d: Path, make: str) -> Path:
    """Replace the trash folder between delete_dir's rename and its check (at the fsync between them)."""
    trash = d.parent / f"{TRASH_PREFIX}{d.name}-t"
    moved = d.parent.parent / "moved-away"
    real = fileops.fsync_dir

    def swap(fd):
        real(fd)
        if trash.is_dir() and not trash.is_symlink() and not moved.exists():
            os.rename(trash, moved)
            if make == "folder":
                (trash / "theirs").mkdir(parents=True)
                (trash / "theirs" / "keep").write_text("keep")
            else:  # a symlink to the very folder that was planned, moved away
                trash.symlink_to(moved)

    monkeypatch.setattr(fileops, "fsync_dir", swap)
    return moved


@pytest.mark.parametrize("make", ["folder", "symlink"])
def test_a_folder_swapped_in_after_the_rename_is_put_back_untouched(tmp_path, monkeypatch, make):
    base, d = _ckpt(tmp_path)
    moved = _swap_after_rename(monkeypatch, d, make)
    with pytest.raises(ChangedSincePlan, match="checkpoint-1 was replaced while the fix ran"):
        delete_dir(base, d, tree_fingerprint(d), "t")
    assert not list(d.parent.glob(f"{TRASH_PREFIX}*"))  # what was swapped in is back under its own name
    if make == "folder":
        assert (d / "theirs" / "keep").read_text() == "keep"
    else:
        assert d.is_symlink() and os.readlink(d) == str(moved)
    assert (moved / "w").read_bytes() == b"x" * 10  # and nothing was deleted anywhere


def test_a_symlink_to_a_folder_is_refused_as_a_symlink(tmp_path):
    base = tmp_path / "ws"
    (base / "current_model").mkdir(parents=True)
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "w").write_text("w")
    link = base / "current_model" / "checkpoint-3"
    link.symlink_to(outside, target_is_directory=True)
    with pytest.raises(Refused, match="checkpoint-3 is a symbolic link; its target is never deleted"):
        delete_dir(base, link, None, "t")
    assert (outside / "w").read_text() == "w" and link.is_symlink()


def test_a_replaced_symlink_is_not_unlinked(tmp_path):
    base = tmp_path / "ws"
    base.mkdir()
    link = base / "l"
    link.symlink_to(tmp_path / "a")
    planned = FileFingerprint(os.lstat(link).st_ino, 0, 0, "")
    (base / "l.new").symlink_to(tmp_path / "b")  # made while the old one exists: another inode
    os.replace(base / "l.new", link)
    with pytest.raises(ChangedSincePlan, match="^l changed since the plan was made$"):
        unlink_file(base, link, planned)
    assert link.is_symlink()


def test_a_folder_opened_for_a_fix_must_be_a_folder_inside_the_workspace(tmp_path):
    base = tmp_path / "ws"
    base.mkdir()
    (base / "f").write_text("f")
    with pytest.raises(NotADirectoryError):
        fileops._open_dir(base / "f", base)
    outside = tmp_path / "outside"
    outside.mkdir()
    (base / "swapped").symlink_to(outside)  # what a swap after resolve() looks like when the folder is opened
    fds = set(os.listdir("/proc/self/fd"))
    with pytest.raises(Refused, match=f"^{re.escape(str(base / 'swapped'))} moved out of the workspace$"):
        fileops._open_dir(base / "swapped", base)
    assert set(os.listdir("/proc/self/fd")) <= fds  # the refused folder's fd is closed


def test_a_folder_swapped_between_its_open_and_the_check_is_refused(tmp_path, monkeypatch):
    """The race /proc/self/fd exists for: a symlink out when the folder is opened, a real folder again by the check."""
    base = tmp_path / "ws"
    base.mkdir()
    outside = tmp_path / "outside"
    outside.mkdir()
    d = base / "d"
    d.symlink_to(outside)
    real_open = os.open

    def open_then_swap_back(path, flags, *args, **kwargs):
        fd = real_open(path, flags, *args, **kwargs)
        if str(path) == str(d) and d.is_symlink():
            d.unlink()
            d.mkdir()
        return fd

    monkeypatch.setattr(fileops.os, "open", open_then_swap_back)
    with pytest.raises(Refused, match="moved out of the workspace"):
        fileops._open_dir(d, base)


# checkpoint completeness ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "content, problem",
    [
        (b"", "trainer_state.json is empty"),
        (b"[]", "trainer_state.json is not a JSON object"),
        (b'{"global_step": ', "trainer_state.json is unreadable (Expecting value)"),
        (b'{"global_step": "\xff"}', "trainer_state.json is unreadable (not UTF-8 JSON)"),
    ],
)
def test_a_state_file_problem_is_named_exactly(tmp_path, content, problem):
    p = tmp_path / "trainer_state.json"
    p.write_bytes(content)
    assert ck.read_state(p) == ck.StateRead(None, problem)


def test_a_state_file_that_cannot_be_opened(tmp_path):
    (tmp_path / "trainer_state.json").mkdir()
    assert ck.read_state(tmp_path / "trainer_state.json") == ck.StateRead(
        None, "trainer_state.json cannot be read (Is a directory)"
    )


def test_completeness_of_a_folder_that_cannot_be_listed(tmp_path):
    assert ck.checkpoint_completeness(tmp_path / "gone") == ck.Completeness(
        None, ("its folder cannot be listed (No such file or directory)",)
    )


def test_completeness_carries_the_state_problem_apart_from_the_weights(tmp_path):
    d = make_checkpoint(tmp_path, 10)
    (d / "trainer_state.json").write_text('{\n  "global_step": 10,\n  "log_history": [')
    got = ck.checkpoint_completeness(d)
    assert got.state_problem == got.missing[0] == "trainer_state.json is unreadable (Expecting value)"
    assert not got.state_ok and not got.complete


def test_weight_problems_are_named(tmp_path):
    d = make_checkpoint(tmp_path, 10)
    (d / "model.safetensors").unlink()
    (d / "adapter_model.safetensors").write_bytes(b"a" * 64)
    (d / "model.safetensors").symlink_to(tmp_path / "nowhere")  # listed, but cannot be stat-ed
    assert ck.checkpoint_completeness(d).missing == (
        "adapter_config.json is missing (the adapter's weights cannot be loaded without it)",
        "model.safetensors cannot be read (No such file or directory)",
    )


def test_a_shard_name_outside_ascii_is_read_as_utf8(tmp_path):
    """JSON is UTF-8 (RFC 8259): the index is read as bytes, so the locale's encoding plays no part."""
    d = make_checkpoint(tmp_path, 10)
    (d / "model.safetensors").unlink()
    shard = "model-ünï-00001.safetensors"
    (d / "model.safetensors.index.json").write_bytes(
        json.dumps({"weight_map": {"a": shard}}, ensure_ascii=False).encode()
    )
    assert ck.checkpoint_completeness(d).missing == ("1 of 1 weight shards are missing (model-ünï-00001.safetensors)",)
    (d / shard).write_bytes(b"w" * 64)
    assert ck.checkpoint_completeness(d).complete
    index = d / "model.safetensors.index.json"
    index.write_bytes(b"\xef\xbb\xbf" + index.read_bytes())  # a byte-order mark, as some Windows editors write
    assert ck.checkpoint_completeness(d).complete


@pytest.mark.parametrize(
    "size, problem",
    [
        (ck.WHOLE_BELOW, "trainer_state.json is unreadable ("),  # small enough: parsed whole
        (ck.WHOLE_BELOW + 1, f"trainer_state.json is cut off (it does not end in `}}`: {ck.WHOLE_BELOW + 1} bytes)"),
    ],
)
def test_a_cut_state_file_is_parsed_whole_up_to_the_bound_and_judged_by_its_tail_above_it(tmp_path, size, problem):
    entries = ",\n".join(f'    {{\n      "loss": 1.0,\n      "step": {i}\n    }}' for i in range(4000))
    text = '{\n  "global_step": 4000,\n  "log_history": [\n' + entries + "\n  ]\n}\n"
    p = tmp_path / "trainer_state.json"
    p.write_bytes(text.encode()[:size])
    got = ck.read_state(p)
    assert got.global_step is None and got.problem.startswith(problem), got
