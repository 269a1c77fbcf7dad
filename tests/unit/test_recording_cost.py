"""The profiler's own cost: host-side findings on GPU-bound runs are lowered, with the evidence.

The two traces were recorded on an NVIDIA H200 by ``perfkit profile`` (default options) of
unmodified scripts (``scripts/validate_recording_cost.py``); ``recording_cost.json`` holds the
same run's truth without any profiler: CUDA-event step time (elapsed) and GPU busy time (a
leading ``torch.cuda._sleep`` lets the host queue each phase, so the events bracket
back-to-back kernels). Both runs are GPU-bound when not traced (elapsed = busy).
"""

from __future__ import annotations

import gzip
import json
import statistics

import pytest

import perfkit
from perfkit.analysis import findings as fd
from perfkit.analysis import runtime_findings as rf
from perfkit.report import render_markdown

from .. import _split
from ..conftest import TRACES

RC = TRACES / "recording_cost_h200"
TRUTH = json.loads((RC / "recording_cost.json").read_text())["models"]
HOST_SIDE = ("host_bound_idle", "launch_bound")


def _reference_counts(path) -> dict[str, float]:
    """Events per ProfilerStep recorded on the host, read from the raw JSON (kept = every step here)."""
    with gzip.open(path, "rt") as f:
        events = [e for e in json.load(f)["traceEvents"] if isinstance(e, dict)]
    steps = [(float(e["ts"]), float(e["ts"]) + float(e["dur"])) for e in events
             if str(e.get("name", "")).startswith("ProfilerStep#") and e.get("cat") in ("cpu_op", "user_annotation")]

    def per_step(pred) -> float:
        n = sum(1 for e in events if pred(e) and any(lo <= float(e["ts"]) < hi for lo, hi in steps))
        return n / len(steps)

    return {
        "ops_and_runtime_calls": per_step(lambda e: e.get("cat") in ("cpu_op", "cuda_runtime", "cuda_driver")),
        "python_frames": per_step(lambda e: e.get("cat") == "python_function"),
    }


@_split.cases("model", ["gpt150m", "gpt2"], ["gpt150m"], ids=str)  # gpt2: tests/e2e
def test_gpu_bound_runs_get_no_host_side_warning(model: str) -> None:
    truth = TRUTH[model]["bare"]
    # The premise, from the unprofiled run: GPU-bound (step time within 2% of the GPU busy time).
    assert truth["elapsed_ms"] <= 1.02 * truth["busy_ms"]
    path = RC / model / "rank0.pt.trace.json.gz"
    doc = perfkit.analyze(path).to_dict()
    rec = doc["recording"]
    ref = _reference_counts(path)
    for key, value in ref.items():
        assert rec["events_per_step"][key] == pytest.approx(value, abs=0.06)
    cost = (ref["ops_and_runtime_calls"] * fd.RECORDING_COST_US["op"]
            + ref["python_frames"] * fd.RECORDING_COST_US["python_frame"]) / 1000.0
    assert rec["estimated_cost_ms_per_step"] == pytest.approx(cost, rel=1e-3)
    # Traced, the host step is far longer than the GPU's work; without the recording it is not.
    assert rec["host_step_ms"] > 1.1 * rec["gpu_busy_ms_per_step"]
    assert rec["gpu_bound_without_recording"] is True
    for f in doc["findings"]:
        if f["id"] in HOST_SIDE:
            assert f["severity"] == "info", f["title"]
            assert f["title"].startswith(fd.RECORDING_TITLE_PREFIX)
            assert f["evidence"]["recording"]["estimated_cost_ms_per_step"] == rec["estimated_cost_ms_per_step"]
    # The report says what the recording cost.
    assert "Recording the trace cost the host about" in render_markdown(doc)


@pytest.mark.parametrize("folder,finding", [
    ("pathologies_h100/kl_attention-fixed", "host_bound_idle"),
    ("pathologies_h100/component_loop", "launch_bound"),
])
def test_host_bound_runs_keep_their_verdict(folder: str, finding: str) -> None:
    """A host slow beyond what the recording explains keeps its warning."""
    doc = perfkit.analyze(TRACES / folder / "rank0.pt.trace.json.gz").to_dict()
    rec = doc["recording"]
    assert rec["host_ms_without_recording"] > 1.1 * rec["gpu_busy_ms_per_step"]
    assert rec["gpu_bound_without_recording"] is False
    f = next(f for f in doc["findings"] if f["id"] == finding)
    assert f["severity"] in ("warning", "critical")
    assert not f["title"].startswith(fd.RECORDING_TITLE_PREFIX)


def _runtime(wall_ms: list[float], skip: int = 5, warmup: int = 2, active: int = 3) -> dict:
    return {"steps": {"count": len(wall_ms), "wall_ms": wall_ms},
            "schedule": {"skip_first": skip, "wait": 0, "warmup": warmup, "active": active}}


