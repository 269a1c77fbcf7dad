"""Top-kernels table: a kernel's category and launching op come from most of its GPU time."""

from __future__ import annotations

import json
from collections import defaultdict

import pytest

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


# ---------------------------------------------------------------- launcher of kernels with no CPU op

def _reference_launchers(events: list) -> dict:
    """Slow, obvious reference: the launcher name of each device op (kernel, memcpy, memset), read
    from the raw events. Its CPU op by External id (an ATen op before an annotation sharing the id),
    else the op with its launch's External id, else the innermost CPU op around its launch on the
    launch's thread, else the innermost user annotation there that is not a ProfilerStep; None if
    nothing. Returns {device event index: (name, "op" | "annotation" | None)}."""
    xs = [e for e in events if isinstance(e, dict) and e.get("ph") == "X"]
    cat = lambda e: str(e.get("cat", "")).lower()  # noqa: E731
    ext = lambda e: (e.get("args") or {}).get("External id")  # noqa: E731
    by_ext: dict = {}
    for e in sorted((e for e in xs if cat(e) in ("cpu_op", "user_annotation") and ext(e) is not None),
                    key=lambda e: cat(e) != "cpu_op"):
        by_ext.setdefault(ext(e), e)
    launches = {(e.get("args") or {}).get("correlation"): e for e in xs
                if cat(e) in ("cuda_runtime", "cuda_driver") and (e.get("args") or {}).get("correlation") is not None}

    def innermost(kind: str, launch: dict):
        around = [e for e in xs if cat(e) == kind and e["pid"] == launch["pid"] and e["tid"] == launch["tid"]
                  and e["ts"] <= launch["ts"] < e["ts"] + e.get("dur", 0)
                  and not str(e["name"]).startswith("ProfilerStep#")]
        return min(around, key=lambda e: e.get("dur", 0), default=None)

    out = {}
    for i, d in enumerate(xs):
        if cat(d) not in ("kernel", "gpu_memcpy", "gpu_memset"):
            continue
        launch = launches.get((d.get("args") or {}).get("correlation"))
        op = by_ext.get(ext(d)) or (by_ext.get(ext(launch)) if launch else None)
        if op is None and launch is not None:
            op = innermost("cpu_op", launch) or innermost("user_annotation", launch)
        out[i] = (d, (op["name"], "op" if cat(op) == "cpu_op" else "annotation") if op else (None, None))
    return out


def _check_launchers(path) -> dict:
    """Every top kernel whose launches all have one launcher (by the reference) names it, with its basis."""
    import gzip

    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rt") as f:
        events = json.load(f)["traceEvents"]
    ref = defaultdict(set)
    for d, who in _reference_launchers(events).values():
        ref[d["name"]].add(who)
    doc = perfkit.analyze(str(path)).to_dict()
    checked = {}
    for k in doc["top_kernels"]:
        if len(ref[k["name"]]) == 1:
            (name, basis), = ref[k["name"]]
            assert (k["op"], k["op_basis"]) == (name, basis), k["name"]
            checked[k["name"]] = basis
    return checked


def test_kernels_launched_under_annotations_only_name_the_annotation(tmp_path):
    """DeepSeek's DualPipe profile launches its DeepEP and grouped-GEMM kernels from extensions that
    record no CPU op, inside record_function ranges (combine(B), mlp(W), ...): the top kernels and the
    copy sources named "an unknown op" and "launched before the trace" for them, though the trace shows
    every launch. The launcher is now the innermost annotation around the launch (ProfilerStep left
    out), marked as such; the reference reads it from the raw events."""
    from .. import _dualpipe_trace

    path = _dualpipe_trace.write(tmp_path / "train.json")
    checked = _check_launchers(path)
    assert "annotation" in checked.values() and "op" in checked.values(), checked
    doc = perfkit.analyze(str(path)).to_dict()
    for s in doc["copies"]["sources"]:
        assert s["op"] != "(unknown: launched before the trace)"
        assert (s["op_basis"] is None) == s["op"].startswith("("), s


