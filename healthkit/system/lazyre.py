"""Regular expressions compiled at first use: a module with many patterns need not compile them at import.

Python compiles each `re.compile` when the module is imported, and a large pattern costs a fraction of a
millisecond; an audit imports every check's module whether or not their patterns will ever run (a workspace
without docs never parses a fenced JSON block). A `LazyPattern` stands where the compiled pattern stood.
"""

from __future__ import annotations

import re
from typing import Any

_METHODS = ("match", "fullmatch", "search", "finditer", "findall", "sub", "subn", "split")


class LazyPattern:
    """`re.compile(pattern, flags)` on first use; then its methods are the compiled pattern's own (no indirection)."""

    def __init__(self, pattern: str, flags: int = 0) -> None:
        self._source = (pattern, flags)

    def compiled(self) -> re.Pattern[str]:
        return re.compile(*self._source)  # re's own cache makes a second call cheap

    def __getattr__(self, name: str) -> Any:  # only for names not yet set on the instance
        if name.startswith("__"):
            raise AttributeError(name)
        compiled = self.compiled()
        for method in _METHODS:
            setattr(self, method, getattr(compiled, method))
        return getattr(compiled, name)
