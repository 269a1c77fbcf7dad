"""Figures (perfkit/report/plots.py) and the series the analysis adds for them (perfkit/analysis/series.py).

The figures are checked through what each Plot says it drew (``info``: step ids,
outliers marked, data source); tests/e2e/test_plots_e2e.py checks the files write_plots writes (real
PNG / SVG, not empty).
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest

import perfkit
from perfkit.analysis.series import MAX_POINTS
from perfkit.errors import MissingDependencyError
from perfkit.report import plots as P
from perfkit.trace import read_trace

from .. import _cached
from ..conftest import BF16, REPO, anchor

# ResNet-50 sample with profile_memory=True ([memory] events without Total Allocated, 2021)
# whose last step is a slow outlier that the analysis excludes.
RESNET = "kineto/tb_plugin/samples/resnet50_num_workers_4/worker0.1623213129365.pt.trace.json.gz"
WITH_WARM_UP = "hta/tests/data/negative_queue_length_values_check/rank0.json.gz"
# A 2023 trace with modern [memory] events (Total Allocated / Total Reserved).
MODERN_MEMORY = "hta/tests/data/df_index_resolver/df_index_resolver.json.gz"
# A run of `perfkit profile` whose first step is a 5 s warm-up outlier (runtime counters included).
WARMUP_RUN = REPO / "traces" / "pathologies_h100" / "warmup" / "analysis.json"
MODULES_RUN = REPO / "traces" / "example_gpt_h100" / "analysis_modules_flops.json"

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def resnet() -> dict:
    return _cached.document(anchor(RESNET))


@pytest.fixture(scope="module")
def bf16() -> dict:
    return _cached.document(BF16)


def _load(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


# --- series in the analysis document -------------------------------------------------


def test_categories_ms_per_step_add_up_to_busy(bf16: dict) -> None:
    cats = bf16["categories"]
    rows = bf16["steps"]["table"]
    assert rows and all(set(r["categories_ms"]) == set(cats) for r in rows)
    for r in rows:
        assert math.isclose(sum(r["categories_ms"].values()), r["busy_ms"], rel_tol=1e-9, abs_tol=1e-9)
    # The mean over kept steps is the document's per-step category figure.
    kept = [r for r in rows if r["kept"]]
    for c, v in cats.items():
        mean = sum(r["categories_ms"][c] for r in kept) / len(kept)
        assert math.isclose(mean, v["ms_per_step"], rel_tol=1e-9, abs_tol=1e-9), c


def test_memory_timeline_from_modern_memory_events() -> None:
    path = anchor(MODERN_MEMORY)
    doc = perfkit.analyze(str(path)).to_dict()
    mt = doc["memory_timeline"]
    mem = read_trace(str(path)).memory
    assert mt["events"] == len(mem["ts_us"])
    cuda = mt["devices"][0]
    assert cuda["device_type"] == 1 and cuda["device"] == "cuda:1" and not cuda["relative"]
    sel = mem["device_type"] == 1
    # Thinning keeps the maximum of each run of events: the peaks are exact.
    assert cuda["peak_allocated_bytes"] == int(mem["total_allocated"][sel].max())
    assert max(cuda["allocated_bytes"]) == cuda["peak_allocated_bytes"]
    assert max(cuda["reserved_bytes"]) == int(mem["total_reserved"][sel].max())
    assert len(cuda["t_ms"]) == len(cuda["allocated_bytes"]) <= MAX_POINTS
    assert cuda["t_ms"] == sorted(cuda["t_ms"])
    # Same time axis as the steps: the memory events fall around the profiled steps.
    assert len(mt["step_start_ms"]) == len(mt["step_ids"]) == doc["steps"]["total"]
    assert cuda["t_ms"][0] <= mt["step_end_ms"][0] and cuda["t_ms"][-1] >= mt["step_start_ms"][-1]


def test_memory_timeline_absent_without_memory_events(bf16: dict) -> None:
    assert bf16["memory_timeline"] is None


def test_old_memory_events_are_a_running_sum(resnet: dict) -> None:
    cuda = resnet["memory_timeline"]["devices"][0]
    assert cuda["device"] == "cuda:0" and cuda["relative"] is True and cuda["reserved_bytes"] is None
    assert cuda["peak_allocated_bytes"] > 1e9  # ResNet-50 activations: GBs


# --- figures ----------------------------------------------------------------------------


def test_plots_mark_the_excluded_warm_up_step() -> None:
    # Its first step is a warm-up outlier (368 ms against a 216 ms median).
    doc = _cached.document(anchor(WITH_WARM_UP))
    excluded = [e["id"] for e in doc["steps"]["excluded"]]
    assert excluded, "the fixture trace must have an excluded step"
    by = {p.name: p for p in P.build_plots(doc)}  # what write_plots writes (drawn, not written: e2e writes files)
    assert by["step_times"].info["outlier_step_ids"] == excluded
    assert by["phases_per_step"].info["excluded_step_ids"] == excluded


def test_runtime_outliers_and_memory_counters() -> None:
    doc = _load(WARMUP_RUN)  # made by an older perfkit: no per-step categories
    by = {p.name: p for p in P.build_plots(doc)}
    assert by["step_times"].info["outlier_step_ids"] == [0]  # the 5 s warm-up step
    # the run measured each step's GPU time (CUDA events): the step time, against which outliers count
    # (its host ran ahead: 9.5 ms of wall time per step against 17 ms on the GPU)
    rt = doc["runtime"]["steps"]["gpu_ms"]
    assert len(rt) == len(doc["runtime"]["steps"]["wall_ms"])
    median = doc["runtime"]["steps"]["gpu_ms_median"]
    from perfkit.analysis.rules import OUTLIER_FACTOR

    expected = [i + 1 for i, w in enumerate(rt) if w > OUTLIER_FACTOR * median]
    assert expected and by["step_times"].info["runtime_outlier_steps"] == expected
    assert by["step_times"].info["runtime_basis"] == "gpu" and by["step_times"].info["runtime_median_ms"] == median
    assert by["memory"].info["source"] == "runtime.memory.step_peak_bytes"
    assert by["memory"].info["peak_bytes"] == max(doc["runtime"]["memory"]["step_peak_bytes"])
    assert by["categories_per_step"].figure is None and "older perfkit" in by["categories_per_step"].skipped


def test_top_modules_from_module_timings() -> None:
    doc = _load(MODULES_RUN)
    plot = P.plot_top_modules(doc)
    assert plot.info["source"] == "runtime.modules"
    names = plot.info["names"]
    assert names[0] == "head" and len(names) == min(len(doc["runtime"]["modules"]), P.TOP_ROWS)


def test_many_steps_drawn_as_areas(bf16: dict) -> None:
    doc = json.loads(json.dumps(bf16))
    row = doc["steps"]["table"][0]
    doc["steps"]["table"] = [dict(row, id=i) for i in range(P.MAX_BARS + 50)]
    plot = P.plot_phases_per_step(doc)
    assert plot.info["style"] == "areas" and len(plot.info["step_ids"]) == P.MAX_BARS + 50


def test_names_with_dollar_signs_are_not_mathtext(bf16: dict, tmp_path: Path) -> None:
    doc = json.loads(json.dumps(bf16))
    doc["top_ops"][0]["name"] = "odd$name$ with $\\frac{"
    P.figure_bytes(P.plot_top_modules(doc).figure)  # would raise on a mathtext parse error


def test_empty_document_skips_every_figure() -> None:
    plots = P.build_plots({})
    assert all(p.figure is None and p.skipped for p in plots)


def test_missing_matplotlib_names_the_install_command(monkeypatch: pytest.MonkeyPatch, bf16: dict,
                                                      tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    for name in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(MissingDependencyError, match=r"pip install 'perfkit\[plots\]'"):
        P.write_plots(bf16, tmp_path)
    from perfkit.cli import main

    assert main(["analyze", "-q", str(BF16), "--plots", str(tmp_path / "p")]) == 2
    err = capsys.readouterr().err
    assert "pip install 'perfkit[plots]'" in err and "Traceback" not in err
    assert not (tmp_path / "p").exists()


def _png_pixels(data: bytes) -> np.ndarray:
    import io

    import matplotlib.image as mpimg

    return mpimg.imread(io.BytesIO(data), format="png")


def test_phases_per_step_draws_only_known_phases() -> None:
    """Phases unknown (null per step, time in unknown_ms): no zero-height forward/backward bands, no legend entries."""
    rows = [{"id": i, "kept": True, "forward_ms": None, "backward_ms": None, "optimizer_ms": None, "other_ms": None,
             "unknown_ms": 4.0 + i} for i in range(1, 4)]
    p = P.plot_phases_per_step({"steps": {"table": rows}})
    assert p.figure is not None
    legend = [t.get_text() for t in p.figure.axes[0].get_legend().get_texts()]
    assert legend == [P.PHASE_LABELS["unknown"]]
    heights = sorted(round(b.get_height(), 6) for b in p.figure.axes[0].patches)
    assert heights == [5.0, 6.0, 7.0]
    # Known in some steps only: drawn (null as 0 there); a phase known nowhere is left out.
    rows[0]["forward_ms"] = 2.0
    p = P.plot_phases_per_step({"steps": {"table": rows}})
    legend = [t.get_text() for t in p.figure.axes[0].get_legend().get_texts()]
    assert legend == [P.PHASE_LABELS["forward"], P.PHASE_LABELS["unknown"]]
    # Nothing known at all: not drawn, and said why.
    for r in rows:
        r["forward_ms"] = r["unknown_ms"] = None
    p = P.plot_phases_per_step({"steps": {"table": rows}})
    assert p.figure is None and p.skipped
