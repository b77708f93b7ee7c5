"""The import graph of spml_lightning: no cycles, and the layers import one way.

Read from the source with ``ast`` (imports inside functions included: a lazy
import that closes a cycle is still a cycle for a reader of the code). Imports
of other packages are recorded too (``lightning``), so that the pure layers can
be checked not to use them.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import spml_lightning

PACKAGE = "spml_lightning"
ROOT = Path(spml_lightning.__file__).resolve().parent


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join((PACKAGE, *parts))


def _imports(path: Path) -> set[str]:
    """Every module name an import statement of ``path`` names (``from a import b``: a and a.b)."""
    targets: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            targets.update(f"{node.module}.{alias.name}" for alias in node.names)
            targets.add(node.module)
    return targets


def _import_graph() -> dict[str, set[str]]:
    """Module -> the modules of this package it names in an import statement."""
    modules = {_module_name(path): path for path in ROOT.rglob("*.py")}
    return {
        name: {target for target in _imports(path) if target in modules and target != name}
        for name, path in modules.items()
    }


def _modules_under(prefix: str) -> dict[str, Path]:
    return {
        _module_name(path): path
        for path in ROOT.rglob("*.py")
        if _module_name(path).startswith(prefix)
    }


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


def test_the_package_has_no_import_cycle() -> None:
    graph = _import_graph()
    assert f"{PACKAGE}.data.base" in graph and f"{PACKAGE}.training.callbacks" in graph
    assert _cycle(graph) is None, " -> ".join(_cycle(graph) or [])


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]


def test_io_imports_nothing_from_the_package_but_the_mode_conversion() -> None:
    graph = _import_graph()
    assert graph[f"{PACKAGE}.data.io"] == {f"{PACKAGE}.image_modes"}
    assert graph[f"{PACKAGE}.image_modes"] == set()


def test_the_layers_import_one_way() -> None:
    """data and losses below everything, neither importing the other nor training/; losses
    and backbones without Lightning and beside each other; features without losses or the
    model; analysis above the model but beside the CLI, never importing it."""

    def named(prefix: str, forbidden: tuple[str, ...]) -> dict[str, set[str]]:
        return {
            name: {t for t in _imports(path) if t.startswith(forbidden)}
            for name, path in _modules_under(prefix).items()
        }

    offending = {
        **named(f"{PACKAGE}.losses", (f"{PACKAGE}.data", f"{PACKAGE}.module", "lightning")),
        **named(f"{PACKAGE}.backbones", (f"{PACKAGE}.data", f"{PACKAGE}.losses", "lightning")),
        **named(f"{PACKAGE}.data.protocol", ("lightning", "torch")),
        **named(f"{PACKAGE}.analysis", (f"{PACKAGE}.cli",)),
        # cached features serve the linear probe and the priors alike: no loss, no model
        **named(f"{PACKAGE}.features", (f"{PACKAGE}.losses", f"{PACKAGE}.module")),
    }
    below_data = (f"{PACKAGE}.losses", f"{PACKAGE}.module", f"{PACKAGE}.training")
    for name, path in _modules_under(f"{PACKAGE}.data").items():
        offending.setdefault(name, set()).update(
            t for t in _imports(path) if t.startswith(below_data)
        )
    offending = {name: targets for name, targets in offending.items() if targets}
    assert not offending, offending


def test_the_predictor_side_of_deploy_imports_neither_torch_nor_lightning() -> None:
    """What `from spml_lightning.deploy import Predictor` loads: numpy, Pillow, onnxruntime and
    these modules (the package's __init__ imports its names lazily)."""
    torch_free = {
        f"{PACKAGE}.image_modes",
        f"{PACKAGE}.deploy",
        f"{PACKAGE}.deploy.images",
        f"{PACKAGE}.deploy.metadata",
        f"{PACKAGE}.deploy.predictor",
    }
    modules = _modules_under(PACKAGE)
    graph = _import_graph()
    for name in sorted(torch_free):
        assert graph[name] <= torch_free, (name, graph[name] - torch_free)
        heavy = {t for t in _imports(modules[name]) if t.split(".")[0] in ("torch", "lightning")}
        assert not heavy, (name, heavy)


def test_the_package_imports_its_names_and_subpackages_on_first_use() -> None:
    code = (
        "import sys, spml_lightning; "
        "assert 'torch' not in sys.modules, 'import spml_lightning imported torch'; "
        "assert spml_lightning.losses.GRLoss is spml_lightning.GRLoss; "
        "from spml_lightning import SPMLModule, mean_average_precision; "
        "assert 'SPMLModule' in dir(spml_lightning); "
        "import pytest; "
        "pytest.raises(AttributeError, getattr, spml_lightning, 'no_such_name')"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT.parent, timeout=300)


def test_every_module_imports_first_in_a_fresh_interpreter() -> None:
    # The module graph above has no cycle, but a package's __init__ runs before any of its
    # modules: importing spml_lightning.module first once reached features/ (through
    # data/__init__ and priors/) while inference was half-imported. Each module is
    # imported here as the first of the package, in one interpreter whose package
    # modules are forgotten between imports (torch stays loaded: fast).
    names = sorted(_module_names_to_import())
    code = (
        "import importlib, sys\n"
        f"for name in {names!r}:\n"
        "    for loaded in [m for m in sys.modules if m.split('.')[0] == 'spml_lightning']:\n"
        "        del sys.modules[loaded]\n"
        "    try:\n"
        "        importlib.import_module(name)\n"
        "    except ImportError as error:\n"
        "        if 'circular import' in str(error) or 'partially initialized' in str(error):\n"
        "            sys.exit(f'importing {name} first: {error}')\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT.parent, timeout=600
    )
    assert result.returncode == 0, result.stderr[-3000:]


def _module_names_to_import() -> set[str]:
    # __main__ runs the CLI when imported.
    return {name for name in _import_graph() if not name.endswith("__main__")}
