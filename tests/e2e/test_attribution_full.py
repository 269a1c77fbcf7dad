"""tests/unit/test_attribution.py's slow-reference comparison and invariants on the large traces the
unit suite leaves out (the same test functions)."""

from __future__ import annotations

from .._split import rest_of
from ..unit import test_attribution as unit

test_matches_slow_reference = rest_of(unit.test_matches_slow_reference)
test_every_anchor_trace_analyses_with_invariants = rest_of(unit.test_every_anchor_trace_analyses_with_invariants)
