"""One consistent set of statistics (issue #13, item 7), honest source lines (item 2) and what the
run measured (item 6), in the terminal, Markdown and HTML reports.

Expected figures come from slow readings of the raw events (or of hand-built traces whose answer is
known by construction), never from perfkit's own output.
"""

from __future__ import annotations

import glob
import gzip
import io
import json
import os
import re

import pytest
from rich.console import Console

import perfkit
from perfkit.report.console import render_console
from perfkit.report.html import render_html
from perfkit.report.markdown import render_markdown

from .. import _cached, _split

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CORPUS = os.path.join(ROOT, "tests", "data", "traces")
CPU_ONLY = glob.glob(os.path.join(CORPUS, "cpu-only-hta-5steps", "*.json.gz"))[0]
REAL = [CPU_ONLY] + [glob.glob(os.path.join(CORPUS, d, "*.json*"))[0] for d in (
    "nv-rtx2080ti-param-linear-train", "nv-h100-bert-small-infer", "amd-mi300x-compile-triton",
    "nv-2020-resnet50-train-workers4")] + [
    os.path.join(ROOT, "traces", "gpt100m_bf16_adamw", "rank0.pt.trace.json.gz"),
    os.path.join(ROOT, "tests", "data", "compiled_mlp", "rank0.pt.trace.json.gz"),
]
REAL = [p for p in REAL if os.path.exists(p)]


def _console(doc, width=80):
    buf = io.StringIO()
    render_console(doc, Console(file=buf, width=width, force_terminal=False, color_system=None))
    return buf.getvalue()


def _x(cat, name, ts, dur, pid=100, tid=1, **args):
    return {"ph": "X", "cat": cat, "name": name, "pid": pid, "tid": tid, "ts": ts, "dur": dur, "args": args}


def _write(tmp_path, events, name="t.json", **meta):
    path = tmp_path / name
    path.write_text(json.dumps({"traceEvents": events, **meta}))
    return str(path)


def _union(spans, lo, hi):
    """Length of the union of [s, e) spans clipped to [lo, hi) (slow reference)."""
    cut = sorted((max(s, lo), min(e, hi)) for s, e in spans if min(e, hi) > max(s, lo))
    total, cur_s, cur_e = 0.0, None, None
    for s, e in cut:
        if cur_e is None or s > cur_e:
            if cur_e is not None:
                total += cur_e - cur_s
            cur_s, cur_e = s, e
        else:
            cur_e = max(cur_e, e)
    if cur_e is not None:
        total += cur_e - cur_s
    return total


def _built_gpu_trace(tmp_path):
    """Four steps; each launches kernels that overlap on two devices and one that outlasts the CPU step."""
    events, corr = [], 1
    truth = []
    for step in range(4):
        t0 = 1000.0 + step * 10_000.0
        events.append(_x("user_annotation", f"ProfilerStep#{step + 1}", t0, 6000.0))
        kernels = [(t0 + 500, 1500, 0), (t0 + 1000, 2000, 1), (t0 + 4000, 1000 + 500 * step, 0)]
        for ts, dur, device in kernels:
            events.append(_x("cuda_runtime", "cudaLaunchKernel", ts - 100, 5, correlation=corr))
            events.append(_x("kernel", "void gemm_kernel<float>()", ts, dur, pid=device, tid=7, correlation=corr))
            corr += 1
        window = max(t0 + 6000.0, max(ts + d for ts, d, _ in kernels)) - t0
        busy = _union([(ts, ts + d) for ts, d, _ in kernels], t0, t0 + window)
        truth.append((window / 1000, busy / 1000))
    return _write(tmp_path, events), truth


def _cpu_reference(path):
    """Per step of a CPU-only trace: (window ms, busy ms) from the raw events: the window is the
    ProfilerStep range (stretched to hold the ops that start in it), busy the union of the cpu_ops in it."""
    with gzip.open(path) if path.endswith(".gz") else open(path) as f:
        events = [e for e in json.load(f)["traceEvents"] if e.get("ph") == "X"]
    steps = sorted((e["ts"], e["ts"] + e["dur"]) for e in events if str(e.get("name", "")).startswith("ProfilerStep#"))
    ops = [(e["ts"], e["ts"] + e["dur"]) for e in events if e.get("cat") == "cpu_op"]
    out, prev_end = [], float("-inf")
    for lo, hi in steps:
        start = max(lo, prev_end)
        end = max([hi] + [e for s, e in ops if lo <= s < hi])
        out.append(((end - start) / 1000, _union(ops, start, end) / 1000))
        prev_end = end
    return out


