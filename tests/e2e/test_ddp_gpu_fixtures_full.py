"""tests/unit/test_ddp_gpu_fixtures.py's straggler check on the job the unit suite leaves out (rank 1 slowed
by a host sleep): the same test function."""

from __future__ import annotations

from .._split import rest_of
from ..unit import test_ddp_gpu_fixtures as unit

test_straggler_is_named_first_from_traces_and_from_rank_documents = rest_of(
    unit.test_straggler_is_named_first_from_traces_and_from_rank_documents)
