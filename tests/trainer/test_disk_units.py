"""Disk full at the boundary, with ENOSPC faked: the writers of state and logs, the child's exit code, the daemon's wait."""

from __future__ import annotations

import errno
import io
import json
import logging
import os
from pathlib import Path
from types import SimpleNamespace

import pytest

from healthkit.trainer import commands, state, supervise, train_file
from healthkit.trainer import diskspace as ds
from healthkit.trainer.daemon import Daemon
from healthkit.trainer.layout import EXIT_DISK_FULL, Layout, TolerantFileHandler


def no_space(*_a: object, **_k: object) -> None:
    raise OSError(errno.ENOSPC, "No space left on device")


@pytest.fixture(autouse=True)
def nothing_pending():
    state._pending.clear()
    yield
    state._pending.clear()


@pytest.mark.parametrize(
    "exc, full",
    [
        (OSError(errno.ENOSPC, "No space left on device"), True),
        (OSError(errno.EDQUOT, "Disk quota exceeded"), True),
        (
            RuntimeError(
                "[enforce fail at inline_container.cc:664] . PytorchStreamWriter failed writing file data/3: file write failed"
            ),
            True,
        ),
        (
            Exception(
                'Error while serializing: IoError(Os { code: 28, kind: StorageFull, message: "No space left on device" })'
            ),
            True,
        ),
        (OSError(errno.EACCES, "Permission denied"), False),
        (ValueError("loss is nan"), False),
    ],
)
def test_what_counts_as_a_full_disk(exc: BaseException, full: bool) -> None:
    assert ds.is_no_space(exc) is full


def test_a_full_disk_hidden_behind_another_exception_is_found() -> None:
    try:
        try:
            raise OSError(errno.ENOSPC, "No space left on device")
        except OSError as inner:
            raise RuntimeError("save failed") from inner
    except RuntimeError as outer:
        assert ds.is_no_space(outer)


def test_the_child_exits_74_even_when_it_cannot_write_its_result(lay: Layout, monkeypatch) -> None:
    assert train_file._crashed(lay, "a.jsonl", "0", OSError(errno.ENOSPC, "No space left on device")) == EXIT_DISK_FULL
    assert json.loads(lay.last_result.read_text())["outcome"] == "disk-full"
    monkeypatch.setattr(train_file, "write_json", no_space)
    assert train_file._crashed(lay, "a.jsonl", "0", OSError(errno.ENOSPC, "x")) == EXIT_DISK_FULL
    monkeypatch.setattr(ds, "measure", lambda layout, model_dir=None: ds.Space(Path("/"), 10**9, 1))
    assert train_file._crashed(lay, "a.jsonl", "0", ValueError("boom")) == 1
    monkeypatch.setattr(ds, "measure", lambda layout, model_dir=None: ds.Space(Path("/"), 0, 1))
    assert train_file._crashed(lay, "a.jsonl", "0", RuntimeError("unexpected pos 125696 vs 125588")) == EXIT_DISK_FULL


def test_state_write_on_a_full_disk_keeps_the_last_good_state_and_retries(lay: Layout, monkeypatch) -> None:
    state.update_state(lay.daemon_state, state="running", pid=7)
    monkeypatch.setattr(state, "atomic_write", no_space)
    monkeypatch.setattr(state, "_rewrite_in_place", lambda path, data: False)  # no block of its own to spare either
    merged = state.update_state(lay.daemon_state, state="waiting", waiting_reason="disk full")  # no exception
    assert merged["state"] == "waiting" and merged["pid"] == 7
    assert state.read_state(lay.daemon_state)["state"] == "running"  # the last good state, whole
    state.update_state(lay.daemon_state, restarts=2)
    assert not state.flush_pending()
    monkeypatch.undo()
    assert state.flush_pending()
    on_disk = state.read_state(lay.daemon_state)
    assert (on_disk["state"], on_disk["waiting_reason"], on_disk["restarts"], on_disk["pid"]) == (
        "waiting",
        "disk full",
        2,
        7,
    )


