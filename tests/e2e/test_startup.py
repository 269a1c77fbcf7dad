"""What a command imports (issue #15): ``perfkit --help`` and ``--version`` import neither numpy, pandas
nor rich; ``perfkit analyze`` on a plain command line imports no typer (its parameters are read
without it), no pandas, no numpy.ma and no other command's module, and starts no OpenBLAS threads. Each runs the command line's entry in a fresh
interpreter and reads ``sys.modules``, the environment and the process's threads."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ..conftest import REPO

TRACE = REPO / "tests" / "data" / "traces" / "nv-rtx2080ti-param-linear-train" / "linear_kineto.json.gz"

PROBE = r"""
import json, os, sys
from perfkit.cli import main
rc = main(sys.argv[1:])
tops = sorted({m.split(".")[0] for m in sys.modules})
cli = sorted(m for m in sys.modules if m.startswith("perfkit.cli."))
blas, threads = os.environ.get("OPENBLAS_NUM_THREADS"), len(os.listdir("/proc/self/task"))
ma = "numpy.ma" in sys.modules
sys.stderr.write("MODULES " + json.dumps({"rc": rc, "top": tops, "cli": cli, "blas": blas, "threads": threads, "ma": ma}) + "\n")
"""


def _modules(*args: str, **env_vars: str) -> dict[str, object]:
    env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_NUM_THREADS"}
    env.update(PYTHONPATH=str(REPO), **env_vars)
    proc = subprocess.run([sys.executable, "-c", PROBE, *args], env=env, capture_output=True, text=True, timeout=120)
    line = next(ln for ln in proc.stderr.splitlines() if ln.startswith("MODULES "))
    return json.loads(line[len("MODULES "):])  # type: ignore[no-any-return]


@pytest.mark.parametrize("args", [["--help"], ["--version"], ["-h"], ["analyze", "--help"], ["merge", "--help"]])
def test_help_and_version_import_no_numpy(args: list[str]) -> None:
    got = _modules(*args)
    assert got["rc"] == 0
    assert not {"numpy", "pandas", "rich", "pydantic", "msgspec", "torch"} & set(got["top"]), got["top"]  # type: ignore[arg-type]


def test_analyze_imports_only_what_it_needs(tmp_path: Path) -> None:
    got = _modules("analyze", str(TRACE), "--json", str(tmp_path / "a.json"), "-q")
    assert got["rc"] == 0 and (tmp_path / "a.json").exists()
    assert "numpy" in got["top"]  # type: ignore[operator]  # (the probe sees the analysis)
    assert not {"pandas", "pydantic", "torch", "typer"} & set(got["top"]), got["top"]  # type: ignore[arg-type]
    assert got["cli"] == ["perfkit.cli._exit", "perfkit.cli._process", "perfkit.cli.analyze_run"]
    assert got["ma"] is False  # np.unique / median / percentile import numpy.ma: perfkit.arrays does not
    # one OpenBLAS thread (set before numpy's import): the process has only its main thread left
    assert got["blas"] == "1" and got["threads"] == 1


def test_a_blas_setting_of_the_user_is_kept_and_profile_sets_none(tmp_path: Path) -> None:
    got = _modules("analyze", str(TRACE), "--json", str(tmp_path / "a.json"), "-q", OPENBLAS_NUM_THREADS="2")
    assert got["rc"] == 0 and got["blas"] == "2"
    got = _modules("profile", "--help")  # a command that runs the user's script leaves BLAS alone
    assert got["rc"] == 0 and got["blas"] is None


def test_help_lists_every_command_in_order() -> None:
    """Commands load on demand; the help still lists all of them, in one order."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "COLUMNS": "100"}
    out = subprocess.run([sys.executable, "-m", "perfkit", "--help"], env=env, capture_output=True, text=True,
                         timeout=120).stdout
    listed = [ln.split()[0] for ln in out.split("Commands:")[1].splitlines() if ln.startswith("  ")]
    assert listed == ["analyze", "profile", "stalls", "scale", "diff", "merge", "report", "view", "budget"]
