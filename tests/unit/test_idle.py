"""GPU idle time blamed on the right cause and the right thread (host_bound_idle).

The idle classes are checked against a slow pure-Python reading of the raw
events (``_reference_classes``): its own JSON parsing, interval merging with
plain lists, and one walk over the elementary segments between all boundaries.
"""

from __future__ import annotations

import gzip
import json
import re
from pathlib import Path

import pytest

import perfkit
from perfkit.analysis import findings, rules

from .._reference import _inside, _merge
from ..conftest import TRACES

DATA = Path(__file__).resolve().parent.parent / "data" / "traces"
VLLM_GRAPH = DATA / "vllm_piecewise_hipgraph_mi300x" / "graph_execution.json.gz"
KL_FIXED = TRACES / "pathologies_h100" / "kl_attention-fixed" / "rank0.pt.trace.json.gz"
SEVERE = ("warning", "critical")

DEVICE_CATS = {"kernel", "gpu_memcpy", "gpu_memset"}
HOST_CATS = {"cpu_op", "user_annotation", "python_function", "cuda_runtime", "cuda_driver"}
RUNTIME_CATS = {"cuda_runtime", "cuda_driver"}
LAUNCH = re.compile(r"Launch|Memcpy|Memset")


# ----------------------------------------------------------------------------- reference


def _load(path):
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rt") as fh:
        doc = json.load(fh)
    events = doc["traceEvents"] if isinstance(doc, dict) else doc
    return [e for e in events if e.get("ph") == "X"]


def e_is(e, cats):
    return e.get("cat") in cats


