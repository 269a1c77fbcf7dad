"""tests/unit/test_corpus_verdicts.py's expectations on the corpus traces the unit suite leaves out (the
same test function)."""

from __future__ import annotations

from .._split import rest_of
from ..unit import test_corpus_verdicts as unit

test_corpus_verdicts = rest_of(unit.test_corpus_verdicts)
