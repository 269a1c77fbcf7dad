"""Phases when the schedule is not forward-then-autograd, and when the trace has no CPU ops.

Expected values come from the raw events, read here with the standard library (json, gzip,
re on names seen in the files), or from traces built in the test whose answer is known by
construction.
"""

from __future__ import annotations

import gzip
import json
import re
from collections import defaultdict
from pathlib import Path

import pytest

import perfkit
from perfkit.analysis import rules
from perfkit.budget import metrics
from perfkit.report.rows import phase_evidence_line, phase_rows, phase_unknown_note
from perfkit.report.markdown import render_markdown

from .. import _cached, _dualpipe_trace
from ..conftest import FP32, anchor

DATA = Path(__file__).resolve().parent.parent / "data" / "traces"
GPU_ONLY = DATA / "amd-mi210-gpu-only" / "gpu_only_trace.json.gz"
DEVICE_CATS = {"kernel", "gpu_memcpy", "gpu_memset"}


def _events(path):
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rt") as f:
        doc = json.load(f)
    return doc, [e for e in doc["traceEvents"] if e.get("ph") == "X"]


def _exclusive_shares(devs):
    """Each device op's part of its device's busy time, concurrent ops sharing overlap evenly (a sweep)."""
    shares = [0.0] * len(devs)
    by_dev = defaultdict(list)
    for i, e in enumerate(devs):
        by_dev[e["pid"]].append(i)
    for idx in by_dev.values():
        bounds = sorted({devs[i]["ts"] for i in idx} | {devs[i]["ts"] + devs[i]["dur"] for i in idx})
        order = sorted(idx, key=lambda i: devs[i]["ts"])
        active, j = [], 0
        for a, b in zip(bounds, bounds[1:]):
            while j < len(order) and devs[order[j]]["ts"] <= a:
                active.append(order[j])
                j += 1
            active = [i for i in active if devs[i]["ts"] + devs[i]["dur"] > a]
            for i in active:
                shares[i] += (b - a) / len(active)
    return shares


# ----------------------------------------------------------------------------- DualPipe


@pytest.fixture(scope="module")
def dualpipe(tmp_path_factory):
    """A trace shaped like deepseek-ai/profile-data's DualPipe step (built by tests/_dualpipe_trace.py)."""
    return _dualpipe_trace.write(tmp_path_factory.mktemp("dualpipe") / "train.json")


def _dualpipe_reference(path):
    """GPU µs per (phase, evidence) from the stage annotations, read from the raw events.

    A device op is launched by the runtime call with its correlation id. Launched inside a
    stage annotation ``xxx(F)`` / ``xxx(B)`` / ``xxx(W)`` on the launching thread: forward,
    backward, backward (W = weight gradients). Launched from the thread that runs the autograd
    engine (``autograd::engine`` ops; not the thread with ProfilerStep): backward.
    """
    _, xs = _events(path)
    stage = [e for e in xs if e.get("cat") == "user_annotation" and re.search(r"\(([FBW])\)$", e["name"])]
    step_threads = {e["tid"] for e in xs if e["name"].startswith("ProfilerStep#")}
    autograd_threads = {e["tid"] for e in xs if e.get("cat") == "cpu_op"
                        and e["name"].startswith("autograd::engine")} - step_threads
    launches = {e["args"]["correlation"]: e for e in xs
                if e.get("cat") in ("cuda_runtime", "cuda_driver") and "correlation" in e.get("args", {})}
    devs = [e for e in xs if e.get("cat") in DEVICE_CATS]
    shares = _exclusive_shares(devs)
    out = defaultdict(float)
    for e, share in zip(devs, shares):
        launch = launches[e["args"]["correlation"]]  # every device op of this trace has its launch
        around = [a for a in stage if a["tid"] == launch["tid"] and a["ts"] <= launch["ts"] < a["ts"] + a["dur"]]
        if around:
            letter = re.search(r"\(([FBW])\)$", min(around, key=lambda a: a["dur"])["name"]).group(1)
            out[("forward" if letter == "F" else "backward", "annotation")] += share
        else:
            assert launch["tid"] in autograd_threads, launch
            out[("backward", "autograd")] += share
    return out


