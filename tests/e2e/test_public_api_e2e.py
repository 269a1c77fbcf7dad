"""``import perfkit`` in a fresh interpreter imports neither torch nor pandas, and the distribution
setuptools builds ships py.typed (PEP 561)."""

from __future__ import annotations

import subprocess
import sys

from ..conftest import REPO


def test_importing_perfkit_imports_neither_torch_nor_pandas():
    code = "import perfkit, sys; print(sorted(m for m in ('torch', 'pandas', 'numpy') if m in sys.modules))"
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120,
                          env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]", proc.stdout


def test_the_distribution_ships_py_typed(tmp_path):
    # what setuptools puts in the distribution (egg_info reads pyproject.toml; no build, no compiler)
    proc = subprocess.run([sys.executable, "setup.py", "-q", "egg_info", "--egg-base", str(tmp_path)],
                          cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    sources = next(tmp_path.glob("*.egg-info")) / "SOURCES.txt"
    assert "perfkit/py.typed" in sources.read_text().split()
