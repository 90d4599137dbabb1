"""The check registry: one path for built-in and third-party checks (entry points), plus local plugins.

Finding, loading and classifying are separate steps (as in flake8): a plugin that fails
to load becomes a ``LoadError`` in the report and every other check still runs.
"""

from __future__ import annotations

import importlib
import inspect
import re
import sys
import types
from collections.abc import Callable, Iterable
from dataclasses import field
from pathlib import Path
from typing import Any

from healthkit.core.findings import FixRef
from healthkit.system.records import identity_record, record

ENTRY_POINT_GROUP = "healthkit.checks"
_CODE_RE = re.compile(r"^[a-z][a-z0-9_-]*\.[a-z][a-z0-9_.-]*$")
_ID_RE = re.compile(r"^[a-z][a-z0-9_-]*$")


class RegistrationError(ValueError):
    """A check is malformed; raised loudly at registration, never at audit time."""


@record
class CodeDoc:
    """The documentation of one finding code, shared by `healthkit checks` and `healthkit explain`.

    Sections follow ruff's rule docs: what it means, why it matters, how it is fixed
    and how safe that fix is.
    """

    code: str
    severity: str
    title: str
    what: str
    why: str
    fix: str
    fix_safety: str = ""
    # The FixRefs a finding of this code may carry; held to the registered fixes by
    # healthkit.fix.plan.contract_errors (a FixRef naming no fix fails a test, not a user).
    fixes: tuple[FixRef, ...] = ()

    def render(self) -> str:
        parts = [
            f"{self.code} ({self.severity}): {self.title}",
            "",
            "What it means",
            f"  {self.what}",
            "",
            "Why it matters",
            f"  {self.why}",
            "",
            "How it is fixed",
            f"  {self.fix}",
        ]
        if self.fix_safety:
            parts += ["", "Fix safety", f"  {self.fix_safety}"]
        return "\n".join(parts)


@record
class Check:
    """A registered check: a function of a Workspace returning findings (or a CheckOutput)."""

    id: str
    title: str
    func: Callable[[Any], Any]
    codes: tuple[CodeDoc, ...] = ()
    tags: tuple[str, ...] = ()
    source: str = "builtin"


@record
class LoadError:
    source: str
    message: str


def check(
    id: str, *, title: str, codes: Iterable[CodeDoc] = (), tags: Iterable[str] = ()
) -> Callable[[Callable[[Any], Any]], Callable[[Any], Any]]:
    """Mark a function as a check. Registration happens when its module is loaded."""

    def decorate(func: Callable[[Any], Any]) -> Callable[[Any], Any]:
        spec = Check(id=id, title=title, func=func, codes=tuple(codes), tags=tuple(tags))
        _validate(spec)
        func.__healthkit_check__ = spec  # type: ignore[attr-defined]
        return func

    return decorate


def _required_positional(func: Any) -> int:
    """How many positional arguments ``func`` needs: from its code object for a plain function (an audit registers
    about forty; inspect.signature costs ~50 us each), else from inspect.signature (partials, callables)."""
    if isinstance(func, types.FunctionType):
        code = func.__code__
        return code.co_argcount - len(func.__defaults__ or ())
    return len(
        [
            p
            for p in inspect.signature(func).parameters.values()
            if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and p.default is p.empty
        ]
    )


def _validate(spec: Check) -> None:
    if not _ID_RE.match(spec.id):
        raise RegistrationError(f"check id {spec.id!r} must be lowercase letters, digits, '-' or '_'")
    required = _required_positional(spec.func)
    if required != 1:
        raise RegistrationError(
            f"check {spec.id!r} must take exactly one argument (the Workspace); "
            f"{spec.func.__qualname__} takes {required}"
        )
    for doc in spec.codes:
        if not _CODE_RE.match(doc.code):
            raise RegistrationError(f"finding code {doc.code!r} of check {spec.id!r} must look like 'area.name'")
        if doc.severity not in ("info", "warning", "critical"):
            raise RegistrationError(f"finding code {doc.code!r} has unknown severity {doc.severity!r}")
        for ref in doc.fixes:
            if not isinstance(ref, FixRef) or ref.safety not in ("safe", "unsafe"):
                raise RegistrationError(
                    f"finding code {doc.code!r} declares {ref!r}, not a FixRef with safety safe|unsafe"
                )


