"""The report says what overlap does to its figures: communication beside compute, and a kernel's
share of busy time against its own duration (DeepSeek's DualPipe profile: communication read as 45%
of GPU time, the top ranked cost, while 96% of it ran beside compute)."""

from __future__ import annotations

import json

import pytest

import perfkit
from perfkit.report import render_markdown
from perfkit.report.rows import (
    OVERLAP_WORTH_SAYING,
    category_notes,
    communication_overlap,
    leading_ops_line,
    top_kernels_note,
)

from .. import _cached, _dualpipe_trace
from ..conftest import REPO


@pytest.fixture(scope="module")
def dualpipe(tmp_path_factory) -> dict:
    path = _dualpipe_trace.write(tmp_path_factory.mktemp("dualpipe") / "train.json")
    return perfkit.analyze(str(path)).to_dict()


def _x(cat, name, ts, dur, pid=1, tid=1, **args):
    return {"ph": "X", "cat": cat, "name": name, "pid": pid, "tid": tid, "ts": ts, "dur": dur, "args": args}


def _two_streams(tmp_path, overlap_us: int) -> dict:
    """One step: an all-reduce (1,000 µs) on stream 20 and a GEMM (1,000 µs) on stream 7 that starts
    1,000 - overlap_us µs after it; both launched by CPU ops."""
    nccl, gemm = "ncclDevKernel_AllReduce_Sum_bf16_RING_LL(ncclDevKernelArgsStorage<4096ul>)", "sm90_xmma_gemm_bf16bf16_bf16f32_f32_tn_n_tilesize128x128x64"
    gemm_at = 100 + 1000 - overlap_us
    ev = [_x("user_annotation", "ProfilerStep#1", 0, 3000),
          _x("cpu_op", "c10d::allreduce_", 10, 20, **{"External id": 1}),
          _x("cuda_runtime", "cudaLaunchKernel", 15, 5, correlation=1, **{"External id": 1}),
          _x("kernel", nccl, 100, 1000, pid=0, tid=20, correlation=1, **{"External id": 1}),
          _x("cpu_op", "aten::mm", 40, 20, **{"External id": 2}),
          _x("cuda_runtime", "cudaLaunchKernel", 45, 5, correlation=2, **{"External id": 2}),
          _x("kernel", gemm, gemm_at, 1000, pid=0, tid=7, correlation=2, **{"External id": 2})]
    path = tmp_path / f"t{overlap_us}.json"
    path.write_text(json.dumps({"traceEvents": ev}))
    return perfkit.analyze(str(path)).to_dict()


def test_overlapped_communication_is_said_with_the_document_figures(dualpipe):
    comm = dualpipe["communication"]
    assert comm["overlapped_ms_per_step"] / comm["ms_per_step"] > OVERLAP_WORTH_SAYING  # the case is meaningful
    got = communication_overlap(dualpipe)
    assert got == {"ms": comm["ms_per_step"], "exposed_ms": comm["exposed_ms_per_step"], "cpu": False,
                   "overlapped_share": (comm["ms_per_step"] - comm["exposed_ms_per_step"]) / comm["ms_per_step"]}
    (note,) = category_notes(dualpipe)
    pct = f"{100 * got['overlapped_share']:.1f}% overlapped"
    assert pct in note and f"{comm['ms_per_step']:.2f} ms" in note
    assert "% of it overlapped with compute" in leading_ops_line(dualpipe)
    assert pct in render_markdown(dualpipe)


def test_overlap_from_two_streams_and_none_below_the_threshold(tmp_path):
    half = _two_streams(tmp_path, 500)  # 500 of the all-reduce's 1,000 µs beside the GEMM
    c = communication_overlap(half)
    assert c["ms"] == pytest.approx(1.0) and c["exposed_ms"] == pytest.approx(0.5)
    assert c["overlapped_share"] == pytest.approx(0.5)
    # The kernels' shares split the 500 µs they share: 750 µs counted of each 1,000 µs call.
    note = top_kernels_note(half, 10)
    assert note and "1 call of 1,000.0 µs = 1.00 ms per step, 0.75 ms of it counted here" in note
    apart = _two_streams(tmp_path, 0)
    assert communication_overlap(apart) is None and category_notes(apart) == []
    assert top_kernels_note(apart, 10) is None
    assert "overlapped" not in (leading_ops_line(apart) or "")
    little = _two_streams(tmp_path, 100)  # 10%: not worth a sentence
    assert communication_overlap(little) is None


def test_no_kernel_note_on_a_cpu_basis_document():
    doc = _cached.document(REPO / "tests/data/traces/cpu-only-hta-5steps/rank-34.Jul_15_10_52_41.1074.pt.trace.json.gz")
    assert doc["trace"]["time_basis"] == "cpu"
    assert top_kernels_note(doc, 10) is None


def test_host_collectives_are_not_called_kernels():
    """On a CPU-basis document the overlap note speaks of collectives and ops, not kernels (a public gloo
    trace's communication, its overlapped part raised past the threshold for the sentence)."""
    doc = _cached.document(REPO / "tests/data/traces/cpu-only-hta-5steps/rank-34.Jul_15_10_52_41.1074.pt.trace.json.gz")
    comm = doc["communication"]
    assert comm["basis"] == "cpu" and comm["ms_per_step"] > 0
    comm["exposed_ms_per_step"] = 0.5 * comm["ms_per_step"]
    (note,) = category_notes(doc)
    assert note.startswith("A collective ran during") and "kernel" not in note, note