def test_dualpipe_stage_annotations_set_the_phases(dualpipe):
    ref = _dualpipe_reference(dualpipe)
    total = sum(ref.values())
    assert ref[("backward", "autograd")] > 0 and ref[("backward", "annotation")] > 0  # both kinds of evidence occur
    doc = perfkit.analyze(str(dualpipe)).to_dict()
    assert doc["steps"]["count"] == 1  # one step: its phases are the whole trace's device time
    assert doc["device"]["busy_ms_per_step"] == pytest.approx(total / 1000.0, rel=1e-9)
    fwd = ref[("forward", "annotation")]
    bwd = ref[("backward", "annotation")] + ref[("backward", "autograd")]
    assert doc["phases"]["forward"]["ms_per_step"] == pytest.approx(fwd / 1000.0, rel=1e-9)
    assert doc["phases"]["backward"]["ms_per_step"] == pytest.approx(bwd / 1000.0, rel=1e-9)
    assert doc["phases"]["backward"]["share"] == pytest.approx(bwd / total, abs=1e-9)
    assert bwd / total > 0.55  # built mostly backward (as the real trace is): not "forward 78.5%"
    for p in ("optimizer", "other", "unknown"):
        assert doc["phases"][p]["ms_per_step"] == 0.0
    assert doc["phases_unknown"] is None
    # which evidence set each phase
    assert doc["phases_evidence"]["forward"] == {"annotation": pytest.approx(1.0)}
    ev = doc["phases_evidence"]["backward"]
    assert set(ev) == {"annotation", "autograd"}
    assert ev["annotation"] == pytest.approx(ref[("backward", "annotation")] / bwd, abs=1e-9)
    assert ev["autograd"] == pytest.approx(ref[("backward", "autograd")] / bwd, abs=1e-9)


def test_dualpipe_report_names_the_evidence(dualpipe):
    doc = perfkit.analyze(str(dualpipe)).to_dict()
    line = phase_evidence_line(doc)
    assert line is not None and line.startswith("Forward: annotation 100%")
    assert "Backward: annotation" in line and "autograd range/thread" in line
    md = render_markdown(doc)
    assert "Evidence: Forward: annotation 100%" in md
    assert "| Unknown" not in md  # no time without a phase: no unknown row


# ----------------------------------------------------------------------------- GPU-only trace


def _gpu_only_reference():
    """(forward µs, backward µs, unknown µs): kernels in start order on the one stream.

    Backward kernels are recognised by names seen in the file (``*backward*``, MIOpen
    ``igemm_bwd`` = data gradient, ``igemm_wrw`` = weight gradient). Everything before the first
    one is the forward pass (and loss); everything from the first to the last is the backward
    pass; what follows the last backward kernel is not placed by any name.
    """
    _, xs = _events(GPU_ONLY)
    ks = sorted((e for e in xs if e.get("cat") in DEVICE_CATS), key=lambda e: e["ts"])
    assert len({(e["pid"], e["tid"]) for e in ks}) == 1
    for a, b in zip(ks, ks[1:]):
        assert a["ts"] + a["dur"] <= b["ts"] + 1e-6  # serial: each kernel's share is its duration
    is_bwd = [("backward" in e["name"]) or ("igemm_bwd" in e["name"]) or ("igemm_wrw" in e["name"]) for e in ks]
    first = is_bwd.index(True)
    last = len(is_bwd) - 1 - is_bwd[::-1].index(True)
    fwd = sum(e["dur"] for e in ks[:first])
    bwd = sum(e["dur"] for e in ks[first:last + 1])
    unknown = sum(e["dur"] for e in ks[last + 1:])
    return fwd, bwd, unknown


def test_gpu_only_trace_splits_by_kernel_names_and_reports_unknown():
    fwd, bwd, unknown = _gpu_only_reference()
    doc = perfkit.analyze(str(GPU_ONLY)).to_dict()
    ph = doc["phases"]
    assert ph["forward"]["ms_per_step"] == pytest.approx(fwd / 1000.0, rel=1e-9)
    assert ph["backward"]["ms_per_step"] == pytest.approx(bwd / 1000.0, rel=1e-9)
    assert ph["unknown"]["ms_per_step"] == pytest.approx(unknown / 1000.0, rel=1e-9)
    assert unknown > 0 and ph["optimizer"]["ms_per_step"] == 0.0
    assert ph["backward"]["share"] > 0.5  # not "forward 100%"
    unk = doc["phases_unknown"]
    assert unk["whole_trace"] is False and unk["share"] == pytest.approx(ph["unknown"]["share"])
    assert "no CPU ops" in unk["reason"]
    assert set(doc["phases_evidence"]["backward"]) == {"kernel_name", "position"}
    assert doc["phases_evidence"]["unknown"] == {"none": pytest.approx(1.0)}
    (row,) = doc["steps"]["table"]
    assert row["unknown_ms"] == pytest.approx(unknown / 1000.0, rel=1e-9)
    # the report lists the unknown row and says why
    assert ("Unknown", pytest.approx(unknown / 1000.0, rel=1e-9), pytest.approx(ph["unknown"]["share"])) in phase_rows(doc)
    note = phase_unknown_note(doc)
    assert note is not None and "lower bounds" in note
    assert metrics.value(doc, "phases.unknown.ms") == pytest.approx(unknown / 1000.0, rel=1e-9)


