"""tests/unit/test_recording_cost.py's GPU-bound check on the model the unit suite leaves out (the same test
function)."""

from __future__ import annotations

from .._split import rest_of
from ..unit import test_recording_cost as unit

test_gpu_bound_runs_get_no_host_side_warning = rest_of(unit.test_gpu_bound_runs_get_no_host_side_warning)
