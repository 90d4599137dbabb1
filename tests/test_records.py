"""healthkit.system.records: `@record` behaves as `@dataclass(frozen=True)`: equality, hash, repr, frozenness,
fields, replace and asdict, with defaults, factories, compare/hash/repr options and recursion."""

from __future__ import annotations

import dataclasses
import pickle
from dataclasses import dataclass, field
from typing import Any

import pytest

from healthkit.system.records import record


def _pair(body: dict[str, Any], annotations: dict[str, str], name: str = "Thing") -> tuple[type, type]:
    made = []
    for deco in (dataclass(frozen=True), record):
        ns = {"__annotations__": dict(annotations), "__qualname__": name, "__module__": __name__, **body}
        made.append(deco(type(name, (), ns)))
    return made[0], made[1]


CASES = [
    ({}, {}, [()]),
    ({"b": 2}, {"a": "int", "b": "int"}, [(1,), (1, 3), (2, 2)]),
    ({"tags": field(default_factory=tuple)}, {"name": "str", "tags": "tuple"}, [("x",), ("x", ("a",)), ("y", ())]),
    ({"note": field(default="n", compare=False)}, {"a": "int", "note": "str"}, [(1,), (1, "other"), (2, "n")]),
    (
        {"secret": field(default="s", repr=False), "h": field(default=0, hash=False)},
        {"a": "int", "secret": "str", "h": "int"},
        [(1,), (1, "t"), (1, "s", 5), (3, "s", 5)],
    ),
    ({"w": field(default=1, compare=False, hash=True)}, {"a": "int", "w": "int"}, [(1,), (1, 2), (2, 2)]),
]


@pytest.mark.parametrize("body, annotations, argsets", CASES)
def test_a_record_equals_hashes_and_prints_as_a_frozen_dataclass(body, annotations, argsets):
    dc, rec = _pair(body, annotations)
    assert [f.name for f in dataclasses.fields(rec)] == [f.name for f in dataclasses.fields(dc)]
    objs = [(dc(*a), rec(*a)) for a in argsets]
    for d1, r1 in objs:
        assert repr(r1) == repr(d1)
        assert hash(r1) == hash(d1)
        assert dataclasses.asdict(r1) == dataclasses.asdict(d1) and dataclasses.astuple(r1) == dataclasses.astuple(d1)
        with pytest.raises(dataclasses.FrozenInstanceError):
            r1.a = 5  # type: ignore[attr-defined]
        with pytest.raises(dataclasses.FrozenInstanceError):
            del r1.a  # type: ignore[attr-defined]
        for d2, r2 in objs:
            assert (r1 == r2) == (d1 == d2) and (r1 != r2) == (d1 != d2)
    if argsets and argsets[0]:
        r = objs[0][1]
        assert dataclasses.replace(r) == r and rec.__match_args__ == dc.__match_args__
    assert (rec() if not annotations else objs[0][1]).__eq__(object()) is NotImplemented


def test_records_of_two_classes_with_the_same_fields_are_never_equal_and_recursion_prints_dots():
    a_dc, a_rec = _pair({}, {"x": "Any"}, "A")
    _, b_rec = _pair({}, {"x": "Any"}, "B")
    assert a_rec(1) != b_rec(1) and a_dc(1) != a_rec(1)
    for make in (a_rec, a_dc):
        inner: list = []
        obj = make(inner)
        inner.append(obj)
        assert repr(obj) == "A(x=[...])"


def test_a_class_with_its_own_eq_is_left_to_dataclass():
    made = []
    for deco in (dataclass(frozen=True), record):

        class Own:
            a: int

            def __eq__(self, other: object) -> bool:
                return True

        made.append(deco(Own))
    dc, rec = made
    assert rec(1) == rec(2) and hash(rec(1)) == hash(dc(1)) and repr(rec(1)).endswith("Own(a=1)")