HOST_CATS = {"cpu_op", "operator", "user_annotation", "python_function", "gpu_user_annotation", "cpu_instant_event"}


def _strip_host(src: Path, dst: Path) -> Path:
    with gzip.open(src, "rt") as f:
        doc = json.load(f)
    doc["traceEvents"] = [e for e in doc["traceEvents"] if str(e.get("cat", "")).lower() not in HOST_CATS]
    dst.write_text(json.dumps(doc))
    return dst


def test_kernel_names_on_a_stripped_trace_agree_with_host_evidence(tmp_path):
    """The GPT trace with its CPU ops removed: kernel names alone give nearly the host-evidence split."""
    full = _cached.document(FP32)
    assert full["phases_unknown"] is None
    stripped = perfkit.analyze(str(_strip_host(FP32, tmp_path / "stripped.json"))).to_dict()
    assert stripped["trace"]["events"] < full["trace"]["events"] / 2
    for p in ("forward", "backward", "optimizer"):
        assert stripped["phases"][p]["share"] == pytest.approx(full["phases"][p]["share"], abs=0.02), p
    assert stripped["phases"]["unknown"]["share"] < 0.02
    assert set(full["phases_evidence"]["backward"]) <= {"autograd", "kernel_name", "position", "stream_neighbour"}
    assert set(stripped["phases_evidence"]["backward"]) == {"kernel_name", "position"}


def test_nothing_supports_a_split_then_every_phase_is_unknown_not_zero():
    """A 2021-format trace with three kernels, no CPU ops and no telling kernel names."""
    doc = perfkit.analyze(str(anchor("hta/tests/data/trace_file_list/inference_rank_1.json.gz"))).to_dict()
    assert doc["phases"]["unknown"]["share"] == pytest.approx(1.0)
    for p in ("forward", "backward", "optimizer", "other"):
        assert doc["phases"][p] == {"ms_per_step": None, "share": None}
        assert all(r[f"{p}_ms"] is None for r in doc["steps"]["table"])
        assert metrics.value(doc, f"phases.{p}.ms") is None
    assert doc["phases_unknown"]["whole_trace"] is True
    assert [name for name, _, _ in phase_rows(doc)] == ["Unknown"]
    md = render_markdown(doc)
    assert "Phases unknown for the whole trace" in md and "| Forward" not in md
    json.dumps(doc, allow_nan=False)


# ----------------------------------------------------------------------------- constructed pipeline traces


def _pipeline_trace(path: Path, ranges: list[tuple[str, float, float]], kernels: list[tuple[float, float]],
                    extra_ops: list[tuple[str, float, float, int]] = ()) -> Path:
    """Main thread 1: ProfilerStep#1 over everything, the given annotation ranges, one launch per kernel.

    kernels: (launch time, kernel duration); the kernels run back to back on stream 7 after the CPU.
    """
    ev = [{"ph": "X", "cat": "user_annotation", "name": "ProfilerStep#1", "pid": 1, "tid": 1, "ts": 0.0, "dur": 10_000.0}]
    ev += [{"ph": "X", "cat": "user_annotation", "name": n, "pid": 1, "tid": 1, "ts": a, "dur": b - a} for n, a, b in ranges]
    ev += [{"ph": "X", "cat": "cpu_op", "name": n, "pid": 1, "tid": tid, "ts": a, "dur": b - a} for n, a, b, tid in extra_ops]
    t_gpu = 20_000.0
    for i, (t, dur) in enumerate(kernels):
        ev.append({"ph": "X", "cat": "cuda_runtime", "name": "cudaLaunchKernel", "pid": 1, "tid": 1, "ts": t, "dur": 1.0,
                   "args": {"correlation": 100 + i}})
        ev.append({"ph": "X", "cat": "kernel", "name": f"gemm_kernel_{i}", "pid": 0, "tid": 7, "ts": t_gpu, "dur": dur,
                   "args": {"correlation": 100 + i, "device": 0, "stream": 7}})
        t_gpu += dur + 1.0
    path.write_text(json.dumps({"traceEvents": ev}))
    return path


