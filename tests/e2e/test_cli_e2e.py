"""The command line in a fresh interpreter: ``python -m perfkit``, and the job view, merge, HTML
report and budget check run with torch unimportable from the start (tests/unit/test_cli.py runs
the same commands in-process)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from ..conftest import REPO

# Runs perfkit with torch made unimportable, as in an environment without torch.
NO_TORCH = "import sys; sys.modules['torch'] = None; from perfkit.cli import main; sys.exit(main(sys.argv[1:]))"


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", NO_TORCH, *args], capture_output=True, text=True, cwd=REPO, timeout=300)


def test_python_dash_m(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "perfkit", "--help"], capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 0
    assert "analyze" in proc.stdout


def test_job_analysis_merge_report_and_budget_without_torch(tmp_path):
    """The multi-rank job view (with the stall files), merge, HTML and the budget check import no torch."""
    runs = REPO / "traces" / "ddp_gpt_2xh200"
    proc = run_cli("analyze", str(runs / "hang"), "--json", str(tmp_path / "job.json"), "-q")
    assert proc.returncode == 0, proc.stderr
    job = json.loads((tmp_path / "job.json").read_text())
    assert job["findings"][0]["id"] == "rank_stuck"
    proc = run_cli("merge", str(runs / "straggler" / "rank0.analysis.json"), str(runs / "straggler" / "rank1.analysis.json"),
                   "--json", str(tmp_path / "merged.json"), "-q")
    assert proc.returncode == 0, proc.stderr
    proc = run_cli("report", str(tmp_path / "merged.json"), "--html", str(tmp_path / "r.html"))
    assert proc.returncode == 0, proc.stderr
    assert '<section id="ranks">' in (tmp_path / "r.html").read_text()
    (tmp_path / "b.toml").write_text('[budget]\nstep_ms = 10\n')
    proc = run_cli("budget", "check", str(tmp_path / "b.toml"), str(tmp_path / "merged.json"))
    assert proc.returncode == 1, proc.stdout + proc.stderr  # an 85 ms step breaks a 10 ms budget
    assert "Traceback" not in proc.stderr


#: ``perfkit`` as the console script runs it, telling on stderr whether the collector was on during the
#: command's work (``GC True/False``, written just before it returns) and whether the teardown ran.
PROBE = ("import atexit, gc, sys; atexit.register(lambda: sys.stderr.write('TEARDOWN\\n'));"
         "import perfkit.cli.analyze_run as ar; real = ar.run;"
         "ar.run = lambda **kw: (real(**kw), sys.stderr.write(f'GC {gc.isenabled()}\\n'))[0];"
         "sys.argv = ['perfkit', *sys.argv[1:]]; from perfkit.cli import console; console()")


def _probe_analyze(target: Path, out: Path) -> tuple[subprocess.CompletedProcess[str], dict]:
    """``perfkit analyze TARGET --json OUT`` under :data:`PROBE`; asserts the whole report reached the pipe."""
    from perfkit.report import render_console
    from rich.console import Console

    proc = subprocess.run([sys.executable, "-c", PROBE, "analyze", str(target), "--json", str(out)],
                          capture_output=True, text=True, cwd=REPO, timeout=300, env={**os.environ, "COLUMNS": "100"})
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(out.read_text())
    with open(os.devnull, "w") as sink:
        console = Console(width=100, record=True, file=sink)
        render_console(doc, console)
    assert proc.stdout.rstrip() == console.export_text().rstrip()  # every line of the report, in the pipe
    assert f"wrote {out}" in proc.stderr
    return proc, doc


def test_analyze_of_one_trace_ends_without_teardown_and_loses_no_output(tmp_path):
    """``perfkit analyze`` of one trace ends with os._exit after flushing (perfkit.cli.console): the
    whole report still reaches a pipe, the JSON is complete, and the exit code is the command's.
    The interpreter's teardown is skipped: an atexit handler installed before does not run. The
    cyclic garbage collector is off during that analysis; main() called by other code leaves it on."""
    trace = REPO / "tests" / "data" / "traces" / "nv-rtx2080ti-param-linear-train" / "linear_kineto.json.gz"
    proc, _ = _probe_analyze(trace, tmp_path / "a.json")
    assert "TEARDOWN" not in proc.stderr
    assert "GC False" in proc.stderr  # the collector is off during the one analysis of the process
    # a failure exits as usual (its handlers run) with its code
    bad = subprocess.run([sys.executable, "-c", PROBE, "analyze", str(tmp_path / "none.json")],
                         capture_output=True, text=True, cwd=REPO, timeout=300)
    assert bad.returncode == 2 and "TEARDOWN" in bad.stderr


def test_analyze_of_a_job_ends_without_teardown_and_loses_no_output(tmp_path):
    """Several ranks on the local engine also end with os._exit once the workers that write are done, with
    the collector off as for one trace: the report and the JSON are whole."""
    proc, doc = _probe_analyze(REPO / "tests" / "data" / "traces" / "param_dlrm_8xv100", tmp_path / "job.json")
    assert len(doc["ranks"]) == 8
    assert "TEARDOWN" not in proc.stderr and "GC False" in proc.stderr


def test_main_called_in_a_process_leaves_the_collector_on(tmp_path, monkeypatch):
    """Only the console entry owns its process: main() called by a test or a notebook keeps gc on."""
    import gc

    import perfkit.cli.analyze_run as ar
    from perfkit.cli import main

    seen = []
    monkeypatch.setattr(ar, "run", lambda **kw: seen.append(gc.isenabled()))
    trace = REPO / "tests" / "data" / "traces" / "nv-rtx2080ti-param-linear-train" / "linear_kineto.json.gz"
    assert main(["analyze", str(trace), "-q"]) == 0
    assert seen == [True] and gc.isenabled()
