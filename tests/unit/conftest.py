"""The unit suite is the fast loop: `pytest tests/unit` is `pytest -m "not slow"`. A test under
tests/unit marked slow fails the collection here (it belongs in tests/e2e, where every test is slow)."""

from __future__ import annotations

from pathlib import Path

import pytest

_HERE = Path(__file__).resolve().parent


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    slow = [item.nodeid for item in items
            if _HERE in Path(str(item.fspath)).resolve().parents and item.get_closest_marker("slow") is not None]
    if slow:
        raise pytest.UsageError("tests/unit holds tests marked slow (move them to tests/e2e): " + ", ".join(slow))
