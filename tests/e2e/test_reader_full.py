"""tests/unit/test_reader.py's decoder agreement on the larger traces, and the fallback decoder over small
chunks in a process pool: the cases the unit suite leaves out (the same test functions)."""

from __future__ import annotations

from .._split import rest_of
from ..unit import test_reader as unit
from ..unit.test_reader import bf16_json  # noqa: F401  (the fixture)

test_c_scanner_and_msgspec_decoder_agree = rest_of(unit.test_c_scanner_and_msgspec_decoder_agree)
test_small_chunks_and_workers_give_identical_columns = rest_of(unit.test_small_chunks_and_workers_give_identical_columns)


def test_the_c_end_search_reads_every_public_trace_as_the_regular_expression_does(monkeypatch):
    """reader._close_brackets (the C scanner's memchr search for the events array's end) against the regular
    expression it replaced, on the public traces of other projects under tests/data: the same columns,
    metadata and warnings (tests/unit/test_reader_hostile.py checks generated buffers)."""
    import glob

    import numpy as np

    from perfkit.trace import read_trace, reader

    from ..conftest import REPO

    files = [f for f in sorted(glob.glob(str(REPO / "tests" / "data" / "traces" / "**" / "*.json*"), recursive=True))
             if not f.endswith("expected.json")]
    assert len(files) >= 40
    c_search = {f: read_trace(f, workers=0) for f in files}

    def regex_only(buf, lo, hi):
        for mt in reader._END.finditer(buf, lo, hi):
            yield mt.start(), mt.end()

    monkeypatch.setattr(reader, "_close_brackets", regex_only)
    for f in files:
        a, b = c_search[f], read_trace(f, workers=0)
        assert len(a) == len(b) > 0 and a.meta == b.meta and a.warnings == b.warnings, f
        for col in a.events:
            assert np.array_equal(a.events[col], b.events[col], equal_nan=a.events[col].dtype.kind == "f"), (f, col)
