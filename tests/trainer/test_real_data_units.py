"""Issue 23's rules one by one: the drop limit, the model's positions, kept checkpoints, `queue retry`'s refusals."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from healthkit.contract.modelinfo import model_positions, seq_length_problem
from healthkit.contract.retry_checkpoints import failed_folder, kept_for, retry_point
from healthkit.trainer import checkpoints as ck
from healthkit.trainer import queue as q
from healthkit.trainer.data import MAX_DROPPED_SHARE, Dropped, scan_examples
from healthkit.trainer.layout import Layout


def test_the_drop_limit_fails_a_file_only_past_its_share_or_with_nothing_left() -> None:
    assert MAX_DROPPED_SHARE == 0.10
    assert Dropped([3] * 10, 100, 64).failure("f", 90) is None  # exactly 10%: trains on the rest
    why = Dropped([3] * 11, 100, 64).failure("f", 89)
    assert why and "too many lines too long: 11 of 100 line(s) (11.0%)" in why
    assert "nothing trainable is left" in (Dropped([1, 2], 2, 64).failure("f", 0) or "")
    rec = Dropped(list(range(30, 0, -1)), 600, 48).record()
    assert rec["count"] == 30 and rec["first_lines"] == list(range(1, 21)) and rec["share"] == 0.05


def test_scan_examples_reports_every_bad_line_and_keeps_the_good(tmp_path: Path) -> None:
    p = tmp_path / "f.jsonl"
    good = {"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]}
    p.write_text("\n".join([json.dumps(good), "{oops", "", json.dumps(good), '{"messages": []}']) + "\n")
    fmt, examples, bad = scan_examples(p)
    assert fmt == "chat" and [n for n, _ in examples] == [1, 4]
    assert [n for n, _ in bad] == [2, 5] and "invalid JSON" in bad[0][1]


@pytest.mark.parametrize(
    "config, expected",
    [
        ({"n_positions": 64, "n_ctx": 64}, (64, "n_positions")),
        ({"max_position_embeddings": 4096}, (4096, "max_position_embeddings")),
        ({"text_config": {"max_position_embeddings": 8192}}, (8192, "text_config.max_position_embeddings")),
        ({"hidden_size": 8}, None),
        ({"n_positions": True}, None),
    ],
)
def test_model_positions_from_config_json(tmp_path: Path, config: dict, expected) -> None:
    (tmp_path / "config.json").write_text(json.dumps(config))
    assert model_positions(tmp_path) == expected


def test_seq_length_problem_names_both_numbers(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text('{"n_positions": 64}')
    assert seq_length_problem(64, tmp_path) is None
    why = seq_length_problem(128, tmp_path) or ""
    assert "max_seq_length=128 is more than the base model's 64 positions (n_positions" in why
    assert seq_length_problem(128, tmp_path / "missing") is None  # cannot be told: not refused here


def _ckpt(folder: Path, step: int, owner: str, complete: bool = True) -> Path:
    p = folder / f"checkpoint-{step}"
    p.mkdir(parents=True)
    files = ["model.safetensors", "optimizer.pt", "scheduler.pt"] if complete else ["model.safetensors"]
    for name in files:
        (p / name).write_bytes(b"x" * 16)
    (p / "trainer_state.json").write_text(json.dumps({"global_step": step, "log_history": []}, indent=2) + "\n")
    ck.mark(p, owner, step)
    return p


def test_a_failed_files_checkpoints_move_aside_and_come_back_for_its_retry(lay: Layout) -> None:
    _ckpt(lay.checkpoints, 50, "a.jsonl")
    _ckpt(lay.checkpoints, 100, "a.jsonl")
    _ckpt(lay.checkpoints, 106, "a.jsonl", complete=False)
    (lay.processing / "a.jsonl").write_text('{"text": "x"}\n')
    q.finish_failed(lay, lay.processing / "a.jsonl", "crashed 3 times")
    assert retry_point(lay.checkpoints, "a.jsonl")[0] == 100  # type: ignore[index]
    plan = ck.plan_prepare(lay, "b.jsonl")
    assert not plan.delete and [p.name for p, _ in plan.keep_failed] == [
        "checkpoint-50",
        "checkpoint-100",
        "checkpoint-106",
    ]
    ck.prepare(lay, "b.jsonl")
    kept = failed_folder(lay.checkpoints, "a.jsonl")
    assert sorted(p.name for p in kept.iterdir()) == ["checkpoint-100", "checkpoint-106", "checkpoint-50"]
    assert [s for s, _ in kept_for(lay.checkpoints, "a.jsonl")] == [50, 100, 106]
    assert retry_point(lay.checkpoints, "a.jsonl")[0] == 100  # type: ignore[index]

    dest = q.retry(lay, "a.jsonl")
    assert dest == lay.inbox / "a.jsonl" and not (lay.failed / "a.jsonl.error.json").exists()
    resume, done = ck.prepare(lay, "a.jsonl")
    assert resume == lay.checkpoints / "checkpoint-100" and not kept.exists()
    assert [d.split(" ")[0] for d in done].count("restored") == 2
    assert "deleted checkpoint-106" in " ".join(done)  # the cut-short save newer than the resume point, as before


def test_queue_retry_refuses_what_it_cannot_move_back(lay: Layout) -> None:
    with pytest.raises(q.RetryError, match="not in"):
        q.retry(lay, "nope.jsonl")
    (lay.failed / "a.jsonl").write_text('{"text": "x"}\n')
    (lay.inbox / "a.jsonl").write_text('{"text": "y"}\n')
    with pytest.raises(q.RetryError, match="already queued"):
        q.retry(lay, "a.jsonl")
    assert (lay.failed / "a.jsonl").exists()


def test_an_incomplete_checkpoint_is_set_aside_before_a_save(lay: Layout) -> None:
    _ckpt(lay.checkpoints, 5, "a.jsonl")
    _ckpt(lay.checkpoints, 10, "a.jsonl", complete=False)
    aside = ck.set_aside_incomplete(lay, "a.jsonl")
    assert aside is not None and (aside / "checkpoint-10").is_dir() and (lay.checkpoints / "checkpoint-5").is_dir()
    assert ck.set_aside_incomplete(lay, "a.jsonl") is None


def test_deleting_a_failed_files_kept_checkpoints_is_unsafe_and_says_the_steps(tmp_path: Path) -> None:
    import subprocess
    import sys

    from healthkit.trainer.scaffold import init_workspace

    base = tmp_path / "ws"
    init_workspace(base, base_model="models/base", monitor_port=None)
    lay = Layout.of(base)
    for step in (10, 20):
        _ckpt(lay.checkpoints, step, "a.jsonl")
    (lay.processing / "a.jsonl").write_text('{"text": "x"}\n')
    q.finish_failed(lay, lay.processing / "a.jsonl", "killed by signal SIGKILL")
    ck.prepare(lay, "b.jsonl")  # another file takes current_model/: a's checkpoints are kept aside

    def hk(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "healthkit.cli", *args],
            capture_output=True,
            text=True,
            timeout=120,
            stdin=subprocess.DEVNULL,
        )

    safe = hk("fix", str(base), "--safe", "--only", "queue.failed")
    assert (lay.checkpoints / ".failed-a.jsonl" / "checkpoint-20").is_dir(), (
        safe.stdout + safe.stderr
    )  # never by --safe
    dry = hk("fix", str(base), "--unsafe", "--dry-run", "--only", "queue.failed")
    assert "throws away 20 trained step(s) of a.jsonl" in dry.stdout, dry.stdout + dry.stderr
    assert "delete current_model/.failed-a.jsonl/checkpoint-10/" in dry.stdout
    done = hk("fix", str(base), "--unsafe", "--yes", "--only", "queue.failed")
    assert not (lay.checkpoints / ".failed-a.jsonl").exists(), done.stdout + done.stderr
    assert (
        retry_point(lay.checkpoints, "a.jsonl") is None and (lay.failed / "a.jsonl").exists()
    )  # the file itself stays


def test_queue_retry_rechecks_the_file_as_queue_add_does_and_names_the_workspace(tmp_path: Path) -> None:
    """Issue 31 item 9: a file that would fail on the same bad lines stays in failed/ (65) unless --force; the advice
    printed names the workspace by its path, quoted for a shell (never `.`)."""
    import shlex
    import subprocess
    import sys

    base = tmp_path / "my ws"
    from healthkit.trainer.scaffold import init_workspace

    init_workspace(base, base_model="models/base", monitor_port=None)
    lay = Layout.of(base)
    bad = "\n".join(['{"text": "fine"}'] + ["not json"] * 9) + "\n"
    (lay.failed / "a.jsonl").write_text(bad)

    def retry(*extra: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "healthkit.cli", "queue", "retry", str(base), "a.jsonl", *extra],
            capture_output=True,
            text=True,
            timeout=60,
            cwd=tmp_path,
        )

    r = retry()
    assert r.returncode == 65, (r.stdout, r.stderr)
    assert (
        "would fail a.jsonl again" in r.stderr
        and (lay.failed / "a.jsonl").exists()
        and not (lay.inbox / "a.jsonl").exists()
    )
    assert shlex.quote(str(base)) in r.stderr  # the --force command to paste
    r = retry("--force")
    assert r.returncode == 0 and (lay.inbox / "a.jsonl").exists(), (r.stdout, r.stderr)
    assert "WARNING: retried with --force" in r.stderr
    assert f"`healthkit daemon start {shlex.quote(str(base))}` trains it" in r.stdout, r.stdout
