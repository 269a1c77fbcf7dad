"""The type checker runs in CI (issue #14): mypy, with the project's configuration
(``[tool.mypy]`` in pyproject.toml), reports no error in the package; the document contract,
``perfkit.documents``, the budget, report, run and job packages are checked with the flags of
``mypy --strict``. (The whole file is end-to-end: mypy over the package takes about a minute cold.)
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PYPROJECT = ROOT / "pyproject.toml"

#: Modules checked strictly, and the per-module flags that make ``mypy --strict``.
STRICT_MODULES = {"perfkit.analysis.document", "perfkit.analysis.result", "perfkit.documents", "perfkit.budget.*",
                  "perfkit.report.*", "perfkit.run.*", "perfkit._profile", "perfkit.job.*"}
STRICT_FLAGS = {"disallow_any_generics", "disallow_subclassing_any", "disallow_untyped_calls",
                "disallow_untyped_defs", "disallow_incomplete_defs", "check_untyped_defs",
                "disallow_untyped_decorators", "warn_return_any", "no_implicit_reexport", "strict_equality",
                "extra_checks"}


def _config() -> dict:
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # mypy itself needs tomli on Python 3.10
        import tomli as tomllib
    return tomllib.loads(PYPROJECT.read_text())["tool"]["mypy"]


def test_the_strict_modules_have_every_strict_flag():
    overrides = [o for o in _config().get("overrides", []) if STRICT_MODULES & set(o["module"])]
    assert len(overrides) == 1, "the strict modules are listed in one override"
    strict = overrides[0]
    assert STRICT_MODULES <= set(strict["module"])
    assert {flag for flag in STRICT_FLAGS if strict.get(flag) is True} == STRICT_FLAGS


@pytest.mark.slow
def test_mypy_reports_no_error(monkeypatch):
    from mypy import api

    monkeypatch.chdir(ROOT)  # the configuration's `files` are relative to the repository root
    stdout, stderr, status = api.run(["--config-file", str(PYPROJECT), "--cache-dir", str(ROOT / ".mypy_cache")])
    report = (stdout + stderr).strip()
    assert status == 0, f"mypy found errors:\n{report}"
    # The whole package was checked (a `files` setting that matched nothing would also succeed).
    sources = sum(1 for _ in (ROOT / "perfkit").rglob("*.py")) + sum(1 for _ in (ROOT / "perfkit").rglob("*.pyi"))
    assert f"no issues found in {sources} source files" in report, report


@pytest.mark.slow
def test_mypy_catches_an_error_in_a_strict_module(tmp_path, monkeypatch):
    """The configuration is live: an untyped function in a strict module is an error (a probe file
    named as that module, checked with the project's configuration)."""
    from mypy import api

    probe = tmp_path / "perfkit" / "budget"
    probe.mkdir(parents=True)
    (tmp_path / "perfkit" / "__init__.py").write_text("")
    (probe / "__init__.py").write_text("")
    (probe / "probe.py").write_text("def untyped(x):\n    return x\n")
    monkeypatch.chdir(tmp_path)
    stdout, stderr, status = api.run(["--config-file", str(PYPROJECT), "--cache-dir", os.devnull,
                                      str(probe / "probe.py")])
    assert status == 1 and "no-untyped-def" in stdout, stdout + stderr
