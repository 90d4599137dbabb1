"""Property tests for the parsers that read what users wrote: whatever the input, they answer, and answer right."""

from __future__ import annotations

import string
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from healthkit.contract.docvalues import parse_doc_value, same_value
from healthkit.contract.settings import SettingsError, load_settings
from healthkit.core.workspace import Workspace
from healthkit.system.procs import pid_max, read_pid_file

from .conftest import examples

FAST = settings(max_examples=examples(200), deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FAST
@given(st.binary(max_size=300))
def test_pid_file_parsing_never_raises(raw):
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / ".daemon.pid"
        p.write_bytes(raw)
        got = read_pid_file(p)
    assert got.state in ("ok", "malformed")
    if got.state == "ok":
        first = raw.decode("ascii").split()[0]
        assert got.pid == int(first) and 0 < got.pid <= pid_max()
    else:
        assert got.reason and got.pid is None


@FAST
@given(
    st.integers(min_value=1, max_value=pid_max()),
    st.one_of(st.none(), st.floats(min_value=0, max_value=4e9)),
    st.sampled_from(["", "\n", " \n", "\r\n"]),
)
def test_pid_file_round_trip(pid, start, end):
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / ".daemon.pid"
        p.write_text(f"{pid}" + (f" {start!r}" if start is not None else "") + end)
        got = read_pid_file(p)
    assert (got.state, got.pid) == ("ok", pid)
    assert got.start_time == start


@FAST
@given(st.sets(st.integers(min_value=0, max_value=10**7), min_size=1, max_size=25))
def test_checkpoints_are_ordered_by_step_whatever_the_names_sort_as(steps):
    with tempfile.TemporaryDirectory() as d:
        base = Path(d)
        for s in steps:
            (base / "current_model" / f"checkpoint-{s}").mkdir(parents=True)
        (base / "current_model" / "tmp-checkpoint-5").mkdir()
        (base / "current_model" / "checkpoint-x").mkdir()
        got = [c.step for c in Workspace.open(base).checkpoints]
    assert got == sorted(steps)


SECTIONS = ["paths", "status_keys", "processes", "retention", "thresholds", "monitor", "checks"]
KEY = st.text(alphabet=string.ascii_lowercase + "_", min_size=1, max_size=20).filter(lambda k: not k.startswith("_"))


@FAST
@given(st.sampled_from(SECTIONS), KEY)
def test_an_unknown_setting_always_names_itself(section, key):
    from healthkit.contract import settings as hs

    known = {f.name for f in __import__("dataclasses").fields(getattr(hs.Settings(), section))}
    if key in known:
        return
    with tempfile.TemporaryDirectory() as d:
        (Path(d) / "healthkit.toml").write_text(f"[{section}]\n{key} = 1\n")
        with pytest.raises(SettingsError) as exc:
            load_settings(Path(d))
    assert f"{section}.{key}" in str(exc.value)


@FAST
@given(KEY.filter(lambda k: k not in SECTIONS))
def test_an_unknown_section_names_itself(section):
    with tempfile.TemporaryDirectory() as d:
        (Path(d) / "healthkit.toml").write_text(f"[{section}]\nx = 1\n")
        with pytest.raises(SettingsError) as exc:
            load_settings(Path(d))
    assert section in str(exc.value)


# --- drift comparison: equal by meaning, never "close enough" ------------------------------------


@pytest.mark.parametrize(
    "doc,config,equal",
    [
        (2e-4, 0.0002, True),
        (500, 500.0, True),
        (1005, 1000, False),
        (1000.5, 1000, False),
        (10, 500, False),
        (0.00002, 2e-5, True),
        (1e-9, 2e-9, False),
        (True, 1, False),
        (None, 0, False),
        ("/a/b/", "/a/b", True),
        ("a/b", "a/c", False),
    ],
)
def test_same_value_by_meaning(doc, config, equal):
    assert same_value(doc, config)[0] is equal


@pytest.mark.parametrize(
    "text,like,value",
    [
        ("2e-4", 0.0002, 2e-4),
        ("0.0002", 2e-4, 2e-4),
        ("1,000", 1, 1000.0),
        ("10_000", 1, 10000.0),
        ("500,", 1, 500.0),
        ("true", False, True),
        ("None", 3, None),
        ("null", "x", "null"),
        ("none", "none", "none"),
    ],
)
def test_parse_doc_value(text, like, value):
    ok, got = parse_doc_value(text, like)
    assert ok and got == value


@pytest.mark.parametrize("text,like", [("500 steps", 1), ("fast", 1.0), ("maybe", True)])
def test_parse_doc_value_refuses_what_is_not_that_kind(text, like):
    assert parse_doc_value(text, like) == (False, None)


@FAST
@given(st.floats(min_value=1e-12, max_value=1e12, allow_nan=False), st.floats(min_value=1e-6, max_value=0.5))
def test_numbers_that_differ_are_never_equal(x, rel):
    assert not same_value(x * (1 + rel), x)[0]
    assert same_value(float(repr(x)), x)[0]
