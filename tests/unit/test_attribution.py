"""The vectorised attribution against the slow reference, invariants on every real trace,
and phase shares against CUDA-event truth measured on a GPU.

The unit suite compares with the slow reference on the small traces and checks the invariants on the
anchor traces under 100 kB (every source folder's small files); tests/e2e/test_attribution_full.py runs
the same tests on the large ones."""

from __future__ import annotations

import json

import numpy as np
import pytest

from perfkit.analysis import analyze_trace, rules
from perfkit.analysis.attribute import NO_STEP, attribute, find_steps
from perfkit.analysis.steps import step_stats
from perfkit.analysis.timeline import Timeline
from perfkit.errors import TraceFormatError
from perfkit.trace import model as m
from perfkit.trace import read_trace

from .. import _split
from .._reference import reference_attribution
from ..conftest import BF16, FP32, all_anchor_traces, anchor

REFERENCE_TRACES = [
    BF16,
    FP32,
    "hta/tests/data/amd_trace/mi250_minitoy_train_ROCm6_2_kineto.json.gz",
    "hta/tests/data/with_gpu_user_annotation/step_based_trace_2543932.json.gz",
    "hta/tests/data/critical_path/alexnet/benchmark_result_2869224_1695835535_trace.json.gz",
    "hta/tests/data/trace_filter/sampled_rank-0.json.gz",
    "kineto/tb_plugin/test/gpu_metrics_input.json",
    "hta/tests/data/call_stack/backward_thread.json",
]
#: the reference comparison on these (the large ones: several seconds) runs in tests/e2e only
E2E_REFERENCE_TRACES = [BF16, FP32, "hta/tests/data/trace_filter/sampled_rank-0.json.gz"]
UNIT_ANCHOR_BYTES = 100_000  #: anchor traces at most this size get the invariant checks here, the others in e2e


def _path(p):
    return p if not isinstance(p, str) else anchor(p)


def _fast(path):
    tl = Timeline.build(read_trace(str(path)))
    steps = find_steps(tl)
    dw = attribute(tl, steps)
    return tl, steps, dw


@_split.cases("trace", REFERENCE_TRACES, [t for t in REFERENCE_TRACES if t not in E2E_REFERENCE_TRACES],
              ids=lambda p: str(p).split("/")[-1][:30])
def test_matches_slow_reference(trace):
    path = _path(trace)
    ref = reference_attribution(path)
    tl, steps, dw = _fast(path)
    assert len(dw) == len(ref), "every device interval is attributed exactly once"
    names = tl.trace.names
    pid, tid, ts = (tl.trace.events[c][dw.row] for c in (m.PID, m.TID, m.TS))
    linked = 0
    for i in range(len(dw)):
        key = (int(pid[i]), int(tid[i]), round(float(ts[i]), 3))
        sid, phase, category, share = ref[key]
        assert rules.CATEGORIES[dw.category[i]] == category, names[dw.name[i]]
        assert dw.share_us[i] == pytest.approx(share, abs=1e-3)  # 1 ns: the oracle works in absolute µs
        if sid == "unlinked":
            assert dw.launch[i] == -1
            continue
        linked += 1
        got_step = None if dw.step[i] == NO_STEP else int(steps.ids[dw.step[i]])
        assert got_step == sid, names[dw.name[i]]
        assert rules.PHASES[dw.phase[i]] == phase, names[dw.name[i]]
    assert linked > 0


@_split.cases("path", all_anchor_traces(), [p for p in all_anchor_traces() if p.stat().st_size <= UNIT_ANCHOR_BYTES],
              ids=lambda p: str(p.relative_to(p.parents[3]))[:60])
