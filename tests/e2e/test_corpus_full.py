"""The corpus checks of tests/unit/test_corpus.py on every corpus trace the unit suite leaves out (it
checks the smallest trace of each kind): together the two check every trace of the corpus."""

from __future__ import annotations

import pytest

from ..unit import test_corpus as unit

REST = [e for e in unit.ALL_ENTRIES if e not in unit.ENTRIES]
WITH_DEVICE_WORK = [e for e in REST if unit._marks(e.path)[0]]
WITH_STEPS_AND_DEVICE_WORK = [e for e in WITH_DEVICE_WORK if unit._marks(e.path)[1]]


def _ids(entries: list) -> list[str]:
    return [e.slug for e in entries]


def test_the_unit_suite_checks_one_trace_of_each_kind_and_this_one_the_rest():
    rows = unit.index_rows()
    kinds = {unit.kind(e, rows) for e in unit.ALL_ENTRIES}
    assert sorted(unit.kind(e, rows) for e in unit.ENTRIES) == sorted(kinds)  # one each, none missing
    assert REST and len(REST) + len(unit.ENTRIES) == len(unit.ALL_ENTRIES)


@pytest.mark.parametrize("entry", REST, ids=_ids(REST))
def test_selection_agrees_with_the_evidence(entry):
    unit.test_selection_agrees_with_the_evidence(entry)


@pytest.mark.parametrize("entry", REST, ids=_ids(REST))
def test_analyze_document_is_finite(entry):
    unit.test_analyze_document_is_finite(entry)


@pytest.mark.parametrize("entry", REST, ids=_ids(REST))
def test_time_basis_and_steps(entry):
    unit.test_time_basis_and_steps(entry)


@pytest.mark.parametrize("entry", WITH_DEVICE_WORK, ids=_ids(WITH_DEVICE_WORK))
def test_device_busy_per_device_matches_union(entry):
    unit.test_device_busy_per_device_matches_union(entry)


@pytest.mark.parametrize("entry", WITH_STEPS_AND_DEVICE_WORK, ids=_ids(WITH_STEPS_AND_DEVICE_WORK))
def test_step_busy_against_launch_linked_share(entry):
    unit.test_step_busy_against_launch_linked_share(entry)
