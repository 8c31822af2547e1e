"""The package's layers, read from the source (AST: nothing is imported to build the graph).

Each module of ``src/ganforge`` belongs to one layer (``LAYER_OF``, by the longest matching name); a layer
may import only the layers ``MAY_IMPORT`` names for it.  Imports inside functions count as much as those
at the top: they hide the same dependencies (and the cycles that the issue 17 redesign took out).  See
docs/design.md for what each layer holds.
"""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import ganforge

PACKAGE = Path(ganforge.__file__).parent

#: Module name (or the name of a package, for all its modules) -> its layer.  Longest match wins.
LAYER_OF = {
    "ganforge.config": "bottom",
    "ganforge.runfiles": "bottom",
    "ganforge.storage": "bottom",
    "ganforge.devices": "bottom",
    "ganforge.classes": "bottom",
    "ganforge.modules": "modules",
    "ganforge.nets": "nets",
    "ganforge.data": "data",
    "ganforge.export": "sampling",  # generator files: loading and exporting a trained generator
    "ganforge.sampling": "sampling",
    "ganforge.metrics": "metrics",
    "ganforge.training": "training",
    "ganforge.reporting": "reporting",
    "ganforge.training.callbacks": "wiring",  # attaches metrics and reporting to the loop
    "ganforge.training.session": "wiring",  # starts and resumes runs with their callbacks
    "ganforge.training.preflight": "wiring",  # the config checks of every layer, before a run starts
    "ganforge.recipe": "top",
    "ganforge.gpu_plan": "top",  # the recipe's choices for a GPU
    "ganforge.api": "top",
    "ganforge.cli": "cli",
    "ganforge.__main__": "cli",
    "ganforge": "package",  # ganforge/__init__.py: the public API, re-exported
}

_BELOW_TRAINING = {"bottom", "modules", "nets", "data", "sampling"}
#: Layer -> the layers its modules may import (always its own too).
MAY_IMPORT = {
    "bottom": {"bottom"},
    "modules": {"bottom"},
    "nets": {"bottom", "modules"},
    "data": {"bottom"},
    "sampling": {"bottom", "modules", "nets"},
    "metrics": {"bottom", "modules", "data", "sampling"},  # modules: the pretrained ImageNet networks
    "training": _BELOW_TRAINING,
    "reporting": {"bottom", "metrics"},
    "wiring": _BELOW_TRAINING | {"training", "metrics", "reporting"},
    "top": _BELOW_TRAINING | {"training", "metrics", "reporting", "wiring"},
    "cli": _BELOW_TRAINING | {"training", "metrics", "reporting", "wiring", "top"},
    "package": {"bottom", "top"},
}


def module_files() -> dict[str, tuple[Path, bool]]:
    """Module name -> (file, is a package's __init__)."""
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        if is_package:
            parts = parts[:-1]
        found[".".join(parts)] = (path, is_package)
    return found


def import_graph() -> dict[str, dict[str, int]]:
    """Module -> {module of ganforge it imports: the line of the first such import}, at any depth."""
    modules = module_files()

    def known(name: str) -> str | None:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, dict[str, int]] = {}
    for name, (path, is_package) in modules.items():
        package = name if is_package else name.rpartition(".")[0]
        edges: dict[str, int] = {}
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")[:len(package.split(".")) - (node.level - 1)]
                    origin = ".".join(base + ([node.module] if node.module else []))
                else:
                    origin = node.module or ""
                # ``from pkg import sub`` imports the submodule; ``from mod import name`` the module.
                targets = [f"{origin}.{a.name}" if f"{origin}.{a.name}" in modules else origin for a in node.names]
            for target in targets:
                if target == "ganforge" or target.startswith("ganforge."):
                    resolved = known(target)
                    if resolved and resolved != name:
                        edges.setdefault(resolved, node.lineno)
        graph[name] = edges
    return graph


def layer(module: str) -> str:
    name = module
    while name:
        if name in LAYER_OF:
            return LAYER_OF[name]
        name = name.rpartition(".")[0]
    raise AssertionError(f"{module} is in no layer: add it to LAYER_OF in tests/test_layers.py")


def test_every_import_goes_down_the_layers():
    graph = import_graph()
    wrong = []
    for module, edges in sorted(graph.items()):
        mine = layer(module)
        for target, line in sorted(edges.items()):
            theirs = layer(target)
            if theirs != mine and theirs not in MAY_IMPORT[mine]:
                wrong.append(f"{module} ({mine}, line {line}) imports {target} ({theirs})")
    assert not wrong, "imports against the layering:\n  " + "\n  ".join(wrong)


def cycles(graph: dict[str, dict[str, int]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, {}):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_no_import_cycles():
    found = cycles(import_graph())
    assert not found, "import cycles (imports inside functions count):\n  " + "\n  ".join(" <-> ".join(c) for c in found)


def test_the_graph_sees_imports_inside_functions():
    """The reader itself: a function-level import is an edge, a cycle is found, a layer breach is named."""
    graph = import_graph()
    assert "ganforge.training.callbacks.evaluation" in graph["ganforge.training.callbacks"]  # inside a function
    assert cycles({"a": {"b": 1}, "b": {"c": 1}, "c": {"a": 1}, "d": {"a": 1}}) == [["a", "b", "c"]]
    assert "training" not in MAY_IMPORT["data"] and "training" not in MAY_IMPORT["nets"]
    assert not {"training", "reporting"} & MAY_IMPORT["metrics"]


@pytest.mark.parametrize("package", ["ganforge.data", "ganforge.nets"])
def test_data_and_nets_load_no_training_module(package):
    """What ``python -X importtime -c 'import ganforge.data'`` would show, checked through sys.modules."""
    code = (f"import sys, {package}; "
            "print(' '.join(sorted(m for m in sys.modules if m.startswith(('ganforge.training', "
            "'ganforge.metrics', 'ganforge.reporting')))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={"PYTHONPATH": str(PACKAGE.parent), "PATH": "/usr/bin:/bin"})
    assert out.stdout.strip() == "", f"import {package} loaded: {out.stdout.strip()}"
