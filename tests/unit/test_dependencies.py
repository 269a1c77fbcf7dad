"""Every module perfkit imports is one its installation provides: the standard library, a dependency
declared in pyproject.toml, or an optional one named below with the extra (or the user's own package)
that brings it. An undeclared import works in the development environment, where the test extras
install half of PyPI, and fails on a user's fresh install: ``import click`` did, after typer stopped
installing click (perfkit profile stopped with ModuleNotFoundError before running the script)."""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PACKAGE = REPO / "perfkit"

#: Optional imports: module -> where pyproject.toml declares it (an extra), or why none is needed.
#: Each is imported only on the path that needs it, with a fallback or a one-line error.
OPTIONAL = {
    "isal": "extra fast (zlib is used without it)",
    "matplotlib": "extra plots (--plots and --html say what to install)",
    "torch": "extra collect (perfkit profile and the collection API; the analysis works without torch)",
    "ray": "extra ray (--engine ray says what to install)",
    "transformers": "none: perfkit.integrations.transformers is imported by Trainer users only",
}

#: Standard-library modules of later Pythons than the oldest supported, imported under a version check.
NEWER_STDLIB = {"tomllib"}

#: Distribution name in pyproject.toml -> the module it installs, where the two differ.
IMPORT_NAME = {"torch-tb-profiler": "torch_tb_profiler"}


def _third_party_imports() -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        for node in ast.walk(tree):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import) else
                     [node.module] if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module else [])
            for name in names:
                top = name.split(".")[0]
                if top != "perfkit" and top not in sys.stdlib_module_names and top not in NEWER_STDLIB:
                    found.setdefault(top, []).append(f"{path.relative_to(REPO)}:{node.lineno}")
    return found


def _pyproject() -> dict:
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover (Python 3.10: tomli is a dependency there)
        import tomli as tomllib
    return tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))


def _module(requirement: str) -> str:
    dist = re.match(r"[A-Za-z0-9_.-]+", requirement).group(0)  # type: ignore[union-attr]
    return IMPORT_NAME.get(dist, dist.replace("-", "_"))


def test_the_scan_sees_the_imports_it_must_check():
    found = _third_party_imports()
    assert {"numpy", "rich", "typer", "torch"} <= set(found)  # the scan works: it can fail below


def test_every_import_is_declared_or_a_named_optional_one():
    project = _pyproject()["project"]
    declared = {_module(r) for r in project["dependencies"]}
    extras = {_module(r) for name, reqs in project["optional-dependencies"].items() if name != "dev" for r in reqs}
    undeclared = {m: where for m, where in _third_party_imports().items() if m not in declared and m not in OPTIONAL}
    assert not undeclared, f"imported but not declared in pyproject.toml: {undeclared}"
    for module, why in OPTIONAL.items():
        if why.startswith("extra "):
            assert module in extras, f"{module}: {why}, but no extra of pyproject.toml installs it"


def test_tomli_is_a_dependency_where_tomllib_is_missing():
    """Budget files are read with tomllib (Python 3.11+) or tomli: declared for older Pythons."""
    deps = _pyproject()["project"]["dependencies"]
    assert any(_module(r) == "tomli" and "python_version < '3.11'" in r for r in deps), deps
