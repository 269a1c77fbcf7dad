"""The example GPT profiled by `perfkit profile` on an H100 (traces/example_gpt_h100):
re-analysing the committed trace must agree with the CUDA-event truth measured there."""

from __future__ import annotations

import json

import pytest

import perfkit

from ..conftest import TRACES

RUN = TRACES / "example_gpt_h100"


@pytest.fixture(scope="module")
def validation():
    return json.loads((RUN / "validate_profile.json").read_text())


def test_phase_shares_agree_with_cuda_events(validation):
    doc = perfkit.analyze(str(RUN / "rank0.pt.trace.json.gz")).to_dict()
    truth = validation["truth"]["shares"]
    for phase in ("forward", "backward", "optimizer"):
        assert abs(doc["phases"][phase]["share"] - truth[phase]) < 0.03, phase
    assert doc["trace"]["device"] == "NVIDIA H100 80GB HBM3"
    assert doc["steps"]["count"] >= 2


def test_reanalysis_matches_the_run_directory():
    """The analysis written on the GPU box and a fresh analysis of its trace agree."""
    written = json.loads((RUN / "analysis.json").read_text())
    fresh = perfkit.analyze(str(RUN / "rank0.pt.trace.json.gz")).to_dict()
    for group in ("phases", "categories"):
        for key, value in written[group].items():
            assert fresh[group][key]["share"] == pytest.approx(value["share"], abs=0.01), (group, key)
