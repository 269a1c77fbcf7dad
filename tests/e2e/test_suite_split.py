"""The two definitions of the fast suite cannot drift: tests/unit/conftest.py stops the collection when a
test under tests/unit is marked slow (run here by pytest in a subprocess, on a copy of that conftest)."""

from __future__ import annotations

import shutil
import subprocess
import sys

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
