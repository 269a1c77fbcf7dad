"""Name-pattern answers remembered across traces (the rank engines' mode, perfkit.analysis.timeline):
the same masks as answering each trace afresh, with new names in later traces, a reset when full,
and from two threads at once."""

from __future__ import annotations

import random
import threading

import numpy as np
import pytest

from perfkit.analysis import rules, timeline

PATTERNS = [rules.STEP_PATTERN, rules.COLLECTIVE_KERNEL_PATTERN, rules.OPTIMIZER_PATTERN, rules.BACKWARD_KERNEL_PATTERN]
WORDS = ["ProfilerStep#1", "ProfilerStep#12", "ncclKernel_AllReduce", "Optimizer.step#Adam.step", "aten::mm",
         "void at::native::elementwise_kernel", "sm90_xmma_gemm_bwd", "autograd::engine::evaluate_function: X",
         "MulBackward0", "fused_adam_kernel", "é_kernel", "x" * 5000 + "nccl"]


def _names(rng: random.Random) -> list[str]:
    return [rng.choice(WORDS) + rng.choice(["", "_1", "_2", " "]) for _ in range(rng.randint(1, 60))]


@pytest.fixture
def remembering():
    timeline.remember_across_traces(True)
    yield
    timeline.remember_across_traces(False)


def test_remembered_masks_are_the_fresh_ones(remembering, monkeypatch) -> None:
    rng = random.Random(15)
    monkeypatch.setattr(timeline, "NAME_MEMO_MAX", 150)  # full (and reset) several times over the run
    for _ in range(40):
        names = _names(rng)
        for pattern in PATTERNS:
            want = timeline._answers(timeline._match_texts(names), pattern)
            assert np.array_equal(timeline.name_mask(names, pattern), want)
            assert np.array_equal(timeline.name_mask(names, pattern), want)  # asked again: the same
    assert len(timeline._REMEMBERED.texts) <= 150


def test_two_threads_at_once(remembering) -> None:
    rng = random.Random(16)
    lists = [_names(rng) for _ in range(30)]
    want = [[timeline._answers(timeline._match_texts(n), p) for p in PATTERNS] for n in lists]
    errors: list[str] = []

    def work(order: list[int]) -> None:
        for i in order:
            for j, p in enumerate(PATTERNS):
                if not np.array_equal(timeline.name_mask(lists[i], p), want[i][j]):
                    errors.append(f"{i} {p}")

    threads = [threading.Thread(target=work, args=(list(range(30))[::step],)) for step in (1, -1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []


@pytest.mark.parametrize("trace", ["param_dlrm_8xv100", "nv-h100-bert-small-infer"])
def test_event_masks_kept_or_gathered_give_the_same_document(trace, monkeypatch) -> None:
    """Timeline.matches keeps per-event answers up to EVENT_MASK_MAX_EVENTS events and gathers them
    from the per-name answers above: the same analysis either way (read-only where kept)."""
    import glob
    import json
    from pathlib import Path

    from perfkit.analysis import analyze_trace
    from perfkit.trace import read_trace

    folder = Path(__file__).resolve().parents[1] / "data" / "traces" / trace
    path = sorted(glob.glob(str(folder / "*.json*")))[0]
    kept = analyze_trace(read_trace(path)).to_dict()
    tl = timeline.Timeline.build(read_trace(path))
    mask = tl.matches(rules.STEP_PATTERN)
    assert len(mask) == len(tl.trace) and not mask.flags.writeable and tl.matches(rules.STEP_PATTERN) is mask
    monkeypatch.setattr(timeline, "EVENT_MASK_MAX_EVENTS", 0)
    gathered = analyze_trace(read_trace(path)).to_dict()
    assert json.dumps(kept, sort_keys=True) == json.dumps(gathered, sort_keys=True)
    tl = timeline.Timeline.build(read_trace(path))
    assert np.array_equal(tl.matches(rules.STEP_PATTERN), mask) and tl.matches(rules.STEP_PATTERN) is not mask
