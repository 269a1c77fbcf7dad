"""tests/unit/test_analysis_threads.py over the committed traces the unit suite leaves out."""

from __future__ import annotations

from .._split import rest_of
from ..unit import test_analysis_threads as unit

test_one_or_two_threads_give_the_same_document = rest_of(unit.test_one_or_two_threads_give_the_same_document)
