"""The layering in docs/architecture.md, held by the code: no import cycles, and the core never reaches into
checks/ or trainer/ except where the design says it composes them (the registry's fallback, the CLI)."""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PACKAGES = {"healthkit": "healthkit", "checks": "checks", "trainer": "trainer"}
# Where the core may import the trainer or the checks: the CLI composes the halves; the registry
# loads the built-in checks when no entry points are installed. Everything else goes through entry
# points (checks, fixes, daemon adapters), which an import graph does not see.
ALLOWED_CORE_TO_OUTER = {"healthkit.cli", "healthkit.core.registry"}


def module_name(path: Path) -> str:
    rel = path.relative_to(REPO).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def canonical(name: str) -> str:
    """`healthkit.checks.x` and `checks.x` are one module (the repository folder installs inside healthkit)."""
    for outer in ("checks", "trainer"):
        if name == f"healthkit.{outer}" or name.startswith(f"healthkit.{outer}."):
            return name[len("healthkit.") :]
    return name


def imports(path: Path, top_level_only: bool, type_only: bool = False) -> set[str]:
    """What ``path`` imports; ``type_only`` adds the `if TYPE_CHECKING:` imports (never run, but still a dependency)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    mod = module_name(path)
    pkg = mod if path.name == "__init__.py" else mod.rpartition(".")[0]
    body = [n for n in tree.body if type_only or not (isinstance(n, ast.If) and "TYPE_CHECKING" in ast.unparse(n.test))]
    nodes = body if top_level_only else [n for top in body for n in ast.walk(top)]
    out = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            out |= {canonical(a.name) for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = pkg.split(".")[: len(pkg.split(".")) - node.level + 1]
                name = ".".join(base + ([node.module] if node.module else []))
            else:
                name = node.module or ""
            name = canonical(name)
            out.add(name)
            out |= {f"{name}.{a.name}" for a in node.names}
    return {i for i in out if i.split(".")[0] in PACKAGES}


def graph(top_level_only: bool, type_only: bool = False) -> dict[str, set[str]]:
    mods = {module_name(p): p for pkg in PACKAGES for p in (REPO / pkg).rglob("*.py")}
    return {m: {i for i in imports(p, top_level_only, type_only) if i in mods and i != m} for m, p in mods.items()}


def cycles(g: dict[str, set[str]]) -> list[list[str]]:
    found, state, stack = [], {}, []

    def visit(m: str) -> None:
        state[m] = 1
        stack.append(m)
        for n in sorted(g.get(m, ())):
            if state.get(n) == 1:
                found.append(stack[stack.index(n) :] + [n])
            elif n not in state:
                visit(n)
        stack.pop()
        state[m] = 2

    for m in sorted(g):
        if m not in state:
            visit(m)
    return found


def test_no_import_cycles_at_import_time():
    g = graph(top_level_only=True)
    # a package importing its own submodules in __init__ is not a cycle that can bite
    g = {m: {n for n in deps if not (m.startswith(n + ".") and n.count(".") < m.count("."))} for m, deps in g.items()}
    assert cycles(g) == []


def test_core_never_imports_checks_or_trainer_outside_the_composition_points():
    g = graph(top_level_only=False)
    bad = sorted(
        f"{m} -> {n}"
        for m, deps in g.items()
        if m.startswith("healthkit") and m not in ALLOWED_CORE_TO_OUTER
        for n in deps
        if n.split(".")[0] in ("checks", "trainer")
    )
    assert bad == []


def test_checks_never_import_the_trainer():
    g = graph(top_level_only=False)
    assert (
        sorted(
            f"{m} -> {n}" for m, deps in g.items() if m.startswith("checks") for n in deps if n.startswith("trainer")
        )
        == []
    )


def test_no_import_cycles_even_through_lazy_imports():
    """A lazy import inside a function is still a dependency: both directions mean one module has two jobs."""
    g = graph(top_level_only=False)
    g = {m: {n for n in deps if not (m.startswith(n + ".") and n.count(".") < m.count("."))} for m, deps in g.items()}
    assert cycles(g) == []


def test_no_import_cycles_even_through_type_annotations():
    """Typing on a module is depending on it: the renderers type on Report, so the report must not call the
    renderers (`healthkit.reporting.render.render(report, fmt)` owns the call). One direction per pair of modules."""
    g = graph(top_level_only=False, type_only=True)
    g = {m: {n for n in deps if not (m.startswith(n + ".") and n.count(".") < m.count("."))} for m, deps in g.items()}
    assert cycles(g) == []
    assert "healthkit.reporting.render" not in g["healthkit.core.report"]


# The layer packages of healthkit/, bottom to top (docs/architecture.md, "Packages"). A module imports only from its
# own layer or a lower one; the top-level modules (the facade, the CLI, its typer-free commands and quick parse, the
# console entry, the demo, the pytest plugin) compose everything and nothing below imports them, except `_version`
# (a leaf any layer may name).
LAYERS = ["system", "formats", "contract", "core", "reporting", "fix", "scheduled"]
LEAVES = {"healthkit._version"}


def layer_of(module: str) -> int | None:
    """The index of ``module``'s layer; len(LAYERS) for the top-level modules; None outside healthkit."""
    parts = module.split(".")
    if parts[0] != "healthkit":
        return None
    if len(parts) > 1 and parts[1] in LAYERS:
        return LAYERS.index(parts[1])
    return len(LAYERS)


def test_every_healthkit_module_lives_in_a_layer_package_or_is_a_named_top_level_module():
    top = sorted(p.stem for p in (REPO / "healthkit").glob("*.py"))
    assert top == [
        "__init__",
        "__main__",
        "_moved",
        "_version",
        "cli",
        "commands",
        "console",
        "demo",
        "oneaudit",
        "pytest_plugin",
        "quickargs",
    ]
    packages = sorted(p.name for p in (REPO / "healthkit").iterdir() if (p / "__init__.py").exists())
    assert packages == sorted(LAYERS)
    assert sorted(p.name for p in (REPO / "healthkit").iterdir() if p.is_dir() and p.name != "__pycache__") == sorted(
        LAYERS + ["schemas"]
    )


def layer_violations(g: dict[str, set[str]]) -> list[str]:
    bad = []
    for m, deps in sorted(g.items()):
        mine = layer_of(m)
        if mine is None or mine == len(LAYERS):
            continue
        for n in sorted(deps):
            theirs = layer_of(n)
            if theirs is None or n in LEAVES or n == m.rpartition(".")[0]:
                continue
            if theirs > mine:
                top = "top-level module" if theirs == len(LAYERS) else f"layer {LAYERS[theirs]}"
                bad.append(f"{m} ({LAYERS[mine]}) -> {n} ({top})")
    return bad


def test_imports_point_down_the_layers_lazy_and_type_only_imports_included():
    assert layer_violations(graph(top_level_only=False, type_only=True)) == []


def test_the_layer_rule_catches_an_import_up_and_one_of_the_facade():
    g = {
        "healthkit.system.fsutil": {"healthkit.core.workspace"},
        "healthkit.core.api": {"healthkit", "healthkit._version"},
        "healthkit.fix.engine": {"healthkit.core.api", "healthkit.fix"},
        "healthkit.cli": {"healthkit.fix.engine"},
    }
    assert layer_violations(g) == [
        "healthkit.core.api (core) -> healthkit (top-level module)",
        "healthkit.system.fsutil (system) -> healthkit.core.workspace (layer core)",
    ]
