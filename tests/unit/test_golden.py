"""Golden renders: a few committed documents rendered as terminal text, Markdown and HTML, compared
exactly with the renders committed beside them in tests/data/golden/ (made by scripts/regen_golden.py).

A change to any report shows here as a diff; if it is intended, regenerate the renders with
``python scripts/regen_golden.py`` and review them like code.
"""

from __future__ import annotations

import difflib
import json

import pytest

from scripts.regen_golden import DOCUMENTS, GOLDEN, neutral_cwd, render_all

from ..conftest import REPO


@pytest.mark.parametrize("name", sorted(DOCUMENTS))
def test_renders_match_the_committed_golden_files(name: str) -> None:
    doc = json.loads((GOLDEN / f"{name}.json").read_text(encoding="utf-8"))
    with neutral_cwd():
        renders = render_all(doc)
    assert sorted(renders) == [".html", ".md", ".txt"]
    failures = []
    for suffix, got in renders.items():
        path = GOLDEN / f"{name}{suffix}"
        want = path.read_text(encoding="utf-8")
        if got != want:
            diff = "".join(difflib.unified_diff(want.splitlines(True), got.splitlines(True),
                                                str(path.relative_to(REPO)), "rendered now", n=2))
            failures.append(diff[:6000])
    assert not failures, ("the renders differ from the golden files (run scripts/regen_golden.py if the change "
                          "is intended):\n" + "\n".join(failures))


def test_golden_documents_cover_both_bases_a_job_and_a_run() -> None:
    docs = {name: json.loads((GOLDEN / f"{name}.json").read_text(encoding="utf-8")) for name in DOCUMENTS}
    assert all(d["schema"] == "perfkit.analysis/2" for d in docs.values())
    assert sorted(d["trace"]["time_basis"] for d in docs.values()).count("cpu") == 1
    assert sum(1 for d in docs.values() if len(d.get("ranks") or []) >= 2) == 1
    assert sum(1 for d in docs.values() if d.get("runtime")) >= 1


def test_golden_documents_upgraded_from_schema_1_equal_their_upgrade() -> None:
    """The stored documents that come from committed schema-1 documents are exactly their upgrade."""
    from perfkit.analysis.document import upgrade

    for name, (_what, source) in DOCUMENTS.items():
        if source.endswith("analysis.json"):
            original = json.loads((REPO / source).read_text(encoding="utf-8"))
            assert original["schema"] == "perfkit.analysis/1"
            assert json.loads((GOLDEN / f"{name}.json").read_text(encoding="utf-8")) == upgrade(original), name
