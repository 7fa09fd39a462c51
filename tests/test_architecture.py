"""The package's shape: the layers of pyproject.toml hold, and each mechanism lives in one place.

The import contracts (``[tool.importlinter]`` in pyproject.toml) are checked
by import-linter over every import, function-level and ``TYPE_CHECKING`` ones
included. The rest reads the source as text or syntax trees.
"""

from __future__ import annotations

import ast
import importlib
import subprocess
import sys
import tomllib
from collections.abc import Callable
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "gradlab"
CONFIG = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]


def _sources() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if "__pycache__" not in p.parts)


def _layered() -> list[str]:
    (layers,) = [c["layers"] for c in CONFIG["contracts"] if c["type"] == "layers"]
    return [name.strip() for layer in layers for name in layer.split("|")]


def test_import_contracts_hold() -> None:
    linter = Path(sys.executable).with_name("lint-imports")
    done = subprocess.run(
        [str(linter), "--no-cache"], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert f"{len(CONFIG['contracts'])} kept, 0 broken" in done.stdout


def test_every_subpackage_is_a_layer() -> None:
    """A new subpackage must take its place in the layers, or the contracts do not see it."""
    subpackages = {f"gradlab.{p.parent.name}" for p in PACKAGE.glob("*/__init__.py")}
    assert subpackages == set(_layered())


def test_top_level_holds_only_the_doors() -> None:
    modules = {p.stem for p in PACKAGE.glob("*.py")}
    assert modules == {"__init__", "__main__", "plugins", "models", "data"}


@pytest.mark.parametrize("package", [p.parent for p in sorted(PACKAGE.glob("*/__init__.py"))],
                         ids=lambda p: p.name)  # fmt: skip
def test_each_package_has_a_face(package: Path) -> None:
    """A docstring saying what the package is for, and an ``__all__`` that imports."""
    tree = ast.parse((package / "__init__.py").read_text())
    assert ast.get_docstring(tree), f"gradlab.{package.name} has no docstring"
    module = importlib.import_module(f"gradlab.{package.name}")
    assert module.__all__, f"gradlab.{package.name} has an empty __all__"
    for name in module.__all__:
        assert hasattr(module, name), f"gradlab.{package.name}.__all__ names a missing {name}"


def test_old_import_paths_still_work() -> None:
    """Third-party plugins written against the old layout keep importing."""
    import gradlab.data
    import gradlab.models
    import gradlab.plugins
    import gradlab.train
    from gradlab.train import scenario
    from gradlab.zoo import data, models

    assert gradlab.models.mlp is models.mlp
    assert gradlab.models.LeNet is models.LeNet
    assert gradlab.data.digits is data.digits
    assert gradlab.plugins.Scenario is scenario.Scenario
    assert callable(gradlab.train.train)


def test_built_in_scenarios_use_the_plugin_door() -> None:
    """Built-in scenarios import the contract from gradlab.plugins, like third-party ones."""
    allowed = ("gradlab.plugins", "gradlab.zoo")
    for path in sorted((ROOT / "plugins").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("gradlab"):
                assert (node.module or "").startswith(allowed), f"{path.name}: {node.module}"


def _outside_core_graph(matches: Callable[[ast.AST], bool]) -> list[str]:
    """``file:line`` of every syntax node that ``matches``, in every module but core/graph.py."""
    owner = PACKAGE / "core" / "graph.py"
    return [
        f"{path.relative_to(ROOT)}:{getattr(node, 'lineno', 0)}"
        for path in _sources()
        if path != owner
        for node in ast.walk(ast.parse(path.read_text()))
        if matches(node)
    ]


def test_graph_internals_stay_in_core_graph() -> None:
    """Only gradlab/core/graph.py reaches into networkx's private dicts."""
    private = {"_node", "_succ", "_pred", "_adj"}
    found = _outside_core_graph(lambda n: isinstance(n, ast.Attribute) and n.attr in private)
    assert not found, found


def test_one_name_for_accumulate_grad() -> None:
    """The op name of a leaf's gradient sink is written once, as ACCUMULATE_GRAD."""
    name = "AccumulateGrad"
    found = _outside_core_graph(lambda n: isinstance(n, ast.Constant) and n.value == name)
    assert not found, found


def test_no_package_imports_the_public_face() -> None:
    """``import gradlab`` (the face on top) is for users; packages import what they need by name."""
    subpackages = {p.parent.name for p in PACKAGE.glob("*/__init__.py")}
    found = []
    for path in _sources():
        if path.parent == PACKAGE:
            continue  # the doors themselves
        for node in ast.walk(ast.parse(path.read_text())):
            whole = isinstance(node, ast.Import) and any(a.name == "gradlab" for a in node.names)
            named = (
                isinstance(node, ast.ImportFrom)
                and node.module == "gradlab"
                and any(a.name not in subpackages for a in node.names)
            )
            if whole or named:
                found.append(f"{path.relative_to(ROOT)}:{getattr(node, 'lineno', 0)}")
    assert not found, found
