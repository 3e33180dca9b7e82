"""Only storage/ talks to the database: services call store classes, never the pool.

import-linter cannot forbid a submodule of an external package (`synapse.storage`)
nor a method call, so this reads the source: the module's ModuleApi database
calls are made by storage/runner.py alone, and only storage/ imports
`synapse.storage` (the transaction type the bodies are written against).
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[3] / "synapse_email_gate"
RUNNER = PACKAGE / "storage" / "runner.py"
DATABASE_CALLS = {"run_db_interaction", "run_interaction", "runInteraction", "runWithConnection"}


def sources() -> list[Path]:
    found = sorted(PACKAGE.rglob("*.py"))
    assert RUNNER in found and len(found) > 30, found
    return found


def names_used(tree: ast.AST) -> set[str]:
    """Attributes read, names used and string constants (a getattr(api, "...") too)."""
    used: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute):
            used.add(node.attr)
        elif isinstance(node, ast.Name):
            used.add(node.id)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            used.add(node.value)
    return used


def imported(tree: ast.AST) -> set[str]:
    modules: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            modules.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            modules.add(node.module)
    return modules


def test_only_the_storage_runner_calls_the_database() -> None:
    callers = {
        str(path.relative_to(PACKAGE)): sorted(
            names_used(ast.parse(path.read_text())) & DATABASE_CALLS
        )
        for path in sources()
        if path != RUNNER
    }
    assert {path: calls for path, calls in callers.items() if calls} == {}
    assert "run_db_interaction" in names_used(ast.parse(RUNNER.read_text()))


def test_only_storage_imports_synapse_storage() -> None:
    outside = {
        str(path.relative_to(PACKAGE)): sorted(
            m
            for m in imported(ast.parse(path.read_text()))
            if m.split(".")[:2] == ["synapse", "storage"]
        )
        for path in sources()
        if "storage" not in path.relative_to(PACKAGE).parts[:1]
    }
    assert {path: modules for path, modules in outside.items() if modules} == {}
