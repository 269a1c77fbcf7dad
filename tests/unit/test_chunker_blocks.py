"""The gzip chunker holds the inflated blocks as a list and joins each chunk once (issue #15): its
cuts must be exactly those of the earlier chunker, which appended every block to one bytearray and
searched the last separator forward over the whole window. That chunker is kept here as the
reference and both run over generated streams (random events, separators with whitespace, braces
and commas inside strings, random block sizes), with small chunk, window and backward-search sizes
so that every path (a cut found in the first backward window, in the wide window, after the limit,
none: streamed) is taken."""

from __future__ import annotations

import json
import random
from typing import Any, Iterator, Optional

import pytest

from perfkit.trace import reader


class _ListSource(reader._Source):
    """A decompressed stream handed on in the given blocks."""

    def __init__(self, blocks: list[bytes]):
        self.path = "generated.json.gz"
        self._blocks = blocks

    def blocks(self) -> Iterator[bytes]:
        for b in self._blocks:
            self.bytes_seen += len(b)
            yield b

    def estimated_size(self) -> int:
        return sum(map(len, self._blocks))


def _reference_chunks(source: reader._Source, raw: reader._Raw, tally: Any) -> Iterator[Any]:
    """The chunker as it was before the block list (commit 35ff7cc), for comparison."""

    def last_separator(buf: bytearray, limit: int) -> Optional[int]:
        lo = max(0, limit - 4 * reader._WINDOW)
        last = None
        for mt in reader._SEP.finditer(buf, lo, limit + reader._WINDOW):
            last = mt
        if last is None:
            last = reader._SEP.search(buf, limit)
            if last is None:
                return None
        return last.start() + 1

    blocks = source.blocks()
    buf = bytearray()
    head_done = False
    offset = 0
    for block in blocks:
        buf += block
        raw.held(len(buf))
        if not head_done:
            start = reader._find_events_start(buf, source, raw)
            if start < 0:
                continue
            head_done = True
            del buf[:start]
            offset = start
        while len(buf) > reader.CHUNK_BYTES + reader._WINDOW:
            cut = last_separator(buf, reader.CHUNK_BYTES)
            if cut is None:
                raw.stats["streamed"] = 1
                yield from reader._Stream(source, raw, tally, offset).run(bytes(buf), blocks)
                return
            nxt = buf.index(b"{", cut)
            yield reader._Bytes(bytes(buf[:nxt]), offset)
            del buf[:nxt]
            offset += nxt
    assert head_done
    for piece in reader._final_chunks(bytes(buf), source, raw):
        yield reader._Bytes(piece, offset)


def _event(rng: random.Random) -> str:
    name = rng.choice(["aten::mm", "k}, {x", "},{", "a\\\"}, {\\\"b", "ProfilerStep#3", "x" * rng.randint(0, 300)])
    ev: dict[str, Any] = {"ph": "X", "name": name, "cat": rng.choice(["kernel", "cpu_op"]),
                          "pid": rng.randint(0, 3), "tid": rng.randint(0, 3),
                          "ts": rng.randint(0, 10**6), "dur": rng.randint(0, 1000)}
    if rng.random() < 0.3:
        ev["args"] = {"External id": rng.randint(0, 99), "nested": {"a": [1, {"b": "}, {"}]}}
    return json.dumps(ev, separators=rng.choice([(",", ":"), (", ", ": ")]))


def _stream(rng: random.Random) -> bytes:
    seps = [",", ", ", ",\n  ", " ,\n", "\n,\t"]
    parts = []
    for _ in range(rng.randint(1, 400)):
        parts.append(_event(rng))
        parts.append(rng.choice(seps))
        if rng.random() < 0.01:  # a long run of whitespace between two events
            parts.append(" " * rng.randint(500, 6000))
    parts.pop()
    head = rng.choice(['{"traceEvents": [', '{"schemaVersion": 1, "traceEvents":[\n', "["])
    tail = "]" if head == "[" else rng.choice(["]}", '],\n"displayTimeUnit": "ms"}'])
    return (head + "".join(parts) + tail).encode()


def _blocks(rng: random.Random, data: bytes) -> list[bytes]:
    out, pos = [], 0
    while pos < len(data):
        n = rng.choice([1, 7, 100, 1000, 3000, 8192, 20000])
        out.append(data[pos : pos + n])
        pos += n
    return out


def _run(chunker: Any, blocks: list[bytes]) -> tuple[list[tuple[int, bytes]], dict[str, Any], dict[str, int]]:
    raw = reader._Raw(meta={}, stats={})
    chunks = [(c.offset, bytes(c.data)) for c in chunker(_ListSource(blocks), raw, reader._Tally())]
    return chunks, raw.meta, raw.stats


@pytest.mark.parametrize("sizes", [(2048, 512, 256), (4096, 256, 64), (1024, 1024, 1 << 16)])
def test_cuts_match_the_bytearray_chunker(monkeypatch: pytest.MonkeyPatch, sizes: tuple[int, int, int]) -> None:
    chunk, window, back = sizes
    monkeypatch.setattr(reader, "CHUNK_BYTES", chunk)
    monkeypatch.setattr(reader, "_WINDOW", window)
    monkeypatch.setattr(reader._Pending, "BACK", back)
    rng = random.Random(15 + chunk)
    streamed = cut = 0
    for _ in range(60):
        data = _stream(rng)
        blocks = _blocks(rng, data)
        got = _run(reader._chunks, blocks)
        want = _run(_reference_chunks, blocks)
        assert got == want
        streamed += got[2].get("streamed", 0)
        cut += len(got[0]) > 1
    assert cut >= 20  # the generated streams do take the paths compared
    assert streamed >= 1


def test_a_chunk_is_one_copy_of_its_blocks() -> None:
    """take() hands back a block whole (no copy) when a chunk is exactly that block, else one join."""
    p = reader._Pending()
    a, b = b"0123456789", b"abcdefghij"
    p.add(a, 5)
    p.add(b)
    assert p.window(8, 12) == b"89ab" and p.window(0, 10) is a
    assert p.take(3) == b"012" and p.offset == 8 and p.size == 17
    assert p.take(9) == b"3456789ab" and p.take_all() == b"cdefghij" and p.size == 0
    p.add(b)
    assert p.take(10) is b
