"""tests/unit/test_gzip_inflate.py's byte-for-byte inflation check on the committed traces the unit suite
leaves out (the larger ones): the same test function."""

from __future__ import annotations

from .._split import rest_of
from ..unit import test_gzip_inflate as unit

test_committed_traces_inflate_to_the_same_bytes = rest_of(unit.test_committed_traces_inflate_to_the_same_bytes)
