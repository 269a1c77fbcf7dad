"""Kernel-name table: real kernel names from public traces and kernel sources, with the category
of the work each kernel does (read from its name / source, not from perfkit's output).

tests/data/kernel_names.tsv: name, expected category, launching op (optional), source.
"""

from __future__ import annotations

import collections
import os

import pytest

from perfkit.analysis import rules
from perfkit.analysis.attribute import classify

TABLE = os.path.join(os.path.dirname(os.path.dirname(__file__)), "data", "kernel_names.tsv")


def _rows() -> list[tuple[str, str, str, str]]:
    rows = []
    with open(TABLE, encoding="utf-8") as f:
        header_seen = False
        for line in f:
            if line.startswith("#") or not line.strip():
                continue
            parts = line.rstrip("\n").split("\t")
            if not header_seen:
                assert parts == ["name", "expected", "op", "source"]
                header_seen = True
                continue
            assert len(parts) == 4, line[:80]
            rows.append((parts[0], parts[1], parts[2], parts[3]))
    return rows


ROWS = _rows()


def test_table_is_large_and_well_formed():
    assert len(ROWS) >= 150
    names = [r[0] for r in ROWS]
    assert len(set(names)) == len(names), "duplicate kernel names"
    for name, expected, _, source in ROWS:
        assert expected in rules.CATEGORIES, expected
        assert "/" in source.split()[0] and "@" in source.split()[0], source  # owner/name@commit path
    # Every category the rules can give is represented, and the families the rules must cover.
    counts = collections.Counter(r[1] for r in ROWS)
    for c in ("matmul", "attention", "convolution", "normalization", "elementwise", "reduction",
              "indexing", "copy", "communication", "other"):
        assert counts[c] >= 1, c


@pytest.mark.parametrize("name, expected, op, source", ROWS, ids=[f"{i}:{r[0][:50]}" for i, r in enumerate(ROWS)])
def test_kernel_name_category(name, expected, op, source):
    assert classify(name, op) == expected, f"{name[:120]} (from {source})"
