"""The corpus checks of tests/unit/test_corpus.py on every corpus trace the unit suite leaves out (it
checks the smallest trace of each kind): together the two check every trace of the corpus."""

from __future__ import annotations

from .._split import rest_of
from ..unit import test_corpus as unit

REST = [e for e in unit.ALL_ENTRIES if e not in unit.ENTRIES]


def test_the_unit_suite_checks_one_trace_of_each_kind_and_this_one_the_rest():
    rows = unit.index_rows()
    kinds = {unit.kind(e, rows) for e in unit.ALL_ENTRIES}
    assert sorted(unit.kind(e, rows) for e in unit.ENTRIES) == sorted(kinds)  # one each, none missing
    assert REST and len(REST) + len(unit.ENTRIES) == len(unit.ALL_ENTRIES)


test_selection_agrees_with_the_evidence = rest_of(unit.test_selection_agrees_with_the_evidence)
test_analyze_document_is_finite = rest_of(unit.test_analyze_document_is_finite)
test_time_basis_and_steps = rest_of(unit.test_time_basis_and_steps)
test_device_busy_per_device_matches_union = rest_of(unit.test_device_busy_per_device_matches_union)
test_step_busy_against_launch_linked_share = rest_of(unit.test_step_busy_against_launch_linked_share)
