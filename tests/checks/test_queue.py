"""queue.stuck: a file in processing/ that no live training works on (real processes, matched by argv)."""

from __future__ import annotations

import sys
import time

import psutil

from healthkit.checks.queue import queue_check

from .conftest import call, codes, evidence, make_ws, only, result, run

SLEEPER = "import sys, time\ntime.sleep(60)\n"


def start_training(procs, base, *args: str, script: str = "train.py"):
    """A real process whose argv is `python train.py ARGS` in the workspace; waits until it has exec'd."""
    p = procs.popen([sys.executable, script, *args], cwd=base)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            if script in " ".join(psutil.Process(p.pid).cmdline()):
                return p
        except psutil.Error:
            pass
        time.sleep(0.01)
    raise AssertionError("training stand-in did not start")


def test_file_in_processing_with_no_training_is_stuck(tmp_path):
    make_ws(
        tmp_path,
        {"queue/processing/a.jsonl": '{"text": "x"}\n', "queue/inbox/b.jsonl": "{}\n"},
        status={"state": "crashed", "current_file": "queue/processing/a.jsonl"},
    )
    report = run(tmp_path, "queue")
    f = only(report, "queue.stuck")
    assert f.severity.value == "warning" and f.title == "Queue file stuck: a.jsonl"
    assert f.problem[0].startswith("`queue/processing/a.jsonl` is in processing (last modified ")
    assert f.problem[0].endswith("ago) but no training process runs")
    assert evidence(f) == {
        "ls -l queue/processing": "a.jsonl",
        "jq '.current_file' status/training_status.json": '"queue/processing/a.jsonl"',
    }
    assert [(x.id, x.safety) for x in f.fixes] == [("requeue-stuck-file", "safe")]
    assert f.data == {"path": str(tmp_path / "queue/processing/a.jsonl")}
    assert report.facts["queue"] == {"pending": 1, "processing": 1, "done": 0, "failed": 0}


def test_status_saying_training_is_not_enough_without_a_process(tmp_path):
    make_ws(tmp_path, {"queue/processing/a.jsonl": "{}\n"}, status={"state": "training", "current_file": "a.jsonl"})
    assert codes(run(tmp_path, "queue")) == ["queue.stuck"]


def test_training_process_naming_the_file_is_not_stuck(tmp_path, procs):
    make_ws(tmp_path, {"queue/processing/a.jsonl": "{}\n", "train.py": SLEEPER})
    start_training(procs, tmp_path, "--data=queue/processing/a.jsonl")
    report = run(tmp_path, "queue")
    assert codes(report) == []


def test_training_on_another_file_whose_name_contains_it(tmp_path, procs):
    """`data_a.jsonl` in an argv is not `a.jsonl`: substring matching hid a stuck file."""
    make_ws(
        tmp_path, {"queue/processing/a.jsonl": "{}\n", "queue/processing/data_a.jsonl": "{}\n", "train.py": SLEEPER}
    )
    p = start_training(procs, tmp_path, "queue/processing/data_a.jsonl")
    f = only(run(tmp_path, "queue"), "queue.stuck")
    assert f.title == "Queue file stuck: a.jsonl"
    assert f.problem[0].endswith(f"but the running training (PID {p.pid}) works on another file")


def test_status_current_file_with_a_live_training(tmp_path, procs):
    make_ws(
        tmp_path,
        {"queue/processing/a.jsonl": "{}\n", "train.py": SLEEPER},
        status={"state": "training", "current_file": "/elsewhere/queue/processing/a.jsonl"},
    )
    start_training(procs, tmp_path)
    assert codes(run(tmp_path, "queue")) == []


def test_training_inside_the_daemon(tmp_path, procs):
    toml = '[processes]\ndaemon = ["training_daemon.py"]\ntraining_in_daemon = true\n'
    make_ws(
        tmp_path,
        {"queue/processing/a.jsonl": "{}\n", "training_daemon.py": SLEEPER},
        toml=toml,
        status={"state": "training", "current_file": "a.jsonl"},
    )
    start_training(procs, tmp_path, script="training_daemon.py")
    assert codes(run(tmp_path, "queue")) == []


def test_a_training_of_another_workspace_does_not_count(tmp_path, procs):
    other = tmp_path / "other"
    make_ws(other, {"train.py": SLEEPER})
    base = make_ws(tmp_path / "ws", {"queue/processing/a.jsonl": "{}\n"})
    start_training(procs, other, "a.jsonl")
    assert codes(run(base, "queue")) == ["queue.stuck"]


def test_queue_folders_from_settings_and_healthy_summary(tmp_path):
    toml = '[paths]\nqueue_pending = ["inbox", "queue/high"]\nqueue_processing = "queue/work"\nqueue_done = "queue/recently_completed"\n'
    make_ws(
        tmp_path,
        {
            "inbox/1.jsonl": "{}\n",
            "queue/high/2.jsonl": "{}\n",
            "queue/recently_completed/0.jsonl": "{}\n",
            "queue/work/notes.txt": "not a queue file",
        },
        toml=toml,
    )
    report = run(tmp_path, "queue")
    assert codes(report) == []
    assert [(h.title, h.details) for h in report.healthy] == [("Queue", ["2 queued, 0 processing, 1 done, 0 failed"])]


def test_empty_or_missing_queue(tmp_path):
    out = call(queue_check, make_ws(tmp_path))
    assert out.findings == [] and out.healthy == [] and out.facts["queue"]["processing"] == 0


def test_unreadable_processing_folder_is_a_note(tmp_path):
    make_ws(tmp_path, {"queue/processing": "a file where a folder should be"})
    r = result(run(tmp_path, "queue"), "queue")
    assert r.error is None and r.findings == []
    assert any("queue/processing" in n for n in r.notes)