def test_the_reserve_is_given_up_so_that_the_state_can_be_written(lay: Layout, monkeypatch) -> None:
    assert state.ensure_reserve(lay.status_dir)
    reserve = lay.status_dir / state.RESERVE_NAME
    assert reserve.stat().st_blocks * 512 >= state.RESERVE_BYTES
    real = state.atomic_write

    def full_while_reserved(path: Path, text: str, **kw: object) -> None:
        if reserve.exists():
            no_space()
        real(path, text, **kw)

    monkeypatch.setattr(state, "atomic_write", full_while_reserved)
    state.update_state(lay.daemon_state, state="waiting")
    assert not reserve.exists() and state.read_state(lay.daemon_state)["state"] == "waiting" and not state._pending


def test_status_writes_on_a_full_disk_are_kept_too(lay: Layout, monkeypatch) -> None:
    monkeypatch.setattr(state, "atomic_write", no_space)
    state.update_status(lay.status, state="paused", error="disk full")
    monkeypatch.undo()
    assert state.flush_pending() and json.loads(lay.status.read_text())["error"] == "disk full"


def test_a_log_line_that_finds_no_space_is_dropped_quietly_and_counted(tmp_path: Path, capsys) -> None:
    class FullDisk(io.StringIO):
        def write(self, s: str) -> int:
            no_space()
            return 0

    h = TolerantFileHandler(tmp_path / "daemon.log")
    h.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    real_open, full = h._open, [False]
    h._open = lambda: FullDisk() if full[0] else real_open()  # type: ignore[method-assign]
    rec = lambda msg: logging.makeLogRecord({"msg": msg, "levelno": logging.INFO, "levelname": "INFO"})  # noqa: E731
    h.emit(rec("before"))
    h.stream.close()
    h.stream = None  # type: ignore[assignment]
    full[0] = True
    h.emit(rec("lost one"))
    h.emit(rec("lost two"))
    assert h.lost == 2 and capsys.readouterr().err == ""
    full[0] = False
    h.emit(rec("after"))  # the file is opened again
    h.close()
    text = (tmp_path / "daemon.log").read_text()
    assert "before" in text and "after" in text and "2 log line(s) lost while the log could not be written" in text
    assert "lost one" not in text and h.lost == 0


def test_the_supervisor_records_why_it_gave_up_once_the_disk_lets_it(lay: Layout, monkeypatch) -> None:
    fails = iter([True, True, False, False, False])
    real = state.atomic_write

    def flaky(path: Path, text: str, **kw: object) -> None:
        if next(fails, False):
            no_space()
        real(path, text, **kw)

    monkeypatch.setattr(state, "atomic_write", flaky)
    monkeypatch.setattr(supervise.time, "sleep", lambda s: None)
    supervise.Supervisor(lay)._give_up("the daemon crashed 5 times in a row", restarts=5)
    st = state.read_state(lay.daemon_state)
    assert (
        st["state"] == "gave-up"
        and st["gave_up_reason"] == "the daemon crashed 5 times in a row"
        and st["restarts"] == 5
    )


def _daemon(lay: Layout) -> Daemon:
    d = Daemon(lay)
    d.cfg = SimpleNamespace(base_model="models/base")
    return d


def test_the_daemon_waits_for_room_then_resumes(lay: Layout, monkeypatch) -> None:
    space = {"free": 1000}
    monkeypatch.setattr(ds, "measure", lambda layout, model_dir=None: ds.Space(Path("/mnt"), space["free"], 5000))
    d = _daemon(lay)
    assert d._out_of_space(EXIT_DISK_FULL, None) and d._out_of_space(1, None)  # a crash with no room is a full disk too
    assert not d._room_for("a.jsonl")
    st = state.read_state(lay.daemon_state)
    assert (
        st["state"] == "waiting"
        and st["waiting_reason"] == "disk full: 1000 bytes free on /mnt, a checkpoint needs ~5000"
    )
    assert st["disk"] == {"mount": "/mnt", "free_bytes": 1000, "need_bytes": 5000} and st["waiting_file"] == "a.jsonl"
    assert d.disk_wait is not None
    d.disk_wait.next_at = 0
    d._check_disk()  # still full: the next look comes later
    assert d.disk_wait is not None and d.disk_wait.delay == 2 * ds.FIRST_CHECK_S
    space["free"] = 6000
    d.disk_wait.next_at = 0
    d._check_disk()
    st = state.read_state(lay.daemon_state)
    assert d.disk_wait is None and st["state"] == "running" and st["waiting_reason"] is None and st["disk"] is None
    assert not d._out_of_space(1, None)  # an ordinary crash, with room: counted as a failure as before


