"""perfkit profile on CPU, in subprocesses: plain scripts with no perfkit import, exit codes, crashes,
signals, the module form, --modules (tests/unit/test_profile_cli.py has the in-process part)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from ..conftest import REPO

TRAIN = """
import sys, json, torch
torch.manual_seed(0)
model = torch.nn.Sequential(torch.nn.Linear(32, 64), torch.nn.ReLU(), torch.nn.Linear(64, 1))
opt = torch.optim.SGD(model.parameters(), lr=0.01)
steps = int(sys.argv[1]) if len(sys.argv) > 1 else 12
json.dump({"argv": sys.argv, "name": __name__}, open(sys.argv[2] if len(sys.argv) > 2 else "argv.json", "w"))
for i in range(steps):
    x = torch.randn(16, 32)
    loss = model(x).pow(2).mean()
    loss.backward()
    opt.step()
    opt.zero_grad()
{tail}
"""


def write_script(tmp_path: Path, tail: str = "", name: str = "train.py") -> Path:
    path = tmp_path / name
    path.write_text(TRAIN.replace("{tail}", textwrap.dedent(tail)))
    return path


def profile(tmp_path: Path, *args: str, timeout: int = 240) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "perfkit", "profile", "--quiet", "--skip-first", "2", "--warmup", "1", "--active", "3",
         "--out", str(tmp_path / "run"), *args],
        capture_output=True, text=True, cwd=tmp_path, timeout=timeout,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )


def load(tmp_path: Path) -> dict:
    return json.loads((tmp_path / "run" / "analysis.json").read_text())


@pytest.mark.slow
def test_plain_script_steps_found_outputs_written(tmp_path):
    script = write_script(tmp_path)
    proc = profile(tmp_path, str(script), "12", str(tmp_path / "argv.json"))
    assert proc.returncode == 0, proc.stderr
    run = tmp_path / "run"
    assert (run / "rank0.pt.trace.json.gz").stat().st_size > 1000
    assert (run / "report.md").read_text().startswith("## perfkit report")
    doc = load(tmp_path)
    assert doc["schema"] == "perfkit.analysis/2"
    assert doc["runtime"]["steps_seen"] == 12
    assert doc["runtime"]["step_source"] == "optimizer.step"
    assert doc["steps"]["count"] >= 2  # the profiled window: ProfilerStep markers in the trace
    assert doc["runtime"]["memory"]["weights_bytes"] == (32 * 64 + 64 + 64 + 1) * 4
    argv = json.loads((tmp_path / "argv.json").read_text())
    assert argv == {"argv": [str(script), "12", str(tmp_path / "argv.json")], "name": "__main__"}


@pytest.mark.slow
def test_sys_exit_code_is_kept_and_outputs_written(tmp_path):
    script = write_script(tmp_path, "sys.exit(3)")
    proc = profile(tmp_path, str(script))
    assert proc.returncode == 3, proc.stderr
    doc = load(tmp_path)
    assert doc["runtime"]["exit_status"] == 3
    assert doc["runtime"]["steps_seen"] == 12


@pytest.mark.slow
def test_crash_keeps_traceback_exit_code_and_data(tmp_path):
    script = write_script(tmp_path, "raise ValueError('boom at the end')")
    proc = profile(tmp_path, str(script))
    assert proc.returncode == 1
    assert "ValueError: boom at the end" in proc.stderr
    assert 'train.py", line' in proc.stderr  # the script's own frame is in the traceback
    doc = load(tmp_path)
    assert doc["runtime"]["exit_status"] == 1
    assert (tmp_path / "run" / "rank0.pt.trace.json.gz").exists()


@pytest.mark.slow
def test_short_run_without_trace_still_writes_analysis(tmp_path):
    script = write_script(tmp_path)
    proc = profile(tmp_path, str(script), "2")  # ends before the schedule's first profiled step
    assert proc.returncode == 0, proc.stderr
    doc = load(tmp_path)
    assert doc["runtime"]["steps_seen"] == 2
    assert "no kernel trace" in doc["runtime"]["analysis_error"]


@pytest.mark.slow
def test_sigterm_writes_outputs_then_dies_by_the_signal(tmp_path):
    script = write_script(tmp_path, """
    import time, pathlib
    pathlib.Path("ready").write_text("1")
    time.sleep(60)
    """)
    proc = subprocess.Popen(
        [sys.executable, "-m", "perfkit", "profile", "--quiet", "--skip-first", "2", "--warmup", "1", "--active", "3",
         "--out", str(tmp_path / "run"), str(script)],
        cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(REPO)}, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    deadline = time.time() + 120
    while not (tmp_path / "ready").exists() and time.time() < deadline:
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=120)
    assert proc.returncode == -signal.SIGTERM
    doc = load(tmp_path)
    assert doc["runtime"]["exit_status"] == 128 + signal.SIGTERM


@pytest.mark.slow
def test_module_form_and_step_fn_without_optimizer(tmp_path):
    pkg = tmp_path / "mypkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "loop.py").write_text(textwrap.dedent("""
        import torch
        def train_step(model, x):
            return model(x).sum().item()
        def main():
            model = torch.nn.Linear(8, 8)
            for _ in range(10):
                train_step(model, torch.randn(4, 8))
        if __name__ == "__main__":
            main()
    """))
    proc = profile(tmp_path, "--step-fn", "__main__:train_step", "-m", "mypkg.loop")
    assert proc.returncode == 0, proc.stderr
    doc = load(tmp_path)
    assert doc["runtime"]["steps_seen"] == 10
    assert doc["runtime"]["step_source"] == "perfkit.step"


@pytest.mark.slow
def test_modules_flag_times_the_model_found_without_code_change(tmp_path):
    script = write_script(tmp_path)
    proc = profile(tmp_path, "--modules", str(script), "12", str(tmp_path / "argv.json"))
    assert proc.returncode == 0, proc.stderr
    rows = load(tmp_path)["runtime"]["modules"]
    # the Sequential's three children, found from the optimizer's parameters
    assert sorted(r["name"] for r in rows) == ["0", "1", "2"]
    assert all(r["calls"] == 11 for r in rows)  # attached at the first optimizer step
    assert sum(r["share"] for r in rows) == pytest.approx(1.0, abs=0.01)
