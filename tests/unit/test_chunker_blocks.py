"""The gzip chunker (issue #15) cuts each inflated block in place: the events of a block up to
its last separator are handed on as a view of the block, and only the event across two blocks is
joined; an event or a gap longer than a block falls back to joining at a limit, and a gap longer
than a chunk to the streaming split. The chunker before (commit 35ff7cc: every block appended to
one bytearray, the last separator searched forward over the whole window) is kept here as the
reference: over generated streams (random events, separators with whitespace, braces and commas
inside strings, random block sizes, small chunk, window and backward-search sizes so that every
path is taken) both must hand on the same events (decoded and compared), the new cuts must tile
the stream at separators, and the big chunks must be views, not copies."""

from __future__ import annotations

import json
import random
from typing import Any, Iterator, Optional

import pytest

from perfkit.trace import model as m
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
    data = bytes(buf)
    for piece in reader._final_chunks(data, 0, len(data), source, raw):
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


def _run(chunker: Any, blocks: list[bytes]) -> tuple[list[Any], dict[str, Any], dict[str, int]]:
    raw = reader._Raw(meta={}, stats={})
    chunks = list(chunker(_ListSource(blocks), raw, reader._Tally()))
    return chunks, raw.meta, raw.stats


def _events(chunks: list[Any]) -> tuple[list[tuple[Any, ...]], int]:
    """The events the chunks decode to (name, ts, dur, pid, tid), in order, and the undecodable count."""
    tally = reader._Tally()
    results = reader._decode_all(iter(chunks), None, 0, None, tally)
    trace = reader._assemble("generated.json.gz", reader._Raw(meta={}), results, 0)
    ev = trace.events
    rows = zip(*(ev[c].tolist() for c in (m.NAME, m.TS, m.DUR, m.PID, m.TID)))
    return [(trace.names[n], ts, dur, pid, tid) for n, ts, dur, pid, tid in rows], tally.events


@pytest.mark.parametrize("sizes", [(2048, 512, 256), (4096, 256, 64), (1024, 1024, 1 << 16)])
def test_cuts_in_place_hand_on_the_same_events(monkeypatch: pytest.MonkeyPatch, sizes: tuple[int, int, int]) -> None:
    chunk, window, back = sizes
    monkeypatch.setattr(reader, "CHUNK_BYTES", chunk)
    monkeypatch.setattr(reader, "_WINDOW", window)
    monkeypatch.setattr(reader._Pending, "BACK", back)
    rng = random.Random(15 + chunk)
    streamed = several = views = 0
    for _ in range(60):
        data = _stream(rng)
        blocks = _blocks(rng, data)
        got, meta, stats = _run(reader._chunks, blocks)
        want, want_meta, want_stats = _run(_reference_chunks, blocks)
        assert meta == want_meta
        assert _events(got) == _events(want)
        assert stats["max_buffer_bytes"] <= want_stats["max_buffer_bytes"] + max(map(len, blocks))
        streamed += stats.get("streamed", 0)
        several += len(got) > 1
        if not stats.get("streamed") and not want_stats.get("streamed"):
            # the chunks tile the events, each cut just before the "{" that ends a separator
            joined = b"".join(bytes(c.data) for c in got)
            assert joined == b"".join(bytes(c.data) for c in want)
            for a, b in zip(got, got[1:]):
                assert b.offset == a.offset + len(a.data)
                assert reader._SEP.search(data[: b.offset + 1][-(len(a.data) + 1):]) is not None
                assert data[b.offset : b.offset + 1] == b"{"
        views += sum(isinstance(c.data, memoryview) and any(c.data.obj is b for b in blocks) for c in got)
    assert several >= 20 and streamed >= 1  # the generated streams do take the paths compared
    assert views >= 20  # chunks handed on as views of the blocks, not copies


