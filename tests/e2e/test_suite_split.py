"""The two definitions of the fast suite cannot drift: tests/unit/conftest.py stops the collection when a
test under tests/unit is marked slow (run here by pytest in a subprocess, on a copy of that conftest). And
the cases a unit test leaves to tests/e2e are all run there (tests/_split.py)."""

from __future__ import annotations

import importlib
import shutil
import subprocess
import sys
from collections import Counter
from typing import Any

from ..conftest import REPO


def _pytest_on(tmp_path, body: str) -> subprocess.CompletedProcess:
    unit = tmp_path / "tests" / "unit"
    unit.mkdir(parents=True)
    (tmp_path / "tests" / "__init__.py").write_text("")
    (unit / "__init__.py").write_text("")
    shutil.copy(REPO / "tests" / "unit" / "conftest.py", unit / "conftest.py")
    (unit / "test_x.py").write_text("import pytest\n\n\n" + body)
    (tmp_path / "pytest.ini").write_text("[pytest]\nmarkers =\n    slow: end to end\n")
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/unit"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=120)


def test_a_slow_mark_under_tests_unit_stops_the_collection(tmp_path):
    proc = _pytest_on(tmp_path, "@pytest.mark.slow\ndef test_long():\n    pass\n\n\ndef test_short():\n    pass\n")
    out = proc.stdout + proc.stderr
    assert proc.returncode == 4, out  # pytest's usage error: nothing ran
    assert "tests/unit holds tests marked slow" in out and "test_x.py::test_long" in out
    assert "test_x.py::test_short" not in out


def test_unmarked_unit_tests_run(tmp_path):
    proc = _pytest_on(tmp_path, "def test_short():\n    pass\n")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "1 passed" in proc.stdout


# --------------------------------------------------------------------- cases split between the two suites


def _modules(folder: str) -> list:
    return [importlib.import_module(f"tests.{folder}.{p.stem}")
            for p in sorted((REPO / "tests" / folder).glob("test_*.py"))]


def _functions(modules: list, attr: str) -> list[tuple[str, str, Any]]:
    """(module file, test name, function) of every module-level test function that has ``attr``."""
    return [(f"tests/{m.__name__.split('.')[1]}/{m.__name__.split('.')[-1]}.py", name, fn)
            for m in modules for name, fn in vars(m).items()
            if name.startswith("test") and callable(fn) and hasattr(fn, attr)]


def _collected() -> Counter:
    """How many cases pytest collects per ``file::function`` over tests/unit and tests/e2e."""
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "--collect-only", "-p", "no:cacheprovider",
                           "tests/unit", "tests/e2e"], cwd=REPO, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return Counter(line.split("[")[0] for line in proc.stdout.splitlines() if "::" in line)


def test_every_split_unit_test_runs_its_other_cases_in_e2e():
    """A parametrized unit test that runs some of its cases (tests/_split.py) has an e2e twin that runs
    exactly the others, and a hypothesis test with fewer examples here has one with the full count: so no
    case can fall out of both suites. Counted from pytest's own collection."""
    unit_split = _functions(_modules("unit"), "split_cases")
    unit_examples = _functions(_modules("unit"), "split_examples")
    twins = _functions(_modules("e2e"), "split_of")
    assert len(unit_split) >= 10 and len(unit_examples) >= 3  # the splits this suite makes (a walk that finds none fails)
    collected = _collected()
    problems = []
    for path, name, fn in unit_split:
        split = fn.split_cases
        here = collected[f"{path}::{name}"]
        there = [(p, n) for p, n, t in twins if t.split_of is fn]
        elsewhere = sum(collected[f"{p}::{n}"] for p, n in there)
        if not there:
            problems.append(f"{path}::{name}: no e2e test runs its other {len(split.rest)} cases (rest_of)")
        if here != len(split.unit) or elsewhere != len(split.rest) or len(split.unit) + len(split.rest) != len(split.all):
            problems.append(f"{path}::{name}: {here} cases in unit + {elsewhere} in e2e, of {len(split.all)}")
        if Counter(split.id_list(split.unit)) + Counter(split.id_list(split.rest)) != Counter(split.id_list(split.all)):
            problems.append(f"{path}::{name}: the unit and e2e cases are not all the cases, each once")
    for path, name, fn in unit_examples:
        fast, full = fn.split_examples
        there = [(p, n, t) for p, n, t in twins if t.split_of is fn]
        if not there or not all(collected[f"{p}::{n}"] == 1 for p, n, _ in there):
            problems.append(f"{path}::{name}: no e2e test runs its {full} hypothesis examples")
        for p, n, t in there:
            if t._hypothesis_internal_use_settings.max_examples != full:
                problems.append(f"{p}::{n}: runs {t._hypothesis_internal_use_settings.max_examples} examples, not {full}")
        if fn._hypothesis_internal_use_settings.max_examples != fast or collected[f"{path}::{name}"] != 1:
            problems.append(f"{path}::{name}: does not run {fast} examples in unit")
    for path, name, twin in twins:  # a twin of a test that is no longer split would run cases twice, or none
        if not (hasattr(twin.split_of, "split_cases") or hasattr(twin.split_of, "split_examples")):
            problems.append(f"{path}::{name}: twin of {twin.split_of.__name__}, which is not split")
    assert problems == []