def _folder(path):
    return os.path.basename(os.path.dirname(path))


#: the unit suite checks the CPU-only trace and two small GPU ones; tests/e2e/test_report_consistency_full.py the rest
UNIT_REAL = [p for p in REAL if _folder(p) in ("cpu-only-hta-5steps", "nv-rtx2080ti-param-linear-train",
                                               "amd-mi300x-compile-triton")]


@_split.cases("path", REAL, UNIT_REAL, ids=_folder)
def test_busy_plus_idle_is_the_step_in_every_document(path):
    doc = _cached.document(path)
    kept = [r for r in doc["steps"]["table"] if r["kept"]]
    assert kept
    for r in kept:
        assert r["active_ms"] + r["idle_ms"] == pytest.approx(r["window_ms"], rel=1e-9, abs=1e-9)
    mean = sum(r["window_ms"] for r in kept) / len(kept)
    assert doc["steps"]["window_ms_mean"] == pytest.approx(mean, rel=1e-9)
    assert doc["device"]["active_ms_per_step"] + doc["device"]["idle_ms_per_step"] == pytest.approx(mean, rel=1e-9)
    if mean:
        assert doc["device"]["utilization"] == pytest.approx(doc["device"]["active_ms_per_step"] / mean, rel=1e-9)
    sp = doc["steps"]["spread"]["window_ms"]
    windows = sorted(r["window_ms"] for r in kept)
    assert sp["min"] == pytest.approx(windows[0]) and sp["max"] == pytest.approx(windows[-1])
    _check_reports(doc)


def _check_reports(doc, with_plots=False):
    """The three reports show the same figures, once each, with no NaN, and the summary adds up. The HTML
    page without its drawn figures here (the tables are the same); tests/e2e/test_report_consistency_full.py
    checks every page with them."""
    text = _console(doc)
    md = render_markdown(doc)
    html = render_html(doc, with_plots=with_plots)
    for out in (text, md, html):
        assert not re.search(r"\bnan\b|\binf\b", out, re.I)
    summary = text.split("Step summary", 1)[1].split("\n\n", 1)[0]
    labels = [line.split("  ")[0].strip() for line in summary.splitlines()[1:] if line.strip()]
    labels = [x for x in labels if x and not x[0].isdigit()]
    assert len(labels) == len(set(labels)), labels  # no duplicate rows
    cpu = doc["trace"]["time_basis"] == "cpu"
    word = "CPU" if cpu else "GPU"
    step = float(re.search(r"Step time \(means? of \d+ steps?\)\s+([\d,.]+)", summary).group(1).replace(",", ""))
    busy = float(re.search(rf"{word} busy \(some op running\)\s+([\d,.]+)", summary).group(1).replace(",", ""))
    idle = float(re.search(rf"{word} idle \(nothing running\)\s+([\d,.]+)", summary).group(1).replace(",", ""))
    assert busy + idle == pytest.approx(step, abs=0.011 + 0.001 * step)  # two-decimal rounding of each
    # the Markdown and HTML carry the same rows
    for label in (f"{word} busy (some op running)", f"{word} idle (nothing running)"):
        assert label in md and label in html.replace("&#x27;", "'")
    if cpu:  # the same range: no second "host time" row
        assert "Host time of the step" not in text


def test_cpu_only_steps_match_the_raw_events():
    doc = _cached.document(CPU_ONLY)
    ref = _cpu_reference(CPU_ONLY)
    rows = doc["steps"]["table"]
    assert len(rows) == len(ref)
    for r, (window, busy) in zip(rows, ref):
        assert r["window_ms"] == pytest.approx(window, abs=1e-6)
        assert r["active_ms"] == pytest.approx(busy, abs=1e-3)


