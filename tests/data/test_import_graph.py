"""The import graph of spml_lightning.data: no cycles, and io.py at the bottom.

Read from the source with ``ast`` (imports inside functions included: a lazy
import that closes a cycle is still a cycle for a reader of the code).
"""

from __future__ import annotations

import ast
from pathlib import Path

import spml_lightning.data

PACKAGE = "spml_lightning.data"
ROOT = Path(spml_lightning.data.__file__).resolve().parent


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join((PACKAGE, *parts))


def _import_graph() -> dict[str, set[str]]:
    """Module -> the modules of this package it names in an import statement."""
    modules = {_module_name(path): path for path in ROOT.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        targets: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                targets.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                # ``from package import submodule`` imports the submodule.
                targets.update(f"{node.module}.{alias.name}" for alias in node.names)
                targets.add(node.module)
        graph[name] = {target for target in targets if target in modules and target != name}
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle of ``graph`` (depth-first search), or None."""
    done: set[str] = set()

    def visit(name: str, path: list[str]) -> list[str] | None:
        if name in path:
            return path[path.index(name) :] + [name]
        if name in done:
            return None
        for target in sorted(graph[name]):
            found = visit(target, [*path, name])
            if found:
                return found
        done.add(name)
        return None

    for name in sorted(graph):
        found = visit(name, [])
        if found:
            return found
    return None


def test_the_data_package_has_no_import_cycle() -> None:
    graph = _import_graph()
    assert f"{PACKAGE}.base" in graph and f"{PACKAGE}.device_decode" in graph
    assert _cycle(graph) is None, " -> ".join(_cycle(graph) or [])


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]


def test_io_imports_nothing_from_the_package() -> None:
    assert _import_graph()[f"{PACKAGE}.io"] == set()
