"""The committed 2-GPU DDP jobs the unit suite leaves out: tests/unit/test_ddp_gpu_fixtures.py's straggler
check on the job with rank 1 slowed by a host sleep (the same test function), the balanced job and the hung
one (each a `perfkit analyze` of a whole job directory)."""

from __future__ import annotations

import json

from perfkit.cli import main

from .._split import rest_of
from ..unit import test_ddp_gpu_fixtures as unit
from ..unit.test_ddp_gpu_fixtures import RUNS, _analyze

test_straggler_is_named_first_from_traces_and_from_rank_documents = rest_of(
    unit.test_straggler_is_named_first_from_traces_and_from_rank_documents)


def test_balanced_job_has_no_straggler(tmp_path):
    doc = _analyze(tmp_path, "balanced")
    assert doc["job"]["straggler"] is None
    assert not [f for f in doc["findings"] if f["id"] == "straggler_rank" and f["severity"] != "info"]
    steps = [r["step_ms_median"] for r in doc["ranks"]]
    assert max(steps) / min(steps) < 1.1


def test_hang_stall_view_names_the_stuck_rank(tmp_path):
    out = tmp_path / "stalls.json"
    assert main(["stalls", str(RUNS / "hang"), "--json", str(out)]) == 0
    stalls = json.loads(out.read_text())
    assert stalls["verdict"].startswith("stuck: rank 1 in stuck_in_python")
    assert "waiting for it: rank 0" in stalls["verdict"]
    doc = _analyze(tmp_path, "hang")
    first = doc["findings"][0]
    assert first["id"] == "rank_stuck" and first["evidence"]["stuck_ranks"] == [1], [f["title"] for f in doc["findings"]]
