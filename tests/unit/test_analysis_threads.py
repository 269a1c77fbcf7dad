"""One thread or two: the same document. The analysis builds its tables on two threads from
TABLE_THREADS_MIN_EVENTS events on (issue #15); every committed trace is analysed both ways
(the threshold moved to 0 and beyond any trace) and the documents compared key for key."""

from __future__ import annotations

from pathlib import Path

import pytest

from perfkit.analysis import pipeline
from perfkit.trace import read_trace

from .._split import cases
from ..conftest import REPO

TRACE_FILES = sorted(p for p in (REPO / "tests" / "data" / "traces").glob("*/*.json*") if p.name != "expected.json")
UNIT = [p for p in TRACE_FILES if p.parent.name in (
    "nv-rtx2080ti-param-linear-train", "cpu-only-hta-5steps", "amd-mi300x-vllm-decode-graph-replay")]


@cases("path", TRACE_FILES, UNIT, ids=lambda p: f"{p.parent.name}/{p.name[:24]}")
def test_one_or_two_threads_give_the_same_document(monkeypatch: pytest.MonkeyPatch, path: Path) -> None:
    trace = read_trace(str(path))
    docs = []
    for threshold in (0, 10**12):  # two threads, then one
        monkeypatch.setattr(pipeline, "TABLE_THREADS_MIN_EVENTS", threshold)
        docs.append(pipeline.analyze_trace(trace).to_dict())
    assert docs[0] == docs[1]