def test_built_gpu_trace_steps_match_construction(tmp_path):
    path, truth = _built_gpu_trace(tmp_path)
    doc = perfkit.analyze(path).to_dict()
    rows = doc["steps"]["table"]
    assert [r["id"] for r in rows] == [1, 2, 3, 4]
    for r, (window, busy) in zip(rows, truth):
        assert r["window_ms"] == pytest.approx(window)
        assert r["active_ms"] == pytest.approx(busy)
        assert r["idle_ms"] == pytest.approx(window - busy)
    kept = [t for t, r in zip(truth, rows) if r["kept"]]
    assert doc["steps"]["window_ms_mean"] == pytest.approx(sum(w for w, _ in kept) / len(kept))
    text = _console(doc)
    # the kernels overlap on two devices: the tables' GPU time (each device counted) exceeds busy, and
    # the report says why once
    assert doc["device"]["busy_ms_per_step"] > doc["device"]["active_ms_per_step"]
    assert text.count("The phase and category tables split") == 1
    # the steps' host range (6 ms) differs from their GPU windows: the host time row is there, explained
    assert "Host time of the step (CPU)" in text and "the GPU runs behind the CPU" in " ".join(text.split())
    _check_reports(doc)


def test_cpu_only_overview_leaves_out_device_roles():
    doc = _cached.document(CPU_ONLY)
    for out in (_console(doc), render_markdown(doc)):
        section = out.split("Overview roles)", 1)[1].split("Roles in priority order", 1)[0]
        for role in ("Kernel", "Memcpy", "Memset", "Runtime"):
            assert not re.search(rf"^\|? ?{role}\b", section, re.M), role
        assert "the trace has no device work" in " ".join(out.split())
    # on a GPU trace every role is listed, zero or not
    gpu = _cached.document(REAL[1])
    section = _console(gpu).split("Overview roles)", 1)[1]
    assert all(re.search(rf"^{role}\s", section, re.M) for role in ("Kernel", "Memcpy", "Memset", "Runtime"))


# ----------------------------------------------------------------------------- source lines (item 2)


def _python_trace(tmp_path):
    """torch's Python tracer: a start-up chain (frames running when tracing started, with the line they
    were on) and frames entered later (their definition line); ops under each."""
    ev = []
    # start-up chain on the main thread: ids 1..3, each the parent of the next
    ev.append(_x("python_function", "<frozen runpy>(198): _run_module_as_main", 0, 50_000, **{"Python id": 1}))
    ev.append(_x("python_function", "train.py(119): main", 1, 49_990, **{"Python id": 2, "Python parent id": 1}))
    ev.append(_x("python_function", "torch/profiler/profiler.py(300): step", 2, 100, **{"Python id": 3, "Python parent id": 2}))
    pid = 10
    for step in range(3):
        t0 = 1000.0 + step * 10_000
        ev.append(_x("user_annotation", f"ProfilerStep#{step}", t0, 9000))
        # a frame entered during tracing: its definition line
        ev.append(_x("python_function", "model.py(33): forward", t0 + 100, 4000, **{"Python id": pid, "Python parent id": 2}))
        ev.append(_x("cpu_op", "aten::linear", t0 + 200, 3000))
        # an op run directly under main (a start-up frame): its line (119) is not the op's
        ev.append(_x("cpu_op", "aten::mul", t0 + 5000, 2000))
        pid += 1
    return _write(tmp_path, ev)


def test_python_tracer_lines_are_labelled_as_the_evidence_supports(tmp_path):
    doc = perfkit.analyze(_python_trace(tmp_path)).to_dict()
    src = {o["name"]: o for o in doc["top_ops"]}
    assert src["aten::linear"]["source"] == "model.py:33 forward (def)"
    assert src["aten::linear"]["source_line"] == "def"
    assert src["aten::mul"]["source"] == "train.py:? main"
    assert src["aten::mul"]["source_line"] == "none"
    for out in (_console(doc, width=100), render_markdown(doc), render_html(doc, with_plots=False)):  # text only
        flat = " ".join(out.split())
        assert "model.py:33 forward (def)" in flat and "train.py:? main" in flat
        assert "train.py:119" not in flat
        assert "definition line" in flat  # the note says what "(def)" means


