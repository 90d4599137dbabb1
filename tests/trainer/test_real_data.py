"""Issue 23 end to end: over-long lines dropped and counted, limits checked up front, progress never silently lost."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from healthkit.trainer.daemon import start_daemon, stop_daemon
from healthkit.trainer.layout import Layout
from healthkit.trainer.scaffold import config_doc
from healthkit.trainer.tiny import sample_chats, write_jsonl

from .conftest import REPO, all_logs, daemon_log, hk, read_json, wait_for
from .test_daemon_e2e import queue_drained

pytestmark = pytest.mark.slow

LONG_AT = [5, 77, 150, 233, 300, 421, 512, 599]  # line numbers of the 8 too-long conversations of 600


def long_chat(seed: int = 0) -> dict:
    """A conversation whose user turn alone is longer than max_seq_length=48: its assistant part is wholly cut off."""
    return {
        "messages": [
            {"role": "user", "content": " ".join(["checkpoint validation gradient"] * 30)},
            {"role": "assistant", "content": f"I will do that {seed}."},
        ]
    }


def chats_with_long(n: int, long_at: list[int], seed: int = 0) -> list[dict]:
    lines = sample_chats(n, seed=seed)
    for i in long_at:
        lines[i - 1] = long_chat(i)
    return lines


def enqueue(lay: Layout, name: str, lines: list) -> Path:
    """Queue ``lines`` as ``name`` the way `queue add` does (whole, by rename: the daemon never claims half a file)."""
    from healthkit.trainer import queue as q

    (lay.base / "data").mkdir(exist_ok=True)
    return q.add(lay, write_jsonl(lay.base / "data" / name, lines))


def audit_json(lay: Layout, *select: str) -> tuple[int, dict]:
    args = ["audit", str(lay.base), "--format", "json"] + [a for s in select for a in ("--select", s)]
    r = hk(*args)
    return r.returncode, json.loads(r.stdout)


def findings(rep: dict, code: str) -> list[dict]:
    return [f for f in rep["findings"] if f["code"] == code]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_600_conversations_8_too_long_train_on_the_rest_and_a_file_all_too_long_fails(make_ws) -> None:
    lay = make_ws(max_seq_length=48, max_steps=10, eval_steps=5, save_steps=5)
    enqueue(lay, "p1-all-long.jsonl", [long_chat(i) for i in range(12)])
    enqueue(lay, "chat600.jsonl", chats_with_long(600, LONG_AT))
    start_daemon(lay.base)
    wait_for(lambda: queue_drained(lay, 1, 1), 300, 0.2, "chat600 done, all-long failed\n" + all_logs(lay))

    err = read_json(lay.failed / "p1-all-long.jsonl.error.json")["error"]
    assert "nothing trainable is left: 12 of 12 line(s) (100.0%) too long for max_seq_length=48" in err, err

    record = read_json(lay.done / "chat600.jsonl.done.json")["dropped_lines"]
    assert (record["count"], record["total"], record["first_lines"]) == (8, 600, LONG_AT), record
    assert read_json(lay.status)["dropped_lines"]["first_lines"] == LONG_AT  # the status file says it too
    r = hk("daemon", "status", str(lay.base))
    assert "dropped: 8 of 600 line(s) too long for max_seq_length=48 (line(s) 5, 77, 150" in r.stdout, r.stdout
    said = (
        r"chat600.jsonl trained without 8 of its 600 line\(s\), too long for max_seq_length=48: line\(s\) 5, 77, 150, "
        r"233, 300, 421, 512, 599"
    )
    wait_for(
        lambda: re.search(said, daemon_log(lay)), 60, 0.1, "the daemon log to say what was dropped\n" + daemon_log(lay)
    )
    assert read_json(lay.models / "chat600" / "healthkit_final.json")["global_step"] == 10

    _, rep = audit_json(lay, "queue")
    (dropped,) = findings(rep, "queue.lines-dropped")
    assert dropped["severity"] == "info" and "8 of its 600 line(s) (1.3%)" in dropped["problem"][0], dropped
    assert "line(s) 5, 77, 150, 233, 300, 421, 512, 599" in dropped["problem"][0]
    (failed,) = findings(rep, "queue.failed")
    assert "nothing trainable is left" in failed["problem"][0]


def test_queue_add_checks_every_line_counts_refuses_and_force_queues(make_ws) -> None:
    lay = make_ws(max_seq_length=48)
    data = lay.base / "data"
    data.mkdir(exist_ok=True)
    lines = [json.dumps(c) for c in chats_with_long(40, [20, 21, 22])]
    lines[2] = '{"messages": oops}'
    lines[9] = json.dumps({"messages": [{"role": "user", "content": "hi"}, {"role": "bot", "content": "x"}]})
    (data / "mixed.jsonl").write_text("\n".join(lines) + "\n")
    r = hk("queue", "add", str(lay.base), str(data / "mixed.jsonl"))
    assert r.returncode == 65, (r.returncode, r.stdout, r.stderr)
    assert "mixed.jsonl: 40 line(s) of chat data: 2 bad, 38 good" in r.stdout, r.stdout
    assert "line 3: invalid JSON" in r.stdout and "line 10: message 1 has an unknown role 'bot'" in r.stdout
    assert "would be dropped: 3 of 38 line(s) (7.9%) too long for max_seq_length=48" in r.stdout
    assert "line(s) 20, 21, 22" in r.stdout
    assert "refused mixed.jsonl: the daemon would fail it: 2 bad line(s)" in r.stderr, r.stderr
    assert len([x for x in r.stderr.splitlines() if x.strip()]) == 1, r.stderr  # one clear reason
    assert not list(lay.inbox.iterdir())

    write_jsonl(data / "toolong.jsonl", chats_with_long(40, [1, 2, 3, 4, 5, 6, 7, 8]))
    r = hk("queue", "add", str(lay.base), str(data / "toolong.jsonl"))
    assert r.returncode == 65 and "8 of 40 line(s) (20.0%)" in r.stdout, (r.stdout, r.stderr)
    assert "too many lines too long" in r.stderr and not list(lay.inbox.iterdir())
    r = hk("queue", "add", str(lay.base), str(data / "toolong.jsonl"), "--force")
    assert r.returncode == 0 and "queued queue/inbox/toolong.jsonl" in r.stdout, (r.stdout, r.stderr)
    assert "WARNING: queued with --force although the daemon will fail it" in r.stderr

    write_jsonl(data / "fine.jsonl", chats_with_long(40, [17]))
    r = hk("queue", "add", str(lay.base), str(data / "fine.jsonl"))
    assert r.returncode == 0, (r.stdout, r.stderr)
    assert "1 of 40 line(s) (2.5%)" in r.stdout and "line(s) 17" in r.stdout and "would train on 39 line(s)" in r.stdout
    assert sorted(p.name for p in lay.inbox.iterdir()) == ["fine.jsonl", "toolong.jsonl"]


def test_max_seq_length_beyond_the_model_positions_is_refused_up_front_and_audited(make_ws) -> None:
    lay = make_ws(max_seq_length=128)  # the tiny model has 64 positions
    write_jsonl(lay.base / "data" / "c.jsonl", sample_chats(20))
    r = hk("daemon", "start", str(lay.base), timeout=180)
    assert r.returncode == 78, (r.returncode, r.stderr[-3000:])
    assert "max_seq_length=128 is more than the base model's 64 positions (n_positions" in r.stderr, r.stderr[-3000:]
    r = hk("queue", "add", str(lay.base), str(lay.base / "data" / "c.jsonl"))
    assert r.returncode == 78 and "max_seq_length=128" in r.stderr and "64 positions" in r.stderr, r.stderr
    assert not list(lay.inbox.iterdir())
    code, rep = audit_json(lay, "config")
    (f,) = findings(rep, "config.seq-longer-than-model")
    assert f["severity"] == "critical" and (f["data"]["max_seq_length"], f["data"]["positions"]) == (128, 64), f
    assert code == 2
    # The audit reads the model's config.json as JSON: no torch, no transformers.
    probe = (
        "import sys; from healthkit.core.api import audit; audit(sys.argv[1], select=['config'], record_costs=False); "
        "print(sorted(m for m in ('torch', 'transformers') if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe, str(lay.base)], capture_output=True, text=True, cwd=REPO, timeout=120
    )
    assert out.stdout.strip() == "[]", out.stdout + out.stderr[-2000:]


def _mine(lay: Layout, name: str) -> dict[str, int]:
    """checkpoint name -> inode, for every checkpoint of ``name`` (top level or kept in .failed-<name>/)."""
    from healthkit.contract.retry_checkpoints import kept_for

    return {p.name: p.stat().st_ino for _, p in kept_for(lay.checkpoints, name)}


def test_a_failed_files_checkpoints_are_kept_and_queue_retry_resumes_from_them(make_ws, monkeypatch) -> None:
    from healthkit.contract.retry_checkpoints import is_complete

    monkeypatch.setenv("HEALTHKIT_TRAINER_STEP_SLEEP_S", "0.1")
    lay = make_ws(max_steps=30, max_failures=1, max_seq_length=48)
    enqueue(lay, "a.jsonl", sample_chats(40, seed=1))
    start_daemon(lay.base)
    wait_for(
        lambda: (read_json(lay.status).get("step") or 0) >= 11 and (lay.checkpoints / "checkpoint-10").exists(),
        120,
        what="step 11 of a.jsonl\n" + all_logs(lay),
    )
    os.killpg(read_json(lay.daemon_state)["child_pid"], signal.SIGKILL)  # a failure (max_failures=1): a goes to failed/
    wait_for(
        lambda: queue_drained(lay, 0, 1) and read_json(lay.daemon_state).get("state") == "idle",
        60,
        0.1,
        "a.jsonl failed\n" + all_logs(lay),
    )
    before = _mine(lay, "a.jsonl")
    steps = sorted(int(n.split("-")[1]) for n in before if is_complete(next(lay.checkpoints.rglob(n))))
    n = steps[-1]
    assert n >= 10, before

    enqueue(lay, "b.jsonl", sample_chats(40, seed=2))  # another file trains in between
    wait_for(lambda: queue_drained(lay, 1, 1), 120, 0.1, "b.jsonl done\n" + all_logs(lay))
    assert _mine(lay, "a.jsonl") == before, all_logs(lay)  # every one still there, the same inodes (moved, not copied)
    assert {p.name for p in (lay.checkpoints / ".failed-a.jsonl").iterdir()} == set(before)
    assert re.search(r"checkpoint: kept checkpoint-\d+ of a.jsonl \(in failed/\) in .failed-a.jsonl/", daemon_log(lay))

    _, rep = audit_json(lay, "queue")
    (f,) = findings(rep, "queue.failed")
    assert f"A retry keeps {n} step(s)" in f["problem"][1] and "`healthkit queue retry . a.jsonl`" in f["problem"][1], f
    dry = hk("fix", str(lay.base), "--unsafe", "--dry-run", "--only", "queue.failed")
    assert f"throws away {n} trained step(s) of a.jsonl" in dry.stdout, dry.stdout + dry.stderr

    r = hk("queue", "retry", str(lay.base), "a.jsonl")
    assert r.returncode == 0 and f"it resumes from checkpoint-{n} (step {n};" in r.stdout, (r.stdout, r.stderr)
    assert not (lay.failed / "a.jsonl.error.json").exists()
    wait_for(lambda: queue_drained(lay, 2, 0), 120, 0.1, "a.jsonl retried and done\n" + all_logs(lay))
    assert re.search(rf"spawn file=a.jsonl pid=\d+ attempt=1 resume=checkpoint-{n} ", daemon_log(lay)), daemon_log(lay)
    assert read_json(lay.models / "a" / "healthkit_final.json")["global_step"] == 30
    assert not (lay.checkpoints / ".failed-a.jsonl").exists()  # back in use, then cleared with the finished file


def test_a_checkpoint_made_incomplete_during_training_never_costs_a_complete_one(make_ws, monkeypatch) -> None:
    monkeypatch.setenv("HEALTHKIT_TRAINER_STEP_SLEEP_S", "0.3")
    lay = make_ws(max_steps=25, save_steps=5, save_total_limit=2, eval_steps=50, max_seq_length=48)
    enqueue(lay, "a.jsonl", sample_chats(40, seed=1))
    start_daemon(lay.base)
    ck10 = lay.checkpoints / "checkpoint-10"
    wait_for(lambda: (ck10 / "healthkit_checkpoint.json").exists(), 120, 0.02, "checkpoint-10 saved\n" + all_logs(lay))
    (ck10 / "optimizer.pt").unlink()  # lost while training runs (steps 11..14 before the next save)
    wait_for(
        lambda: (lay.checkpoints / "checkpoint-15" / "healthkit_checkpoint.json").exists(),
        60,
        0.02,
        "checkpoint-15 saved\n" + all_logs(lay),
    )
    from healthkit.contract.retry_checkpoints import is_complete

    # HF's rotation (limit 2) would have deleted the complete checkpoint-5 and kept the broken checkpoint-10.
    assert is_complete(lay.checkpoints / "checkpoint-5") and is_complete(lay.checkpoints / "checkpoint-15"), all_logs(
        lay
    )
    assert not ck10.exists()
    (aside,) = lay.checkpoints.glob(".foreign-*")
    assert (aside / "checkpoint-10").is_dir() and "optimizer.pt" in read_json(aside / "healthkit_aside.json")[
        "checkpoints"
    ]["checkpoint-10"]
    wait_for(lambda: queue_drained(lay, 1), 120, 0.1, "a.jsonl done\n" + all_logs(lay))
    assert "incomplete checkpoint(s) moved to .foreign-" in (lay.logs / "train-a.log").read_text()


def test_eval_steps_changed_between_stop_and_resume_applies(make_ws, monkeypatch) -> None:
    monkeypatch.setenv("HEALTHKIT_TRAINER_STEP_SLEEP_S", "0.1")
    lay = make_ws(max_steps=40, eval_steps=5, save_steps=5, save_total_limit=3, max_seq_length=48)
    enqueue(lay, "a.jsonl", sample_chats(40, seed=1))
    start_daemon(lay.base)
    wait_for(lambda: (read_json(lay.status).get("step") or 0) >= 12, 120, what="step 12\n" + all_logs(lay))
    assert stop_daemon(lay.base, 60)
    resumed_at = read_json(lay.last_result)["step"]
    cfg = {**json.loads(lay.config.read_text()), "eval_steps": 20, "save_steps": 20}
    lay.config.write_text(json.dumps(cfg, indent=2) + "\n")
    (lay.base / "README.md").write_text(config_doc(cfg))  # the docs say it too (no drift)
    start_daemon(lay.base)
    ck = lay.checkpoints / "checkpoint-20"
    wait_for(lambda: (ck / "healthkit_checkpoint.json").exists(), 120, 0.02, "checkpoint-20\n" + all_logs(lay))
    history = json.loads((ck / "trainer_state.json").read_text())
    evals = [h["step"] for h in history["log_history"] if "eval_loss" in h]
    assert [s for s in evals if s > resumed_at] == [20], (resumed_at, evals)  # not 15 and 20: the new 20 applies
    assert (history["eval_steps"], history["save_steps"]) == (20, 20)
    assert read_json(lay.status)["settings_on_resume"]["eval_steps"] == {"checkpoint": 5, "config": 20}
    assert (
        "on resume: eval_steps 5 (checkpoint) -> 20 (config.json applies)"
        in hk("daemon", "status", str(lay.base)).stdout
    )
    wait_for(lambda: queue_drained(lay, 1), 120, 0.1, "a.jsonl done\n" + all_logs(lay))
    assert f"resumed at step {resumed_at}: logging_steps" not in (lay.logs / "train-a.log").read_text()
    assert "eval_steps 5 -> 20, save_steps 5 -> 20" in (lay.logs / "train-a.log").read_text()


@pytest.mark.parametrize("how", ["deleted", "replaced"])
def test_a_daemon_whose_workspace_is_gone_exits_and_frees_its_port(make_ws, how: str) -> None:
    port = free_port()
    lay = make_ws(monitor_port=port)
    pid = start_daemon(lay.base)
    proc = psutil.Process(pid)
    wait_for(lambda: read_json(lay.daemon_state).get("state") == "idle", 60, what="daemon idle\n" + all_logs(lay))
    if how == "deleted":
        shutil.rmtree(lay.base)
    else:
        lay.base.rename(lay.base.with_name("ws-old"))
        lay.base.mkdir()
    wait_for(
        lambda: not proc.is_running() or proc.status() == psutil.STATUS_ZOMBIE, 10, 0.05, f"daemon PID {pid} to exit"
    )
    with socket.socket() as s:  # the next daemon on this machine gets the monitor port
        s.bind(("127.0.0.1", port))
    if how == "replaced":
        assert list(lay.base.iterdir()) == []  # nothing written into the folder that took its place
        assert (
            "was replaced by another folder: exiting"
            in (lay.base.with_name("ws-old") / "logs" / "daemon.log").read_text()
        )
