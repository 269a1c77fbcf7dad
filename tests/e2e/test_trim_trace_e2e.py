"""scripts/trim_trace.py run as a script on a public trace: whole steps kept with their device work."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys

import pytest

import perfkit

from ..conftest import REPO, anchor


@pytest.mark.slow
def test_trim_keeps_whole_steps_and_their_device_work(tmp_path):
    src = anchor("hta/tests/data/negative_queue_length_values_check/rank0.json.gz")
    dst = tmp_path / "cut.json.gz"
    subprocess.run([sys.executable, str(REPO / "scripts" / "trim_trace.py"), str(src), str(dst), "--steps", "2",
                    "--skip", "1"], check=True, capture_output=True)
    with gzip.open(dst, "rt") as f:
        events = json.load(f)["traceEvents"]
    steps = sorted(e["name"] for e in events if str(e.get("name", "")).startswith("ProfilerStep#")
                   and e.get("cat") in ("cpu_op", "user_annotation"))
    with gzip.open(src, "rt") as f:
        src_events = json.load(f)["traceEvents"]
    all_steps = sorted({e["name"] for e in src_events if str(e.get("name", "")).startswith("ProfilerStep#")
                        and e.get("cat") in ("cpu_op", "user_annotation")}, key=lambda n: int(n.split("#")[1]))
    assert sorted(set(steps)) == sorted(all_steps[1:3])

    def corrs(evs, cat):
        return {e["args"]["correlation"] for e in evs if e.get("cat") == cat and "correlation" in e.get("args", {})}

    # every kernel of the source whose launch was kept is kept
    kept_launches = corrs(events, "cuda_runtime")
    owed = corrs(src_events, "kernel") & kept_launches
    assert owed and owed <= corrs(events, "kernel")
    doc = perfkit.analyze(str(dst)).to_dict()
    assert doc["steps"]["total"] == 2