def test_graph_replay_kernels_name_the_range_around_the_graph_launch():
    """A public SGLang decode trace (AMD-AGI/TraceLens, MI300X): the kernels of a replayed HIP graph are
    launched by hipGraphLaunch under the run's step annotation and no CPU op."""
    from ..conftest import REPO

    checked = _check_launchers(REPO / "tests/data/traces/amd-mi300x-sglang-qwen3-decode-graph/sglang_Qwen3-8B_decode.json.gz")
    assert list(checked.values()).count("annotation") >= 3, checked


def test_copy_sources_say_why_the_launcher_is_unknown(tmp_path):
    """A copy whose launch is in the trace with nothing around it, and one whose launch is not in the
    trace: two different reasons, neither claimed to be a launch before the trace."""
    from perfkit.analysis.ops import NO_LAUNCH_LABEL, NO_OP_LABEL

    events = [
        _x("user_annotation", "ProfilerStep#1", 0, 1000),
        _x("cuda_runtime", "cudaLaunchKernel", 10, 5, correlation=1),  # under the step marker only
        _x("kernel", "void at::native::copy_kernel(int)", 100, 40, pid=0, tid=7, correlation=1),
        _x("kernel", "void at::native::copy_kernel(int)", 200, 20, pid=0, tid=7, correlation=2),  # no launch
    ]
    path = tmp_path / "t.json"
    path.write_text(json.dumps({"traceEvents": events}))
    doc = perfkit.analyze(str(path)).to_dict()
    got = {s["op"]: (s["ms_per_step"], s["op_basis"]) for s in doc["copies"]["sources"]}
    assert got == {NO_OP_LABEL: (0.04, None), NO_LAUNCH_LABEL: (0.02, None)}


# ---------------------------------------------------------------- ops nested in an op of their name

def test_outermost_of_name_against_brute_force():
    import numpy as np

    from perfkit.analysis.ops import outermost_of_name

    rng = np.random.default_rng(7)
    for _ in range(200):
        # properly nested intervals per (thread, name): build trees by splitting spans
        spans = []
        for thread in range(2):
            stack = [(thread * 10_000.0, thread * 10_000.0 + 1000.0)]
            while stack and len(spans) < 40:
                s, e = stack.pop()
                spans.append((s, e, int(rng.integers(0, 3))))
                if e - s > 4:
                    a = s + rng.uniform(0, (e - s) / 3)
                    b = e - rng.uniform(0, (e - s) / 3)
                    stack.append((a, b))
                    if rng.random() < 0.5:
                        stack.append((b + (e - b) / 4, e - (e - b) / 4))
        s = np.array([x[0] for x in spans])
        e = np.array([x[1] for x in spans])
        names = np.array([x[2] for x in spans])
        ref = [not any(j != i and names[j] == names[i] and s[j] <= s[i] and e[i] <= e[j]
                       and (s[j], -e[j]) < (s[i], -e[i]) for j in range(len(spans))) for i in range(len(spans))]
        assert outermost_of_name(names, s, e).tolist() == ref


