"""tests/unit/test_report_consistency.py's document and report checks on the real traces the unit suite
leaves out (the same test function)."""

from __future__ import annotations

from .._split import rest_of
from ..unit import test_report_consistency as unit

test_busy_plus_idle_is_the_step_in_every_document = rest_of(unit.test_busy_plus_idle_is_the_step_in_every_document)
