"""CPU-only traces: CPU time goes to categories by each op's self time, innermost first."""

from __future__ import annotations

import gzip
import json
from collections import defaultdict

import pytest

import perfkit
from perfkit.analysis.attribute import classify

from ..conftest import anchor
from .._reference import cpu_op_self_times


_self_times = cpu_op_self_times


def _reference_categories(events, lo, hi):
    total = defaultdict(float)
    for e, self_us in _self_times(events):
        if lo <= e["ts"] < hi:
            total[classify(e["name"], e["name"], "")] += self_us
    return total


def test_real_cpu_only_trace_splits_time_by_self_time():
    path = anchor("hta/tests/data/distributed_info_unavailable/distributed_info_not_found.json.gz")
    events = json.loads(gzip.open(path).read())["traceEvents"]
    (step,) = [e for e in events if str(e.get("name", "")).startswith("ProfilerStep#")]
    ref = _reference_categories(events, step["ts"], step["ts"] + step["dur"])
    doc = perfkit.analyze(str(path)).to_dict()
    assert doc["trace"]["time_basis"] == "cpu" and doc["steps"]["count"] == 1
    busy_ms = doc["device"]["busy_ms_per_step"]
    assert sum(ref.values()) / 1000 == pytest.approx(busy_ms, rel=1e-6)  # self times add up to CPU busy time
    for cat, v in doc["categories"].items():
        # 39 of 2,424 ops nest differently in perfkit's interval tree than in this stack walk (ops
        # touching at whole-µs boundaries); per category that moves at most 0.05 ms of 28 ms.
        assert v["ms_per_step"] == pytest.approx(ref.get(cat, 0.0) / 1000, abs=0.05), cat
    assert ref["matmul"] > 0
    matmul_share = doc["categories"]["matmul"]["share"]
    assert matmul_share == pytest.approx(ref["matmul"] / sum(ref.values()), abs=0.002)


def _x(name, ts, dur, tid=1):
    return {"ph": "X", "cat": "cpu_op", "name": name, "pid": 1, "tid": tid, "ts": ts, "dur": dur, "args": {}}


def test_wrapper_range_keeps_only_the_time_between_ops(tmp_path):
    # record_function("model_inference") around two linear layers, as 2022 CPU traces record it.
    events = [
        _x("model_inference", 0, 1000),
        _x("aten::linear", 100, 400), _x("aten::t", 110, 20), _x("aten::addmm", 140, 350),
        _x("aten::relu", 520, 60),
        _x("aten::linear", 600, 300), _x("aten::t", 610, 10), _x("aten::addmm", 630, 260),
        _x("aten::copy_", 2000, 50, tid=2),  # another thread
    ]
    path = tmp_path / "cpu.json"
    path.write_text(json.dumps({"traceEvents": events}))
    doc = perfkit.analyze(str(path)).to_dict()
    ref = _reference_categories(events, float("-inf"), float("inf"))
    cats_ms = {k: v["ms_per_step"] for k, v in doc["categories"].items()}
    for cat in cats_ms:
        assert cats_ms[cat] == pytest.approx(ref.get(cat, 0.0) / 1000), cat
    # By hand: matmul = addmm 350 + 260 plus linear's own 30 + 30; "other" = the wrapper's 240 us
    # between ops and aten::t (30 us); the busy time is still the union of the outermost ops.
    assert cats_ms["matmul"] == pytest.approx(0.670)
    assert cats_ms["other"] == pytest.approx(0.270)
    assert doc["device"]["busy_ms_per_step"] == pytest.approx(1.050)
