"""A script run under ``perfkit profile`` in a fresh interpreter behaves as under bare python: its
--help and argument errors are the same (one hint added) and leave no run directory, and its
traceback shows only the script's frames."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

from ..conftest import REPO

ENV = {**os.environ, "PYTHONPATH": str(REPO), "COLUMNS": "80"}


ARGPARSE = textwrap.dedent("""
    import argparse, sys
    p = argparse.ArgumentParser(description="train a thing")
    p.add_argument("--steps", type=int, default=3)
    a = p.parse_args()
    print("steps", a.steps)
""")

CRASH = textwrap.dedent("""
    def inner():
        raise ValueError("boom [memory]")
    def outer():
        inner()
    outer()
""")


def _bare_and_profiled(tmp_path, source, *args):
    script = tmp_path / "s.py"
    script.write_text(source)
    bare = subprocess.run([sys.executable, str(script), *args], capture_output=True, text=True, cwd=tmp_path,
                          env=ENV, timeout=120)
    prof = subprocess.run([sys.executable, "-m", "perfkit", "profile", "--out", str(tmp_path / "run"), str(script), *args],
                          capture_output=True, text=True, cwd=tmp_path, env=ENV, timeout=240)
    return bare, prof


@pytest.mark.slow
def test_script_help_and_bad_argument_are_as_bare_with_no_run_directory(tmp_path):
    bare, prof = _bare_and_profiled(tmp_path, ARGPARSE, "--help")
    assert (prof.returncode, prof.stdout, prof.stderr) == (bare.returncode, bare.stdout, bare.stderr)
    assert "train a thing" in prof.stdout
    assert not (tmp_path / "run").exists()
    bare, prof = _bare_and_profiled(tmp_path, ARGPARSE, "-q")  # perfkit's -q after the script
    assert prof.returncode == bare.returncode == 2
    assert prof.stdout == bare.stdout
    assert prof.stderr.startswith(bare.stderr)  # the script's usage error, then one hint
    assert prof.stderr[len(bare.stderr):].startswith("perfkit: note: -q came after")
    assert not (tmp_path / "run").exists()


@pytest.mark.slow
def test_script_traceback_shows_only_the_scripts_frames(tmp_path):
    bare, prof = _bare_and_profiled(tmp_path, CRASH)
    assert prof.returncode == bare.returncode == 1
    tb = prof.stderr[prof.stderr.index("Traceback (most recent call last):"):]
    assert tb == bare.stderr  # same frames, same lines: none of perfkit's, typer's or click's
    assert "perfkit" not in tb and "typer" not in tb
