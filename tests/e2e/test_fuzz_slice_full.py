"""The whole deterministic fuzz slice: every case of tests/unit/test_fuzz_slice.py's sources and commands,
and its synthetic traces with every hypothesis example (the fast loop runs the first cases of each, and
fewer examples; the checks are the same functions)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import pytest

from .. import _mutate as mu
from ..unit import test_fuzz_slice as fz
from ..unit.test_fuzz_slice import doc_sources  # noqa: F401  (the fixture)

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("slug,path,n_cli,n_api", fz.SOURCES, ids=[s[0] for s in fz.SOURCES])
def test_all_mutated_traces_cli(slug: str, path: Path, n_cli: int, n_api: int, tmp_path: Path) -> None:
    fz.mutated_traces_cli(slug, path, n_cli, tmp_path)


@pytest.mark.parametrize("slug,path,n_cli,n_api", fz.SOURCES, ids=[s[0] for s in fz.SOURCES])
def test_all_mutated_traces_api(slug: str, path: Path, n_cli: int, n_api: int, tmp_path: Path) -> None:
    fz.mutated_traces_api(slug, path, n_api, tmp_path)


@pytest.mark.parametrize("command", mu.DOC_COMMANDS)
def test_all_corrupted_documents(command: str, doc_sources: dict[str, Any], tmp_path: Path) -> None:
    fz.corrupted_documents(command, doc_sources, fz.DOC_CASES_PER_COMMAND, tmp_path)


@fz.synthetic_settings(fz.SYNTHETIC_EXAMPLES)
@fz.SYNTHETIC
def test_all_synthetic_traces_api(events: list[dict[str, Any]], extra: Optional[str], tmp_path: Path) -> None:
    fz.synthetic_trace_api(events, extra, tmp_path)


test_all_synthetic_traces_api.split_of = fz.test_synthetic_traces_api  # type: ignore[attr-defined]
