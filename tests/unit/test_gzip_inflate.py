"""The gzip path of the reader (issue #15): ISA-L's inflate (python-isal, ``perfkit[fast]``) where it is
installed, zlib otherwise, with the same decompressed bytes and the same warnings either way."""

from __future__ import annotations

import gzip
import random
import sys
import zlib
from pathlib import Path

import pytest

from perfkit.trace import read_trace, reader

from .. import _split

REPO = Path(__file__).resolve().parents[2]
GZ_TRACES = sorted((REPO / "tests" / "data" / "traces").rglob("*.json.gz"))


def inflated(path: Path) -> tuple[bytes, int, str | None]:
    """(the reader's decompressed stream, its bytes_seen, its problem) for one file."""
    src = reader._GzipSource(str(path))
    data = b"".join(src.blocks())
    return data, src.bytes_seen, src.problem


@pytest.fixture
def no_isal(monkeypatch: pytest.MonkeyPatch) -> None:
    """``import isal`` fails, as where python-isal is not installed."""
    monkeypatch.setitem(sys.modules, "isal", None)
    monkeypatch.setitem(sys.modules, "isal.isal_zlib", None)


def test_isal_is_used_where_installed() -> None:
    """The dev environment has python-isal (the ``dev`` extra): the fast path is the one tested below."""
    lib = reader._fast_zlib()
    assert lib is not None and lib.__name__.endswith("isal_zlib")


def test_fallback_without_isal(no_isal: None) -> None:
    assert reader._fast_zlib() is None
    path = GZ_TRACES[0]
    data, seen, problem = inflated(path)
    assert data == gzip.decompress(path.read_bytes()) and seen == len(data) and problem is None


def test_no_isal_switch(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PERFKIT_NO_ISAL", "1")
    assert reader._fast_zlib() is None


#: the committed traces under 100 kB are inflated here; tests/e2e/test_gzip_inflate_full.py inflates the others
UNIT_GZ_TRACES = [p for p in GZ_TRACES if p.stat().st_size < 100_000]


def _rel(path: Path) -> str:
    return str(path.relative_to(REPO / "tests" / "data" / "traces"))


def test_the_committed_traces_are_many() -> None:
    assert len(GZ_TRACES) >= 20 and UNIT_GZ_TRACES


@_split.cases("path", GZ_TRACES, UNIT_GZ_TRACES, ids=_rel)
def test_committed_traces_inflate_to_the_same_bytes(monkeypatch: pytest.MonkeyPatch, path: Path) -> None:
    """Every committed .json.gz: ISA-L, zlib (isal hidden) and the standard library's gzip agree byte for byte."""
    expected = gzip.decompress(path.read_bytes())
    fast = inflated(path)
    with monkeypatch.context() as mp:
        mp.setitem(sys.modules, "isal", None)
        slow = inflated(path)
    assert fast == slow == (expected, len(expected), None), path


def _damaged(data: bytes, rng: random.Random) -> bytes:
    kind = rng.choice(["flip", "flip", "cut", "cut_flip", "garbage_member", "second_doc", "zero_run"])
    b = bytearray(data)
    if kind in ("flip", "cut_flip"):
        for _ in range(rng.choice([1, 2, 5])):
            p = rng.randrange(10, len(b))  # past the header: the header's damage is a different path
            b[p] ^= 1 << rng.randrange(8)
    if kind in ("cut", "cut_flip"):
        b = b[: rng.randrange(20, len(b))]
    if kind == "zero_run":
        p = rng.randrange(10, len(b) - 64)
        b[p : p + 64] = bytes(64)
    if kind == "garbage_member":  # a second member whose body is not deflate data
        b += gzip.compress(b"x" * 100)[:10] + bytes(rng.randrange(256) for _ in range(50))
    if kind == "second_doc":
        b += gzip.compress(b'{"traceEvents":[]}')
    return bytes(b)


def test_damaged_gzip_same_bytes_and_warning(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Bit flips, cuts, zeroed runs, garbage members, a second document (fixed seed): with ISA-L the
    reader hands on the same bytes and words the same problem as with zlib (zlib's message)."""
    rng = random.Random(15)
    sources = [p.read_bytes() for p in GZ_TRACES[:6]]
    kinds_of_problem = set()
    for i in range(60):
        path = tmp_path / f"d{i}.json.gz"
        path.write_bytes(_damaged(rng.choice(sources), rng))
        fast = inflated(path)
        with monkeypatch.context() as mp:
            mp.setitem(sys.modules, "isal", None)
            slow = inflated(path)
        assert fast == slow, (i, fast[1:], slow[1:])
        kinds_of_problem.add((slow[2] or "none").split(" (")[0])
    # the cases reach the corrupt, truncated and second-document paths (and some read clean)
    assert {"gzip data is corrupt", "gzip stream ends early", "a second gzip member holds another JSON document"} <= kinds_of_problem


def test_corrupt_gzip_warning_is_zlibs_wording(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A flipped bit in the CRC: the read keeps the blocks inflated before the check, with zlib's message."""
    monkeypatch.setattr(reader, "CHUNK_BYTES", 256 * 1024)  # several inflate calls before the last
    raw = b'{"traceEvents":[' + b",".join(
        b'{"ph":"X","name":"k%d","pid":0,"tid":1,"ts":%d,"dur":1}' % (i, i) for i in range(50_000)) + b"]}"
    gz = zlib.compressobj(6, zlib.DEFLATED, 31)  # (zlib.compress takes wbits from Python 3.11 only)
    comp = bytearray(gz.compress(raw) + gz.flush())
    comp[-6] ^= 0x10  # the CRC: every event comes out before the check fails
    path = tmp_path / "c.json.gz"
    path.write_bytes(bytes(comp))
    trace = read_trace(str(path))
    assert any("gzip data is corrupt (Error -3 while decompressing data" in w for w in trace.warnings), trace.warnings
    assert 1000 < len(trace) < 50_000
