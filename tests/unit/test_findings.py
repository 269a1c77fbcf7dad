"""Findings on real traces (healthy and not) and on small hand-built traces with one known problem each."""

from __future__ import annotations

import json

import pytest

import perfkit

from .. import _cached
from ..conftest import BF16, FP32, TRACES, anchor

SEVERE = ("warning", "critical")


@pytest.mark.parametrize("trace", [BF16, FP32, TRACES / "example_gpt_h100" / "rank0.pt.trace.json.gz"],
                         ids=["bf16_adamw", "fp32_sgd", "example_gpt_h100"])
def test_healthy_gpu_bound_training_raises_no_warning(trace):
    findings = _cached.document(trace)["findings"]
    assert not [f for f in findings if f["severity"] in SEVERE], findings


def test_data_loader_starvation_is_found_and_named_first():
    # ResNet-50 with DataLoader(num_workers=0): 39% of the step waits for data
    doc = perfkit.analyze(str(anchor("kineto/tb_plugin/samples/resnet50_num_workers_0/worker0.1623143089861.pt.trace.json.gz"))).to_dict()
    first = doc["findings"][0]
    assert first["id"] == "dataloader_bound" and first["severity"] == "warning"
    assert first["evidence"]["share_of_step"] > 0.3
    assert "DataLoader" in json.dumps(first["where"])
    assert "num_workers" in first["remedy"]
    ids = [f["id"] for f in doc["findings"]]
    assert "host_bound_idle" not in ids  # the same idle time, already explained by the data loader


def test_findings_have_the_documented_shape():
    doc = _cached.document(anchor("hta/tests/data/negative_queue_length_values_check/rank0.json.gz"))
    assert doc["findings"]
    ranks = {"critical": 0, "warning": 1, "info": 2}
    keys = [(ranks[f["severity"]], -f["cost_ms_per_step"]) for f in doc["findings"]]
    assert keys == sorted(keys)  # ranked by severity, then by the time at stake
    for f in doc["findings"]:
        assert set(f) >= {"id", "severity", "title", "where", "evidence", "remedy", "cost_ms_per_step"}
        assert f["remedy"] and f["title"]


# ----------------------------------------------------------------------------- hand-built traces


def _trace(tmp_path, events, name="t.json"):
    path = tmp_path / name
    path.write_text(json.dumps({"traceEvents": events}))
    return str(path)


def _x(cat, name, ts, dur, pid=1, tid=1, **args):
    return {"ph": "X", "cat": cat, "name": name, "pid": pid, "tid": tid, "ts": ts, "dur": dur, "args": args}


def _kernel(corr, ts, dur):
    return [
        _x("cuda_runtime", "cudaLaunchKernel", ts - 50, 5, correlation=corr),
        _x("kernel", "void gemm_kernel<float>()", ts, dur, pid=0, tid=7, correlation=corr),
    ]


def test_gpu_idle_while_python_runs_names_the_function(tmp_path):
    events = []
    corr = 1
    for step in range(3):
        t0 = step * 10_000.0
        events.append(_x("user_annotation", f"ProfilerStep#{step}", t0, 10_000))
        for k in range(3):  # 3 ms of GPU work ...
            events += _kernel(corr, t0 + 100 + k * 1000, 1000)
            corr += 1
        # ... then 6.5 ms of a Python solver while the GPU waits
        events.append(_x("python_function", "train.py(40): hungarian_assignment", t0 + 3200, 6500, **{"Python id": corr}))
    doc = perfkit.analyze(_trace(tmp_path, events)).to_dict()
    first = doc["findings"][0]
    assert first["id"] == "host_bound_idle" and first["severity"] == "critical"
    assert "hungarian_assignment" in first["title"]
    assert first["evidence"]["idle_share"] > 0.6


def test_syncs_are_counted_with_their_op_and_line(tmp_path):
    events = []
    corr = 1
    for step in range(3):
        t0 = step * 10_000.0
        events.append(_x("user_annotation", f"ProfilerStep#{step}", t0, 10_000))
        events.append(_x("python_function", "model.py(146): select_blocks", t0 + 10, 9_000, **{"Python id": 100 + step}))
        for k in range(30):  # 30 .item() calls, each blocking 200 us
            ts = t0 + 100 + k * 290
            events.append(_x("cpu_op", "aten::item", ts, 260))
            events.append(_x("cuda_runtime", "cudaStreamSynchronize", ts + 20, 200, correlation=corr))
            corr += 1
            events += _kernel(corr, ts + 60, 150)
            corr += 1
    doc = perfkit.analyze(_trace(tmp_path, events)).to_dict()
    sync = next(f for f in doc["findings"] if f["id"] == "host_device_sync")
    # the GPU idles after every sync until the loop launches more: the syncs carry the idle time
    assert sync["severity"] == "critical" and doc["findings"][0]["id"] == "host_device_sync"
    assert "host_bound_idle" not in [f["id"] for f in doc["findings"]]
    assert sync["evidence"]["gpu_idle_after_syncs_ms_per_step"] > 0.5 * sync["evidence"]["gpu_idle_ms_per_step"]
    assert sync["evidence"]["syncs_per_step"] == 30
    assert sync["evidence"]["blocked_ms_per_step"] == pytest.approx(6.0)
    assert sync["where"][0]["name"] == "aten::item"
    # a python_function frame gives the function's definition line, labelled as such
    assert sync["where"][0]["source"] == "model.py:146 select_blocks (def)"