def test_status_says_what_the_daemon_waits_for(lay: Layout, capsys) -> None:
    state.update_state(
        lay.daemon_state,
        state="waiting",
        waiting_for="disk",
        waiting_file="a.jsonl",
        waiting_since="T",
        disk={"mount": "/mnt", "free_bytes": 1000, "need_bytes": 5000},
    )
    commands.status(lay.base)
    out = capsys.readouterr().out
    assert (
        "waiting for disk space since T: 1000 bytes free on /mnt, a checkpoint needs ~5000; 4000 more bytes needed"
        in out
    )


def test_checkpoint_size_is_the_largest_complete_one_or_three_times_the_weights(lay: Layout, tmp_path: Path) -> None:
    model = tmp_path / "model"
    model.mkdir()
    (model / "model.safetensors").write_bytes(b"w" * 10000)
    assert ds.checkpoint_bytes(lay, model) == 30000
    ck = lay.checkpoints / "checkpoint-5"
    ck.mkdir(parents=True)
    for name, size in (("model.safetensors", 10000), ("optimizer.pt", 20000), ("scheduler.pt", 100)):
        (ck / name).write_bytes(os.urandom(size))
    (ck / "trainer_state.json").write_text(json.dumps({"global_step": 5}))
    assert 30100 <= ds.checkpoint_bytes(lay, model) <= 30100 + 4 * 4096
    sp = ds.measure(lay, model)
    assert sp.need == ds.checkpoint_bytes(lay, model) + ds.MARGIN_BYTES and sp.free > 0


def test_with_no_reserve_left_the_state_is_rewritten_in_the_blocks_it_owns(lay: Layout, monkeypatch) -> None:
    state.update_state(lay.daemon_state, state="running", pid=7, warnings=["x" * 300])
    monkeypatch.setattr(state, "atomic_write", no_space)  # no reserve either
    state.update_state(lay.daemon_state, state="waiting", warnings=[])
    assert state.read_state(lay.daemon_state)["state"] == "waiting" and not state._pending
    state.update_state(lay.daemon_state, warnings=["y" * 8000])  # more than the file's blocks: kept for later
    assert state.read_state(lay.daemon_state)["warnings"] == [] and state._pending


def test_the_reserve_is_not_taken_back_from_a_nearly_full_disk(lay: Layout, monkeypatch) -> None:
    monkeypatch.setattr(
        state.os, "statvfs", lambda p: SimpleNamespace(f_bavail=state.RESERVE_BYTES // 4096, f_frsize=4096)
    )
    assert not state.ensure_reserve(lay.status_dir) and not (lay.status_dir / state.RESERVE_NAME).exists()


def test_the_child_removes_only_the_save_it_cut_short(lay: Layout) -> None:
    from healthkit.trainer import checkpoints as ck

    def make(step: int, complete: bool, owner: str | None) -> Path:
        d = lay.checkpoints / f"checkpoint-{step}"
        d.mkdir(parents=True)
        (d / "model.safetensors").write_bytes(b"w")
        if complete:
            for name in ("optimizer.pt", "scheduler.pt"):
                (d / name).write_bytes(b"x")
            (d / "trainer_state.json").write_text(json.dumps({"global_step": step}))
        if owner:
            ck.mark(d, owner, step)
        return d

    done = make(2, True, "a.jsonl")
    other = make(3, False, "b.jsonl")
    cut = make(4, False, None)
    train_file._drop_cut_short_save(lay, "a.jsonl")
    assert done.exists() and not cut.exists()
    assert other.exists()  # another file's: never ours to remove
