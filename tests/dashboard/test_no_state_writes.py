"""A state changes only through its model's methods (dashboard.models, audiences.models): no other
module assigns a `state` or writes one with update(), create() or a model's constructor."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("dashboard", "audiences")
WRITERS = {"update", "create", "get_or_create", "update_or_create", "bulk_update"}
MODELS = {"Import", "Chunk", "Operation"}  # their constructors


def _modules() -> list[Path]:
    return sorted(
        path
        for package in PACKAGES
        for path in (ROOT / package).rglob("*.py")
        if path.name != "models.py" and "migrations" not in path.parts
    )


def state_writes(source: str) -> list[int]:
    """The lines of `source` that write a `state`."""
    lines = []
    for node in ast.walk(ast.parse(source)):
        targets: list[ast.expr] = []
        if isinstance(node, ast.Assign):
            targets = node.targets
        elif isinstance(node, (ast.AugAssign, ast.AnnAssign)):
            targets = [node.target]
        for target in targets:
            for part in ast.walk(target):
                if isinstance(part, ast.Attribute) and part.attr == "state":
                    lines.append(node.lineno)
        if isinstance(node, ast.Call) and any(k.arg == "state" for k in node.keywords):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            if name in WRITERS or name in MODELS:
                lines.append(node.lineno)
    return lines


def test_it_finds_the_writes_it_looks_for() -> None:
    source = (
        "imp.state = 'mapped'\n"
        "Import.objects.filter(pk=1).update(state='failed')\n"
        "Chunk.objects.create(number=1, state='queued')\n"
        "Chunk(number=1, state='queued')\n"
        "Import.objects.filter(state='failed').count()\n"
        "state = imp.state\n"
    )
    assert state_writes(source) == [1, 2, 3, 4]


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(ROOT)))
def test_no_module_but_the_models_writes_a_state(path: Path) -> None:
    assert state_writes(path.read_text()) == [], f"{path.relative_to(ROOT)} writes a state"


def test_it_reads_the_modules_of_the_packages_too() -> None:
    """The views are a package: each of its modules is read like any other."""
    views = {path.name for path in _modules() if path.parent == ROOT / "dashboard" / "views"}
    assert {"access.py", "imports.py", "import_steps.py", "audiences.py", "support.py"} <= views
