"""Top-kernels table: a kernel's category and launching op come from most of its GPU time."""

from __future__ import annotations

import json
from collections import defaultdict

import perfkit
from perfkit.analysis.attribute import classify

GENERIC = "void at::native::elementwise_kernel<128, 2>(int)"  # category depends on the launching op


def _x(cat, name, ts, dur, pid=1, tid=1, **args):
    return {"ph": "X", "cat": cat, "name": name, "pid": pid, "tid": tid, "ts": ts, "dur": dur, "args": args}


def _launch(events, op, corr, ext, ts, kernel_dur):
    events.append(_x("cpu_op", op, ts, 20, **{"External id": ext}))
    events.append(_x("cuda_runtime", "cudaLaunchKernel", ts + 5, 5, correlation=corr, **{"External id": ext}))
    events.append(_x("kernel", GENERIC, 1000 + ts, kernel_dur, pid=0, tid=7, correlation=corr, **{"External id": ext}))


def test_top_kernel_category_and_op_follow_the_majority_of_gpu_time(tmp_path):
    events = []
    # Three short launches by aten::copy_ (3 x 10 us), then one long launch by aten::add (50 us):
    # by count copy_ wins, by GPU time add does; the last launch is copy_ again (short).
    plan = [("aten::copy_", 10), ("aten::copy_", 10), ("aten::add", 50), ("aten::copy_", 10)]
    for i, (op, dur) in enumerate(plan):
        _launch(events, op, corr=100 + i, ext=500 + i, ts=i * 100, kernel_dur=dur)
    path = tmp_path / "t.json"
    path.write_text(json.dumps({"traceEvents": events}))

    # Reference from the raw events: GPU time per (category, op) of the kernel's launches.
    by_cat, by_op = defaultdict(float), defaultdict(float)
    for op, dur in plan:
        by_cat[classify(GENERIC, op)] += dur
        by_op[op] += dur
    assert classify(GENERIC, "aten::copy_") != classify(GENERIC, "aten::add")  # the case is meaningful

    row = [r for r in perfkit.analyze(str(path)).to_dict()["top_kernels"] if r["name"] == GENERIC][0]
    assert row["category"] == max(by_cat, key=by_cat.get)
    assert row["op"] == max(by_op, key=by_op.get)
    assert row["calls_per_step"] == len(plan)