def test_top_ops_count_an_op_nested_in_its_own_name_once():
    """A public A100 trace (harryjmoss/particle_transformer) records aten::layer_norm, aten::conv1d,
    aten::linear and aten::baddbmm inside ops of the same name: their GPU time was counted twice. The
    reference sums, from the raw events, the device time launched inside each outermost op of a name."""
    import gzip

    from .. import _cached
    from ..conftest import REPO

    path = REPO / "tests/data/traces/nv-a100-part-infer/gpu_working_chrome_trace.json.gz"
    with gzip.open(path, "rt") as f:
        xs = [e for e in json.load(f)["traceEvents"] if isinstance(e, dict) and e.get("ph") == "X"]
    device = [e for e in xs if e.get("cat") in ("kernel", "gpu_memcpy", "gpu_memset")]
    launch_ts = {e["args"]["correlation"]: (e["tid"], e["ts"]) for e in xs if e.get("cat") == "cuda_runtime"}
    dev = sorted((launch_ts[d["args"]["correlation"]], d["dur"]) for d in device)
    ends = sorted(d["ts"] + d["dur"] for d in device)
    # one stream, no overlap: a device op's share of busy time is its duration
    assert all(b["ts"] >= a_end for a_end, b in zip(ends, sorted(device, key=lambda d: d["ts"])[1:]))
    doc = _cached.document(path)
    assert doc["steps"]["synthetic"] and doc["steps"]["count"] == 1
    by_name = {r["name"]: r for r in doc["top_ops"]}
    nested_names = 0
    for name in ("aten::layer_norm", "aten::conv1d", "aten::linear", "aten::baddbmm", "aten::copy_"):
        ops = sorted((e for e in xs if e.get("cat") == "cpu_op" and e["name"] == name), key=lambda e: (e["ts"], -e["dur"]))
        outer = [o for o in ops if not any(p is not o and p["tid"] == o["tid"] and p["ts"] <= o["ts"]
                                           and o["ts"] + o["dur"] <= p["ts"] + p["dur"] for p in ops)]
        nested_names += len(outer) < len(ops)
        gpu_us = sum(dur for (tid, ts), dur in dev for o in outer if tid == o["tid"] and o["ts"] <= ts < o["ts"] + o["dur"])
        assert by_name[name]["calls_per_step"] == len(outer), name
        assert by_name[name]["ms_per_step"] == pytest.approx(gpu_us / 1000.0, rel=1e-9), name
    assert nested_names == 4  # all but aten::copy_ are recorded inside themselves


def test_copy_finding_names_the_launcher_as_the_tables_do(tmp_path):
    """The copy_overhead title and its where read "annotation NAME" for a copy launched under a range
    only, and "an unknown launcher (...)" where nothing names it (a public GPU-only MI210 trace)."""
    from perfkit.analysis.ops import NO_OP_LABEL
    from perfkit.report.rows import fmt_where

    from .. import _cached
    from ..conftest import REPO

    copy_kernel = "void at::native::direct_copy_kernel_cuda(at::TensorIteratorBase&)"
    events = [_x("user_annotation", "ProfilerStep#1", 0, 2000),
              _x("user_annotation", "mlp(W)", 10, 100),
              _x("cuda_runtime", "cudaLaunchKernel", 20, 5, correlation=1),
              _x("kernel", copy_kernel, 100, 600, pid=0, tid=7, correlation=1),
              _x("cpu_op", "aten::mm", 200, 20, **{"External id": 2}),
              _x("cuda_runtime", "cudaLaunchKernel", 205, 5, correlation=2, **{"External id": 2}),
              _x("kernel", "sm90_xmma_gemm_bf16bf16_bf16f32_f32_tn_n_tilesize128x128x64", 800, 400, pid=0, tid=7,
                 correlation=2, **{"External id": 2})]
    path = tmp_path / "t.json"
    path.write_text(json.dumps({"traceEvents": events}))
    doc = perfkit.analyze(str(path)).to_dict()
    (f,) = [f for f in doc["findings"] if f["id"] == "copy_overhead"]
    assert f["title"].endswith("most from annotation mlp(W)"), f["title"]
    assert fmt_where(f["where"]).startswith("annotation mlp(W) (0.60 ms/step)"), fmt_where(f["where"])

    gpu_only = _cached.document(REPO / "tests/data/traces/amd-mi210-gpu-only/gpu_only_trace.json.gz")
    (f,) = [f for f in gpu_only["findings"] if f["id"] == "copy_overhead"]
    assert f["title"].endswith(f"most from an unknown launcher {NO_OP_LABEL}"), f["title"]