def test_measured_recording_uses_the_steps_outside_the_window() -> None:
    # steps 0-4 skipped (0-1 start-up), 5-6 profiler warm-up, 7-9 traced, 10-14 after the window
    wall = [300.0, 90.0, 24.0, 24.0, 24.0, 40.0, 41.0, 43.0, 42.0, 44.0, 23.5, 24.5, 24.0, 23.0, 25.0]
    m = rf.measured_recording(_runtime(wall), gpu_busy_ms=23.0)
    assert m["unprofiled_step_ms"] == statistics.median(wall[10:])
    assert m["unprofiled_steps"] == 5
    assert m["profiled_step_ms"] == statistics.median(wall[7:10])
    assert m["gpu_bound_without_recording"] is True
    # The window at the end of the run: the steps before it, past the start-up, are used.
    m = rf.measured_recording(_runtime(wall[:10]), gpu_busy_ms=23.0)
    assert m["unprofiled_steps"] == 3 and m["unprofiled_step_ms"] == 24.0
    # Host-bound when unprofiled steps are well above the GPU's work.
    assert rf.measured_recording(_runtime([50.0] * 15), gpu_busy_ms=23.0)["gpu_bound_without_recording"] is False
    # Nothing to compare: no steps, no GPU time.
    assert rf.measured_recording(_runtime([]), gpu_busy_ms=23.0) is None
    assert rf.measured_recording(_runtime(wall), gpu_busy_ms=None) is None


def test_measured_recording_and_the_run_summary_split_the_steps_alike() -> None:
    """The analysis' measured cost and the run summary's traced-vs-unprofiled figure read the same steps
    (one rule, perfkit.variation.step_windows): over every small schedule and kept-list length, both give
    a comparison or neither, with the same medians. They differed where one step followed the window
    and none came before it (the summary compared, the analysis did not)."""
    from perfkit.collect.runtime import profiled_vs_unprofiled

    for skip in range(0, 5):
        for warmup in range(0, 3):
            for active in range(1, 4):
                for count in range(1, 14):
                    for kept in {count, min(count, 6)}:
                        wall = [20.0 + 0.5 * i + (7.0 if skip + warmup <= i < skip + warmup + active else 0.0)
                                for i in range(count)][count - kept:]
                        rt = _runtime(wall, skip=skip, warmup=warmup, active=active)
                        rt["steps"]["count"] = count
                        m = rf.measured_recording(rt, gpu_busy_ms=20.0)
                        v = profiled_vs_unprofiled(wall, rt["schedule"], count=count)
                        case = (skip, warmup, active, count, kept)
                        assert (m is None) == ("unprofiled_ms_median" not in v), case
                        if m is not None:
                            assert m["unprofiled_step_ms"] == round(v["unprofiled_ms_median"], 3), case
                            assert m["profiled_step_ms"] == round(v["profiled_ms_median"], 3), case
                            assert m["unprofiled_steps"] == len(v["unprofiled_steps"]), case


def _finding(severity: str = "warning") -> dict:
    return fd.finding("host_bound_idle", severity, "GPU idle 45% of each step", None,
                      {"gpu_idle_ms_per_step": 19.0}, "Take the CPU work off the critical path.", 19.0)


def test_measurement_overrules_the_estimate_both_ways() -> None:
    estimate = {"basis": "estimate", "gpu_bound_without_recording": True, "estimated_cost_ms_per_step": 20.0,
                "events_per_step": {"ops_and_runtime_calls": 4700, "python_frames": 2900, "memory_events": 0},
                "host_ms_without_recording": 22.0, "gpu_busy_ms_per_step": 23.0}
    found = [_finding()]
    fd.lower_recording_artifacts(found, estimate)
    assert found[0]["severity"] == "info" and found[0]["title"].startswith(fd.RECORDING_TITLE_PREFIX)
    # perfkit profile measured the unprofiled steps: host-bound after all -> the finding is restored.
    measured = {"basis": "measured", "gpu_bound_without_recording": False, "unprofiled_step_ms": 45.0,
                "profiled_step_ms": 60.0, "gpu_busy_ms_per_step": 23.0}
    fd.lower_recording_artifacts(found, measured)
    # The run loses 45 - 23 = 22 ms of a 45 ms step (49%): warning, with the measured figures.
    assert found[0]["severity"] == "warning"
    assert found[0]["title"].startswith("GPU idle 45% of each step; without the profiler: 22.0 ms (49%)")
    assert found[0]["cost_ms_per_step"] == pytest.approx(22.0)
    assert found[0]["remedy"] == "Take the CPU work off the critical path."
    # Barely host-bound (12% idle unprofiled): above the GPU-bound tolerance, below the warning threshold.
    found = [_finding()]
    fd.lower_recording_artifacts(found, {**measured, "unprofiled_step_ms": 26.0})
    assert found[0]["severity"] == "info" and found[0]["evidence"]["unprofiled_idle_share"] == pytest.approx(3 / 26, abs=1e-4)
    # Measured GPU-bound: lowered, with the measured figures in the remedy.
    found = [_finding("critical")]
    fd.lower_recording_artifacts(found, {**measured, "gpu_bound_without_recording": True, "unprofiled_step_ms": 23.5})
    assert found[0]["severity"] == "info"
    assert "23.5 ms" in found[0]["remedy"]
    assert found[0]["evidence"]["recording"]["severity_before"] == "critical"
    # Other findings are never touched.
    other = fd.finding("host_device_sync", "warning", "syncs", None, {}, "", 1.0)
    fd.lower_recording_artifacts([other], {**measured, "gpu_bound_without_recording": True})
    assert other["severity"] == "warning"
