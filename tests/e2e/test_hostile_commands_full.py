"""More generated corrupted documents through every command than the fast loop runs
(tests/unit/test_hostile_commands.py: the same strategy and the same checks)."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings

from ..unit.test_hostile_commands import check_corrupted_document, corruption

pytestmark = pytest.mark.slow


@settings(max_examples=80, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=corruption)
def test_80_corrupted_documents_never_crash(tmp_path, capsys, data):
    check_corrupted_document(tmp_path, capsys, data)