def test_sampled_lines_are_call_sites():
    # the compiled-MLP fixture's sources are from stack samples: lines as they are, no label
    doc = perfkit.analyze(os.path.join(ROOT, "tests", "data", "compiled_mlp", "rank0.pt.trace.json.gz")).to_dict()
    rows = [o for o in doc["top_ops"] if o.get("source")]
    assert rows and all(o["source_line"] == "call" and "(def)" not in o["source"] for o in rows)
    assert "definition line" not in _console(doc)


# ----------------------------------------------------------------------------- what the run measured (item 6)


def _with_runtime(doc, **runtime):
    d = json.loads(json.dumps(doc))
    d["runtime"] = {"steps_seen": 20, "step_source": "optimizer.step",
                    "steps": {"wall_ms_median": 100.0}, **runtime}
    return d


def test_flops_and_mfu_against_the_peak_table(tmp_path):
    path, _ = _built_gpu_trace(tmp_path)
    doc = perfkit.analyze(path).to_dict()
    doc["trace"]["device"] = "NVIDIA H100 80GB HBM3"
    d = _with_runtime(doc, flops_per_step=4.0e13, mfu_dtype="bf16")
    # 4e13 FLOP in 100 ms: 400 TFLOP/s of H100 SXM's dense bf16 989.5 TFLOP/s (datasheet)
    want = f"{400 / 989.5 * 100:.1f}"
    for out in (_console(d, width=100), render_markdown(d), render_html(d, with_plots=False)):  # text only
        flat = " ".join(re.sub(r"<[^>]+>|\|", " ", out).split())
        assert "40 TFLOP" in flat and "400 TFLOP/s" in flat
        assert re.search(rf"MFU\W+{want}", flat), flat[flat.find("MFU") - 20: flat.find("MFU") + 80]


def test_mfu_unknown_on_a_cpu_never_zero():
    doc = _cached.document(CPU_ONLY)
    d = _with_runtime(doc, flops_per_step=1.29e6)
    for out in (_console(d), render_markdown(d)):
        flat = " ".join(out.split())
        assert re.search(r"MFU\W+unknown", flat)
        assert not re.search(r"MFU\W+0\.0", flat)
        assert "1.29 MFLOP" in flat


def test_module_table_in_terminal_and_markdown():
    doc = _cached.document(CPU_ONLY)
    modules = [{"name": "encoder.layers", "type": "ModuleList", "calls": 11, "first_call_ms": 9.5,
                "forward_ms_median": 1.25, "backward_ms_median": 2.5, "share": 0.75, "first_call_outlier": True},
               {"name": "head", "type": "Linear", "calls": 11, "first_call_ms": 0.3,
                "forward_ms_median": 0.125, "backward_ms_median": 0.25, "share": 0.25}]
    d = _with_runtime(doc, modules=modules)
    text, md = _console(d), render_markdown(d)
    for out in (text, md):
        assert "Modules (perfkit profile --modules)" in out
    row = next(line for line in text.splitlines() if line.startswith("encoder.layers"))
    assert row.split() == ["encoder.layers", "ModuleList", "11", "1.25", "2.50", "9.50*", "75.0"]
    assert "| `head` | Linear | 11 | 0.12 | 0.25 | 0.30 | 25.0 |" in md or "| `head` | Linear | 11 | 0.13 | 0.25 | 0.30 | 25.0 |" in md


def test_run_timer_and_trace_step_times_are_explained():
    doc = _cached.document(CPU_ONLY)
    d = _with_runtime(doc)
    for out in (_console(d), render_markdown(d)):
        flat = " ".join(out.split())
        assert "Step time, median (run timer)" in flat
        assert "The run timer times every step of the run by the host's clock" in flat
    gpu = _with_runtime(doc, steps={"wall_ms_median": 40.0, "gpu_ms_median": 100.0, "step_ms_median": 100.0,
                                    "step_basis": "gpu", "host_ahead": True})
    for out in (_console(gpu, width=200), render_markdown(gpu)):
        flat = " ".join(out.split())
        assert "The run timer times every step of the run on the GPU (CUDA events at the step boundaries)" in flat
        assert "median 100.00 ms" in flat and "so this is not the step time" in flat
