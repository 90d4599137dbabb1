"""Read a pickle's plain data without running anything it names.

A checkpoint's pickle (Lightning's `.ckpt`, HF's `training_args.bin`, a DCP `.metadata`)
records plain values (dicts, lists, numbers, strings) inside objects of classes from torch,
transformers or Lightning. Unpickling it normally imports those classes and calls them: code
execution from a file on disk, and seconds of imports on the audit path. Here every global a
pickle names becomes an inert stand-in (`Stub`) that only records its arguments and state,
nothing is imported, and a tensor's storage is never read. What comes back is enough to read
fields (global_step, a callback's state, `save_total_limit`), never to rebuild the object.
"""

from __future__ import annotations

import io
import pickle
from collections import OrderedDict
from typing import Any

from healthkit.formats.base import field_of  # re-exported: its home is base, which imports no pickle

# Builtins that are plain data: these, and only these, are real.
_REAL = {
    ("collections", "OrderedDict"): OrderedDict,
    ("builtins", "set"): set,
    ("builtins", "frozenset"): frozenset,
    ("builtins", "slice"): slice,
    ("builtins", "complex"): complex,
    ("__builtin__", "set"): set,
}


class PickleRefused(Exception):
    """The bytes are not a pickle this reader can walk (truncated, or not a pickle)."""


class Stub:
    """A stand-in for any class or function a pickle names: it records how it was built, and does nothing."""

    qualname = "?"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.args = args
        self.kwargs = kwargs
        self.state: Any = None
        self.items: dict[Any, Any] = {}
        self.elements: list[Any] = []

    def __new__(cls, *args: Any, **kwargs: Any) -> Stub:
        obj = object.__new__(cls)
        obj.args, obj.kwargs, obj.state, obj.items, obj.elements = args, kwargs, None, {}, []
        return obj

    def __setstate__(self, state: Any) -> None:
        self.state = state

    def __setitem__(self, key: Any, value: Any) -> None:
        self.items[key] = value

    def append(self, value: Any) -> None:
        self.elements.append(value)

    def extend(self, values: Any) -> None:
        self.elements.extend(values)

    def fields(self) -> dict[str, Any]:
        """The object's attributes as pickled (its state dict, or a dataclass's), else its dict items."""
        st = self.state
        if isinstance(st, tuple) and len(st) == 2 and isinstance(st[1], dict):  # (dict, slots)
            st = {**(st[0] or {}), **st[1]}
        if isinstance(st, dict):
            return st
        return dict(self.items)

    def __repr__(self) -> str:
        return f"<{self.qualname} stand-in>"


_STUBS: dict[tuple[str, str], type] = {}


def _stub_class(module: str, name: str) -> type:
    key = (module, name)
    if key not in _STUBS:
        _STUBS[key] = type(
            name, (Stub,), {"qualname": f"{module}.{name}", "__module__": "healthkit.formats.safepickle"}
        )
    return _STUBS[key]


class _Reader(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:  # never imports
        return _REAL.get((module, name)) or _stub_class(module, name)

    def persistent_load(self, pid: Any) -> Any:  # a tensor's storage: never read
        return _stub_class("storage", "persistent")(pid)


def safe_loads(raw: bytes) -> Any:
    """The pickle's data with stand-ins for every class; PickleRefused when it is not a whole pickle."""
    try:
        return _Reader(io.BytesIO(raw)).load()
    except (
        pickle.UnpicklingError,
        EOFError,
        ValueError,
        TypeError,
        AttributeError,
        IndexError,
        KeyError,
        RecursionError,
        MemoryError,
        UnicodeDecodeError,
    ) as exc:
        raise PickleRefused(f"not a readable pickle ({type(exc).__name__})") from None


__all__ = ["PickleRefused", "Stub", "field_of", "safe_loads"]
