"""Python stack samples of a script profiled by ``perfkit profile`` in a subprocess (perfkit/collect/stacks.py
-> <trace>.stacks.json.gz -> analysis sources).

Default ``perfkit profile`` runs no Python tracer (with_stack off) and samples the
loop thread's stack instead; the lines it reports are the lines being executed.
Expected lines come from the test script's own text (the marked lines), never
from perfkit's output.
"""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

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
