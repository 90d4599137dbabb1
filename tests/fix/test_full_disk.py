"""`fix` on a full disk: a real tmpfs filled to the last byte; the lock, the trash deletions and the journal need no space.

Plus the same boundaries with ENOSPC faked (no mount needed): the lock's PID write and the
journal's appends.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from healthkit.demo import build_example
from healthkit.fix import journal as journal_mod
from healthkit.fix.fileops import TRASH_PREFIX
from healthkit.fix.journal import Journal, interrupted, read_journal
from healthkit.fix.lock import FixLock, LockBusy

from ..tmpfs import fill, free, mounted_tmpfs
from .conftest import cli, kill_tree_processes, set_checkpoint_mtimes_past, set_config

KEPT = {"checkpoint-1000", "checkpoint-1100", "checkpoint-1200"}


@pytest.fixture
def full_example(tmp_path: Path):
    """Factory: the example machine (12 checkpoints, ``save_total_limit`` as given) on a tmpfs filled to ENOSPC."""
    with mounted_tmpfs(tmp_path / "small", 8 * 1024 * 1024, kill=kill_tree_processes) as where:

        def make(limit: int | None = 3) -> Path:
            base = where / "training"
            build_example(base, checkpoints=12, ckpt_bytes=96 * 1024, start_processes=False)
            set_config(base, save_total_limit=limit)
            set_checkpoint_mtimes_past(base)
            fill(where)
            assert free(where) < 4096
            return base

        yield make


def checkpoints(base: Path) -> set[str]:
    return {p.name for p in (base / "current_model").iterdir()}


def assert_journal_complete(base: Path, deleted: int) -> None:
    entries = read_journal(base / "logs/healthkit-fix.jsonl")
    assert interrupted(entries) == [], entries
    applied = [e for e in entries if e.get("fix") in ("prune-checkpoints", "recover") and e.get("result") == "applied"]
    assert len(applied) >= deleted, entries


def test_safe_fix_under_a_declared_limit_frees_space_on_a_full_disk(full_example) -> None:
    base = full_example()
    before = free(base)
    r = cli(base, "--safe", "--only", "checkpoints")
    assert "Traceback" not in r.stdout + r.stderr and r.returncode in (0, 2), r.stdout + r.stderr
    assert checkpoints(base) == KEPT, r.stdout
    assert free(base) > before + 8 * 96 * 1024
    assert_journal_complete(base, deleted=9)
    # The journal now owns room beyond its end: the next run can journal on a full disk without waiting for space.
    st = os.stat(base / "logs/healthkit-fix.jsonl")
    assert st.st_blocks * 512 >= st.st_size + journal_mod.PREALLOCATE_BYTES


def test_unsafe_keep_frees_space_on_a_full_disk(full_example) -> None:
    base = full_example(limit=None)  # no declared limit: --keep chooses one
    r = cli(base, "--unsafe", "--keep", "2", "--yes", "--only", "checkpoints")
    assert "Traceback" not in r.stdout + r.stderr, r.stdout + r.stderr
    assert len(checkpoints(base)) == 2 and free(base) > 9 * 96 * 1024, r.stdout
    assert_journal_complete(base, deleted=10)


def test_a_run_killed_halfway_on_a_full_disk_leaves_what_the_next_run_finishes(full_example) -> None:
    base = full_example()
    r = cli(base, "--safe", "--only", "checkpoints", env={"HEALTHKIT_FIX_CRASH_AT": "prune:after-rename"})
    assert r.returncode == -9, r.stdout + r.stderr
    assert [p.name for p in (base / "current_model").iterdir() if p.name.startswith(TRASH_PREFIX)]
    r2 = cli(base, "--safe", "--only", "checkpoints")
    assert "Traceback" not in r2.stdout + r2.stderr, r2.stdout + r2.stderr
    assert "finished the interrupted deletion" in r2.stdout, r2.stdout
    assert checkpoints(base) == KEPT
    assert_journal_complete(base, deleted=9)


def test_a_preallocated_journal_takes_entries_on_a_full_disk(tmp_path: Path) -> None:
    with mounted_tmpfs(tmp_path / "small", 1024 * 1024) as where:
        j = Journal(where / "logs" / "journal.jsonl")
        j.append(run="r0", result="applied")
        assert j.preallocate()
        fill(where)
        for i in range(100):
            j.append(
                run="r1",
                fix="prune-checkpoints",
                target=f"current_model/checkpoint-{i}",
                result="applied",
                pad="x" * 200,
            )
        assert j.unwritten == [] and len(read_journal(j.path)) == 101


# Faked ENOSPC at the boundary ------------------------------------------------------------------------------------


def _no_space(*_a: object, **_k: object) -> int:
    raise OSError(errno.ENOSPC, "No space left on device")


def test_the_lock_needs_no_block_its_pid_is_written_when_space_allows(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(os, "pwrite", _no_space)
    lock = FixLock(tmp_path).acquire()
    assert lock.fd is not None and not lock.pid_written
    # held all the same: the flock needs no space; its holder is told by the kernel's record (/proc/locks)
    with pytest.raises(LockBusy, match=rf"\(PID {os.getpid()}\b"):
        FixLock(tmp_path).acquire()
    monkeypatch.undo()
    assert lock.write_pid() and (tmp_path / ".healthkit-fix.lock").read_text().split()[0] == str(os.getpid())
    lock.release()


def test_journal_lines_a_full_disk_refuses_are_kept_and_written_in_order(tmp_path: Path, monkeypatch) -> None:
    j = Journal(tmp_path / "j.jsonl")
    j.append(n=0)
    real_write = os.write
    monkeypatch.setattr(os, "write", _no_space)
    j.append(n=1)
    j.append(n=2)
    assert [e["n"] for e in read_journal(j.path)] == [0] and len(j.unwritten) == 2
    monkeypatch.setattr(os, "write", real_write)
    j.append(n=3)
    assert [e["n"] for e in read_journal(j.path)] == [0, 1, 2, 3] and j.unwritten == []


def test_a_short_write_leaves_no_torn_line(tmp_path: Path, monkeypatch) -> None:
    j = Journal(tmp_path / "j.jsonl")
    j.append(n=0)
    real_write = os.write
    monkeypatch.setattr(os, "write", lambda fd, data: real_write(fd, data[:7]))
    j.append(n=1)
    assert j.path.read_bytes().count(b"\n") == 1 and len(j.unwritten) == 1
    monkeypatch.setattr(os, "write", real_write)
    assert j.flush() and [e["n"] for e in read_journal(j.path)] == [0, 1]


def test_other_journal_errors_still_raise(tmp_path: Path, monkeypatch) -> None:
    def eio(*_a: object) -> int:
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(os, "write", eio)
    with pytest.raises(OSError):
        Journal(tmp_path / "j.jsonl").append(n=1)