def test_every_anchor_trace_analyses_with_invariants(path):
    tl, steps, dw = _fast(path)
    # every device interval gets exactly one phase and one category
    assert ((dw.phase >= 0) & (dw.phase < len(rules.PHASES))).all()
    assert ((dw.category >= 0) & (dw.category < len(rules.CATEGORIES))).all()
    stats = step_stats(tl, steps, dw)
    for s in range(len(steps)):
        in_step = dw.step == s
        busy = dw.share_us[in_step].sum()
        assert stats.busy_us[s] == pytest.approx(busy, rel=1e-9, abs=1e-6)
        by_phase = sum(dw.share_us[in_step & (dw.phase == p)].sum() for p in range(len(rules.PHASES)))
        by_cat = sum(dw.share_us[in_step & (dw.category == c)].sum() for c in range(len(rules.CATEGORIES)))
        assert by_phase == pytest.approx(busy, rel=1e-9, abs=1e-6)
        assert by_cat == pytest.approx(busy, rel=1e-9, abs=1e-6)
        assert stats.idle_us[s] >= 0
    # busy time never exceeds the union of device intervals
    from perfkit.analysis.intervals import union_length

    for d in np.unique(dw.device):
        sel = dw.device == d
        assert dw.share_us[sel].sum() == pytest.approx(union_length(dw.start[sel], dw.end[sel]), rel=1e-9, abs=1e-6)
    doc = analyze_trace(tl.trace).to_dict()
    for group in ("phases", "categories", "overview"):
        shares = [v["share"] for v in doc[group].values() if v["share"] is not None]  # None: phases unknown
        if sum(shares) > 0:
            assert sum(shares) == pytest.approx(1.0, abs=1e-3), group
    json.dumps(doc, allow_nan=False)


def test_memory_timeline_raw_is_not_a_trace():
    with pytest.raises(TraceFormatError, match="memory_timeline.raw.gz"):
        read_trace(str(anchor("hta/tests/data/memory_analysis/memory_timeline.raw.gz")))


@pytest.mark.parametrize("trace", [BF16, FP32], ids=["bf16_adamw", "fp32_sgd"])
def test_phase_shares_match_cuda_event_truth(trace):
    truth = json.loads((trace.parent / "truth.json").read_text())["truth"]
    expected = truth["shares_of_median"]
    doc = analyze_trace(read_trace(str(trace))).to_dict()
    for phase in ("forward", "backward", "optimizer"):
        assert abs(doc["phases"][phase]["share"] - expected[phase]) < 0.03, (phase, doc["phases"][phase], expected[phase])
    # and the GPU busy time per step agrees with the measured step GPU time
    assert doc["device"]["busy_ms_per_step"] == pytest.approx(truth["median"]["step_gpu_ms"], rel=0.05)
    for phase in ("forward", "backward", "optimizer"):
        assert doc["phases"][phase]["ms_per_step"] == pytest.approx(truth["median"][f"{phase}_ms"], rel=0.1, abs=0.3)


def test_gpu_lag_ops_launched_before_window_are_counted_not_dropped():
    doc = analyze_trace(read_trace(str(BF16))).to_dict()
    tl, steps, dw = _fast(BF16)
    pre = (dw.launch < 0) & (dw.step == NO_STEP)
    assert pre.sum() > 100  # the GPU lagged: ops launched before the window are in the trace
    assert doc["device"]["launched_before_window"]["count"] == int(pre.sum())
    assert doc["device"]["launched_before_window"]["ms"] == pytest.approx(dw.share_us[pre].sum() / 1000)
    # every device op is either in a step or accounted as outside
    assert len(dw) == int((dw.step >= 0).sum() + pre.sum() + ((dw.step == NO_STEP) & (dw.launch >= 0)).sum())


def test_whole_trace_is_one_window_without_profiler_steps():
    doc = analyze_trace(read_trace(str(anchor("hta/tests/data/with_gpu_user_annotation/step_based_trace_2543932.json.gz")))).to_dict()
    assert doc["steps"]["synthetic"] is True
    assert any("one window" in w for w in doc["trace"]["warnings"])
    assert doc["phases"]["optimizer"]["share"] > 0


@pytest.mark.parametrize("spread", [3, 10**12])  # dense ids (direct table) and sparse ones (sorted search)
def test_id_index_matches_a_dict(spread):
    from perfkit.analysis.attribute import _IdIndex

    rng = np.random.default_rng(spread)
    keys = rng.integers(5, 5 + spread * 500, 500)
    keys[:50] = keys[50:100]  # repeated ids: the first occurrence wins
    values = rng.permutation(10_000)[:500].astype(np.int64)
    query = np.concatenate([rng.choice(keys, 300), rng.integers(-3, 8 + spread * 600, 300), [-1, 0, 4]])
    first: dict[int, int] = {}
    for k, v in zip(keys.tolist(), values.tolist()):
        first.setdefault(k, v)
    want = [first.get(q, -1) if q >= 0 else -1 for q in query.tolist()]
    index = _IdIndex(keys, values, len(query))
    assert (index.first is not None) == (spread == 3)
    assert index.get(query).tolist() == want
    assert index.get(query[::-1]).tolist() == want[::-1]  # reusable
    assert _IdIndex(keys[:0], values[:0]).get(query).tolist() == [-1] * len(query)
