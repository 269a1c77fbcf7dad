"""perfkit profile on CPU, in-process: a missing script, the API (decorator, phases, throughput, flops,
modules), the profiled window's statistics. tests/e2e/test_profile_cli_e2e.py runs plain scripts with
no perfkit import under `perfkit profile` in subprocesses: exit codes, crashes, signals."""

from __future__ import annotations

import json

import pytest
import torch


def test_missing_script_is_one_line_error(tmp_path, capsys):
    from perfkit.cli import main

    assert main(["profile", "--quiet", "--out", str(tmp_path / "run"), str(tmp_path / "nope.py")]) == 2
    err = capsys.readouterr().err
    assert "no such script" in err and "Traceback" not in err
    assert not (tmp_path / "run").exists()


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
    out = profiled_vs_unprofiled(wall, sched)
    assert out["profiled_steps"] == [8, 9, 10, 11, 12] and out["profiled_ms_median"] == 13
    assert out["unprofiled_steps"] == [13, 14, 15, 16] and out["unprofiled_ms_median"] == 10
    assert out["unprofiled_where"] == "after the profiled window"
    assert out["slowdown"] == pytest.approx(1.3)
    assert out["spread"]["steps"] == 4 and out["spread"]["max_step"] == 15
    # the run ends with the trace: the steps before the window, past the start-up, are the unprofiled ones
    short = profiled_vs_unprofiled(wall[:12], sched, count=12)
    assert short["unprofiled_steps"] == [3, 4, 5] and short["unprofiled_where"] == "before the profiled window"
    # light mode: nothing was traced; the spread is over every step past the start-up
    light = profiled_vs_unprofiled(wall, sched, traced_run=False)
    assert set(light) == {"spread"} and light["spread"]["steps"] == len(wall) - 2
    # only the last 10 of 16 steps kept (events evicted): the same run steps
    tail = profiled_vs_unprofiled(wall[6:], sched, count=16)
    assert tail["profiled_steps"] == [8, 9, 10, 11, 12] and tail["unprofiled_steps"] == [13, 14, 15, 16]


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


def test_runtime_rows_give_the_gpu_step_time_and_say_when_the_host_runs_ahead():
    """CUDA events at the step boundaries: the step time is the GPU's; a host that never waits (CUDA
    graphs) has a shorter wall time per step, shown as such and said not to be the step time."""
    from perfkit.report.rows import runtime_rows

    steps = {"wall_ms_median": 10.42, "gpu_ms_median": 21.6, "step_ms_median": 21.6, "step_basis": "gpu",
             "host_ahead": True, "unprofiled_ms_median": 21.5, "unprofiled_steps": [13, 14, 15],
             "unprofiled_where": "after the profiled window", "profiled_ms_median": 21.6,
             "profiled_steps": [8, 9, 10, 11, 12], "slowdown": 1.005}
    rows = {label: (value, unit) for label, value, unit in runtime_rows({"runtime": {"steps_seen": 20, "steps": steps}})}
    assert rows["Step time, median (run timer)"] == ("21.60", "ms on the GPU (CUDA events)")
    value, unit = rows["Host wall time per step, median"]
    assert value == "10.42" and "not the step time" in unit
    assert rows["Unprofiled steps, median"] == ("21.50", "ms on the GPU, 3 steps after the profiled window")
    assert rows["Traced vs unprofiled"][0] == "+0%"
    steady = {**steps, "wall_ms_median": 21.0, "host_ahead": False}
    rows = {label: unit for label, _, unit in runtime_rows({"runtime": {"steps_seen": 20, "steps": steady}})}
    assert rows["Host wall time per step, median"] == "ms"
    # a document written before step_basis: the CUDA-event median is the step time, its comparisons were wall
    old = {k: v for k, v in steps.items() if k not in ("step_ms_median", "step_basis", "host_ahead")}
    rows = {label: (value, unit) for label, value, unit in runtime_rows({"runtime": {"steps_seen": 20, "steps": old}})}
    assert rows["Step time, median (run timer)"][0] == "21.60"
    assert rows["Unprofiled steps, median"][1].startswith("ms wall")


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
    assert rows["Unprofiled steps, median"] == ("10.00", "ms wall, 3 steps after the profiled window")
    assert rows["Step time, median (run timer)"] == ("10.00", "ms, host wall time")
    assert rows["Weights"] == ("unknown", "not found") and rows["Optimizer state"] == ("unknown", "no optimizer")
    assert rows["Step-time spread (CV)"][0] == "2.0"
