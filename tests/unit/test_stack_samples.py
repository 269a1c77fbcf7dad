"""Python stack samples (perfkit/collect/stacks.py -> <trace>.stacks.json.gz -> analysis sources).

Default ``perfkit profile`` runs no Python tracer (with_stack off) and samples the
loop thread's stack instead; the lines it reports are the lines being executed.
Expected lines come from the test script's own text (the marked lines), never
from perfkit's output. tests/e2e/test_stack_samples_e2e.py profiles a script with
``perfkit profile`` in a subprocess; the tests here run in-process.
"""

from __future__ import annotations

import gzip
import json
import time
import os
import re
from pathlib import Path

import pytest

import perfkit
from perfkit.trace.samples import sidecar_path

from ..conftest import REPO


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


@pytest.fixture
def run() -> tuple[Path, None]:
    """A committed ``perfkit profile`` run with its stack samples sidecar (tests/data/compiled_mlp; the
    e2e tests profile a fresh one)."""
    return REPO / "tests" / "data" / "compiled_mlp", None


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


HF_STACKS = Path(__file__).resolve().parents[1] / "data" / "stack_samples" / "hf_trainer_gpt2_cpu.stacks.json.gz"


def test_sampled_frames_read_as_the_tracer_writes_them():
    """A Hugging Face Trainer run's real stacks: an installed package's frame is taken without its install
    folder, as torch's tracer writes it, so the model code transformers runs is the line (not the script's
    trainer.train() call, further out in every stack), and torch's own frames stay library."""
    from perfkit.analysis.ops import user_frame

    with gzip.open(HF_STACKS, "rt") as f:
        stacks = json.load(f)["stacks"]
    found = [user_frame(s) for s in stacks]
    in_model = [u for u in found if u and u.startswith("transformers/models/gpt2/modeling_gpt2.py(")]
    assert in_model, found
    assert not [u for u in found if u and ("site-packages" in u or u.startswith("torch/"))], found
    for stack, u in zip(stacks, found):
        # the same answer as for the frames torch's tracer would write: cut at the install folder
        as_tracer = [re.sub(r"^.*/site-packages/", "", fr) for fr in stack]
        assert user_frame(as_tracer) == u
        if any("modeling_gpt2.py" in fr for fr in stack):
            assert u is not None and not u.endswith(": main"), (u, stack[:4])


@pytest.mark.parametrize("frames, expected", [
    (["/v/lib/python3.12/site-packages/torch/nn/functional.py(2380): linear",
      "/v/lib/python3.12/site-packages/transformers/pytorch_utils.py(119): forward", "/home/u/train.py(46): main"],
     "transformers/pytorch_utils.py(119): forward"),
    (["/usr/lib/python3/dist-packages/numpy/_core/fromnumeric.py(48): _wrapfunc", "/home/u/train.py(9): step"],
     "/home/u/train.py(9): step"),
    (["/usr/lib/python3.11/threading.py(1012): run"], None),  # the standard library stays library
    (["/v/lib/python3.12/site-packages/mypkg/train.py(12): step"], "mypkg/train.py(12): step"),  # a user's package
    (["/v/lib/python3.12/site-packages/triton/runtime/jit.py(574): run", "/v/site-packages/perfkit/collect/x.py(1): f"],
     None),
])
def test_install_folder_is_cut_before_the_library_rules(frames, expected):
    from perfkit.analysis.ops import user_frame

    assert user_frame(frames) == expected
