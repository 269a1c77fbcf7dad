"""Every test under tests/e2e is end-to-end (subprocesses, torchrun, real frameworks, the whole
fuzz slice): marked slow here, so `pytest -m "not slow"` is exactly the unit suite."""

from __future__ import annotations

from pathlib import Path

import pytest

_HERE = Path(__file__).resolve().parent


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if _HERE in Path(str(item.fspath)).resolve().parents:
            item.add_marker(pytest.mark.slow)
