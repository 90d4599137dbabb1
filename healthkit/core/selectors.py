"""Names given to `--select`, `--ignore` and `fix --only` must name something: a typo is a usage error, not a green result."""

from __future__ import annotations

from collections.abc import Iterable

from healthkit.core.registry import Registry


class SelectorError(ValueError):
    """A selector names no check, tag, finding code or fix; the message suggests close names."""


def audit_names(reg: Registry) -> set[str]:
    """What `--select`/`--ignore` accept: check ids, tags, finding codes and their families (`disk` of `disk.low-space`)."""
    names: set[str] = set()
    for c in reg.checks.values():
        names.add(c.id)
        names.update(c.tags)
        for d in c.codes:
            parts = d.code.split(".")
            names.update(".".join(parts[:i]) for i in range(1, len(parts) + 1))
    return names


def fix_names(reg: Registry, fix_ids: Iterable[str]) -> set[str]:
    """What `fix --only` accepts: finding codes, their families, check ids and fix ids (not tags)."""
    names = set(fix_ids)
    for c in reg.checks.values():
        names.add(c.id)
        for d in c.codes:
            names.update({d.code, d.code.split(".")[0]})
    return names


def require_known(option: str, given: Iterable[str], known: set[str]) -> None:
    """Raise SelectorError naming each given name that matches nothing, with "did you mean" where one is close."""
    problems = []
    for name in given:
        if name in known:
            continue
        import difflib  # only for the message of a typo

        close = difflib.get_close_matches(name, sorted(known), n=3, cutoff=0.6)
        hint = f"; did you mean: {', '.join(close)}" if close else "; see `healthkit checks` for the names"
        problems.append(f"{option} {name!r} matches nothing{hint}")
    if problems:
        raise SelectorError("\n".join(problems))