def test_item_on_a_cpu_tensor_is_not_a_sync(tmp_path):
    events = []
    for step in range(3):
        t0 = step * 1000.0
        events.append(_x("user_annotation", f"ProfilerStep#{step}", t0, 1000))
        events += [_x("cpu_op", "aten::item", t0 + 10 + k * 20, 10) for k in range(40)]
        events += _kernel(step + 1, t0 + 900, 50)
    doc = perfkit.analyze(_trace(tmp_path, events)).to_dict()
    assert "host_device_sync" not in [f["id"] for f in doc["findings"]]


def test_many_tiny_kernels_from_a_loop_are_launch_bound(tmp_path):
    events = []
    corr = 1
    for step in range(3):
        t0 = step * 20_000.0
        events.append(_x("user_annotation", f"ProfilerStep#{step}", t0, 20_000))
        for k in range(400):  # 400 kernels of 4 us, launched every 45 us: the GPU mostly waits
            ts = t0 + 100 + k * 45
            events.append(_x("cpu_op", "aten::mm", ts, 40))
            events.append(_x("cuda_runtime", "cudaLaunchKernel", ts + 5, 25, correlation=corr))
            events.append(_x("kernel", "void gemv_small()", ts + 35, 4, pid=0, tid=7, correlation=corr))
            corr += 1
    doc = perfkit.analyze(_trace(tmp_path, events)).to_dict()
    launch = next(f for f in doc["findings"] if f["id"] == "launch_bound")
    # the GPU idles most of the step because of launch overhead: one finding, carrying the idle time
    assert launch["severity"] == "critical" and doc["findings"][0] is not None and doc["findings"][0]["id"] == "launch_bound"
    assert "host_bound_idle" not in [f["id"] for f in doc["findings"]]
    assert launch["evidence"]["idle_share"] > 0.5
    assert launch["evidence"]["kernels_per_step"] == 400
    assert launch["evidence"]["median_kernel_us"] == pytest.approx(4.0)
    assert launch["where"][0]["name"] == "aten::mm"
    assert "einsum" in launch["remedy"]


def test_runtime_findings_large_logits_and_first_call_outliers():
    from perfkit.analysis import runtime_findings

    doc = {
        "trace": {"devices": [{"memory_bytes": 80 * 2**30}]},
        "findings": [{"id": "copy_overhead", "severity": "info", "cost_ms_per_step": 1.0}],
        "runtime": {
            "memory": {"peak_bytes": 24 * 2**30, "activations": {"output_bytes": 6 * 2**30}},
            "modules": [
                {"name": "blocks.0", "first_call_ms": 800.0, "forward_ms_median": 20.0, "first_call_outlier": True},
                {"name": "blocks.1", "first_call_ms": 21.0, "forward_ms_median": 20.0, "first_call_outlier": False},
            ],
        },
    }
    runtime_findings.merge(doc)
    ids = [f["id"] for f in doc["findings"]]
    assert ids.count("memory_pressure") == 1 and ids.count("warmup_outlier") == 1
    mem = next(f for f in doc["findings"] if f["id"] == "memory_pressure")
    assert mem["severity"] == "info" and mem["evidence"]["output_share_of_peak"] == 0.25
    assert "cross-entropy" in mem["remedy"]
    warm = next(f for f in doc["findings"] if f["id"] == "warmup_outlier")
    assert "blocks.0" in warm["title"] and "40x" in warm["title"]
    # near capacity: a warning
    doc2 = {"trace": {"devices": [{"memory_bytes": 10 * 2**30}]}, "runtime": {"memory": {"peak_bytes": int(9.5 * 2**30)}}}
    runtime_findings.merge(doc2)
    assert doc2["findings"][0]["id"] == "memory_pressure" and doc2["findings"][0]["severity"] == "warning"