def test_torch_pipelining_runtime_actions(tmp_path):
    """PipelineScheduleMulti runtime: "PP:{stage}{F|I|B|W}{mb}"; OVERLAP_F_B and SEND/RECV name no phase."""
    ranges = [
        ("1F1B", 5.0, 9_000.0),  # a schedule's name holds both directions: no phase
        ("PP:0F0", 10.0, 100.0),
        ("PP:1F0", 100.0, 200.0),
        ("PP:0SEND_F0", 200.0, 250.0),
        ("PP:1B0", 300.0, 400.0),
        ("PP:1I1", 400.0, 450.0),
        ("PP:1W0", 450.0, 500.0),
        ("PP:(0F1;1B1)OVERLAP_F_B", 600.0, 700.0),
        ("PP:0B1", 800.0, 900.0),
    ]
    # launch time -> (duration, expected phase, expected evidence)
    plan = [
        (20.0, 10.0, "forward", "annotation"),
        (150.0, 20.0, "forward", "annotation"),
        (220.0, 40.0, "forward", "position"),  # send after the forward, a backward range follows
        (350.0, 80.0, "backward", "annotation"),
        (420.0, 160.0, "backward", "annotation"),  # I: input-gradient half of the backward
        (470.0, 320.0, "backward", "annotation"),  # W: weight-gradient half
        (650.0, 640.0, "forward", "position"),  # overlapped F+B action: only its position says
        (850.0, 1280.0, "backward", "annotation"),
        (950.0, 2560.0, "other", "position"),  # after the last backward, no optimizer range
    ]
    path = _pipeline_trace(tmp_path / "pp.json", ranges, [(t, d) for t, d, _, _ in plan])
    doc = perfkit.analyze(str(path)).to_dict()
    want = defaultdict(float)
    want_ev = defaultdict(lambda: defaultdict(float))
    for _, d, p, e in plan:
        want[p] += d
        want_ev[p][e] += d
    for p in rules.PHASES:
        assert doc["phases"][p]["ms_per_step"] == pytest.approx(want[p] / 1000.0, abs=1e-9), p
    for p, evs in want_ev.items():
        assert doc["phases_evidence"][p] == {e: pytest.approx(v / want[p]) for e, v in evs.items()}


def test_gpipe_names_innermost_annotation_and_optimizer(tmp_path):
    """ScheduleGPipe "Forward {mb}"/"Backward {mb}"; an inner stage range beats an outer marker; optimizer first."""
    ranges = [
        ("Forward 0", 10.0, 100.0),
        ("## forward ##", 100.0, 400.0),
        ("mlp(B)", 200.0, 300.0),  # inside the outer forward marker: the innermost wins
        ("Backward 0", 400.0, 500.0),
        ("Optimizer.step#SGD.step", 600.0, 700.0),
    ]
    plan = [(50.0, 10.0, "forward"), (150.0, 20.0, "forward"), (250.0, 40.0, "backward"), (450.0, 80.0, "backward"),
            (650.0, 160.0, "optimizer")]
    path = _pipeline_trace(tmp_path / "gpipe.json", ranges, [(t, d) for t, d, _ in plan])
    doc = perfkit.analyze(str(path)).to_dict()
    want = defaultdict(float)
    for _, d, p in plan:
        want[p] += d
    for p in rules.PHASES:
        assert doc["phases"][p]["ms_per_step"] == pytest.approx(want[p] / 1000.0, abs=1e-9), p
    assert doc["phases_evidence"]["optimizer"] == {"optimizer_range": pytest.approx(1.0)}


def test_backward_range_driving_autograd_from_the_main_thread(tmp_path):
    """A user "backward" range on the loop thread; kernels launched there before it are forward."""
    ranges = [("train_step", 10.0, 100.0), ("backward", 200.0, 400.0)]  # "train_step" names no phase
    plan = [(50.0, 10.0), (150.0, 20.0), (300.0, 40.0)]
    path = _pipeline_trace(tmp_path / "bwd.json", ranges, plan, extra_ops=[("aten::mm", 40.0, 60.0, 1)])
    doc = perfkit.analyze(str(path)).to_dict()
    # 50 and 150 are launched before the backward range (position), 300 inside it (annotation)
    assert doc["phases"]["forward"]["ms_per_step"] == pytest.approx(0.030)
    assert doc["phases"]["backward"]["ms_per_step"] == pytest.approx(0.040)
    assert doc["phases_evidence"]["backward"] == {"annotation": pytest.approx(1.0)}
    assert doc["phases_evidence"]["forward"] == {"position": pytest.approx(1.0)}


# ----------------------------------------------------------------------------- the rules as a table

