"""tests/unit/test_reader.py's decoder agreement on the larger traces, and the fallback decoder over small
chunks in a process pool: the cases the unit suite leaves out (the same test functions)."""

from __future__ import annotations

from .._split import rest_of
from ..unit import test_reader as unit
from ..unit.test_reader import bf16_json  # noqa: F401  (the fixture)

test_c_scanner_and_msgspec_decoder_agree = rest_of(unit.test_c_scanner_and_msgspec_decoder_agree)
test_small_chunks_and_workers_give_identical_columns = rest_of(unit.test_small_chunks_and_workers_give_identical_columns)
