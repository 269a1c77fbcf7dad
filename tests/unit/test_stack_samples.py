"""Python stack samples (perfkit/collect/stacks.py -> <trace>.stacks.json.gz -> analysis sources).

Default ``perfkit profile`` runs no Python tracer (with_stack off) and samples the
loop thread's stack instead; the lines it reports are the lines being executed.
Expected lines come from the test script's own text (the marked lines), never
from perfkit's output.
"""

from __future__ import annotations

import gzip
import json
import time
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import perfkit
from perfkit.trace import model as m
from perfkit.trace import read_trace
from perfkit.trace.samples import sidecar_path

from ..conftest import REPO

SCRIPT = textwrap.dedent("""
    import torch
    from torch.autograd.profiler import record_function
    torch.manual_seed(0)
    torch.set_num_threads(1)
    model = torch.nn.Linear(64, 64)
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    big = torch.randn(384, 384)


    def burn_host_in_python(n):
        i = 0
        while i < n: i += 1  # BURN
        return i


    def step(x):
        loss = model(x).pow(2).mean()
        with record_function("x"):
            burn_host_in_python(1_500_000)  # CALL
        z = torch.mm(big, big)  # MM
        loss.backward()
        opt.step()
        opt.zero_grad()
        return z


    for _ in range(8):
        step(torch.randn(32, 64))
""")