ANNOTATIONS = [
    ("attn(F)", "forward"), ("(F)", "forward"), ("dispatch(F)", "forward"),
    ("mlp(B)", "backward"), ("combine(B)", "backward"), ("attn(W)", "backward"), ("(W)", "backward"),
    ("PP:0F1", "forward"), ("PP:1B0", "backward"), ("PP:0W3", "backward"), ("PP:2I0", "backward"),
    ("Forward 0", "forward"), ("Backward 3", "backward"), ("forward", "forward"), ("bwd", "backward"),
    ("## forward ##", "forward"), ("## backward ##", "backward"), ("perfkit.phase:backward", "backward"),
    ("ForwardPass(buffer_id=0)", "forward"), ("BackwardPass(buffer_id=1)", "backward"),
    ("forward-compute", "forward"), ("backward-compute", "backward"), ("stage 0 Forward", "forward"),
    ("stage 1 backward", "backward"), ("backward_weight", "backward"),
    ("1F1B", None), ("PP:(0F1;1B0)OVERLAP_F_B", None), ("PP:0SEND_F1", None), ("PP:1RECV_B0", None),
    ("PP:0REDUCE_GRAD", None), ("PP:0UNSHARD", None), ("forward-backward", None), ("nn.Module: Linear_0", None),
    ("aten::linear", None), ("CompiledFunction", None), ("model_forward", "forward"), ("train_step", None),
]


@pytest.mark.parametrize("name,phase", ANNOTATIONS)
def test_annotation_names(name, phase):
    named = [p for p, pattern in rules.PHASE_ANNOTATIONS if re.search(pattern, name)]
    assert named == ([phase] if phase else [])


KERNELS = [
    ("void at::native::batch_norm_backward_kernel<c10::BFloat16, c10::BFloat16, float, int>", "backward"),
    ("igemm_wrw_gtcx2_nhwc_bf16_bx0_ex1_bt256x128x16_wt32x32x8_ws2x1_wr2x2", "backward"),
    ("igemm_bwd_gtcx2_nhwc_bf16_bx0_ex1_bt128x128x32_wt32x32x8_ws1x1_wr2x2", "backward"),
    ("void cudnn::cnn::wgrad_alg0_engine<float, 128, 6, 7, 3, 3, 5, false, 512>", "backward"),
    ("void cudnn::detail::dgrad_engine<float, 512, 6, 5, 3, 3, 3, false>", "backward"),
    ("void cudnn::winograd_nonfused::winogradWgradData4x4<float, float>", "backward"),
    ("void at::native::(anonymous namespace)::layer_norm_grad_input_kernel<float, float>", "backward"),
    ("void at::native::(anonymous namespace)::GammaBetaBackwardCUDAKernel<float, float>", "backward"),
    ("void cutlass::device_kernel<flash::FlashAttnBwd<flash::CollectiveMainloopBwd<2>>>", "backward"),
    ("split_embedding_backward_codegen_rowwise_adagrad_unweighted_kernel_cta_per_row_1", "backward"),
    ("void multi_tensor_apply_kernel<TensorListMetadata<4>, AdamFunctor<float>, float>", "optimizer"),
    ("void at::native::(anonymous namespace)::multi_tensor_apply_kernel<FusedOptimizerTensorListMetadata<4>>", "optimizer"),
    ("igemm_fwd_gtcx2_nhwc_bf16_bx0_ex1_bt64x64x64_wt16x16x16", "forward"),
    ("void at::native::batch_norm_collect_statistics_kernel<at::native::Var, c10::BFloat16>", "forward"),
    ("volta_scudnn_winograd_128x128_ldg1_ldg4_relu_tile148t_nt_v1", None),  # winograd is not "grad"
    ("void cudnn::winograd_nonfused::winogradForwardData4x4<float, float>", None),  # also used in backward
    ("ampere_sgemm_128x64_tn", None),
    ("void at::native::vectorized_elementwise_kernel<4, at::native::CUDAFunctor_add<float>>", None),
    ("void at::native::vectorized_elementwise_kernel<4, at::native::threshold_kernel_impl<float>::{lambda(float, float)#1}>",
     None),  # "lambda" is not LAMB
]


@pytest.mark.parametrize("name,phase", KERNELS)
def test_kernel_names(name, phase):
    for p, pattern in ((rules.BACKWARD, rules.BACKWARD_KERNEL_PATTERN), (rules.OPTIMIZER, rules.OPTIMIZER_KERNEL_PATTERN),
                       (rules.FORWARD, rules.FORWARD_KERNEL_PATTERN)):
        if re.search(pattern, name):
            assert p == phase
            return
    assert phase is None
