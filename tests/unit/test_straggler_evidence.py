"""The straggler's evidence says what was measured and only that; the job document keeps each fact once.

Hand-built traces (times chosen here, so the expected figures follow from the construction)
and one public trace: vLLM's tensor-parallel step on a B200 (custom all-reduce kernels).
"""

from __future__ import annotations

import gzip
import json
import re
import warnings
from pathlib import Path

import pytest

import perfkit
from perfkit.job import ranks
from perfkit.job.merge import merge
from perfkit.analysis.result import Analysis
from perfkit.report import ranks as report_ranks

from .test_ranks import make_trace

DATA = Path(__file__).resolve().parent.parent / "data" / "traces"
VLLM = DATA / "nv-b200-vllm-eager-tp8-r0" / "eager_trace.json.gz"


def _docs(paths) -> list[dict]:
    return [perfkit.analyze(str(p)).to_dict() for p in paths]


def _trace(path: Path, rank: int, work: list[tuple[str, str, float, float]], comm_at: float, *,
           steps: int = 3, step_marks: bool = True, world: int = 3) -> Path:
    """Per step: GPU kernels ``(op, kernel, start_ms, end_ms)`` on stream 7, then an NCCL all-reduce on stream 20
    from ``comm_at`` to 12 ms. Each op and its launch on the host just before its kernel."""
    ev, corr = [], 0
    for k in range(steps):
        t0 = k * 20_000.0
        if step_marks:
            ev.append({"ph": "X", "cat": "user_annotation", "name": f"ProfilerStep#{k + 1}", "pid": 1, "tid": 1,
                       "ts": t0, "dur": 13_000.0})
        items = [(op, kern, 7, a, b) for op, kern, a, b in work] + \
            [("nccl:all_reduce", "ncclDevKernel_AllReduce_Sum_f32_RING_LL", 20, comm_at, 12.0)]
        for i, (op, kern, stream, a, b) in enumerate(items):
            corr += 1
            at = t0 + 50.0 * i
            ev.append({"ph": "X", "cat": "cpu_op", "name": op, "pid": 1, "tid": 1, "ts": at, "dur": 40,
                       "args": {"External id": corr}})
            ev.append({"ph": "X", "cat": "cuda_runtime", "name": "cudaLaunchKernel", "pid": 1, "tid": 1,
                       "ts": at + 10, "dur": 10, "args": {"correlation": corr, "External id": corr}})
            ev.append({"ph": "X", "cat": "kernel", "name": kern, "pid": 0, "tid": stream, "ts": t0 + a * 1000,
                       "dur": (b - a) * 1000, "args": {"correlation": corr, "External id": corr, "stream": stream}})
    doc = {"schemaVersion": 1, "distributedInfo": {"backend": "nccl", "rank": rank, "world_size": world},
           "traceEvents": ev}
    path.write_text(json.dumps(doc))
    return path


def _cpu_trace(path: Path, rank: int, mm_end: float, comm_at: float, steps: int = 3, world: int = 3) -> Path:
    """A CPU-only (gloo) trace: per step aten::mm 1 ms - ``mm_end``, then gloo:all_reduce ``comm_at`` - 12 ms."""
    ev = []
    for k in range(steps):
        t0 = k * 20_000.0
        ev.append({"ph": "X", "cat": "user_annotation", "name": f"ProfilerStep#{k + 1}", "pid": 1, "tid": 1,
                   "ts": t0, "dur": 13_000.0})
        ev.append({"ph": "X", "cat": "cpu_op", "name": "aten::mm", "pid": 1, "tid": 1, "ts": t0 + 1000.0,
                   "dur": (mm_end - 1.0) * 1000.0})
        ev.append({"ph": "X", "cat": "cpu_op", "name": "gloo:all_reduce", "pid": 1, "tid": 1, "ts": t0 + comm_at * 1000.0,
                   "dur": (12.0 - comm_at) * 1000.0})
    doc = {"schemaVersion": 1, "distributedInfo": {"backend": "gloo", "rank": rank, "world_size": world},
           "traceEvents": ev}
    path.write_text(json.dumps(doc))
    return path


def _straggler(view: dict) -> dict:
    return next(f for f in view["findings"] if f["id"] == "straggler_rank")


# --------------------------------------------------------------------- which kernels are collectives


def test_custom_all_reduce_kernels_are_listed_as_collectives():
    """vLLM TP8 on B200: its all-reduces are multimem_all_reduce_kernel, not NCCL kernels."""
    raw = json.load(gzip.open(VLLM))
    kernels = [e for e in raw["traceEvents"] if e.get("cat") == "kernel"]
    all_reduce = [e for e in kernels if "all_reduce" in e["name"]]
    assert len(all_reduce) == 47 and not any("nccl" in e["name"].lower() for e in kernels)
    doc = perfkit.analyze(str(VLLM)).to_dict()
    c = doc["communication"]["collectives"]
    assert c["count"] == c["listed"] == len(all_reduce)  # one step (no ProfilerStep): every one is in it
    assert c["kinds"] == ["all_reduce"]
    starts = sorted(e["ts"] for e in all_reduce)  # the kernels themselves: the same spacing
    listed = sorted(c["start_us"])
    assert [s - listed[0] for s in listed] == pytest.approx([s - starts[0] for s in starts], abs=1e-3)


