"""Frozen dataclasses whose __eq__, __hash__ and __repr__ are three shared functions, not code generated per class.

`@dataclass(frozen=True)` compiles six methods for every class with exec() when its module is imported; an audit
imports about forty such classes (findings, the workspace's views, formats, processes), and on Python 3.11 that was
a third of its import time. `@record` is `@dataclass(frozen=True)` with the same equality (same class, field
tuples of the compare=True fields), the same hash (of the tuple of the hashed fields) and the same repr
(qualname and the repr=True fields, guarded against recursion), so only __init__, __setattr__ and __delattr__
are generated. tests/test_records.py holds the equivalence.

Then __init__, __setattr__ and __delattr__ went the same way: one shared __init__ reads a per-class table of
(name, default, factory), and a frozen record's __setattr__/__delattr__ are two shared functions raising
FrozenInstanceError, so decorating a class compiles nothing. A record takes its fields positionally or by name,
as the generated __init__ did; creating one costs about a microsecond more, which no audit notices (it makes
hundreds, not millions), while the audit imports about seventy such classes at ~0.35 ms of exec() each.
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


_MISSING = dataclasses.MISSING


def _init(self: Any, *args: Any, **kwargs: Any) -> None:
    table = self.__record_init__
    if len(args) > len(table):
        raise TypeError(f"{type(self).__qualname__}() takes {len(table)} positional argument(s), {len(args)} given")
    for (name, _, _), value in zip(table, args, strict=False):
        if name in kwargs:
            raise TypeError(f"{type(self).__qualname__}() got multiple values for argument {name!r}")
        object.__setattr__(self, name, value)
    for name, default, factory in table[len(args) :]:
        if name in kwargs:
            value = kwargs.pop(name)
        elif default is not _MISSING:
            value = default
        elif factory is not _MISSING:
            value = factory()
        else:
            raise TypeError(f"{type(self).__qualname__}() missing required argument: {name!r}")
        object.__setattr__(self, name, value)
    if kwargs:
        raise TypeError(f"{type(self).__qualname__}() got an unexpected keyword argument {next(iter(kwargs))!r}")


def _frozen_setattr(self: Any, name: str, value: Any) -> None:
    raise dataclasses.FrozenInstanceError(f"cannot assign to field {name!r}")


def _frozen_delattr(self: Any, name: str) -> None:
    raise dataclasses.FrozenInstanceError(f"cannot delete field {name!r}")


def _without_generated_methods(cls: type[T], frozen: bool) -> type[T] | None:
    """The dataclass with the shared __init__ (and, frozen, the shared __setattr__/__delattr__); None when the class
    needs dataclass's own (__post_init__, InitVar, keyword-only or non-init fields, its own __init__, a base)."""
    if (
        "__init__" in cls.__dict__
        or hasattr(cls, "__post_init__")
        or any(dataclasses.is_dataclass(b) for b in cls.__mro__[1:])
    ):
        return None
    if (
        cls.__doc__ is None
    ):  # dataclass would write one from inspect.signature(cls): tokenize's patterns, ~0.4 ms a class
        cls.__doc__ = f"{cls.__name__}({', '.join(cls.__dict__.get('__annotations__', {}))})"
    out = dataclasses.dataclass(init=False, eq=False, repr=False)(cls)
    fields = dataclasses.fields(out)  # type: ignore[arg-type]
    if len(fields) != len(out.__dataclass_fields__) or any(not f.init or f.kw_only for f in fields):  # type: ignore[attr-defined]
        return None
    out.__record_init__ = tuple((f.name, f.default, f.default_factory) for f in fields)  # type: ignore[attr-defined]
    out.__init__ = _init  # type: ignore[method-assign]
    if frozen:
        out.__setattr__ = _frozen_setattr  # type: ignore[method-assign]
        out.__delattr__ = _frozen_delattr  # type: ignore[method-assign]
        out.__dataclass_params__.frozen = True  # type: ignore[attr-defined]  # what dataclass's own checks read
    return out


@dataclass_transform(frozen_default=True, field_specifiers=(dataclasses.field, dataclasses.Field))
def record(cls: type[T]) -> type[T]:
    """`@dataclass(frozen=True)`, with eq, hash and repr shared (see the module docstring)."""
    if any(name in cls.__dict__ for name in ("__eq__", "__hash__", "__repr__")):
        return dataclasses.dataclass(frozen=True)(cls)  # a class with its own: dataclass's rules, untouched
    cls = _without_generated_methods(cls, frozen=True) or dataclasses.dataclass(frozen=True, eq=False, repr=False)(cls)
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
    cls = _without_generated_methods(cls, frozen=False) or dataclasses.dataclass(eq=False, repr=False)(cls)
    cls.__record_repr__ = tuple(f.name for f in dataclasses.fields(cls) if f.repr)  # type: ignore[attr-defined,arg-type]
    cls.__repr__ = _repr  # type: ignore[method-assign]
    return cls
