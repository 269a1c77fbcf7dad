"""perfkit profile on CPU: plain scripts with no perfkit import, exit codes, crashes, signals, the API."""

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
import torch

from .conftest import REPO

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
    assert doc["schema"] == "perfkit.analysis/1"
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


def test_missing_script_is_one_line_error(tmp_path):
    proc = profile(tmp_path, str(tmp_path / "nope.py"))
    assert proc.returncode == 2
    assert "no such script" in proc.stderr and "Traceback" not in proc.stderr


def test_library_api_decorator_phases_throughput(tmp_path):
    import perfkit

    model = torch.nn.Linear(16, 16)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)

    @perfkit.step(tokens=512, samples=4)
    def train_step():
        with perfkit.phase("forward"):
            loss = model(torch.randn(4, 16)).pow(2).mean()
        with perfkit.phase("backward"):
            loss.backward()
        opt.step()
        opt.zero_grad()

    out = tmp_path / "api"
    with perfkit.profile(out=str(out), skip_first=1, warmup=1, active=2, report=False) as run:
        for _ in range(6):
            train_step()
    doc = json.loads((out / "analysis.json").read_text())
    rt = doc["runtime"]
    assert rt["step_source"] == "perfkit.step" and rt["steps_seen"] == 6
    assert rt["throughput"]["tokens_per_step"] == 512
    assert rt["throughput"]["tokens_per_s"] == pytest.approx(512 / (rt["steps"]["wall_ms_median"] / 1000))
    assert rt["phases"]["forward"]["calls"] == 6 and rt["phases"]["backward"]["calls"] == 6
    assert run.run_dir == str(out)
    assert perfkit.collect.current() is None
    # phase markers reach the trace, where the analyzer reads them
    names = json.dumps(json.loads(__import__("gzip").open(out / "rank0.pt.trace.json.gz", "rt").read()))
    assert "perfkit.phase:forward" in names
    # markers are no-ops without a session
    train_step()


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


def test_flops_counted_once_and_model_hooks_from_the_api(tmp_path):
    import perfkit

    model = torch.nn.Sequential(torch.nn.Linear(64, 128), torch.nn.ReLU(), torch.nn.Linear(128, 8))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    out = tmp_path / "flops"
    with perfkit.profile(out=str(out), skip_first=3, warmup=1, active=1, report=False, model=model, flops=True):
        for _ in range(6):
            model(torch.randn(32, 64)).sum().backward()
            opt.step()
            opt.zero_grad()
    rt = json.loads((out / "analysis.json").read_text())["runtime"]
    # forward 2*B*(64*128 + 128*8) plus backward twice that (grad input + grad weight), batch 32
    forward = 2 * 32 * (64 * 128 + 128 * 8)
    assert rt["flops_per_step"] == 3 * forward - 2 * 32 * 64 * 128  # no grad input for the first layer
    assert [r["name"] for r in rt["modules"]]  # module timers were on
    assert rt["memory"]["activations"]["output_bytes"] == 32 * 8 * 4
    for handle_dict in ("_forward_hooks", "_forward_pre_hooks"):
        assert all(not getattr(mod, handle_dict) for mod in model.modules())


def test_profile_as_decorator_writes_the_same_outputs(tmp_path):
    import perfkit

    model = torch.nn.Linear(8, 8)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    out = tmp_path / "deco"

    @perfkit.profile(out=str(out), skip_first=1, warmup=1, active=2, report=False)
    def train(n):
        for _ in range(n):
            model(torch.randn(4, 8)).sum().backward()
            opt.step()
            opt.zero_grad()
        return "done"

    assert train(6) == "done"
    assert (out / "rank0.pt.trace.json.gz").exists() and (out / "report.md").exists()
    doc = json.loads((out / "analysis.json").read_text())
    assert doc["runtime"]["steps_seen"] == 6 and doc["steps"]["count"] >= 1


def test_a_profiler_already_running_does_not_break_the_run(tmp_path):
    import perfkit

    model = torch.nn.Linear(4, 4)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    out = tmp_path / "nested"
    with torch.profiler.profile():  # the user's own profiler owns the process
        with perfkit.profile(out=str(out), skip_first=1, warmup=1, active=1, report=False):
            for _ in range(4):
                model(torch.randn(2, 4)).sum().backward()
                opt.step()
                opt.zero_grad()
    rt = json.loads((out / "analysis.json").read_text())["runtime"]
    assert rt["steps_seen"] == 4
