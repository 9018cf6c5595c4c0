"""The shape of the code: the import graph of dashboard/ and audiences/.

Data flows one way (design.md: upload, validation, chunking, sending, settle), so no module
imports one that imports it back, even through others or from inside a function. An import
inside a function hides such a cycle from a reader; only an AppConfig's ``ready`` (which runs
once every app is loaded) and ``if TYPE_CHECKING:`` blocks (never run) may hold one.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("dashboard", "audiences")


@dataclass(frozen=True)
class Import:
    module: str  # the importing module
    line: int
    target: str  # the project module imported
    in_function: str | None  # the enclosing function's name, if any
    allowed_inside: bool  # in an AppConfig's ready(), or in an `if TYPE_CHECKING:` block
    type_checking: bool


def _modules() -> dict[str, Path]:
    modules = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            if "migrations" in path.parts:
                continue
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            modules[".".join(parts)] = path
    return modules


MODULES = _modules()


def _resolve(name: str) -> str | None:
    """The project module that ``name`` (a module or a name in one) comes from."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _is_app_config(node: ast.ClassDef) -> bool:
    return any(ast.unparse(base).endswith("AppConfig") for base in node.bases)


def _targets(node: ast.Import | ast.ImportFrom, module: str, path: Path) -> Iterator[str]:
    if isinstance(node, ast.Import):
        names = [alias.name for alias in node.names]
    else:
        base = node.module or ""
        if node.level:
            package = module if path.name == "__init__.py" else module.rpartition(".")[0]
            parts = package.split(".")[: len(package.split(".")) - (node.level - 1)]
            base = ".".join([*parts, base] if base else parts)
        # `from package import module` imports the module; `from module import name`, the module.
        names = [
            f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else base
            for alias in node.names
        ]
    for name in names:
        target = _resolve(name)
        if target is not None and target != module:
            yield target


def _imports(module: str, path: Path) -> Iterator[Import]:
    def visit(
        node: ast.AST, function: str | None, allowed: bool, type_checking: bool, app_config: bool
    ) -> Iterator[Import]:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.Import | ast.ImportFrom):
                for target in _targets(child, module, path):
                    yield Import(module, child.lineno, target, function, allowed, type_checking)
            elif isinstance(child, ast.ClassDef):
                yield from visit(child, function, allowed, type_checking, _is_app_config(child))
            elif isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef):
                ready = app_config and function is None and child.name == "ready"
                yield from visit(child, child.name, allowed or ready, type_checking, False)
            elif isinstance(child, ast.If) and _is_type_checking(child):
                for statement in child.body:
                    yield from visit(
                        ast.Module(body=[statement], type_ignores=[]),
                        function,
                        True,
                        True,
                        app_config,
                    )
                for statement in child.orelse:
                    yield from visit(
                        ast.Module(body=[statement], type_ignores=[]),
                        function,
                        allowed,
                        type_checking,
                        app_config,
                    )
            else:
                yield from visit(child, function, allowed, type_checking, app_config)

    yield from visit(ast.parse(path.read_text(), str(path)), None, False, False, False)


IMPORTS = [i for module, path in MODULES.items() for i in _imports(module, path)]


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected groups of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []

    def connect(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for v in sorted(graph):
        if v not in index:
            connect(v)
    return groups


def test_the_graph_is_read():
    """The checks below look at real imports (a parser that found none would pass them)."""
    assert {"dashboard.models", "audiences.rules", "audiences.api"} <= set(MODULES)
    edges = {(i.module, i.target) for i in IMPORTS}
    assert ("audiences.api", "audiences.rules") in edges
    assert ("dashboard.forms", "audiences.rules") in edges
    ready = [i for i in IMPORTS if i.module == "dashboard.apps" and i.in_function == "ready"]
    assert ready and all(i.allowed_inside for i in ready)


def test_no_module_imports_one_that_imports_it_back():
    # Imports for type checking only are never run: they make no cycle.
    graph: dict[str, set[str]] = {module: set() for module in MODULES}
    for i in IMPORTS:
        if not i.type_checking:
            graph[i.module].add(i.target)
    assert _cycles(graph) == []


def test_project_modules_are_imported_at_the_top_of_a_module():
    local = {
        f"{i.module}:{i.line} imports {i.target} in {i.in_function}()"
        for i in IMPORTS
        if i.in_function is not None and not i.allowed_inside
    }
    assert sorted(local) == []


def test_the_two_apps_meet_only_at_the_apis_rules_and_limits():
    """design.md: audiences/ knows nothing of the dashboard, and the dashboard reaches audience
    data only through the HTTP client, importing only the API's pure rules and its limits."""
    crossings = {
        (i.module, i.target)
        for i in IMPORTS
        if i.module.split(".")[0] != i.target.split(".")[0]
        and i.target not in ("audiences.rules", "audiences.limits")
    }
    assert sorted(crossings) == []
