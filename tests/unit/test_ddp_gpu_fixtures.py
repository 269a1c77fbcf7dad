"""Multi-rank findings on real 2-GPU traces (DDP over NCCL on 2x H200, traces/ddp_gpt_2xh200).

Recorded with scripts/record_ddp_traces.py: a balanced job, rank 1 slowed by
extra matmuls (straggler) or by a host sleep (straggler_sleep), and rank 1 hung
in a Python function while rank 0 waits in the all-reduce (hang). Every check
re-analyses the committed traces or rank documents with this checkout.
"""

from __future__ import annotations

import json

from perfkit.cli import main
from tests.conftest import TRACES

from .. import _split

RUNS = TRACES / "ddp_gpt_2xh200"


def _analyze(tmp_path, job: str) -> dict:
    out = tmp_path / f"{job}.json"
    assert main(["analyze", str(RUNS / job), "--json", str(out), "-q"]) == 0
    return json.loads(out.read_text())


def _merge(tmp_path, job: str) -> dict:
    out = tmp_path / f"{job}.merged.json"
    files = [str(RUNS / job / f"rank{r}.analysis.json") for r in (0, 1)]
    assert main(["merge", *files, "--json", str(out), "-q"]) == 0
    return json.loads(out.read_text())


@_split.cases("job", ["straggler", "straggler_sleep"], ["straggler"], ids=str)  # the host sleep: tests/e2e
def test_straggler_is_named_first_from_traces_and_from_rank_documents(tmp_path, job):
    for doc in (_analyze(tmp_path, job), _merge(tmp_path, job)):
        first = doc["findings"][0]
        assert first["id"] == "straggler_rank", [f["id"] for f in doc["findings"]]
        assert first["rank"] == 1 and doc["job"]["straggler"]["rank"] == 1
        assert "straggler_work" in json.dumps(first["where"])  # the Python function that does the extra work
        rows = {r["rank"]: r for r in doc["ranks"]}
        # the fast rank waits in the collective for about the straggler's extra work
        assert rows[0]["comm_exposed_ms_per_step"] > rows[1]["comm_exposed_ms_per_step"] + 20.0
        assert first["evidence"]["lead_ms_per_step"] > 20.0


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
