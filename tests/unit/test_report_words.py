"""The word for the time basis (GPU or CPU) is decided once, from ``trace.time_basis``, and used in
labels only: names from the trace (paths, ops, kernels, sources) and the findings' own text are
rendered as they are, in the terminal, Markdown and HTML reports. Also the stalls and scale renderers
(perfkit/report/stalls.py, perfkit/report/scaling.py) on documents built here."""

from __future__ import annotations

import copy
import html
import io
import json
import re

import pytest
from rich.console import Console

from perfkit.report.console import render_console
from perfkit.report.html import render_html
from perfkit.report.markdown import render_markdown
from perfkit.report.rows import CPU_WORDS, GPU_WORDS, basis_words, summary_rows

from ..conftest import REPO

GOLDEN = REPO / "tests" / "data" / "golden"


def _doc(name: str) -> dict:
    return json.loads((GOLDEN / f"{name}.json").read_text(encoding="utf-8"))


def _renders(doc: dict) -> dict[str, str]:
    buf = io.StringIO()
    render_console(doc, Console(file=buf, width=200, color_system=None, force_terminal=False))
    # HTML: the text with tags dropped and entities decoded, so names read as in the others
    page = html.unescape(re.sub(r"<[^>]+>", " ", render_html(doc, with_plots=False)))
    return {"terminal": buf.getvalue(), "markdown": render_markdown(doc), "html": page}


def _gpu_named_cpu_doc() -> dict:
    doc = copy.deepcopy(_doc("cpu_trace"))
    assert doc["trace"]["time_basis"] == "cpu"
    doc["trace"]["paths"] = ["/data/GPU_runs/rank0.json"]
    doc["top_ops"][0]["name"] = "GPUSim::step"
    doc["top_ops"][0]["source"] = "sim/GPU_model.py:12 step"
    doc["top_kernels"][0]["name"] = "GPUSim::kernel"
    doc["findings"][0]["title"] = "GPUSim::step waits on the GPU queue"
    return doc


def test_cpu_document_labels_say_cpu_and_names_keep_gpu() -> None:
    doc = _gpu_named_cpu_doc()
    for where, out in _renders(doc).items():
        for name in ("/data/GPU_runs/rank0.json", "GPUSim::step", "GPU_model.py:12",
                     "GPUSim::step waits on the GPU queue"):
            assert name in out, (where, name)
        for rewritten in ("CPU_runs", "CPUSim", "CPU_model", "the CPU queue"):
            assert rewritten not in out, (where, rewritten)
        assert "Phases (CPU time)" in out and "CPU ms/step" in out and "% of CPU busy" in out, where
        for label in ("GPU time", "GPU ms", "GPU busy", "GPU idle", "GPU utilization"):
            assert label not in out, (where, label)
    # the kernel table exists for a CPU document only in Markdown (terminal and HTML leave it out)
    assert "GPUSim::kernel" in _renders(doc)["markdown"]


def test_markdown_of_a_cpu_trace_says_cpu_time() -> None:
    md = render_markdown(_doc("cpu_trace"))
    assert "### Phases (CPU time)" in md and "### Top ops by CPU time (per step)" in md
    assert "Phases (GPU time)" not in md


def test_gpu_document_says_gpu() -> None:
    for where, out in _renders(_doc("gpu_trace")).items():
        assert "GPU time by kernel category" in out and "GPU ms" in out, where
        assert "CPU ms" not in out and "CPU time)" not in out and "CPU busy" not in out, where


def test_the_word_comes_from_the_time_basis_only() -> None:
    assert basis_words({"trace": {"time_basis": "cpu"}}) is CPU_WORDS
    assert basis_words({"trace": {"time_basis": "gpu"}}) is GPU_WORDS
    assert basis_words({}) is GPU_WORDS  # unknown basis: a schema-1 document was always device time
    doc = _doc("cpu_trace")
    labels = [r[0] for r in summary_rows(doc)]
    assert "  CPU busy (some op running)" in labels and not any("GPU" in x for x in labels)
    doc["trace"]["time_basis"] = "gpu"
    assert "  GPU busy (some op running)" in [r[0] for r in summary_rows(doc)]


# --- stalls and scale renderers -------------------------------------------------------------------


def _console() -> Console:
    return Console(file=io.StringIO(), width=160, color_system=None, force_terminal=False)


def test_stalls_renderer_draws_each_rank_and_the_verdict() -> None:
    from perfkit.report.stalls import render_stalls

    rank = {"dir": "", "rank": 1, "where_text": "train.py:40 step", "where_source": "faulthandler",
            "faulthandler_dumps": 2, "faulthandler_file": "rank1.faulthandler.txt", "status": "stuck",
            "ended_stalled": True, "dumps": 3, "first_dump_time": None, "last_step": 17,
            "last_heartbeat_time": None, "seconds_stalled": 12.25}
    doc = {"ranks": [rank, {**rank, "rank": 0, "status": "healthy", "faulthandler_dumps": 0, "ended_stalled": False,
                            "where_source": "heartbeat", "seconds_stalled": None, "last_step": None}],
           "verdict": "rank 1 stuck for 12.2 s", "seconds_since_newest_activity": 3600.0, "stale_s": 30.0}
    console = _console()
    render_stalls(doc, console, title="perfkit stalls: run")
    out = console.file.getvalue()
    assert "perfkit stalls: run" in out
    assert "stuck (run ended)" in out and "12.2" in out and "train.py:40 step [faulthandler]" in out
    assert "rank 1: 2 faulthandler dump(s) in rank1.faulthandler.txt" in out
    assert "rank 1 stuck for 12.2 s" in out and "the run may have ended" in out


@pytest.mark.parametrize("fitted", [True, False])
def test_scale_renderer_summary_is_the_results_own(fitted: bool) -> None:
    from perfkit.collect.scaling import ScaleResult, SizeTiming
    from perfkit.report.scaling import render_scale, summary_line

    timings = [SizeTiming(n, [n * n * 1e-6, n * n * 1.2e-6], in_fit=fitted) for n in (100, 200, 400)]
    result = ScaleResult(function="m:f", timings=timings, skipped=[800], skip_reason="over the timeout",
                         warnings=["a note"])
    if fitted:
        result.exponent, result.r2, result.coefficient_s, result.label = 2.0, 0.999, 1e-6, "O(n^2)"
        result.fit_sizes = [100, 200, 400]
        result.projections = [{"size": 1600, "x_largest": 4.0, "predicted_s": 2.56}]
    doc = result.to_dict()
    assert summary_line(doc) == result.summary()
    console = _console()
    render_scale(doc, console)
    out = console.file.getvalue()
    assert "scaling of m:f" in out and result.summary() in out and "skipped 800: over the timeout" in out
    assert "note: a note" in out
    assert ("n=1600 (4x the largest size)" in out) == fitted


def test_runtime_figure_of_the_wrong_type_is_left_out_not_a_crash() -> None:
    from perfkit.report.rows import runtime_rows

    doc = _doc("run_with_runtime")
    doc["runtime"]["throughput"] = {"tokens_per_s": "fast", "samples_per_s": 12.5}
    rows = runtime_rows(doc)
    assert ("Throughput", "12.5", "samples/s") in rows
    assert not any(r[2] == "tokens/s" for r in rows)
    assert "samples/s" in _renders(doc)["markdown"]
