"""Multi-rank findings on real 2-GPU traces (DDP over NCCL on 2x H200, traces/ddp_gpt_2xh200).

Recorded with scripts/record_ddp_traces.py: a balanced job, rank 1 slowed by
extra matmuls (straggler) or by a host sleep (straggler_sleep), and rank 1 hung
in a Python function while rank 0 waits in the all-reduce (hang). Every check
re-analyses the committed traces or rank documents with this checkout. The balanced and hung jobs, and the
host-sleep straggler, are checked in tests/e2e/test_ddp_gpu_fixtures_full.py.
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