# --------------------------------------------------------------------- the evidence


def test_top_op_before_the_late_collectives_is_credited_its_own_time(tmp_path):
    """Rank 2 runs aten::mm 1-5 ms and aten::add 5-6 ms, then its all-reduce at 7 ms; ranks 0 and 1 run
    aten::mm 1-3 ms and start the all-reduce at 4 ms: 4 ms of the gap is aten::mm's, 5 ms is busy."""
    fast = [("aten::mm", "sm90_xmma_gemm_bf16", 1.0, 3.0)]
    slow = [("aten::mm", "sm90_xmma_gemm_bf16", 1.0, 5.0), ("aten::add", "vectorized_elementwise_kernel_add", 5.0, 6.0)]
    paths = [_trace(tmp_path / f"rank{r}.json", r, slow if r == 2 else fast, 7.0 if r == 2 else 4.0) for r in range(3)]
    docs = _docs(paths)
    c = docs[2]["communication"]["collectives"]
    assert [c["ops"][i] for i in c["before_op"]] == ["aten::mm"] * 3
    assert c["before_op_us"] == pytest.approx([4000.0] * 3)
    assert c["before_busy_us"] == pytest.approx([5000.0] * 3)
    view = ranks.job_view(docs)
    f = _straggler(view)
    assert f["rank"] == 2 and f["evidence"]["others_wait_ms_per_step"] == pytest.approx(3.0, abs=1e-3)
    before = [w for w in f["where"] if w.get("before_late_collectives")]
    assert [(w["name"], w["ms_per_step"]) for w in before] == [("aten::mm", pytest.approx(4.0, abs=1e-3))]
    assert f["evidence"]["busy_before_ms_per_step"] == pytest.approx(5.0, abs=1e-3)
    # Launched in the same order on every rank, 50 µs apart: rank 2 enqueues its all-reduce last
    # (the third item after two, the others' second) in each of the 3 steps.
    assert f["evidence"]["enqueued_last"] == 3 and f["evidence"]["enqueue_compared"] == 3
    # Each fact once: the straggler's own figures here, job-wide ones in job.arrivals, per rank in the rows.
    for key in ("clock_offsets_us", "clocks_shifted", "end_spread_us", "skipped", "last_arrivals_by_rank",
                "caused_wait_ms_per_step_by_rank", "extra_ms_per_step"):
        assert key not in f["evidence"], key
    assert {"clock_offsets_us", "clocks_shifted", "end_spread_us", "skipped"} <= set(view["job"]["arrivals"])
    assert all("clock_offset_us" not in r for r in view["ranks"])
    assert "per_rank" not in view["steps"]
    rows = {r["rank"]: r for r in view["ranks"]}
    assert rows[2]["caused_wait_ms_per_step"] == pytest.approx(3.0, abs=1e-3) and rows[2]["last_arrivals"] == 3
    # lead: how much later than the next-latest rank (3 ms in each step); job.straggler repeats it under that name.
    assert f["evidence"]["lead_ms_per_step"] == pytest.approx(3.0, abs=1e-3)
    assert view["job"]["straggler"]["lead_ms_per_step"] == pytest.approx(3.0, abs=1e-3)
    line = next(x for x in report_ranks.job_lines(view) if x.startswith("straggler:"))
    assert "arrives 3.00 ms per step after the next-latest rank" in line and "more work" not in line


def test_cpu_trace_has_no_launch_times_and_says_so(tmp_path):
    """gloo: the collective is a host range; no enqueue apart from it, no device gap."""
    paths = [_cpu_trace(tmp_path / f"rank{r}.json", r, 9.0 if r == 1 else 6.0, 7.0 if r == 1 else 4.0) for r in range(3)]
    docs = _docs(paths)
    c = docs[1]["communication"]["collectives"]
    assert c["basis"] == "cpu" and c["listed"] == 3
    assert c["launch_us"] == [None] * 3
    for col in ("gap_us", "before_busy_us", "before_op_us"):
        assert c[col] == [None] * 3, col
    view = ranks.job_view(docs)
    f = _straggler(view)
    assert f["rank"] == 1 and f["evidence"]["others_wait_ms_per_step"] == pytest.approx(3.0, abs=1e-3)
    ev = f["evidence"]
    assert ev["enqueued_last"] is None and ev["enqueue_compared"] == 0
    for key in ("queue_ms_per_step", "others_queue_ms_per_step", "gap_before_ms_per_step",
                "others_gap_before_ms_per_step", "busy_before_ms_per_step"):
        assert ev[key] is None, key
    assert "enqueues them late" not in f["title"]
    assert not [w for w in f["where"] if w.get("before_late_collectives")]
    # CPU basis: idle is host time outside ops (GPU idle on a GPU trace).
    rows = [r for r in view["ranks"] if r["status"] == "analysed"]
    assert rows[0]["time_basis"] == "cpu"


