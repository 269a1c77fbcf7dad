"""The pathology gallery profiled on an H100 (traces/pathologies_h100, scripts/run_pathologies.py):
re-analysing the committed traces must still rank the expected finding first, and the fixed runs stay clean."""

from __future__ import annotations

import json

import pytest

import perfkit

from ..conftest import TRACES

RUNS = TRACES / "pathologies_h100"
SEVERE = ("warning", "critical")


@pytest.mark.parametrize("name, expected, where", [
    ("component_loop", "launch_bound", "aten::"),
    ("slow_loader", "dataloader_bound", "DataLoader"),
])
def test_expected_finding_first_and_fixed_run_clean(name, expected, where):
    before = perfkit.analyze(str(RUNS / name / "rank0.pt.trace.json.gz")).to_dict()["findings"]
    assert before and before[0]["id"] == expected, [f["id"] for f in before]
    assert before[0]["severity"] in SEVERE
    assert where in json.dumps(before[0]["where"])
    after = perfkit.analyze(str(RUNS / f"{name}-fixed" / "rank0.pt.trace.json.gz")).to_dict()["findings"]
    assert not [f for f in after if f["id"] == expected and f["severity"] in SEVERE]


def test_launch_bound_names_the_component_loop_line():
    first = perfkit.analyze(str(RUNS / "component_loop" / "rank0.pt.trace.json.gz")).to_dict()["findings"][0]
    assert "component_loop.py" in json.dumps(first["where"])
    assert first["evidence"]["kernels_per_step"] > 500 and first["evidence"]["median_kernel_us"] < 10