def test_the_audit_types_are_records_and_pickle():
    from healthkit.core.findings import Evidence, Finding, Severity

    f = Finding(code="x.y", severity=Severity.WARNING, title="t", problem=["p"], evidence=[Evidence("cmd", "saw")])
    assert repr(f).startswith("Finding(code='x.y'") and pickle.loads(pickle.dumps(f)) == f
    assert dataclasses.is_dataclass(f) and f.__dataclass_params__.frozen
    with pytest.raises(TypeError):  # lists inside: unhashable, as a frozen dataclass of lists is
        hash(f)
    assert Evidence("a", "b") == Evidence("a", "b") and hash(Evidence("a", "b")) == hash(Evidence("a", "b"))


def test_an_identity_record_prints_as_a_dataclass_and_equals_only_itself():
    from healthkit.contract.settings import PathSettings, Settings
    from healthkit.system.records import identity_record

    made = []
    for deco in (dataclass(eq=False), identity_record):

        class Section:
            name: str = "x"
            items: list = field(default_factory=list)
            hidden: int = field(default=0, repr=False)

        made.append(deco(Section))
    dc, rec = made
    assert repr(rec()) == repr(dc()) and repr(rec("y", [1])) == repr(dc("y", [1]))
    a = rec()
    assert a == a and a != rec() and hash(a) == object.__hash__(a)
    a.name = "changed"  # mutable, as before
    assert repr(Settings()).startswith("Settings(paths=PathSettings(config='config.json'")
    assert repr(PathSettings()) == repr(
        dataclass(eq=False)(
            type(
                "PathSettings",
                (),
                {
                    "__annotations__": PathSettings.__annotations__,
                    **{
                        f.name: (
                            f.default
                            if f.default is not dataclasses.MISSING
                            else field(default_factory=f.default_factory)
                        )
                        for f in dataclasses.fields(PathSettings)
                    },
                },
            )
        )()
    )


@pytest.mark.parametrize("deco_name", ["record", "identity_record"])
def test_the_shared_init_takes_arguments_as_the_generated_one_did(deco_name):
    from healthkit.system import records

    made = []
    for deco in (dataclass(frozen=deco_name == "record", eq=False), getattr(records, deco_name)):

        class Job:
            name: str
            size: int = 1
            tags: list = field(default_factory=list)

        made.append(deco(Job))
    dc, rec = made
    for args, kwargs in [(("a",), {}), (("a", 2), {}), ((), {"name": "b", "tags": [1]}), (("c",), {"size": 3})]:
        assert dataclasses.astuple(rec(*args, **kwargs)) == dataclasses.astuple(dc(*args, **kwargs))
    assert rec("a").tags is not rec("a").tags  # a fresh default each time
    for args, kwargs in [((), {}), (("a", 1, [], 9), {}), (("a",), {"name": "b"}), (("a",), {"colour": "red"})]:
        with pytest.raises(TypeError):
            dc(*args, **kwargs)
        with pytest.raises(TypeError):
            rec(*args, **kwargs)
    assert dataclasses.replace(rec("a", 2), name="b").size == 2  # replace() calls __init__ with every field


def test_decorating_a_record_compiles_nothing(monkeypatch):
    """The point of the shared methods: no exec() per class at import (a class with __post_init__ keeps dataclass's)."""
    from healthkit.system.records import identity_record

    made = []
    real = dataclasses._create_fn  # type: ignore[attr-defined]
    monkeypatch.setattr(dataclasses, "_create_fn", lambda *a, **k: made.append(a[0]) or real(*a, **k))

    @record
    class Point:
        x: int
        y: int = 0

    @identity_record
    class Box:
        items: list = field(default_factory=list)

    assert made == [] and Point(1) == Point(1, 0) and Box().items == []

    @record
    class Checked:
        x: int

        def __post_init__(self) -> None:
            if self.x < 0:
                raise ValueError("negative")

    assert "__init__" in made
    with pytest.raises(ValueError):
        Checked(-1)