def _line(marker: str) -> int:
    return next(i for i, text in enumerate(SCRIPT.splitlines(), 1) if text.rstrip().endswith(f"# {marker}"))


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("samples")
    script = tmp / "burner.py"
    script.write_text(SCRIPT)
    proc = subprocess.run(
        [sys.executable, "-m", "perfkit", "profile", "--quiet", "--skip-first", "2", "--warmup", "1", "--active", "3",
         "--out", str(tmp / "run"), str(script)],
        capture_output=True, text=True, cwd=tmp, timeout=300, env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert proc.returncode == 0, proc.stderr
    return tmp / "run", script


def _raw_events(path: Path) -> list[dict]:
    with gzip.open(path) as f:
        return json.load(f)["traceEvents"]


@pytest.mark.slow
def test_default_profile_has_no_python_tracer_but_a_sidecar(run):
    run_dir, _ = run
    events = _raw_events(run_dir / "rank0.pt.trace.json.gz")
    assert not any(e.get("cat") == "python_function" for e in events)  # with_stack is off by default
    side = run_dir / "rank0.pt.trace.stacks.json.gz"
    assert side.exists()
    doc = json.loads((run_dir / "analysis.json").read_text())
    assert doc["runtime"]["stack_samples"]["warning"] is None
    assert doc["runtime"]["stack_samples"]["samples"] > 0
    assert doc["trace"]["source_basis"] == "sampled"


def test_frames_name_the_executing_line_of_the_burn_loop(run):
    run_dir, script = run
    doc = json.loads((run_dir / "analysis.json").read_text())
    # The long torch.mm (GIL released) is sampled at its own line; every other sampled moment of
    # the step is the Python loop, so the loop's line leads the rest.
    mm_line = f"{script}:{_line('MM')} step"
    rest = [f for f in doc["frames"] if f["source"] != mm_line]
    top = rest[0]
    assert top["source"] == f"{script}:{_line('BURN')} burn_host_in_python"
    assert top["source_basis"] == "sampled" and top["calls_per_step"] is None
    assert top["ms_per_step"] > 0.5 * sum(f["ms_per_step"] for f in rest)


def test_long_op_gets_its_call_site_line(run):
    run_dir, script = run
    doc = json.loads((run_dir / "analysis.json").read_text())
    mm = next(o for o in doc["top_ops"] if o["name"] == "aten::mm")
    assert mm["source"] == f"{script}:{_line('MM')} step"  # the line that called torch.mm, not a def line
    assert mm["source_basis"] == "sampled"


def test_sidecar_round_trips(run):
    run_dir, _ = run
    trace_path = run_dir / "rank0.pt.trace.json.gz"
    with gzip.open(sidecar_path(str(trace_path))) as f:
        raw = json.load(f)
    assert raw["schema"] == "perfkit.stacks/1"
    assert [t["tid"] for t in raw["threads"]] == [raw["threads"][0]["pid"]]  # the main thread: tid == pid on Linux
    tr = read_trace(str(trace_path))
    ss = tr.stack_samples
    assert ss is not None and ss.alignment == "clock_sync"
    assert len(ss) == len(raw["samples"]["ts_us"])
    assert [ss.stacks[i] for i in ss.stack.tolist()] == [raw["stacks"][i] for i in raw["samples"]["stack"]]
    assert set(ss.tid.tolist()) == {raw["threads"][0]["tid"]}
    # The sample's own clock differences survive the alignment.
    np.testing.assert_allclose(np.diff(ss.ts_us), np.diff(raw["samples"]["ts_us"]), atol=0.01)
    # Kineto writes the loop thread's native id as tid: the samples' thread is one of the trace's threads.
    events = _raw_events(trace_path)
    assert raw["threads"][0]["tid"] in {e.get("tid") for e in events if e.get("cat") == "cpu_op"}


def test_samples_inside_a_record_function_fall_inside_its_trace_range(run):
    run_dir, script = run
    trace_path = run_dir / "rank0.pt.trace.json.gz"
    events = _raw_events(trace_path)
    ranges = sorted((e["ts"], e["ts"] + e["dur"]) for e in events if e.get("name") == "x" and e.get("ph") == "X")
    assert len(ranges) >= 2
    ss = read_trace(str(trace_path)).stack_samples
    burn = f"{script}({_line('BURN')}): burn_host_in_python"
    in_burn = np.array([ss.stacks[s][0] == burn for s in ss.stack.tolist()])
    assert in_burn.sum() >= 3
    t = ss.ts_us[in_burn]
    lo, hi = np.array([r[0] for r in ranges]), np.array([r[1] for r in ranges])
    k = np.searchsorted(lo, t, side="right") - 1
    inside = (k >= 0) & (t <= hi[np.maximum(k, 0)])
    # Every sample taken while the loop ran lies inside one of the "x" ranges of the trace.
    assert inside.all(), (t[~inside], ranges)


def _copy_run(run_dir: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "copy"
    dst.mkdir()
    for f in ("rank0.pt.trace.json.gz", "rank0.pt.trace.stacks.json.gz"):
        (dst / f).write_bytes((run_dir / f).read_bytes())
    return dst / "rank0.pt.trace.json.gz"


def test_corrupt_sidecar_warns_and_analysis_runs(run, tmp_path):
    trace = _copy_run(run[0], tmp_path)
    Path(sidecar_path(str(trace))).write_bytes(b"\x1f\x8b not really gzip")
    doc = perfkit.analyze(str(trace)).to_dict()
    assert any("stack samples not used" in w for w in doc["trace"]["warnings"])
    assert doc["trace"]["source_basis"] is None and doc["frames"] == []
    assert doc["steps"]["count"] >= 2


def test_sidecar_of_the_wrong_schema_warns(run, tmp_path):
    trace = _copy_run(run[0], tmp_path)
    with gzip.open(sidecar_path(str(trace)), "wt") as f:
        json.dump({"schema": "something/9", "samples": {}}, f)
    doc = perfkit.analyze(str(trace)).to_dict()
    assert any("stack samples not used" in w for w in doc["trace"]["warnings"])


def test_missing_sidecar_warns_when_the_trace_has_sampler_markers(run, tmp_path):
    trace = _copy_run(run[0], tmp_path)
    os.remove(sidecar_path(str(trace)))
    doc = perfkit.analyze(str(trace)).to_dict()
    assert any("no stack samples file" in w for w in doc["trace"]["warnings"])
    assert doc["steps"]["count"] >= 2


def test_directory_analysis_does_not_take_the_sidecar_for_a_trace(run):
    from perfkit.trace.files import expand_traces

    run_dir, _ = run
    assert [Path(p).name for p in expand_traces([str(run_dir)])] == ["rank0.pt.trace.json.gz"]


def test_sampler_failure_does_not_stop_training(tmp_path, monkeypatch):
    import time

    import torch

    from perfkit.collect import stacks

    def broken(self):
        raise RuntimeError("injected sampler failure")

    monkeypatch.setattr(stacks.StackSampler, "_sample", broken)
    model = torch.nn.Linear(8, 8)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    done = 0
    with perfkit.profile(str(tmp_path / "run"), skip_first=1, warmup=1, active=3, report=False) as session:
        for _ in range(8):
            time.sleep(0.005)  # the sampler wakes in the recorded steps
            model(torch.randn(4, 8)).sum().backward()
            opt.step()
            opt.zero_grad()
            done += 1
    assert done == 8
    rt = json.loads((tmp_path / "run" / "analysis.json").read_text())["runtime"]
    assert rt["steps_seen"] == 8
    assert "injected sampler failure" in rt["stack_samples"]["warning"]
    assert session.trace_path and os.path.exists(session.trace_path)


def test_sampler_caps_its_samples():
    import threading
    import time

    from perfkit.collect.stacks import StackSampler

    s = StackSampler(interval_us=200, max_samples=5)
    s.start()
    deadline = time.time() + 30
    while s.running and time.time() < deadline:
        time.sleep(0.01)
    s.stop()
    assert len(s.ts_us) == 5 and "cap" in s.warning
    assert len(s.syncs) == 2  # the closing clock pairing is recorded after the thread stopped itself
    doc = s.to_dict()
    assert doc["threads"][0]["tid"] == threading.get_native_id()
    assert len(doc["samples"]["stack"]) == 5


def test_sampled_where_of_host_bound_idle(tmp_path):
    """A GPU trace whose loop thread spins in Python between kernels: `where` names the sampled line."""
    pid = tid = 4242
    events = [{"ph": "M", "name": "thread_name", "pid": pid, "tid": tid, "args": {"name": "MainThread"}}]
    samples_t, t = [], 1_000_000.0
    for step in range(4):
        s0 = t
        events.append({"ph": "X", "cat": "user_annotation", "name": f"ProfilerStep#{step}", "pid": pid, "tid": tid,
                       "ts": s0, "dur": 10_000})
        # op + launch at the start, kernel runs 1 ms; then 8 ms of Python with no op (GPU idle).
        events.append({"ph": "X", "cat": "cpu_op", "name": "aten::mm", "pid": pid, "tid": tid, "ts": s0 + 10,
                       "dur": 50, "args": {"External id": step + 1}})
        events.append({"ph": "X", "cat": "cuda_runtime", "name": "cudaLaunchKernel", "pid": pid, "tid": tid,
                       "ts": s0 + 20, "dur": 10, "args": {"correlation": 100 + step, "External id": step + 1}})
        events.append({"ph": "X", "cat": "kernel", "name": "gemm_kernel", "pid": 0, "tid": 7, "ts": s0 + 40,
                       "dur": 1000, "args": {"correlation": 100 + step, "device": 0, "stream": 7,
                                             "External id": step + 1}})
        events.append({"ph": "X", "cat": "cpu_op", "name": "aten::sum", "pid": pid, "tid": tid, "ts": s0 + 9_900,
                       "dur": 50, "args": {"External id": 50 + step}})
        samples_t += [s0 + 1_500 + 1_000 * i for i in range(8)]  # inside the Python stretch
        t += 10_000
    trace = tmp_path / "t.pt.trace.json"
    trace.write_text(json.dumps({"traceEvents": events}))
    stacks = [["/site-packages/torch/x.py(1): f", "train.py(77): hungarian", "train.py(12): main"]]
    with gzip.open(sidecar_path(str(trace)), "wt") as f:
        json.dump({"schema": "perfkit.stacks/1", "clock": "perf_counter_ns", "interval_us": 1000.0,
                   "switch_interval_us": 5000.0,
                   "syncs": [{"name": "none", "clock_before_us": 0, "clock_after_us": 0,
                              "unix_us": 0.0, "unix_clock_us": 0.0}],
                   "threads": [{"pid": pid, "tid": tid, "name": "MainThread"}],
                   "samples": {"ts_us": samples_t, "thread": [0] * len(samples_t), "stack": [0] * len(samples_t)},
                   "stacks": stacks}, f)
    doc = perfkit.analyze(str(trace)).to_dict()
    host = [f for f in doc["findings"] if f["id"] == "host_bound_idle"]
    assert host, [f["id"] for f in doc["findings"]]
    where = host[0]["where"]
    assert where[0]["source"] == "train.py:77 hungarian" and where[0]["source_basis"] == "sampled"
    assert "train.py:77 hungarian" in host[0]["title"]
    # 8 samples per step, all in the host-bound idle time of the kept steps.
    assert where[0]["samples"] == 8 * doc["steps"]["count"]
    assert doc["trace"]["stack_samples"]["alignment"] == "unix_time"  # no marker in this trace: the fallback
    # The typical gap is the median gap between consecutive samples (1 ms here), not the weight bound
    # (which the 5 ms switch interval raises).
    gaps = [b - a for a, b in zip(samples_t, samples_t[1:])]
    assert doc["trace"]["stack_samples"]["typical_gap_us"] == pytest.approx(sorted(gaps)[len(gaps) // 2])


def test_a_failing_profiler_step_stops_the_sampler(tmp_path):
    """torch.profiler's step() raising must not leave the sampler thread taking the GIL for the rest of the run."""
    import time

    import torch

    model = torch.nn.Linear(8, 8)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with perfkit.profile(str(tmp_path / "run"), skip_first=0, warmup=1, active=5, report=False) as session:
        for i in range(8):
            if i == 3:  # the sampler runs now; then the profiler breaks
                assert session.sampler is not None and session.sampler.running

                def broken() -> None:
                    raise RuntimeError("injected profiler failure")

                session._prof.step = broken
            time.sleep(0.003)
            model(torch.randn(4, 8)).sum().backward()
            opt.step()
            opt.zero_grad()
        assert not session.sampler.running
        assert len(session.sampler.syncs) == 2  # the closing clock pairing is recorded too
    assert "injected profiler failure" in (session.error or "")
