"""Unit tests of the safety rules that mutation testing (`make mutants`) holds, each on the rule itself:
process identity, checkpoint completeness and keep-N, doc-value comparison and rewriting, the fix engine's
containment. Real files in tmp_path, real processes; no whole audit unless the rule is the audit's."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from healthkit.contract.docvalues import (
    KeyIndex,
    format_for_doc,
    line_fingerprint,
    parse_doc_value,
    same_value,
    statements,
)
from healthkit.core.workspace import Workspace
from healthkit.fix.fileops import (
    ChangedSincePlan,
    FileFingerprint,
    Refused,
    contained,
    delete_dir,
    file_fingerprint,
    tree_fingerprint,
    unlink_file,
)
from healthkit.fix.fixes_checkpoints import RECENT_S, _complete, protections
from healthkit.fix.fixes_docs import rewrite
from healthkit.system.fsutil import is_within
from healthkit.system.procs import (
    START_TIME_SLACK_S,
    ProcInfo,
    argv_matches,
    pid_max,
    probe,
    read_pid_file,
    start_time_matches,
)

from .conftest import examples, make_checkpoint, wait_for, write_json

# process identity ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "content, state, reason",
    [
        ("", "malformed", "it is empty"),
        ("  \n\t", "malformed", "it is empty"),
        ("1 2 3", "malformed", "it holds more than a PID"),
        ("abc", "malformed", "it does not hold a number"),
        ("0x10", "malformed", "it does not hold a number"),
        ("0", "malformed", "0 is not a valid PID"),
        ("-5", "malformed", "-5 is not a valid PID"),
        ("123 soon", "malformed", "its second field is not a start time"),
    ],
)
def test_pid_file_reasons(tmp_path, content, state, reason):
    p = tmp_path / "d.pid"
    p.write_text(content)
    got = read_pid_file(p)
    assert (got.state, got.reason, got.pid, got.start_time) == (state, reason, None, None)
    assert got.mtime == os.lstat(p).st_mtime


def test_pid_file_ok_forms(tmp_path):
    p = tmp_path / "d.pid"
    p.write_text("  4242\n")
    got = read_pid_file(p)
    assert (got.state, got.pid, got.start_time, got.reason) == ("ok", 4242, None, "")
    p.write_text("4242 1700000000.25\n")
    got = read_pid_file(p)
    assert (got.state, got.pid, got.start_time, got.preview) == ("ok", 4242, 1700000000.25, "4242 1700000000.25")
    p.write_text(str(pid_max()))
    assert read_pid_file(p).state == "ok"  # the largest PID the kernel hands out is a PID
    p.write_text(str(pid_max() + 1))
    assert read_pid_file(p).reason == f"{pid_max() + 1} is larger than this system's pid_max"


def test_pid_file_preview_masks_control_bytes(tmp_path):
    p = tmp_path / "d.pid"
    p.write_bytes(b"12\x00\x1b[31m" + b"9" * 100)
    got = read_pid_file(p)
    assert got.state == "malformed" and got.preview == "12??[31m" + "9" * 56


def test_pid_file_that_is_not_a_file(tmp_path):
    assert read_pid_file(tmp_path / "none.pid").state == "missing"
    (tmp_path / "dir.pid").mkdir()
    assert read_pid_file(tmp_path / "dir.pid").reason == "it is a directory"
    (tmp_path / "real").write_text("1\n")
    (tmp_path / "link.pid").symlink_to(tmp_path / "real")
    assert read_pid_file(tmp_path / "link.pid").reason == "it is a symbolic link, not a PID file"
    os.mkfifo(tmp_path / "fifo.pid")
    assert read_pid_file(tmp_path / "fifo.pid").reason == "it is not a regular file"
    (tmp_path / "big.pid").write_text("1" * 5000)
    got = read_pid_file(tmp_path / "big.pid")
    assert (got.state, got.reason) == ("malformed", "it is 5000 bytes, far too large for a PID file")


def test_probe_live_dead_zombie():
    me = probe(os.getpid())
    assert me.state == "alive" and me.alive and me.info is not None and me.info.pid == os.getpid()
    assert me.info.cmdline and me.info.cwd == os.getcwd()
    for pid in (0, -1, 2**70):
        assert probe(pid).state == "dead" and not probe(pid).alive
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    assert wait_for(lambda: psutil.Process(child.pid).status() == psutil.STATUS_ZOMBIE, 20)
    z = probe(child.pid)
    assert z.state == "zombie" and not z.alive and z.info is not None and z.info.pid == child.pid
    child.wait()
    assert probe(child.pid).state == "dead"


@pytest.mark.parametrize(
    "argv, patterns, want",
    [
        (["python", "train.py"], ["train.py"], "train.py"),
        (["/usr/bin/python3", "/ws/train.py", "--x"], ["train.py"], "train.py"),
        (["python", "-m", "healthkit.trainer.daemon"], ["healthkit.trainer.daemon"], "healthkit.trainer.daemon"),
        (["python", "-u", "-m", "healthkit.trainer.daemon"], ["healthkit.trainer.daemon"], "healthkit.trainer.daemon"),
        (["python", "--script=train.py"], ["train.py"], None),  # a flag's own text is not what runs
        (["bash", "-c", "python train.py"], ["train.py"], None),
        (["/bin/sh", "train.py"], ["train.py"], None),
        (["grep", "train.py"], ["train.py"], None),
        (["/usr/bin/tail", "-f", "train.py"], ["train.py"], None),
        (["python", "train.py.bak"], ["train.py"], None),
        (["python", "nottrain.py"], ["train.py"], None),
        ([], ["train.py"], None),
        (["python", "-m"], ["healthkit.trainer.daemon"], None),
        (["python", "-m", "other"], ["healthkit.trainer.daemon", "other"], "other"),
        (["torchrun", "--nproc", "2", "train.py"], ["torchrun train.py"], None),
        (["torchrun", "train.py", "--x"], ["torchrun train.py"], "torchrun train.py"),
        (["/opt/bin/accelerate", "launch", "train.py"], ["accelerate launch"], "accelerate launch"),
        (["accelerate", "env"], ["accelerate launch"], None),
        (["x", "accelerate"], ["accelerate launch"], None),
    ],
)
def test_argv_matches(argv, patterns, want):
    assert argv_matches(argv, patterns) == want


def _info(create_time: float) -> ProcInfo:
    return ProcInfo(1, 0, "python", ("python",), create_time, "running", None)


def test_start_time_matches_within_the_slack_only():
    assert start_time_matches(_info(1000.0), None)
    assert start_time_matches(_info(1000.0), 1000.0 + START_TIME_SLACK_S)
    assert start_time_matches(_info(1000.0), 1000.0 - START_TIME_SLACK_S)
    assert not start_time_matches(_info(1000.0), 1000.0 + START_TIME_SLACK_S + 0.01)
    assert not start_time_matches(_info(1000.0), 1000.0 - START_TIME_SLACK_S - 0.01)
    assert START_TIME_SLACK_S == 2.0  # PID files write two decimals; psutil's start time drifts by ticks


# checkpoint completeness and keep-N ---------------------------------------------------------------


def _ws(base: Path, steps: list[int], incomplete: dict[int, str] | None = None, age_s: float = 3600) -> Workspace:
    """Checkpoints of `steps`; `incomplete` breaks some: 'no-state', 'no-step', 'no-weights', 'empty-weights'."""
    base.mkdir(parents=True, exist_ok=True)
    write_json(base / "config.json", {"save_total_limit": 2})
    ck = base / "current_model"
    ck.mkdir(parents=True, exist_ok=True)
    for s in steps:
        d = make_checkpoint(ck, s)
        how = (incomplete or {}).get(s)
        if how == "no-state":
            (d / "trainer_state.json").unlink()
        elif how == "no-step":
            write_json(d / "trainer_state.json", {"log_history": []})
        elif how == "no-weights":
            (d / "model.safetensors").unlink()
        elif how == "empty-weights":
            (d / "model.safetensors").write_bytes(b"")
    old = time.time() - age_s
    for d in ck.iterdir():
        for f in [d, *d.iterdir()]:
            os.utime(f, (old, old), follow_symlinks=False)
    return Workspace.open(base)


def test_complete_needs_a_listable_folder_and_a_global_step(tmp_path):
    ws = _ws(tmp_path, [10, 20, 30], {20: "no-state", 30: "no-step"})
    c10, c20, c30 = ws.checkpoints
    assert _complete(ws, c10, set())
    assert not _complete(ws, c10, {"checkpoint-10"})
    assert not _complete(ws, c20, set()) and not _complete(ws, c30, set())


def test_keep_n_counts_only_complete_checkpoints(tmp_path):
    """An incomplete newest checkpoint is not one of the kept: the last good fallbacks survive."""
    ws = _ws(tmp_path, [100, 200, 300, 400, 500], {500: "no-weights"})
    protected, victims = protections(ws, 2, None, {"checkpoint-500"})
    assert [c.name for c in victims] == ["checkpoint-100", "checkpoint-200"]
    assert protected["checkpoint-300"] == "one of the newest 2"
    assert protected["checkpoint-400"] == "one of the newest 2"
    assert protected["checkpoint-500"] == "newer than the kept ones"


def test_keep_n_orders_by_step_not_name(tmp_path):
    ws = _ws(tmp_path, [9, 10, 100, 1000])
    protected, victims = protections(ws, 2, None, set())
    assert [c.name for c in victims] == ["checkpoint-9", "checkpoint-10"]
    assert set(protected) == {"checkpoint-100", "checkpoint-1000"}


def test_keep_zero_and_an_all_incomplete_tree(tmp_path):
    ws = _ws(tmp_path, [1, 2, 3])
    protected, victims = protections(ws, 0, None, set())
    assert protected == {"checkpoint-3": "the newest checkpoint"}
    assert [c.name for c in victims] == ["checkpoint-1", "checkpoint-2"]
    ws2 = _ws(tmp_path / "b", [1, 2], {1: "no-state", 2: "no-state"})
    protected, victims = protections(ws2, 1, None, set())
    assert victims == [] and protected["checkpoint-1"] == "incomplete (see checkpoints.incomplete)"


def test_protections_best_in_use_recent_and_symlinks(tmp_path):
    ws = _ws(tmp_path, [10, 20, 30, 40, 50, 60])
    (tmp_path / "current_model" / "checkpoint-20" / "x").write_text("fresh")  # written just now
    write_json(tmp_path / "status" / "daemon_state.json", {"resume": {"from": ["current_model/checkpoint-30"]}})
    outside = tmp_path / "elsewhere" / "checkpoint-5"
    make_checkpoint(tmp_path / "elsewhere", 5)
    (tmp_path / "current_model" / "checkpoint-5").symlink_to(outside)
    ws = Workspace.open(tmp_path)
    protected, victims = protections(ws, 1, "checkpoint-10", set())
    assert [c.name for c in victims] == ["checkpoint-40", "checkpoint-50"]
    assert protected["checkpoint-10"] == "best_model_checkpoint"
    assert protected["checkpoint-20"] == "modified in the last 2 minutes (may be being written)"
    assert "daemon_state" in protected["checkpoint-30"]
    assert protected["checkpoint-5"] == "a symlink: its target is never deleted"
    assert protected["checkpoint-60"] == "one of the newest 1"
    assert RECENT_S == 120.0


def test_no_checkpoints_and_a_best_that_is_not_a_path(tmp_path):
    (tmp_path / "current_model").mkdir()
    assert protections(_ws(tmp_path / "a", []), 2, None, set()) == ({}, [])
    _ws(tmp_path / "b", [10, 20])
    write_json(
        tmp_path / "b" / "current_model" / "checkpoint-20" / "trainer_state.json",
        {"global_step": 20, "best_model_checkpoint": 5},
    )
    os.utime(tmp_path / "b" / "current_model" / "checkpoint-20" / "trainer_state.json", (0, 0))
    protected, victims = protections(Workspace.open(tmp_path / "b"), 1, None, set())
    assert [c.name for c in victims] == ["checkpoint-10"] and set(protected) == {"checkpoint-20"}


def test_best_named_in_the_newest_trainer_state(tmp_path):
    _ws(tmp_path, [10, 20, 30])
    write_json(
        tmp_path / "current_model" / "checkpoint-30" / "trainer_state.json",
        {"global_step": 30, "best_model_checkpoint": "/gone/checkpoint-10/"},
    )
    os.utime(tmp_path / "current_model" / "checkpoint-30" / "trainer_state.json", (0, 0))
    _, victims = protections(Workspace.open(tmp_path), 1, None, set())
    assert [c.name for c in victims] == ["checkpoint-20"]


def test_a_running_process_names_its_checkpoint(tmp_path, procs):
    ws = _ws(tmp_path, [10, 20, 30])
    p = procs.popen(
        [sys.executable, "-c", "import time; time.sleep(60)", "--resume=current_model/checkpoint-10"], cwd=tmp_path
    )
    assert wait_for(lambda: "--resume=current_model/checkpoint-10" in psutil.Process(p.pid).cmdline())
    protected, victims = protections(ws, 1, None, set())
    assert protected["checkpoint-10"] == f"in the command line of running PID {p.pid}"
    assert [c.name for c in victims] == ["checkpoint-20"]


@pytest.mark.parametrize(
    "how, part",
    [
        ("no-state", "trainer_state.json is missing"),
        ("no-step", "trainer_state.json has no global_step"),
        ("no-weights", "no model weights (model.safetensors, pytorch_model.bin or an adapter)"),
        ("empty-weights", "model.safetensors is empty"),
    ],
)
def test_missing_parts_names_what_a_resume_lacks(tmp_path, how, part):
    from healthkit.checks.checkpoints import missing_parts

    ws = _ws(tmp_path, [10, 20], {20: how})
    c10, c20 = ws.checkpoints
    assert missing_parts(ws, c10) == []
    assert missing_parts(ws, c20) == [part]


def test_missing_parts_reads_the_shard_index(tmp_path):
    from healthkit.checks.checkpoints import missing_parts

    ws = _ws(tmp_path, [10], {10: "no-weights"})
    d = tmp_path / "current_model" / "checkpoint-10"
    write_json(d / "model.safetensors.index.json", {"weight_map": {"a": "m-1.safetensors", "b": "m-2.safetensors"}})
    (d / "m-1.safetensors").write_bytes(b"x")
    assert missing_parts(Workspace.open(tmp_path), Workspace.open(tmp_path).checkpoints[0]) == [
        "1 of 2 weight shards are missing (m-2.safetensors)"
    ]
    (d / "m-2.safetensors").write_bytes(b"x")
    ws = Workspace.open(tmp_path)
    assert missing_parts(ws, ws.checkpoints[0]) == []
    (d / "model.safetensors.index.json").write_text("{not json")
    ws = Workspace.open(tmp_path)
    assert missing_parts(ws, ws.checkpoints[0]) == ["model.safetensors.index.json is unreadable"]


def test_shard_index_messages(tmp_path):
    from healthkit.checks.checkpoints import missing_parts

    ws = _ws(tmp_path, [10], {10: "no-weights"})
    d = tmp_path / "current_model" / "checkpoint-10"
    write_json(d / "model.safetensors.index.json", {"weight_map": {f"w{i}": f"m-{i}.safetensors" for i in range(5)}})
    ws = Workspace.open(tmp_path)
    assert missing_parts(ws, ws.checkpoints[0]) == [
        "5 of 5 weight shards are missing (m-0.safetensors, m-1.safetensors, m-2.safetensors)"
    ]
    write_json(d / "model.safetensors.index.json", {"metadata": {}})  # no weight_map: nothing listed, nothing lost
    ws = Workspace.open(tmp_path)
    assert missing_parts(ws, ws.checkpoints[0]) == []


def test_the_newest_incomplete_checkpoint_is_the_newest_by_step(tmp_path):
    """checkpoint-1000 sorts before checkpoint-900 by name; the resume picks it by step."""
    from healthkit.checks.checkpoints import checkpoints_check

    ws = _ws(tmp_path, [200, 900, 1000], {900: "no-state", 1000: "no-state"})
    by_name = {f.data["checkpoint"]: f for f in checkpoints_check(ws).findings if f.code == "checkpoints.incomplete"}
    assert by_name["checkpoint-1000"].urgency == "immediate"
    assert "It is the newest checkpoint, the one a resume would pick" in by_name["checkpoint-1000"].problem
    assert by_name["checkpoint-900"].urgency == "short-term"


# doc values: comparison, parsing, formatting, rewriting ----------------------------------------------


@pytest.mark.parametrize(
    "doc, config, equal, note",
    [
        (None, None, True, None),
        (None, 0, False, None),
        (0, None, False, None),
        (True, 1, False, None),
        (1.0, True, False, None),
        (True, True, True, None),
        (False, True, False, None),
        (1005.0, 1000, False, None),
        (1000.0, 1000, True, None),
        (2e-4, 0.0002, True, None),
        (0.0, 0, True, None),
        (1e-9, 0.0, False, None),
        (1.0000000001, 1, True, None),
        ("cosine", "cosine", True, None),
        ("Cosine", "cosine", False, None),
        ("10 GB", "10GB", False, None),
        ("/a/b/", "/a/b", True, "differs only by a trailing slash or redundant separators"),
        ("/a//b", "/a/b", True, "differs only by a trailing slash or redundant separators"),
        ("/a/c", "/a/b", False, None),
        ("./out/", "./out", True, "differs only by a trailing slash or redundant separators"),
        ("~/x", "~/x/", True, "differs only by a trailing slash or redundant separators"),
        ("a", "a.", False, None),
        ("out/", "out", False, None),  # only when both look like paths
        ("3", 3, False, None),
        ([1], [1], True, None),
        ("/a/", 5, False, None),
    ],
)
def test_same_value(doc, config, equal, note):
    assert same_value(doc, config) == (equal, note)


@pytest.mark.parametrize(
    "text, like, want",
    [
        ("null", 3, (True, None)),
        (" None ", "x", (True, "None")),
        ("~", True, (True, None)),
        ("nil", None, (True, None)),
        ("yes", True, (True, True)),
        ("Off", True, (True, False)),
        ("maybe", True, (False, None)),
        ("1_000", 1, (True, 1000.0)),
        ("1,000", 1, (True, 1000.0)),
        ("12,345,678", 1, (True, 12345678.0)),
        ("1,00", 1, (False, None)),
        ("5,", 1, (True, 5.0)),
        ("5X", 1, (False, None)),
        ("1__0", 1, (True, 10.0)),
        ("2e-4", 0.1, (True, 2e-4)),
        ("ten", 1, (False, None)),
        ("  cosine, ", "x", (True, "cosine")),
        ("7", None, (True, 7.0)),
        ("true", None, (True, True)),
        ("word", None, (False, "word")),
        ("[1]", [1], (False, None)),
    ],
)
def test_parse_doc_value(text, like, want):
    assert parse_doc_value(text, like) == want


@pytest.mark.parametrize(
    "value, doc_text, want",
    [
        (True, "false", "true"),
        (False, "TRUE", "false"),
        (True, "no", "yes"),
        (False, "Yes", "no"),
        (True, "1", "true"),
        (None, "5", "null"),
        (3.0, "5", "3"),
        (3.0, "5.0", "3.0"),
        (3.0, "5e0", "3.0"),
        (3.0, "5E0", "3.0"),
        (2e-05, "0.0001", "2e-05"),
        (7, "5", "7"),
        ("cosine", "linear", "cosine"),
    ],
)
def test_format_for_doc(value, doc_text, want):
    assert format_for_doc(value, doc_text) == want


def _drift(line_no: int, line: str, start: int, end: int, config_value, key: str = "k") -> dict:
    return {
        "key": key,
        "line": line_no,
        "start": start,
        "end": end,
        "doc_value": line[start:end],
        "config_value": config_value,
        "line_text": line,
        "line_fingerprint": line_fingerprint(line),
    }


def test_rewrite_changes_the_spans_only_and_keeps_line_endings():
    text = "# T\r\n- a: 1, b: 2\r\nlast 9"
    line = "- a: 1, b: 2"
    new, changes = rewrite(
        text, [_drift(2, line, 5, 6, 10, "a"), _drift(2, line, 11, 12, 20, "b"), _drift(3, "last 9", 5, 6, 8, "c")]
    )
    assert new == "# T\r\n- a: 10, b: 20\r\nlast 8"
    assert [c["line"] for c in changes] == [2, 2, 3]
    assert {(c["key"], c["from"], c["to"]) for c in changes} == {("a", "1", "10"), ("b", "2", "20"), ("c", "9", "8")}


def test_rewrite_writes_the_value_the_way_the_doc_wrote_it():
    """The doc's own spelling decides the new value's: yes/no stays yes/no, an integer stays an integer."""
    text = "- resume: yes\n- eval_steps: 10\n- lr: 1.0\n"
    new, _ = rewrite(
        text,
        [
            _drift(1, "- resume: yes", 10, 13, False),
            _drift(2, "- eval_steps: 10", 14, 16, 500.0),
            _drift(3, "- lr: 1.0", 6, 9, 2.0),
        ],
    )
    assert new == "- resume: no\n- eval_steps: 500\n- lr: 2.0\n"


def test_rewrite_refuses_a_line_that_changed():
    line = "- a: 1"
    with pytest.raises(ChangedSincePlan, match="line 3 no longer exists"):
        rewrite("x\n- a: 1\n", [_drift(3, line, 5, 6, 2)])
    with pytest.raises(ChangedSincePlan, match="line 2 changed since the audit"):
        rewrite("x\n- a: 1 \n", [_drift(2, line, 5, 6, 2)])
    d = _drift(2, line, 5, 6, 2)
    del d["line_fingerprint"]
    with pytest.raises(ChangedSincePlan, match="is no longer `- a: 1`"):
        rewrite("x\n- a: 3\n", [d])
    assert rewrite("x\n- a: 1\n", [d])[0] == "x\n- a: 2\n"  # without a fingerprint, the line text decides
    xs = "- a: 1 XX"  # a line may end in any letter: only its line ending is set aside
    assert rewrite(f"{xs}\r\n", [_drift(1, xs, 5, 6, 2)])[0] == "- a: 2 XX\r\n"
    assert rewrite(xs, [_drift(1, xs, 5, 6, 2)])[0] == "- a: 2 XX"
    with pytest.raises(ChangedSincePlan, match="no longer states `1` at column 5"):
        rewrite("x\n- a: 1\n", [dict(_drift(2, line, 4, 6, 2), doc_value="1")])


# The property: a line the fix rewrites, read again, states the config's value, and nothing else changed.
_KEYS = ["eval_steps", "learning_rate", "save_total_limit", "lr_scheduler_type", "use_bf16", "output_dir"]
_FORMS = [
    "- {label}: {v}",
    "{label} = {v}",
    "**{label}:** {v}",
    "| {label} | {v} |",
    "Set `{label}={v}` here.",
    "{label}: `{v}`",
    "1. {label}: {v}",
]
_WORD = st.text("abcdefghijklmnopqrstuvwxyz0123456789_-./", min_size=1, max_size=12).filter(
    lambda s: s[0].isalnum() and s[-1] not in ".:)"
)
_VALUES = {
    "eval_steps": st.integers(0, 10**9),
    "save_total_limit": st.integers(0, 10**6),
    "learning_rate": st.floats(1e-9, 1e3, allow_nan=False, allow_infinity=False),
    "lr_scheduler_type": _WORD,
    "output_dir": _WORD,
    "use_bf16": st.booleans(),
}
_FILLER = st.text(
    st.characters(blacklist_categories=("Cc", "Cs", "Zl", "Zp"), blacklist_characters="\x85"), max_size=30
)


@st.composite
def _doc_case(draw):
    key = draw(st.sampled_from(_KEYS))
    config_value = draw(_VALUES[key])
    doc_value = draw(_VALUES[key])
    doc_text = format_for_doc(doc_value, "true" if isinstance(doc_value, bool) else "1")
    form = draw(st.sampled_from(_FORMS))
    before = draw(st.lists(_FILLER, max_size=3))
    after = draw(st.lists(_FILLER, max_size=3))
    ending = draw(st.sampled_from(["\n", "\r\n"]))
    line = form.format(label=key, v=doc_text)
    text = ending.join(["# Notes", *before, line, *after]) + draw(st.sampled_from(["", ending]))
    return key, config_value, text, len(before) + 2


@settings(max_examples=examples(300), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_doc_case())
def test_a_rewritten_line_states_the_config_value_and_nothing_else_changes(case):
    key, config_value, text, lineno = case
    config = dict.fromkeys(_KEYS) | {key: config_value}
    sts = [s for s in statements(text, KeyIndex(config)) if s.line == lineno and s.key == key]
    assert sts, f"the extractor missed line {lineno} of {text!r}"
    s = sts[0]
    ok, doc = parse_doc_value(s.text, config_value)
    assume(ok and not same_value(doc, config_value)[0])
    new, changes = rewrite(
        text,
        [
            {
                "key": key,
                "line": s.line,
                "start": s.start,
                "end": s.end,
                "doc_value": s.text,
                "config_value": config_value,
                "line_text": s.line_text,
                "line_fingerprint": line_fingerprint(s.line_text),
            }
        ],
    )
    assert len(changes) == 1
    old_lines, new_lines = text.splitlines(keepends=True), new.splitlines(keepends=True)
    assert len(old_lines) == len(new_lines)
    for i, (a, b) in enumerate(zip(old_lines, new_lines), 1):
        if i != lineno:
            assert a == b
    written = changes[0]["to"]
    assert new_lines[lineno - 1] == old_lines[lineno - 1][: s.start] + written + old_lines[lineno - 1][s.end :]
    again = [x for x in statements(new, KeyIndex(config)) if x.line == lineno and x.key == key and x.start == s.start]
    assert again, f"the rewritten line no longer states {key}: {new_lines[lineno - 1]!r}"
    ok2, value = parse_doc_value(again[0].text, config_value)
    assert ok2 and same_value(value, config_value)[0], (again[0].text, config_value)


# containment ---------------------------------------------------------------------------------------


def test_is_within_resolves_and_never_compares_prefixes(tmp_path):
    (tmp_path / "ws").mkdir()
    (tmp_path / "ws2").mkdir()
    (tmp_path / "ws" / "out").symlink_to(tmp_path / "ws2")
    assert is_within(tmp_path / "ws" / "a", tmp_path / "ws")
    assert is_within(tmp_path / "ws", tmp_path / "ws")
    assert not is_within(tmp_path / "ws2" / "a", tmp_path / "ws")
    assert not is_within(tmp_path / "ws" / ".." / "ws2", tmp_path / "ws")
    assert not is_within(tmp_path / "ws" / "out" / "x", tmp_path / "ws")


def test_contained_refuses_paths_whose_parent_leaves_the_base(tmp_path):
    base = tmp_path / "ws"
    (base / "sub").mkdir(parents=True)
    (tmp_path / "outside").mkdir()
    (base / "link").symlink_to(tmp_path / "outside")
    assert contained(base, base / "sub" / "f") == (base / "sub").resolve()
    with pytest.raises(Refused, match="is outside the workspace"):
        contained(base, base / "link" / "f")
    with pytest.raises(Refused):
        contained(base, tmp_path / "outside" / "f")


def test_unlink_file_rules(tmp_path):
    base = tmp_path / "ws"
    base.mkdir()
    f = base / "f.pid"
    f.write_text("1\n")
    fp = file_fingerprint(f)
    f.write_text("2\n")
    with pytest.raises(ChangedSincePlan, match="f.pid changed since the plan was made"):
        unlink_file(base, f, fp)
    assert f.exists()
    assert unlink_file(base, f, file_fingerprint(f)) == 2 and not f.exists()
    (base / "d").mkdir()
    with pytest.raises(Refused, match="is a directory"):
        unlink_file(base, base / "d", None)
    target = tmp_path / "precious"
    target.write_text("keep")
    (base / "l").symlink_to(target)
    unlink_file(base, base / "l", None)
    assert not (base / "l").is_symlink() and target.read_text() == "keep"
    (base / "l2").symlink_to(target)
    with pytest.raises(ChangedSincePlan):
        unlink_file(base, base / "l2", FileFingerprint(ino=1, size=0, mtime_ns=0, sha256=""))
    assert (base / "l2").is_symlink()
    outside = tmp_path / "o.pid"
    outside.write_text("1")
    with pytest.raises(Refused):
        unlink_file(base, outside, None)
    assert outside.exists()


def test_delete_dir_rules(tmp_path):
    base = tmp_path / "ws"
    d = base / "current_model" / "checkpoint-1"
    d.mkdir(parents=True)
    (d / "a").write_bytes(b"x" * 10)
    (d / "sub").mkdir()
    (d / "sub" / "b").write_bytes(b"y" * 5)
    fp = tree_fingerprint(d)
    (d / "a").write_bytes(b"x" * 11)
    with pytest.raises(ChangedSincePlan, match="checkpoint-1 changed since the plan was made"):
        delete_dir(base, d, fp, "t")
    assert (d / "a").exists()
    fp = tree_fingerprint(d)
    assert fp.bytes > 0 and delete_dir(base, d, fp, "t") == fp.bytes
    assert not d.exists() and list((base / "current_model").iterdir()) == []
    outside = tmp_path / "keep"
    outside.mkdir()
    (outside / "w").write_text("w")
    (base / "current_model" / "checkpoint-2").symlink_to(outside)
    with pytest.raises(Refused, match="symbolic link"):
        delete_dir(base, base / "current_model" / "checkpoint-2", None, "t")
    (base / "current_model" / "file").write_text("f")
    with pytest.raises(Refused, match="not a directory"):
        delete_dir(base, base / "current_model" / "file", None, "t")
    with pytest.raises(Refused):
        delete_dir(base, outside, None, "t")
    assert (outside / "w").read_text() == "w"


def test_replace_file_backs_up_each_time_and_keeps_mode_and_owner(tmp_path):
    import hashlib

    from healthkit.fix.fileops import TMP_MARK, replace_file

    base = tmp_path / "ws"
    base.mkdir()
    doc = base / "README.md"
    doc.write_bytes(b"v1\n")
    os.chmod(doc, 0o640)
    if os.geteuid() == 0:
        os.chown(doc, 1234, 1234)
    (base / f".README.md{TMP_MARK}{os.getpid()}").write_bytes(b"stale temp of a killed run")
    for i, new in enumerate((b"v2\n", b"v3\n", b"v4\n"), 1):
        old = doc.read_bytes()
        backup = replace_file(base, doc, new, hashlib.sha256(old).hexdigest(), "S")
        assert backup.name == ("README.md.bak-S" if i == 1 else f"README.md.bak-S-{i}") and backup.read_bytes() == old
        assert doc.read_bytes() == new and os.stat(doc).st_mode & 0o777 == 0o640
        assert os.stat(backup).st_mode & 0o777 == 0o640
        if os.geteuid() == 0:
            assert (os.stat(doc).st_uid, os.stat(backup).st_uid) == (1234, 1234)
    assert not list(base.glob(f"*{TMP_MARK}*"))
    with pytest.raises(ChangedSincePlan, match="README.md changed since the plan was made"):
        replace_file(base, doc, b"x", hashlib.sha256(b"other").hexdigest(), "T")
    assert doc.read_bytes() == b"v4\n" and not list(base.glob("*.bak-T*"))
    (base / "link.md").symlink_to(doc)
    with pytest.raises(Refused, match="is not a regular file"):
        replace_file(base, base / "link.md", b"x", hashlib.sha256(b"v4\n").hexdigest(), "U")
    assert doc.read_bytes() == b"v4\n"
