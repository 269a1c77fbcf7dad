"""tests/unit/test_profile_faults.py's failing instruments that the unit suite leaves out (it breaks one of
each kind): the same test function, every other instrument."""

from __future__ import annotations

from .._split import rest_of
from ..unit import test_profile_faults as unit

test_a_failing_instrument_is_switched_off_and_the_run_goes_on = rest_of(
    unit.test_a_failing_instrument_is_switched_off_and_the_run_goes_on)