def test_synthetic_steps_leave_step_starts_unknown_without_numpy_warnings(tmp_path):
    """No ProfilerStep: one synthetic step per rank, no CPU step start: no comparison of starts, no warning."""
    fast = [("aten::mm", "sm90_xmma_gemm_bf16", 1.0, 3.0)]
    slow = [("aten::mm", "sm90_xmma_gemm_bf16", 1.0, 6.0)]
    paths = [_trace(tmp_path / f"rank{r}.json", r, slow if r == 0 else fast, 7.0 if r == 0 else 4.0, steps=1,
                    step_marks=False) for r in range(3)]
    docs = _docs(paths)
    assert all(d["communication"]["collectives"]["steps"]["start_us"] == [None] for d in docs)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        view = ranks.job_view(docs)
    f = _straggler(view)
    assert f["rank"] == 0
    assert f["evidence"]["step_start_after_earliest_ms"] is None and f["evidence"]["earliest_rank"] is None


def test_one_rank_job_names_no_straggler(tmp_path):
    doc = _docs([make_trace(tmp_path / "rank1.json", 1, world=2)])
    view = ranks.job_view(doc)
    assert not [f for f in view["findings"] if f["id"] == "straggler_rank"]
    assert view["job"]["ranks_analysed"] == 1 and view["job"]["straggler"] is None
    assert not [x for x in report_ranks.job_lines(view) if x.startswith("straggler")]


def test_merge_of_traces_drops_the_first_traces_collectives(tmp_path):
    docs = _docs([make_trace(tmp_path / f"a{r}.json", 0) for r in range(2)])
    assert docs[0]["communication"]["collectives"]["listed"] == 4
    merged = merge([Analysis(doc=d) for d in docs]).doc
    assert merged["communication"]["collectives"] is None
    assert docs[0]["communication"]["collectives"]["listed"] == 4  # the inputs are left as they were


def test_idle_label_follows_the_time_basis():
    def row(rank: int, idle: float, basis: str) -> dict:
        return {"rank": rank, "time_basis": basis, "idle_ms_per_step": idle, "comm_exposed_ms_per_step": 0.0,
                "phase_ms_per_step": {}, "comm_by_phase_ms_per_step": {}}

    for basis, label in (("gpu", "GPU idle time"), ("cpu", "idle time (host time outside ops)")):
        rows = [row(0, 1.0, basis), row(1, 5.0, basis), row(2, 1.0, basis)]
        assert ranks._largest_excess(rows, 1) == (label, pytest.approx(4.0))


# --------------------------------------------------------------------- the reports


def _many_ranks(n: int, caused_known: bool) -> dict:
    rows = []
    for r in range(n):
        rows.append({"rank": r, "status": "analysed", "steps": 1, "step_ms_median": 10.0,
                     # work against the median rises with the rank; caused wait falls with it
                     "work_vs_median_ms": float(r),
                     "caused_wait_ms_per_step": float(n - r) if caused_known or r % 2 else None})
    return {"ranks": rows, "job": {"world_size": n, "ranks_analysed": n}}


def test_cut_rank_table_sorts_by_one_measure():
    n = report_ranks.MAX_ROWS + 8
    # Every rank has the caused wait: the 12 causing most (ranks 0-11) and the 4 causing least (n-4 .. n-1).
    table, hidden = report_ranks.rank_table(_many_ranks(n, True))
    shown = [int(re.match(r"\d+", row[0]).group()) for row in table]
    assert hidden == 8 and shown == list(range(report_ranks.MAX_ROWS - 4)) + list(range(n - 4, n))
    assert "Causes" in report_ranks.hidden_note(_many_ranks(n, True), hidden)
    # Some ranks without it: all ranks by work against the median, highest (n-1 ...) and lowest (0-3).
    table, hidden = report_ranks.rank_table(_many_ranks(n, False))
    shown = [int(re.match(r"\d+", row[0]).group()) for row in table]
    assert shown == list(range(4)) + list(range(n - (report_ranks.MAX_ROWS - 4), n))
    assert "work per step against the median" in report_ranks.hidden_note(_many_ranks(n, False), hidden)


def test_html_steps_table_of_a_job_names_the_rank(tmp_path):
    from perfkit.report.html import render_html

    paths = [make_trace(tmp_path / f"rank{r}.json", r, world=2) for r in range(2)]
    view = ranks.job_view(_docs(paths))
    html = render_html(view, with_plots=False)
    steps = html[html.index('id="steps"'):]
    steps = steps[:steps.index("</table>")]
    assert "<th>Rank</th>" in steps.replace(' class="num"', "")
    cells = re.findall(r"<tr[^>]*><td[^>]*>(\d+)</td><td[^>]*>(\d+)</td>", steps)
    assert sorted(set(cells)) == sorted({(str(r), str(s)) for r in range(2) for s in range(1, 5)})
