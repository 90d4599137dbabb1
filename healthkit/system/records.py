"""Frozen dataclasses whose __eq__, __hash__ and __repr__ are three shared functions, not code generated per class.

`@dataclass(frozen=True)` compiles six methods for every class with exec() when its module is imported; an audit
imports about forty such classes (findings, the workspace's views, formats, processes), and on Python 3.11 that was
a third of its import time. `@record` is `@dataclass(frozen=True)` with the same equality (same class, field
tuples of the compare=True fields), the same hash (of the tuple of the hashed fields) and the same repr
(qualname and the repr=True fields, guarded against recursion), so only __init__, __setattr__ and __delattr__
are generated. tests/test_records.py holds the equivalence.
"""

from __future__ import annotations

import dataclasses
import reprlib
from typing import Any, TypeVar, dataclass_transform

T = TypeVar("T")


def _eq(self: Any, other: Any) -> Any:
    if other.__class__ is self.__class__:
        names = self.__record_compare__
        return tuple([getattr(self, n) for n in names]) == tuple([getattr(other, n) for n in names])
    return NotImplemented


def _hash(self: Any) -> int:
    return hash(tuple([getattr(self, n) for n in self.__record_hash__]))


@reprlib.recursive_repr()
def _repr(self: Any) -> str:
    fields = ", ".join(f"{n}={getattr(self, n)!r}" for n in self.__record_repr__)
    return f"{self.__class__.__qualname__}({fields})"


@dataclass_transform(frozen_default=True, field_specifiers=(dataclasses.field, dataclasses.Field))
def record(cls: type[T]) -> type[T]:
    """`@dataclass(frozen=True)`, with eq, hash and repr shared (see the module docstring)."""
    if any(name in cls.__dict__ for name in ("__eq__", "__hash__", "__repr__")):
        return dataclasses.dataclass(frozen=True)(cls)  # a class with its own: dataclass's rules, untouched
    cls = dataclasses.dataclass(frozen=True, eq=False, repr=False)(cls)
    fields = dataclasses.fields(cls)  # type: ignore[arg-type]
    cls.__record_compare__ = tuple(f.name for f in fields if f.compare)  # type: ignore[attr-defined]
    cls.__record_hash__ = tuple(f.name for f in fields if (f.compare if f.hash is None else f.hash))  # type: ignore[attr-defined]
    cls.__record_repr__ = tuple(f.name for f in fields if f.repr)  # type: ignore[attr-defined]
    cls.__eq__ = _eq  # type: ignore[method-assign]
    cls.__hash__ = _hash  # type: ignore[method-assign]
    cls.__repr__ = _repr  # type: ignore[method-assign]
    return cls


@dataclass_transform(field_specifiers=(dataclasses.field, dataclasses.Field))
def identity_record(cls: type[T]) -> type[T]:
    """`@dataclass(eq=False)` (mutable, equal only to itself) with the shared repr: only __init__ is generated."""
    if "__repr__" in cls.__dict__:
        return dataclasses.dataclass(eq=False)(cls)
    cls = dataclasses.dataclass(eq=False, repr=False)(cls)
    cls.__record_repr__ = tuple(f.name for f in dataclasses.fields(cls) if f.repr)  # type: ignore[attr-defined,arg-type]
    cls.__repr__ = _repr  # type: ignore[method-assign]
    return cls