@identity_record
class Registry:
    checks: dict[str, Check] = field(default_factory=dict)
    errors: list[LoadError] = field(default_factory=list)

    def add(self, func_or_check: Any, source: str = "builtin") -> Check:
        spec = getattr(func_or_check, "__healthkit_check__", func_or_check)
        if not isinstance(spec, Check):
            raise RegistrationError(f"{func_or_check!r} is not a check (decorate it with @healthkit.check)")
        _validate(spec)
        if spec.id in self.checks and self.checks[spec.id].func is not spec.func:
            raise RegistrationError(f"two checks claim the id {spec.id!r} ({self.checks[spec.id].source} and {source})")
        spec = Check(spec.id, spec.title, spec.func, spec.codes, spec.tags, source)
        self.checks[spec.id] = spec
        return spec

    def add_module(self, module: Any, source: str) -> int:
        found = 0
        for _, obj in sorted(vars(module).items()):
            if isinstance(getattr(obj, "__healthkit_check__", None), Check):
                self.add(obj, source)
                found += 1
        if not found:
            raise RegistrationError(f"{source} defines no @check function")
        return found

    def load_object(self, obj: Any, source: str) -> None:
        """Register what an entry point or plugin names: a module or a single check function."""
        try:
            if inspect.ismodule(obj):
                self.add_module(obj, source)
            else:
                self.add(obj, source)
        except RegistrationError as exc:
            self.errors.append(LoadError(source, str(exc)))

    def load_entry_points(self, entry_points: Iterable[Any] | None = None) -> None:
        if entry_points is None:
            from healthkit.system.entrypoints import entry_points as cached_entry_points

            entry_points = cached_entry_points(ENTRY_POINT_GROUP)
        for ep in sorted(entry_points, key=lambda e: e.name):
            source = f"entry point {ep.name} = {ep.value}"
            try:
                obj = ep.load()
            except Exception as exc:  # a broken plugin must not stop the audit
                self.errors.append(LoadError(source, f"failed to load: {type(exc).__name__}: {exc}"))
                continue
            self.load_object(obj, source)

    def load_plugin(self, name: str, base: Path) -> None:
        """Load a local plugin named in healthkit.toml: a module name or a .py path relative to the workspace."""
        source = f"plugin {name}"
        try:
            if name.endswith(".py"):
                import importlib.util

                path = (base / name).resolve()
                if not path.is_file():
                    raise ImportError(
                        f"no such plugin file: {path} (healthkit.toml [checks] plugins names it "
                        "relative to the workspace)"
                    )
                mod_name = f"healthkit_local_{abs(hash(str(path)))}"
                spec = importlib.util.spec_from_file_location(mod_name, path)
                if spec is None or spec.loader is None:
                    raise ImportError(f"cannot load {path}")
                module = importlib.util.module_from_spec(spec)
                sys.modules[mod_name] = module
                spec.loader.exec_module(module)
            else:
                module = importlib.import_module(name)
        except Exception as exc:
            self.errors.append(LoadError(source, f"failed to load: {type(exc).__name__}: {exc}"))
            return
        self.load_object(module, source)

    def sorted(self) -> list[Check]:
        return [self.checks[k] for k in sorted(self.checks)]

    def code_docs(self) -> dict[str, CodeDoc]:
        return {doc.code: doc for c in self.sorted() for doc in c.codes}

    def select(self, select: Iterable[str] = (), ignore: Iterable[str] = ()) -> list[Check]:
        """Choose checks by id, tag or finding-code prefix (``daemon``, ``disk.low-space``).

        A name that is a check id means that check only, even when other checks carry it as a
        tag (`--select disk` is the disk check, not every check tagged disk).
        """
        select, ignore = list(select), list(ignore)
        ids = set(self.checks)

        def matches(c: Check, names: list[str]) -> bool:
            for n in names:
                if n in ids:
                    if n == c.id:
                        return True
                    continue
                if n in c.tags or any(d.code == n or d.code.startswith(n + ".") for d in c.codes):
                    return True
            return False

        chosen = [c for c in self.sorted() if not select or matches(c, select)]
        return [c for c in chosen if not ignore or not (_only_codes(c, ignore) or _by_id_or_tag(c, ignore, ids))]


def _by_id_or_tag(c: Check, names: list[str], ids: set[str]) -> bool:
    return any(n == c.id or (n not in ids and n in c.tags) for n in names)


def _only_codes(c: Check, names: list[str]) -> bool:
    """True when every code of the check is ignored, so running it would be pointless."""
    return bool(c.codes) and all(any(d.code == n or d.code.startswith(n + ".") for n in names) for d in c.codes)


def default_registry(plugins: Iterable[str] = (), base: Path | None = None) -> Registry:
    reg = Registry()
    reg.load_entry_points()
    if not reg.checks:
        # Running from a source tree that was never installed: register the built-ins directly.
        from healthkit.checks import BUILTIN_MODULES

        for name in BUILTIN_MODULES:
            reg.load_object(importlib.import_module(f"healthkit.checks.{name}"), f"healthkit.checks.{name}")
    for p in plugins:
        reg.load_plugin(p, base or Path.cwd())
    return reg