def test_a_block_is_cut_in_place_and_only_the_event_across_blocks_is_joined() -> None:
    a = b'{"a":1},{"b":2},{"c":'
    b = b'3},{"d":4},{"e":5}'
    p = reader._Pending()
    p.BACK = 64
    p.add(a, 100)
    p.add(b)
    cuts = list(p.cut_in_place(hold=4))
    assert [(bytes(c.data), c.offset) for c in cuts] == [(b'{"a":1},{"b":2},', 100), (b'{"c":3},', 116)]
    assert isinstance(cuts[0].data, memoryview) and cuts[0].data.obj is a  # a view: no copy
    assert p.offset == 124 and p.size == len(b) - 3 and bytes(p.take_all()) == b'{"d":4},{"e":5}'
    # fewer than ``hold`` bytes after the first block: nothing is cut (the array's end stays held)
    p = reader._Pending()
    p.add(a, 0)
    p.add(b)
    assert list(p.cut_in_place(hold=len(b) + 1)) == []
    # no separator in the block's last BACK bytes (a long event): left to the joining path
    p = reader._Pending()
    p.BACK = 8
    p.add(b'{"a":1},{"x":"' + b"y" * 40 + b'"}', 0)
    p.add(b',{"z":1}' + b" " * 20)
    assert list(p.cut_in_place(hold=4)) == []


def test_a_chunk_is_one_copy_of_its_blocks() -> None:
    """take() hands back a view when a chunk lies in one block, else one join."""
    p = reader._Pending()
    a, b = b"0123456789", b"abcdefghij"
    p.add(a, 5)
    p.add(b)
    assert p.window(8, 12) == b"89ab" and p.window(0, 10) is a
    three = p.take(3)
    assert three == b"012" and isinstance(three, memoryview) and three.obj is a
    assert p.offset == 8 and p.size == 17
    assert p.take(9) == b"3456789ab" and p.take_all() == b"cdefghij" and p.size == 0
    p.add(b)
    assert p.take(10) is b


def _event_bytes(i: int, name: str) -> bytes:
    return json.dumps({"ph": "X", "name": name, "cat": "kernel", "pid": 0, "tid": 1, "ts": i, "dur": 1}).encode()


def test_an_event_cut_twice_inside_its_strings_is_joined_across_three_chunks() -> None:
    """Chunks of one event's middle (a cut inside a string, then another one): the unfinished event
    is carried on until it decodes, not counted as undecodable."""
    middle = _event_bytes(1, "a}, {b}, {c")
    first, second = middle.index(b"{b"), middle.index(b"{c")
    stream = _event_bytes(0, "x") + b", " + middle + b", " + _event_bytes(2, "y")
    lo = len(_event_bytes(0, "x")) + 2
    cuts = [0, lo + first, lo + second, len(stream)]
    chunks = [reader._Bytes(stream[a:b], a) for a, b in zip(cuts, cuts[1:])]
    assert [reader.decode_or_none(c) is None for c in chunks] == [True, True, True]  # each fails alone
    events, bad = _events(chunks)
    assert bad == 0 and [(name, ts) for name, ts, *_ in events] == [("x", 0), ("a}, {b}, {c", 1), ("y", 2)]


def test_a_carried_event_longer_than_a_chunk_is_undecodable(monkeypatch: pytest.MonkeyPatch) -> None:
    """The carry is bounded (each byte decoded a bounded number of times): an unfinished event
    that has grown past CHUNK_BYTES is not decoded (its pieces are counted as undecodable regions),
    and the events after it are kept."""
    monkeypatch.setattr(reader, "CHUNK_BYTES", 64)
    long = _event_bytes(1, "a}, {" + "b" * 100 + "}, {c")
    first, second = long.index(b"{b"), long.index(b"{c")
    stream = long + b", " + _event_bytes(2, "y")
    cuts = [0, first, second, len(stream)]
    chunks = [reader._Bytes(stream[a:b], a) for a, b in zip(cuts, cuts[1:])]
    events, bad = _events(chunks)
    assert bad >= 1 and [(name, ts) for name, ts, *_ in events] == [("y", 2)]
