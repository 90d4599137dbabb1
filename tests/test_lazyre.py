"""healthkit.system.lazyre: a pattern compiled at first use answers exactly as re.compile's."""

from __future__ import annotations

import re

from healthkit.system.lazyre import LazyPattern


def test_a_lazy_pattern_compiles_on_first_use_and_answers_as_the_compiled_one():
    source = r"(?P<key>[a-z_]+)\s*=\s*(?P<val>\d+)"
    lazy = LazyPattern(source, re.IGNORECASE)
    assert "match" not in vars(lazy)  # nothing compiled at import
    real = re.compile(source, re.IGNORECASE)
    text = "A = 1, b=22; C =333"
    assert lazy.search(text).groupdict() == real.search(text).groupdict()
    assert "match" in vars(lazy)  # the compiled pattern's own methods from now on
    assert [m.span() for m in lazy.finditer(text)] == [m.span() for m in real.finditer(text)]
    assert lazy.match(text).group("val") == "1" and lazy.fullmatch("x=5") is not None
    assert lazy.sub("-", text) == real.sub("-", text) and lazy.findall(text) == real.findall(text)
    assert lazy.split(text) == real.split(text) and lazy.subn("", text) == real.subn("", text)
    assert lazy.pattern == source and lazy.flags == real.flags and lazy.groupindex == real.groupindex