def _reference_classes(path, latency_us):
    """Idle µs per class for a trace without ProfilerStep markers (one window), from the raw events."""
    ev = _load(path)
    dev = [e for e in ev if e.get("cat") in DEVICE_CATS]
    host = [e for e in ev if e.get("cat") in HOST_CATS]
    runtime = {}
    for e in ev:
        if e.get("cat") in RUNTIME_CATS and "correlation" in e.get("args", {}):
            runtime.setdefault(e["args"]["correlation"], e)
    # threads that feed the device: a launch-type runtime call, or a runtime call a device op links to
    feeding = {(e["pid"], e["tid"]) for e in ev if e.get("cat") in RUNTIME_CATS and LAUNCH.search(e["name"])}
    for d in dev:
        r = runtime.get(d.get("args", {}).get("correlation"))
        if r is not None:
            feeding.add((r["pid"], r["tid"]))
    window = (min(min(e["ts"] for e in host), min(e["ts"] for e in dev)),
              max(max(e["ts"] + e["dur"] for e in host), max(e["ts"] + e["dur"] for e in dev)))
    busy = _merge([(e["ts"], e["ts"] + e["dur"]) for e in dev])
    gaps, t = [], window[0]
    for s, e in busy:
        if s > t:
            gaps.append((t, s))
        t = max(t, e)
    if t < window[1]:
        gaps.append((t, window[1]))
    pending = []
    for d in dev:
        r = runtime.get(d.get("args", {}).get("correlation"))
        if r is not None and d["ts"] > r["ts"] + r["dur"] + latency_us:
            pending.append((r["ts"] + r["dur"] + latency_us, d["ts"]))
    pending = _merge(pending)
    launch_ts = [e["ts"] for e in ev if e.get("cat") in RUNTIME_CATS and LAUNCH.search(e["name"])]
    first_launch = min(launch_ts) if launch_ts else float("inf")
    first_own = min(e["ts"] for e in dev)
    for d in dev:
        if runtime.get(d.get("args", {}).get("correlation")) is None and d["ts"] < first_launch:
            first_own = max(first_own, d["ts"])
    cpu_lo = min(e["ts"] for e in host)
    cpu_hi = max(e["ts"] + e["dur"] for e in host)
    active = _merge([(e["ts"], e["ts"] + e["dur"]) for e in host if (e["pid"], e["tid"]) in feeding])
    # Graph capture: from each *StreamBeginCapture to the next *StreamEndCapture on its thread.
    capture = []
    for b in ev:
        if e_is(b, RUNTIME_CATS) and re.match(r"(cuda|hip)StreamBeginCapture", b["name"]):
            ends = [e["ts"] + e["dur"] for e in ev if e_is(e, RUNTIME_CATS) and re.match(r"(cuda|hip)StreamEndCapture", e["name"])
                    and (e["pid"], e["tid"]) == (b["pid"], b["tid"]) and e["ts"] >= b["ts"]]
            capture.append((b["ts"], min(ends) if ends else max(e["ts"] + e.get("dur", 0) for e in ev)))
    capture = _merge(capture)
    # One-off host work: an op of a feeding thread >= 20x the median of its name (>= 3 calls, >= 1 ms).
    ops = [e for e in ev if e.get("cat") in ("cpu_op", "user_annotation") and (e["pid"], e["tid"]) in feeding
           and not str(e["name"]).startswith("ProfilerStep#")]
    by_name = {}
    for e in ops:
        by_name.setdefault(e["name"], []).append(e["dur"])
    one_off = []
    for e in ops:
        durs = sorted(by_name[e["name"]])
        if len(durs) >= 3 and e["dur"] >= 20 * durs[len(durs) // 2] and e["dur"] >= 1000:
            one_off.append((e["ts"], e["ts"] + e["dur"]))
    one_off = _merge(one_off)
    points = sorted({p for g in gaps for p in g} | {p for iv in pending for p in iv}
                    | {p for iv in active for p in iv} | {p for iv in capture for p in iv}
                    | {p for iv in one_off for p in iv} | {first_own, cpu_lo, cpu_hi})
    out = dict.fromkeys(findings.IDLE_CLASSES, 0.0)
    for lo, hi in zip(points, points[1:]):
        mid = (lo + hi) / 2
        if not any(g0 <= mid < g1 for g0, g1 in gaps):
            continue
        if _inside(pending, mid):
            c = "device_queue_latency"
        elif mid < first_own:
            c = "before_first_device_op"
        elif mid < cpu_lo or mid >= cpu_hi:
            c = "trace_edges"
        elif _inside(capture, mid):
            c = "graph_capture"
        elif _inside(one_off, mid):
            c = "one_off_host_work"
        elif _inside(active, mid):
            c = "host_bound"
        else:
            c = "no_host_activity"
        out[c] += hi - lo
    return out


# ----------------------------------------------------------------------------- graph replay


def test_graph_replay_idle_is_queue_latency_not_host_bound():
    doc = perfkit.analyze(str(VLLM_GRAPH)).to_dict()
    severe = [f for f in doc["findings"] if f["id"] == "host_bound_idle" and f["severity"] in SEVERE]
    assert not severe, severe
    info = next(f for f in doc["findings"] if f["id"] == "idle_not_host_bound")
    ref = _reference_classes(VLLM_GRAPH, findings.LAUNCH_LATENCY_US)
    got = info["evidence"]["idle_classes_ms_per_step"]
    for c in findings.IDLE_CLASSES:
        assert got[c] == pytest.approx(ref[c] / 1000.0, abs=2e-3), c
    # the raw events: the CPU thread ends at 26.4 ms, the first device op starts at 151.2 ms
    assert ref["host_bound"] == 0.0
    assert ref["device_queue_latency"] > 100_000.0
    assert sum(got.values()) == pytest.approx(info["evidence"]["gpu_idle_ms_per_step"], abs=5e-3)
    assert info["where"][0]["class"] == "device_queue_latency"
    assert "not host-bound" in info["title"] and "queue latency" in info["title"]
    assert "jit.py" not in json.dumps(doc["findings"])  # no frame that was not running is named


# ----------------------------------------------------------------------------- a hand-built trace


def _x(cat, name, ts, dur, pid=1, tid=1, **args):
    return {"ph": "X", "cat": cat, "name": name, "pid": pid, "tid": tid, "ts": ts, "dur": dur, "args": args}


def _launch(corr, ts, kernel_ts, kernel_dur):
    return [_x("cuda_runtime", "cudaLaunchKernel", ts, 5, correlation=corr),
            _x("kernel", "void gemm_kernel<float>()", kernel_ts, kernel_dur, pid=0, tid=7, correlation=corr)]


def _five_class_events():
    """Every class once (µs): see test_each_idle_class_on_a_hand_built_trace for the arithmetic."""
    ev = [_x("python_function", "train.py(10): main", 0, 2000, **{"Python id": 1}),
          _x("python_function", "train.py(20): log", 2500, 500, **{"Python id": 2})]
    ev += _launch(1, 100, 1000, 100)   # returns at 105: queued from 155 (after the launch latency) to 1000
    ev += _launch(2, 1200, 1500, 100)  # queued 1255..1500
    ev += _launch(3, 2600, 2650, 50)   # starts within the launch latency: no queue time
    ev += _launch(4, 2900, 3500, 100)  # queued 2955..3500
    ev.append(_x("kernel", "void gemm_kernel<float>()", 3800, 100, pid=0, tid=7, correlation=99))  # launch not traced
    return ev


def test_each_idle_class_on_a_hand_built_trace(tmp_path):
    assert findings.LAUNCH_LATENCY_US == 50.0  # the arithmetic below assumes it
    path = tmp_path / "five.json"
    path.write_text(json.dumps({"traceEvents": _five_class_events()}))
    # window [0, 3900), busy 450 µs: idle 3450 µs
    expected_us = {
        "before_first_device_op": 155.0,                # [0, 155): nothing launched yet is queued
        "device_queue_latency": 845.0 + 245.0 + 545.0,  # [155, 1000) [1255, 1500) [2955, 3500)
        "host_bound": 155.0 + 400.0 + 150.0 + 255.0,    # [1100, 1255) [1600, 2000) [2500, 2650) [2700, 2955)
        "no_host_activity": 500.0,                      # [2000, 2500): no frame on the thread
        "trace_edges": 200.0,                           # [3600, 3800): after the last CPU event (3000)
        "graph_capture": 0.0,
        "one_off_host_work": 0.0,
    }
    assert _reference_classes(path, 50.0) == pytest.approx(expected_us)
    doc = perfkit.analyze(str(path)).to_dict()
    f = next(f for f in doc["findings"] if f["id"] == "host_bound_idle")
    got = f["evidence"]["idle_classes_ms_per_step"]
    assert got == pytest.approx({k: v / 1000.0 for k, v in expected_us.items()}, abs=1e-3)
    assert f["severity"] == "warning"  # 960 of 3900 µs host-bound: 25%
    assert f["evidence"]["host_bound_share"] == pytest.approx(960.0 / 3900.0, abs=1e-4)
    assert f["cost_ms_per_step"] == pytest.approx(0.96, abs=1e-3)
    # main covers 155 + 400 host-bound µs itself, log 150 + 255
    assert [(w["source"], w["ms_per_step"]) for w in f["where"]] == [
        ("train.py:10 main (def)", pytest.approx(0.555, abs=1e-3)),
        ("train.py:20 log (def)", pytest.approx(0.405, abs=1e-3))]  # Python tracer frames: definition lines
    assert "train.py:10 main" in f["title"]


# ----------------------------------------------------------------------------- background threads


def _with_background_threads(src, dst):
    """The real trace plus two background threads of the same process, each one frame for the whole trace."""
    with gzip.open(src, "rt") as fh:
        doc = json.load(fh)
    ev = doc["traceEvents"]
    main = next(e for e in ev if str(e.get("name", "")).startswith("ProfilerStep#"))
    timed = [e for e in ev if e.get("ph") == "X" and e.get("cat") in HOST_CATS]
    t0 = min(e["ts"] for e in timed)
    t1 = max(e["ts"] + e["dur"] for e in timed)
    pid = main["pid"]
    ev += [
        # a user-looking monitor loop (tqdm's monitor thread has this shape) ...
        _x("python_function", "monitor.py(60): run", t0, t1 - t0, pid=pid, tid=990001, **{"Python id": 10**6}),
        _x("python_function", "threading.py(1012): run", t0, t1 - t0, pid=pid, tid=990001, **{"Python id": 10**6 + 1}),
        # ... and a DataLoader queue feeder with the stdlib path unstripped, plus an op of its own
        _x("python_function", "/usr/lib/python3.11/multiprocessing/queues.py(251): _feed", t0, t1 - t0,
           pid=pid, tid=990002, **{"Python id": 10**6 + 2}),
        _x("cpu_op", "aten::pin_memory", t0, t1 - t0, pid=pid, tid=990002),
        {"ph": "M", "name": "thread_name", "pid": pid, "tid": 990001, "args": {"name": "Thread-1 (monitor)"}},
    ]
    with gzip.open(dst, "wt") as fh:
        json.dump(doc, fh)


def _idle_finding(doc):
    return next(f for f in doc["findings"] if f["id"] == "host_bound_idle")


def test_a_background_thread_is_never_the_culprit(tmp_path):
    # kl_attention-fixed (H100, with_stack): the GPU idles while the training loop's own frames run
    before = perfkit.analyze(str(KL_FIXED)).to_dict()
    f0 = _idle_finding(before)
    assert f0["severity"] in SEVERE and "kl_attention.py" in f0["title"]
    path = tmp_path / "with_threads.json.gz"
    _with_background_threads(KL_FIXED, path)
    after = perfkit.analyze(str(path)).to_dict()
    f1 = _idle_finding(after)
    text = json.dumps(after)
    assert "monitor.py" not in text and "_feed" not in text and "aten::pin_memory" not in json.dumps(f1)
    # the frames that ran on the feeding thread keep exactly their verdict
    assert f1["title"] == f0["title"] and f1["where"] == f0["where"] and f1["severity"] == f0["severity"]
    assert f1["evidence"]["idle_classes_ms_per_step"] == f0["evidence"]["idle_classes_ms_per_step"]
    assert after["frames"] == before["frames"]
    assert f1["evidence"]["feeding_threads"] == f0["evidence"]["feeding_threads"]


def test_background_thread_ops_are_not_named_without_python_frames(tmp_path):
    # No with_stack: the GPU waits while the main thread runs aten::cdist on the host, and a
    # pin-memory thread holds a long op the whole time. Only the main thread's op may be named.
    events = []
    corr = 1
    for step in range(3):
        t0 = step * 10_000.0
        events.append(_x("user_annotation", f"ProfilerStep#{step}", t0, 10_000))
        for k in range(3):
            events += _launch(corr, t0 + 50 + k * 1000, t0 + 100 + k * 1000, 1000)
            corr += 1
        events.append(_x("cpu_op", "aten::cdist", t0 + 3200, 6500))
    events.append(_x("cpu_op", "aten::pin_memory", 0, 30_000, tid=2))
    path = tmp_path / "pin.json"
    path.write_text(json.dumps({"traceEvents": events}))
    f = _idle_finding(perfkit.analyze(str(path)).to_dict())
    assert f["severity"] == "critical" and f["where"][0]["name"] == "aten::cdist"
    assert "pin_memory" not in json.dumps(f)


@pytest.mark.parametrize("frame, library", [
    ("multiprocessing/queues.py(251): _feed", True),
    ("/usr/lib/python3.11/multiprocessing/queues.py(251): _feed", True),
    ("tqdm/_monitor.py(60): run", True),
    ("threading.py(1012): run", True),
    ("queue.py(171): get", True),
    ("triton/runtime/jit.py(574): run", True),
    ("numpy/_core/fromnumeric.py(48): _wrapfunc", True),
    ("/opt/venv/lib/python3.12/site-packages/transformers/trainer.py(2500): train", True),
    ("hungarian.py(32): hungarian_assignment", False),
    ("train.py(10): main", False),
    ("mypkg/queue.py(3): get", False),  # a user's module named like a stdlib one, inside a package
    ("profile.py(3): main", False),  # a script named like a stdlib module users also name scripts
    ("renumpy/x.py(1): f", False),
])
def test_library_frame_pattern(frame, library):
    assert bool(re.search(rules.LIBRARY_FRAME_PATTERN, frame)) is library


# ----------------------------------------------------------------------------- capture and one-off work


def _capture_and_one_off_events():
    """µs. One window [20, 20000): a small first kernel, a cuDNN-style first call, three steady calls, then a graph capture.

    * conv #1 [100, 8100) on the main thread: 8000 µs, its kernel launched inside at 8000 and run
      [8060, 8160); convs #2-#4 100 µs each, each with a kernel right after it.
    * capture [12000, 19000): cudaStreamBeginCapture .. cudaStreamEndCapture with 50 launches that
      run nothing (captured), inside an op.
    """
    ev = _launch(0, 20, 40, 20)  # the first device op: [40, 60)
    ev.append(_x("cpu_op", "aten::cudnn_convolution", 100, 8000))
    ev += _launch(1, 8000, 8060, 100)
    for i, t in enumerate((8500, 9500, 10500)):
        ev.append(_x("cpu_op", "aten::cudnn_convolution", t, 100))
        ev += _launch(2 + i, t + 50, t + 120, 300)
    ev.append(_x("cpu_op", "capture_decode", 11900, 7200))
    ev.append(_x("cuda_runtime", "cudaStreamBeginCapture", 12000, 5))
    ev += [_x("cuda_runtime", "cudaLaunchKernel", 12100 + 100 * k, 5, correlation=100 + k) for k in range(50)]
    ev.append(_x("cuda_runtime", "cudaStreamEndCapture", 18990, 10))
    ev.append(_x("cpu_op", "aten::add", 19500, 400))
    ev += _launch(200, 19600, 19800, 200)
    return ev


def test_graph_capture_and_one_off_work_are_not_host_bound(tmp_path):
    path = tmp_path / "capture.json"
    path.write_text(json.dumps({"traceEvents": _capture_and_one_off_events()}))
    ref = _reference_classes(path, findings.LAUNCH_LATENCY_US)
    assert ref["one_off_host_work"] > 7000 and ref["graph_capture"] > 6000  # the premise, from the raw events
    doc = perfkit.analyze(str(path)).to_dict()
    assert not [f for f in doc["findings"] if f["id"] == "host_bound_idle"]
    f = next(f for f in doc["findings"] if f["id"] == "idle_not_host_bound")
    got = f["evidence"]["idle_classes_ms_per_step"]
    assert got == pytest.approx({k: v / 1000.0 for k, v in ref.items()}, abs=1e-3)
    assert f["where"][0]["class"] == "one_off_host_work"
    # The captured launches have no device work, and do not make the window "incomplete".
    assert "incomplete" not in json.dumps(doc["steps"]["excluded"])


def test_kernels_of_a_graph_replay_are_not_launch_overhead():
    """TraceLens' SGLang decode step: one hipGraphLaunch starts 555 kernels of a few µs each."""
    path = next((Path(__file__).parent.parent / "data" / "traces" / "amd-mi300x-sglang-qwen3-decode-graph").glob("*.json*"))
    ev = _load(path)
    graph = {e["args"]["correlation"] for e in ev if e.get("cat") in RUNTIME_CATS | {"hip_runtime"}
             and "GraphLaunch" in e["name"] and "correlation" in e.get("args", {})}
    kernels = [e for e in ev if e.get("cat") == "kernel"]
    replayed = [k for k in kernels if k.get("args", {}).get("correlation") in graph]
    assert len(kernels) >= 300 and len(replayed) >= 0.9 * len(kernels)  # the premise
    doc = perfkit.analyze(str(path)).to_dict()
    assert "launch_bound" not in {f["id"] for f in doc["findings"]}
