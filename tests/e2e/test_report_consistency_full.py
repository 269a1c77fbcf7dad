"""tests/unit/test_report_consistency.py's document and report checks on the real traces the unit suite
leaves out (the same test function), and its report checks on every real trace with the HTML page's
figures drawn."""

from __future__ import annotations

import os

import pytest

from .. import _cached
from .._split import rest_of
from ..unit import test_report_consistency as unit

test_busy_plus_idle_is_the_step_in_every_document = rest_of(unit.test_busy_plus_idle_is_the_step_in_every_document)


@pytest.mark.parametrize("path", unit.REAL, ids=[os.path.basename(os.path.dirname(p)) for p in unit.REAL])
def test_reports_with_figures_show_the_same_rows(path):
    unit._check_reports(_cached.document(path), with_plots=True)
