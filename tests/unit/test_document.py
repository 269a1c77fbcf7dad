"""The analysis document's contract (perfkit/analysis/document.py): what the builder writes is what the
types declare, the vocabularies are the ones the document uses, and schema-1 documents are upgraded
exactly (the committed analysis.json files under traces/ are schema 1, written by earlier perfkit)."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any, get_type_hints

import pytest

import perfkit
from perfkit.analysis import document as d
from perfkit.analysis import rules
from perfkit.analysis.result import Analysis, JobAnalysis, document_of
from perfkit.documents import load_analysis

REPO = Path(__file__).resolve().parents[2]
SCHEMA1_DOCS = sorted(REPO.glob("traces/**/*analysis.json"))
GPU_TRACE = REPO / "traces" / "example_gpt_h100" / "rank0.pt.trace.json.gz"
JOB = REPO / "traces" / "ddp_gpt_2xh200" / "straggler"
CPU_TRACE = REPO / "tests" / "data" / "compiled_mlp"

OLD_KEYS = {**d.ROW_KEYS, **d.STEP_KEYS, **d.RANK_KEYS}


def leaves(obj: Any, path: tuple = ()) -> list[tuple[tuple, Any]]:
    """(key path, value) of every leaf; list indices are part of the path."""
    if isinstance(obj, dict):
        return [x for k, v in obj.items() for x in leaves(v, path + (k,))]
    if isinstance(obj, list) and obj:
        return [x for i, v in enumerate(obj) for x in leaves(v, path + (i,))]
    return [(path, obj)]


def expected_path(path: tuple) -> tuple:
    """The schema-2 path of a schema-1 leaf, written out rule by rule (the oracle for upgrade())."""
    top = path[0]
    if top in ("runtime", "recording"):
        return path
    keys = dict(d.ROW_KEYS)
    if top == "steps":
        keys.update(d.STEP_KEYS)
    if top == "ranks":
        keys.update(d.RANK_KEYS)
    return (d.RENAMED_SECTIONS.get(top, top),) + tuple(keys.get(k, k) if isinstance(k, str) else k
                                                      for k in path[1:])


@pytest.fixture(scope="module")
def fresh() -> dict[str, Any]:
    return perfkit.analyze(str(GPU_TRACE)).to_dict()


@pytest.fixture(scope="module")
def fresh_job() -> dict[str, Any]:
    return perfkit.analyze(sorted(str(p) for p in JOB.glob("rank*.pt.trace.json.gz"))).to_dict()


def test_the_committed_documents_are_schema_1():
    """The upgrade is tested on real documents written by earlier perfkit, not on ones made here."""
    assert len(SCHEMA1_DOCS) >= 10
    assert {json.loads(p.read_text())["schema"] for p in SCHEMA1_DOCS} == {d.SCHEMA_V1}


@pytest.mark.parametrize("path", SCHEMA1_DOCS, ids=lambda p: str(p.relative_to(REPO)))
def test_upgrade_moves_every_value_and_renames_only_the_listed_keys(path):
    old = json.loads(path.read_text())
    before = copy.deepcopy(old)
    new = d.upgrade(old)
    assert old == before  # the input is not changed
    assert new["schema"] == d.SCHEMA
    old_leaves = {p: v for p, v in leaves(old) if p != ("schema",)}
    new_leaves = {p: v for p, v in leaves(new) if p != ("schema",)}
    assert new_leaves == {expected_path(p): v for p, v in old_leaves.items()}
    assert "gpu" not in new and ("device" in new) == ("gpu" in old)


@pytest.mark.parametrize("path", SCHEMA1_DOCS[:4], ids=lambda p: str(p.relative_to(REPO)))
def test_schema_1_files_are_read_as_schema_2_by_every_reader(path):
    doc = load_analysis(str(path))
    assert doc["schema"] == d.SCHEMA and "gpu" not in doc
    assert d.upgrade(doc) is doc  # a schema-2 document is left as it is
    assert document_of(json.loads(path.read_text())) == d.upgrade(json.loads(path.read_text()))


def old_keys_in(doc: dict[str, Any]) -> list[tuple]:
    """Paths of schema-1 key names in a document, outside the sections that keep them."""
    return [p for p, _ in leaves(doc) if p[0] not in ("runtime", "recording")
            and any(isinstance(k, str) and k in OLD_KEYS and "evidence" not in p for k in p)] + \
        ([("gpu",)] if "gpu" in doc else [])


def test_the_builder_writes_schema_2_keys_only(fresh, fresh_job):
    for doc in (fresh, fresh_job):
        assert doc["schema"] == d.SCHEMA
        assert old_keys_in(doc) == []


def declared(td: Any) -> set[str]:
    return set(get_type_hints(td))


def test_every_key_the_builder_writes_is_declared(fresh, fresh_job):
    """The TypedDicts are the contract: a key written but not declared (or renamed on one side) fails."""
    for doc in (fresh, fresh_job):
        assert set(doc) <= declared(d.AnalysisDoc)
        assert set(doc["trace"]) <= declared(d.TraceInfo)
        assert set(doc["steps"]) <= declared(d.Steps)
        for row in doc["steps"]["table"]:
            assert set(row) <= declared(d.StepRow)
        assert set(doc["device"]) <= declared(d.DeviceTime)
        for group in ("phases", "categories", "overview"):
            for entry in doc[group].values():
                assert set(entry) <= declared(d.Share)
        for row in doc["top_ops"] + doc["top_kernels"] + doc["copies"]["sources"]:
            assert set(row) <= declared(d.OpRow)
        for direction in d.COPY_DIRECTIONS:
            assert set(doc["copies"][direction]) <= declared(d.CopyStats)
        for f in doc["findings"]:
            assert set(f) <= declared(d.Finding)
    for row in fresh_job["ranks"]:
        assert set(row) <= declared(d.RankRow) | {"bytes", "events", "comm_by_phase_ms_per_step", "last_arrivals",
                                                  "collectives_matched", "arrival_wait_ms_per_step",
                                                  "caused_wait_ms_per_step", "reason"}


def test_vocabularies_are_the_documents(fresh):
    assert rules.CATEGORIES is d.CATEGORIES and rules.PHASES is d.PHASES
    assert tuple(fresh["categories"]) == d.CATEGORIES
    assert tuple(fresh["phases"]) == d.PHASES
    assert tuple(fresh["overview"]) == d.OVERVIEW_ROLES
    assert fresh["trace"]["time_basis"] in d.TIME_BASES
    severities = {f["severity"] for p in SCHEMA1_DOCS for f in json.loads(p.read_text()).get("findings", [])}
    assert severities and severities <= set(d.SEVERITIES)


def test_findings_order_is_severity_then_cost():
    found = [{"severity": "info", "cost_ms_per_step": 9.0}, {"severity": "critical", "cost_ms_per_step": 1.0},
             {"severity": "warning", "cost_ms_per_step": 2.0}, {"severity": "critical", "cost_ms_per_step": 3.0},
             {"severity": "odd"}]
    ordered = sorted(found, key=d.finding_order)
    assert [(f["severity"], f.get("cost_ms_per_step")) for f in ordered] == [
        ("critical", 3.0), ("critical", 1.0), ("warning", 2.0), ("info", 9.0), ("odd", None)]


def test_analysis_types(fresh, fresh_job):
    single, job = Analysis.from_dict(fresh), Analysis.from_dict(fresh_job)
    assert type(single) is Analysis and not single.is_job
    assert isinstance(job, JobAnalysis) and job.is_job and len(job.ranks_table) == 2
    assert single.time_basis == "gpu"
    assert Analysis.from_dict({"schema": d.SCHEMA, "trace": {"paths": [], "warnings": []}}).time_basis is None
    upgraded = Analysis.from_dict(json.loads((REPO / "traces" / "example_gpt_h100" / "analysis.json").read_text()))
    assert upgraded.doc["schema"] == d.SCHEMA and "ms_per_step" in upgraded.doc["phases"]["forward"]


def test_cpu_trace_is_worded_by_its_basis():
    trace = CPU_TRACE / "rank0.pt.trace.json.gz"
    a = perfkit.analyze(str(trace))
    assert a.time_basis == "cpu" and d.basis_word(a.time_basis) == "CPU"
    assert old_keys_in(a.to_dict()) == []
