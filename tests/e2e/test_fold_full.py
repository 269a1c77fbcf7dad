"""tests/unit/test_fold.py over the names of the committed traces the unit suite leaves out."""

from __future__ import annotations

from .._split import rest_of
from ..unit import test_fold as unit

test_folded_search_answers_as_the_pattern = rest_of(unit.test_folded_search_answers_as_the_pattern)
