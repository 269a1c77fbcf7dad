"""Warm-up is at the start: only the slow steps before the first steady one are excluded.

A slow step later in a run (a stall, a checkpoint, a slow collective, machine noise) is part of
the run: excluding it would hide it. Checked on a public trace from the raw ProfilerStep
durations, and on built traces.
"""

from __future__ import annotations

import gzip
import json
import statistics

import perfkit

from .. import _cached
from ..conftest import anchor

LAST_SLOW = "kineto/tb_plugin/samples/resnet50_num_workers_4/worker0.1623213129365.pt.trace.json.gz"


def _step_walls_ms(path) -> dict[int, float]:
    with gzip.open(path, "rt") as f:
        events = json.load(f)["traceEvents"]
    out = {}
    for e in events:
        name = str(e.get("name", ""))
        if name.startswith("ProfilerStep#") and e.get("cat") in ("cpu_op", "user_annotation", "Operator"):
            out.setdefault(int(name.split("#")[1]), float(e["dur"]) / 1000.0)
    return dict(sorted(out.items()))


def test_a_slow_last_step_is_not_warm_up():
    walls = _step_walls_ms(anchor(LAST_SLOW))
    ids = list(walls)
    med = statistics.median(walls.values())
    assert walls[ids[-1]] > 1.5 * med and all(walls[i] < 1.5 * med for i in ids[:-1])  # the premise
    doc = _cached.document(anchor(LAST_SLOW))
    assert doc["steps"]["excluded"] == []
    assert doc["steps"]["ids"] == ids
    assert "warmup_outlier" not in {f["id"] for f in doc["findings"]}


def _steps_trace(path, walls_us):
    """ProfilerStep#N ranges of the given lengths (µs), each holding one op of the same length."""
    ev, t = [], 0.0
    for n, w in enumerate(walls_us):
        ev.append({"ph": "X", "cat": "user_annotation", "name": f"ProfilerStep#{n}", "pid": 1, "tid": 1, "ts": t, "dur": w})
        ev.append({"ph": "X", "cat": "cpu_op", "name": "aten::mm", "pid": 1, "tid": 1, "ts": t + 1, "dur": w - 2})
        t += w + 10
    path.write_text(json.dumps({"traceEvents": ev}))
    return path


def test_slow_steps_at_the_start_are_warm_up_and_later_ones_stay(tmp_path):
    doc = perfkit.analyze(_steps_trace(tmp_path / "a.json", [5000, 4000, 1000, 1000, 1000, 1000])).to_dict()
    assert [e["id"] for e in doc["steps"]["excluded"]] == [0, 1]
    assert all(e["reason"].startswith("warm-up outlier") for e in doc["steps"]["excluded"])
    doc = perfkit.analyze(_steps_trace(tmp_path / "b.json", [1000, 1000, 5000, 1000, 1000, 1000])).to_dict()
    assert doc["steps"]["excluded"] == [] and doc["steps"]["count"] == 6
