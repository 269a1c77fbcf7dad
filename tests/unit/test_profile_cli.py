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


# --- the profiled window's statistics: spread across steps, traced against unprofiled (no wall clock) ---


def test_spread_names_the_fastest_and_slowest_steps():
    from perfkit.analysis.steps import STEP_CV_WARN, spread, spread_warning

    steady = spread([100.0, 101.0, 99.0, 100.0], [7, 8, 9, 10])
    assert steady["cv"] < STEP_CV_WARN and steady["unstable"] is False and spread_warning(steady, "x") is None
    swings = spread([311.0, 1957.0, 400.0], [8, 9, 10])  # the swings
    assert swings["unstable"] is True
    assert (swings["min_step"], swings["max_step"], swings["max_ms"]) == (8, 9, 1957.0)
    line = spread_warning(swings, "Step times")
    assert "step 9" in line and "step 8" in line and "1,957.0 ms" in line
    assert spread([5.0], [1]) is None  # one step has no spread
    assert spread([float("nan"), 3.0, None], [1, 2, 3]) is None  # non-numbers are left out


def test_traced_against_unprofiled_step_time_from_the_run_timer():
    from perfkit.collect.runtime import profiled_vs_unprofiled

    sched = {"skip_first": 5, "wait": 0, "warmup": 2, "active": 5}
    wall = [900, 50, 10, 10, 10, 12, 12, 13, 13, 14, 13, 13, 10, 10, 11, 10]  # run steps 1-16
    out = profiled_vs_unprofiled(wall, len(wall), sched)
    assert out["profiled_steps"] == [8, 9, 10, 11, 12] and out["profiled_ms_median"] == 13
    assert out["unprofiled_steps"] == [13, 14, 15, 16] and out["unprofiled_ms_median"] == 10
    assert out["unprofiled_where"] == "after the profiled window"
    assert out["slowdown"] == pytest.approx(1.3)
    assert out["spread"]["steps"] == 4 and out["spread"]["max_step"] == 15
    # the run ends with the trace: the steps before the window, past the start-up, are the unprofiled ones
    short = profiled_vs_unprofiled(wall[:12], 12, sched)
    assert short["unprofiled_steps"] == [3, 4, 5] and short["unprofiled_where"] == "before the profiled window"
    # light mode: nothing was traced; the spread is over every step past the start-up
    light = profiled_vs_unprofiled(wall, len(wall), sched, traced_run=False)
    assert set(light) == {"spread"} and light["spread"]["steps"] == len(wall) - 2


def test_unsteady_analysed_steps_are_a_warning_and_a_slow_last_step_stays(tmp_path):
    from .test_warmup_steps import _steps_trace

    doc = perfkit_analyze(_steps_trace(tmp_path / "a.json", [1000, 1000, 1000, 1000, 3000]))
    assert doc["steps"]["excluded"] == []  # the slow last step is not a warm-up outlier
    sp = doc["steps"]["variation"]
    assert sp["unstable"] is True and sp["max_step"] == 4 and sp["steps"] == 5
    assert any("step 4" in w and "vary by" in w for w in doc["trace"]["warnings"])
    steady = perfkit_analyze(_steps_trace(tmp_path / "b.json", [1000, 1010, 990, 1000, 1005]))
    assert steady["steps"]["variation"]["unstable"] is False
    assert not any("vary by" in w for w in steady["trace"]["warnings"])


def perfkit_analyze(path):
    import perfkit

    return perfkit.analyze(str(path)).to_dict()


def test_runtime_rows_show_traced_vs_unprofiled_and_unknown_memory():
    from perfkit.report.rows import runtime_rows

    doc = {"runtime": {
        "steps_seen": 20, "step_source": "autograd backward",
        "steps": {"wall_ms_median": 10.0, "unprofiled_ms_median": 10.0, "unprofiled_steps": [13, 14, 15],
                  "unprofiled_where": "after the profiled window", "profiled_ms_median": 16.1,
                  "profiled_steps": [8, 9, 10, 11, 12], "slowdown": 1.61,
                  "spread": {"cv": 0.02, "steps": 3, "min_ms": 9.9, "max_ms": 10.3, "unstable": False}},
        "memory": {"weights_bytes": None, "gradients_bytes": None, "optimizer_state_bytes": None,
                   "unknown": {"weights_bytes": "not found", "gradients_bytes": "not found",
                               "optimizer_state_bytes": "no optimizer"}},
    }}
    rows = {label: (value, unit) for label, value, unit in runtime_rows(doc)}
    assert rows["Steps run"] == ("20", "found by autograd backward (no torch.optim optimizer)")
    assert rows["Traced vs unprofiled"][0] == "+61%"
    assert rows["Unprofiled steps, median"] == ("10.00", "ms, 3 steps after the profiled window")
    assert rows["Weights"] == ("unknown", "not found") and rows["Optimizer state"] == ("unknown", "no optimizer")
    assert rows["Step-time spread (CV)"][0] == "2.0"
