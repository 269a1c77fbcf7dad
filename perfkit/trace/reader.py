"""Read a Kineto / Chrome trace file into a :class:`~perfkit.trace.model.Trace`.

The file is never held in memory whole. It is cut into chunks of complete event
objects (at ``}, {`` separators between events), each chunk is decoded into
columns by :func:`perfkit.trace.decode.decode_chunk` (on several threads for
large files, or worker processes without the C scanner; a plain file's chunks
are read in place through a memory map), and the columns are concatenated. A separator that
happens to lie inside a string value is harmless: the chunk then fails to
decode and is merged with its neighbour.

A file that ends early (a job killed while writing) yields the events that were
complete plus a warning; a file that is not a trace raises
:class:`~perfkit.errors.TraceFormatError` naming the file and the problem.
"""

from __future__ import annotations

import functools
import json
import mmap
import os
import re
import sys
import zlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Iterator, Optional, Union

import numpy as np

from .._io import regular_file
from ..cpus import available as available_cpus
from ..errors import TraceFormatError
from . import model as m
from . import decode as decode_mod
from .decode import ChunkError, decode_chunk, read_range

if TYPE_CHECKING:
    from concurrent.futures import Executor

    from ..threads import Pool

#: Target bytes of JSON per chunk handed to one decode call.
CHUNK_BYTES = 8 * 1024 * 1024
#: Bytes of JSON per inflate call (at most CHUNK_BYTES). Each such block is cut in place into a
#: chunk (:meth:`_Pending.cut_in_place`): smaller blocks start the decode threads sooner and let
#: the allocator hand a decoded block's memory to the next one. 54 MB anchor trace on 2 CPUs, the
#: read's wall time over 5 runs: 72-76 ms with 4 MB blocks, 70-84 with 2 MB, 78-88 with 8 MB.
INFLATE_BLOCK_BYTES = 4 * 1024 * 1024
#: Files at least this large (uncompressed, estimated) are decoded on several threads (processes without the C scanner).
PARALLEL_MIN_BYTES = 48 * 1024 * 1024
_WINDOW = 1024 * 1024
_SEP = re.compile(rb"\}\s*,\s*\{")
_END = re.compile(rb"\}\s*\]")
_EVENTS_KEY = re.compile(rb'"traceEvents"\s*:\s*\[')


@dataclass
class _Raw:
    """What the byte-level pass found: metadata and where the events are."""

    meta: dict[str, Any]
    truncated: Optional[str] = None
    stats: dict[str, int] = field(default_factory=dict)

    def held(self, nbytes: int) -> None:
        """Record a buffer size the chunker held (``stats["max_buffer_bytes"]``)."""
        if nbytes > self.stats.get("max_buffer_bytes", 0):
            self.stats["max_buffer_bytes"] = nbytes


def read_trace(path: str, *, workers: Optional[int] = None, stats: Optional[dict[str, int]] = None) -> m.Trace:
    """Load a ``.json`` or ``.json.gz`` Kineto trace.

    Args:
        path: the trace file.
        workers: decode processes to use; defaults to the CPU count for large
            files and 0 (in-process) for small ones.
        stats: if given, filled with what the reader did: ``max_buffer_bytes``
            (the most bytes the chunker held at once), ``streamed`` (1 if the
            streaming path ran), ``malformed_events``.

    Raises:
        TraceFormatError: the file is missing, unreadable, not a regular file or
            not a trace, or no event in it could be decoded.
    """
    _check_regular(path)
    try:
        return _read(path, workers, stats if stats is not None else {})
    except OSError as exc:  # unreadable, or an I/O error while reading: one line naming the file
        raise TraceFormatError(f"{path}: cannot read ({exc.strerror or exc})") from None


def _check_regular(path: str) -> None:
    """Refuse what is not a regular file before opening it (a FIFO would block in open())."""
    regular_file(path, "trace file", TraceFormatError)


def _read(path: str, workers: Optional[int], stats: dict[str, int]) -> m.Trace:
    with open(path, "rb") as f:
        magic = f.read(2)
    source: _Source = _GzipSource(path) if magic == b"\x1f\x8b" else _FileSource(path)
    est = source.estimated_size()
    _tune_malloc(est)
    if workers is None:
        workers = min(available_cpus(), 8) if est >= PARALLEL_MIN_BYTES else 0
    raw = _Raw(meta={}, stats=stats)
    stats.setdefault("max_buffer_bytes", 0)
    stats.setdefault("streamed", 0)
    tally = _Tally()
    chunks: Iterator[Any]
    if isinstance(source, _FileSource):
        chunks = _expand_ranges(_plan_file(source, raw), source, raw, tally)
    else:
        chunks = _chunks(source, raw, tally)
    results: list[dict[str, Any]] = []
    if decode_mod._scan is not None and (workers > 1 or isinstance(source, _FileSource)):
        # The C scanner releases the GIL: threads share the columns without
        # pickling them between processes. It reads the chunks of a plain file
        # straight from the page cache through a memory map (no read buffers to
        # allocate, fault in and copy into).
        from ..threads import Pool

        with _FileMap(source) as fmap:
            if workers > 1:
                with Pool(workers) as tpool:
                    results = _decode_all(chunks, tpool, workers, fmap.decode_or_none, tally)
            else:
                results = _decode_all(chunks, None, 0, fmap.decode_or_none, tally)
    elif workers > 1:  # no C scanner: the msgspec decoder holds the GIL, so processes
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor

        ctx = mp.get_context("fork") if "fork" in mp.get_all_start_methods() else None
        with ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as pool:
            # Start the workers now, while this process is small: forked later they
            # would share (and count) whatever buffers the reader holds by then.
            for started in [pool.submit(os.getpid) for _ in range(workers)]:
                started.result()
            results = _decode_all(chunks, pool, workers, None, tally)
    else:
        results = _decode_all(chunks, None, 0, None, tally)
    trace = _assemble(path, raw, results, source.bytes_seen)
    stats["malformed_events"] = tally.events
    if tally.events:
        trace.warnings.insert(0, (
            f"{path}: {tally.events} event{'s' if tally.events != 1 else ''} could not be decoded "
            f"(malformed JSON, {tally.bytes:,} bytes skipped), first at byte {tally.first:,}; analysed the rest"))
    if raw.truncated:
        trace.warnings.insert(0, raw.truncated)
    if source.problem:
        trace.warnings.insert(0, f"{path}: {source.problem}")
    if tally.events and len(trace) == 0 and not len(trace.memory[m.MEM_TS]) and not any(
            k.startswith("ph:") for k in trace.counts):
        raise TraceFormatError(
            f"{path}: no event could be decoded ({tally.events} malformed, first at byte {tally.first:,})")
    from .samples import attach

    attach(trace)  # Python stack samples beside the trace, if any (never fails the read)
    return trace


class _Tally:
    """Undecodable regions skipped: how many, their bytes, and the file offset of the first."""

    def __init__(self) -> None:
        self.events = 0
        self.bytes = 0
        self.first = -1

    def add(self, offset: int, nbytes: int) -> None:
        self.events += 1
        self.bytes += nbytes
        if self.first < 0 or offset < self.first:
            self.first = offset


# --------------------------------------------------------------------------- sources


class _Source:
    """Sequential blocks of the (decompressed) file."""

    problem: Optional[str] = None
    bytes_seen: int = 0

    def blocks(self) -> Iterator[bytes]:
        raise NotImplementedError

    def estimated_size(self) -> int:
        raise NotImplementedError


class _FileSource(_Source):
    def __init__(self, path: str):
        self.path = path

    def estimated_size(self) -> int:
        return os.path.getsize(self.path)

    def blocks(self) -> Iterator[bytes]:
        with open(self.path, "rb", buffering=0) as f:
            while True:
                block = f.read(CHUNK_BYTES)
                if not block:
                    return
                self.bytes_seen += len(block)
                yield block


class _GzipSource(_Source):
    def __init__(self, path: str):
        self.path = path

    def estimated_size(self) -> int:
        # gzip stores the uncompressed size mod 2**32 in the last 4 bytes.
        size = os.path.getsize(self.path)
        try:
            with open(self.path, "rb") as f:
                f.seek(max(size - 4, 0))
                isize = int.from_bytes(f.read(4), "little")
        except OSError:
            isize = 0
        return max(isize, size * 10)

    def blocks(self) -> Iterator[bytes]:
        """The decompressed stream; gzip members follow one another as ``zcat`` joins them, except
        that a member starting a second JSON document (``{`` or ``[`` right after the ``}``/``]``
        that ended the text so far, which one document never holds) ends the read with a warning:
        only the first document is analysed (two traces are two runs; merge them with ``perfkit merge``).

        Inflated by ISA-L (python-isal, ``perfkit[fast]``) where it is installed, else by zlib: the
        same bytes either way. On corrupt or cut data the read goes on with zlib from the byte
        reached, so the bytes kept and the warning are zlib's whichever library is installed."""
        fast = _fast_zlib()
        if fast is None:
            yield from self._inflate(zlib)
            return
        done = 0
        try:
            for out in self._inflate(fast):
                done += len(out)
                yield out
            return
        except (fast.error, _Redo):
            pass
        # Corrupt or cut data: inflate again with zlib, skipping what was already handed on (the
        # libraries decode the same bytes before the damage), for zlib's bytes and message.
        self.bytes_seen, self.problem = 0, None
        for out in self._inflate(zlib):
            if done >= len(out):
                done -= len(out)
                continue
            yield out[done:] if done else out
            done = 0

    def _inflate(self, lib: Any) -> Iterator[bytes]:
        """The stream inflated by ``lib`` (:mod:`zlib` or ``isal.isal_zlib``, the same interface).
        zlib's errors end the read with a warning; another library's propagate (see :meth:`blocks`)."""
        d = lib.decompressobj(wbits=47)
        last = b""  # the last non-whitespace byte produced so far
        member_start = False
        with open(self.path, "rb", buffering=0) as f:
            while True:
                comp = f.read(1024 * 1024)
                if not comp:
                    break
                while comp:
                    # Bounded output per call: traces compress ~20x, so one
                    # input block could otherwise expand into the whole file.
                    try:
                        out = d.decompress(comp, min(CHUNK_BYTES, INFLATE_BLOCK_BYTES))
                    except zlib.error as exc:
                        self.problem = f"gzip data is corrupt ({exc}); kept what decompressed before it"
                        return
                    if out:
                        if member_start:
                            head = out.lstrip(b" \t\r\n")
                            if head:
                                member_start = False
                                if head[:1] in (b"{", b"[") and last in (b"}", b"]"):
                                    self.problem = (
                                        f"a second gzip member holds another JSON document (from byte {self.bytes_seen:,} "
                                        "of the decompressed stream); read the first document only")
                                    return
                        tail = out[-64:].rstrip(b" \t\r\n")  # not a copy of the whole block
                        if not tail:
                            tail = out.rstrip(b" \t\r\n")
                        if tail:
                            last = tail[-1:]
                        self.bytes_seen += len(out)
                        yield out
                    comp = d.unconsumed_tail
                    if d.eof and d.unused_data:  # concatenated gzip members
                        comp = d.unused_data
                        d = lib.decompressobj(wbits=47)
                        member_start = True
            if not d.eof:
                if lib is not zlib:  # ISA-L keeps back the last bytes of a cut stream: zlib gives them
                    raise _Redo()
                self.problem = "gzip stream ends early (file truncated); kept what decompressed"
            tail_out = d.flush()
            if tail_out:
                self.bytes_seen += len(tail_out)
                yield tail_out


class _Redo(Exception):
    """The fast inflate reached a cut stream: zlib reads it again (:meth:`_GzipSource.blocks`)."""


def _fast_zlib() -> Any:
    """``isal.isal_zlib`` (ISA-L's inflate, zlib's interface, 3-4x faster) if installed, else None.
    ``PERFKIT_NO_ISAL=1`` forces zlib (for comparisons)."""
    if os.environ.get("PERFKIT_NO_ISAL") == "1":
        return None
    try:
        from isal import isal_zlib
    except ImportError:
        return None
    return isal_zlib


# --------------------------------------------------------------------------- chunking


def _chunks(source: _Source, raw: _Raw, tally: "_Tally") -> Iterator[Any]:
    """Yield chunks of complete, comma-separated event objects; fill ``raw.meta``.

    The buffer is cut at the last event separator before ``CHUNK_BYTES``. If
    none follows the limit (one event larger than a chunk, or a run of
    whitespace between two events, as in a gzip bomb), the rest of the stream
    goes through :class:`_Stream`, which holds at most a chunk plus the event
    being read and drops what lies between events: time stays linear in the
    input and memory bounded by ``CHUNK_BYTES`` + the largest event.

    The inflated blocks are held as they come (:class:`_Pending`, no copy into one growing
    buffer); each chunk is joined from them once.
    """
    blocks = source.blocks()
    buf = bytearray()  # the head, until the events array is found
    pending = _Pending()
    for block in blocks:
        if buf:
            buf += block
        head: Union[bytes, bytearray] = buf if buf else block  # usually the first block alone
        raw.held(len(head))
        start = _find_events_start(head, source, raw)
        if start < 0:
            if len(head) > 64 * _WINDOW:
                raise TraceFormatError(f"{source.path}: no traceEvents array in the first 64 MB")  # type: ignore[attr-defined]
            if not buf:
                buf += block
            continue
        if head is block:  # the events array opens in the first block: kept whole, no copy
            pending.add(block, start, head=start)
        else:
            pending.add(bytes(memoryview(buf)[start:]), start)
        buf = bytearray()
        break
    else:
        text = bytes(buf[:200]).strip()
        if not text:
            raise TraceFormatError(f"{source.path}: file is empty")  # type: ignore[attr-defined]
        raise TraceFormatError(f"{source.path}: not a Kineto/Chrome trace (no traceEvents array)")  # type: ignore[attr-defined]
    while True:
        yield from pending.cut_in_place(hold=_WINDOW)
        while pending.size > CHUNK_BYTES + _WINDOW:  # an event or a gap longer than a block: join
            nxt = pending.next_cut(CHUNK_BYTES)
            if nxt is None:  # no separator after the limit: stream the rest
                raw.stats["streamed"] = 1
                yield from _Stream(source, raw, tally, pending.offset).run(pending.take_all(), blocks)
                return
            offset = pending.offset
            # keeps the separator: chunks concatenate to the original bytes
            yield _Bytes(pending.take(nxt), offset)
        more = next(blocks, None)
        if more is None:
            break
        pending.add(more)
        raw.held(pending.size)
    offset = pending.offset
    for piece in _final_chunks(*pending.take_all_span(), source, raw):
        yield _Bytes(piece, offset)


class _Pending:
    """The inflated blocks not yet cut into chunks, in order, with the stream offset of the first
    byte held. Searches look at small joined windows; a chunk is joined from its blocks once."""

    #: Bytes of the first window searched backwards for the last separator before a limit.
    BACK = 64 * 1024

    def __init__(self) -> None:
        self.blocks: list[bytes] = []
        self.head = 0  # bytes of blocks[0] already taken
        self.size = 0  # bytes held, from blocks[0][head:]
        self.offset = 0

    def add(self, block: bytes, offset: Optional[int] = None, head: int = 0) -> None:
        """Hold ``block`` (from its byte ``head`` on, for the first block); ``offset``: the stream
        offset of the first byte held."""
        if offset is not None:
            self.offset = offset
        if len(block) > head:
            if not self.blocks:
                self.head = head
            self.blocks.append(block)
            self.size += len(block) - head

    def cut_in_place(self, hold: int) -> Iterator["_Bytes"]:
        """Chunks cut without copying the blocks, while more than ``hold`` bytes follow the first
        block (the end of the events array, read by :func:`_final_chunks`, stays held).

        The events of the first block up to its last separator are handed on as a view of the
        block; only the event across the block's end is joined with the next block's start (a copy
        of about one event). A cut is made only where the event before it decodes alone
        (:func:`_one_event`): a separator inside a string is not taken. Stops where a block holds
        no such separator in its last :attr:`BACK` bytes (an event or a gap longer than that, or
        strings full of separators): :meth:`next_cut` cuts there, joining."""
        while len(self.blocks) >= 2 and self.size - (len(self.blocks[0]) - self.head) >= hold:
            block, head = self.blocks[0], self.head
            seps = list(_SEP.finditer(block, max(head, len(block) - self.BACK)))
            for i in range(len(seps) - 1, max(len(seps) - 1 - _CUT_TRIES, 0), -1):
                if _one_event(memoryview(block)[seps[i - 1].end() - 1 : seps[i].start() + 1]):
                    cut = seps[i].end() - 1  # the "{" after the separator
                    yield _Bytes(memoryview(block)[head:cut], self.offset)
                    self.head = cut
                    self.size -= cut - head
                    self.offset += cut - head
                    break
            rest = len(block) - self.head
            if rest > self.BACK:
                return
            # the event across the block's end: up to the first separator after it that checks out
            text = self.window(0, rest + self.BACK)
            for k, mt in enumerate(_SEP.finditer(text)):
                if k == _CUT_TRIES:
                    return
                if mt.end() > rest and _one_event(memoryview(text)[: mt.start() + 1]):
                    offset = self.offset
                    yield _Bytes(self.take(mt.end() - 1), offset)
                    break
            else:
                return

    def window(self, lo: int, hi: int) -> bytes:
        """Bytes [lo, hi) of what is held (clamped to it)."""
        hi = min(hi, self.size)
        parts: list[tuple[bytes, int, int]] = []  # (block, from, to)
        pos = -self.head  # position of the current block's first byte, relative to what is held
        for b in self.blocks:
            end = pos + len(b)
            if end > lo and pos < hi:
                parts.append((b, max(lo - pos, 0), min(hi - pos, len(b))))
            if end >= hi:
                break
            pos = end
        if len(parts) == 1 and parts[0][1] == 0 and parts[0][2] == len(parts[0][0]):
            return parts[0][0]
        views = [memoryview(b)[a:z] for b, a, z in parts]
        return b"".join(views)

    def next_cut(self, limit: int) -> Optional[int]:
        """Index of the ``{`` that follows the last event separator starting before
        ``limit + _WINDOW`` (and at or after ``limit - 4 * _WINDOW``), else after the first one from
        ``limit``; None if there is none. The same cut as searching the whole buffer forward:
        separators cannot overlap, so the last one in a window ending at the same place is the
        last one overall, when the window holds one."""
        hi = limit + _WINDOW
        lo = max(0, limit - 4 * _WINDOW)
        for w_lo in (max(lo, hi - self.BACK), lo):
            text = self.window(w_lo, hi)
            last = None
            for last in _SEP.finditer(text, 0, hi - w_lo):
                pass
            if last is not None:
                return w_lo + text.index(b"{", last.start() + 1)
            if w_lo == lo:
                break
        text = self.window(limit, self.size)
        mt = _SEP.search(text)
        if mt is None:
            return None
        return limit + text.index(b"{", mt.start() + 1)

    def take(self, n: int) -> Union[bytes, memoryview]:
        """The first ``n`` bytes held, removed: a view when they lie in one block, else one copy."""
        out: list[Union[bytes, memoryview]] = []
        need = n
        while need:
            b = self.blocks[0]
            avail = len(b) - self.head
            with memoryview(b) as v:
                if avail <= need:
                    out.append(v[self.head :] if self.head else b)
                    self.blocks.pop(0)
                    self.head = 0
                    need -= avail
                else:
                    out.append(v[self.head : self.head + need])
                    self.head += need
                    need = 0
        self.size -= n
        self.offset += n
        return out[0] if len(out) == 1 else b"".join(out)  # one block's bytes: no copy

    def take_all(self) -> Union[bytes, memoryview]:
        return self.take(self.size)

    def take_all_span(self) -> tuple[bytes, int, int]:
        """Everything held, removed, as (buffer, start, end): the block itself when it is one block."""
        if len(self.blocks) == 1:
            block, head = self.blocks[0], self.head
            self.blocks, self.head, self.offset, self.size = [], 0, self.offset + self.size, 0
            return block, head, len(block)
        data = bytes(self.take_all())
        return data, 0, len(data)


#: Separators tried per cut by :meth:`_Pending.cut_in_place` before it leaves the cut to the joining path.
_CUT_TRIES = 8


def _one_event(piece: Any) -> bool:
    """Does ``piece``, the bytes between two separators, decode as an event? A separator matched
    inside a string leaves a piece that does not: a string holds no unescaped quote, and the piece
    must hold one. (Pieces are small: at most two backward windows.)"""
    piece = bytes(piece)
    if b'"' not in piece:
        return False
    try:
        if decode_mod._scan is not None:
            decode_mod._scan.scan(piece, 1)
        else:
            decode_chunk(piece)
    except (ValueError, ChunkError):
        return False
    return True


@dataclass
class _Bytes:
    """A chunk held in memory (bytes, or a view of an inflated block), with the stream offset of
    its first byte."""

    data: Union[bytes, memoryview]
    offset: int

    def __reduce__(self) -> tuple[Any, tuple[bytes, int]]:  # to a decode process: the bytes, not a view
        return (_Bytes, (bytes(self.data), self.offset))


#: An event larger than this is skipped (counted as undecodable) by the streaming path.
MAX_EVENT_BYTES = 512 * 1024 * 1024


class _Stream:
    """String-aware streaming split of events (numpy over each block, state carried between blocks).

    Emits chunks of whole events joined by commas; whitespace and commas between
    events are dropped, anything else there is counted as undecodable. Ends at
    the ``]`` that closes the events array (the metadata keys after it are
    read) or at the end of the stream (a truncated trace).
    """

    def __init__(self, source: _Source, raw: _Raw, tally: "_Tally", offset: int):
        self.source, self.raw, self.tally = source, raw, tally
        self.offset = offset  # stream offset of the next byte fed
        self.in_str = False
        self.backslashes = 0  # backslashes ending the previous block (inside a string)
        self.depth = 0
        self.event = bytearray()  # the event being read (depth > 0 at the block's end)
        self.event_at = -1
        self.out = bytearray()  # complete events, comma-terminated
        self.out_at = -1
        self.tail: Optional[bytearray] = None  # after the closing "]"
        self.skipping = False  # inside an event beyond MAX_EVENT_BYTES: dropped

    def run(self, held: Union[bytes, memoryview], blocks: Iterator[bytes]) -> Iterator[_Bytes]:
        """Feed ``held`` (the bytes the chunker had not cut yet), then the rest of ``blocks``."""
        yield from self.feed(held)
        del held
        for block in blocks:
            yield from self.feed(block)
        yield from self.finish()

    #: Bytes per vectorised step (bounds the numpy temporaries: ~40 bytes per input byte).
    STEP = 1 << 20

    def feed(self, block: Union[bytes, memoryview]) -> Iterator[_Bytes]:
        view = memoryview(block)
        for i in range(0, len(block), self.STEP):
            piece = view[i : i + self.STEP]
            if not self.in_str and self.tail is None and not bytes(piece).strip(b" \t\r\n"):
                self.offset += len(piece)  # whitespace outside strings: nothing to keep, state unchanged
                continue
            yield from self._feed(bytes(piece))

    def _feed(self, block: bytes) -> Iterator[_Bytes]:
        base = self.offset
        self.offset += len(block)
        if self.tail is not None:
            if len(self.tail) < 64 * _WINDOW:
                self.tail += block[: 64 * _WINDOW]
            return
        b = np.frombuffer(block, np.uint8)
        n = len(b)
        if n == 0:
            return
        idx = np.arange(n, dtype=np.int32)
        # quotes not escaped by an odd run of backslashes (runs may start in the previous block)
        is_bs = b == 92
        last_other = np.maximum.accumulate(np.where(is_bs, -1, idx))
        quotes = np.flatnonzero(b == 34)
        before = quotes - 1
        run = np.where(before >= 0, before - last_other[np.maximum(before, 0)], 0)
        run = np.where((before >= 0) & (last_other[np.maximum(before, 0)] < 0), run + self.backslashes, run)
        run = np.where(before < 0, self.backslashes, run)
        quotes = quotes[run % 2 == 0]
        toggle = np.zeros(n + 1, np.int8)
        toggle[quotes] = 1
        in_str = (np.cumsum(toggle[:n]) + self.in_str) % 2 == 1
        in_str[quotes] = True  # a quote belongs to its string
        opens = ((b == 123) | (b == 91)) & ~in_str
        closes = ((b == 125) | (b == 93)) & ~in_str
        step = opens.astype(np.int32) - closes.astype(np.int32)
        walk = self.depth + np.cumsum(step, dtype=np.int64)
        # depth after each byte, floored at 0: a stray "}" between events is not an event (and is counted)
        depth = walk - np.minimum(np.minimum.accumulate(walk), 0)
        prev = np.concatenate(([self.depth], depth[:-1]))  # depth before each byte
        # the "]" that closes the events array
        end_hits = np.flatnonzero((b == 93) & ~in_str & (prev == 0))
        stop = int(end_hits[0]) if len(end_hits) else n
        inside = (prev[:stop] > 0) | (depth[:stop] > 0)
        ends = np.flatnonzero(closes[:stop] & (depth[:stop] == 0) & (prev[:stop] == 1))
        starts = np.flatnonzero(opens[:stop] & (prev[:stop] == 0))
        # anything but whitespace and commas between events is not an event
        gap = ~inside & ~np.isin(b[:stop], np.frombuffer(b" \t\r\n,", np.uint8))
        if gap.any():
            # one undecodable item per run of such bytes
            g = np.flatnonzero(gap)
            runs = 1 + int((np.diff(g) > 1).sum())
            for _ in range(runs - 1):
                self.tally.add(base + int(g[0]), 0)
            self.tally.add(base + int(g[0]), len(g))
        # emit: the event in progress continues at 0 if depth > 0 at the start
        pos = 0
        ev_start = 0 if self.depth > 0 else None
        si = 0
        for e in ends.tolist():
            while si < len(starts) and starts[si] < pos:
                si += 1
            if ev_start is None:
                if si >= len(starts) or starts[si] > e:
                    continue
                ev_start = int(starts[si])
                self.event_at = base + ev_start
            self._add(block[ev_start : e + 1], complete=True)
            pos = e + 1
            ev_start = None
        if stop < n or len(end_hits):
            self.event = bytearray()
            self.tail = bytearray(block[stop + 1 : stop + 1 + 64 * _WINDOW]) if stop < n else bytearray()
            self.depth = 0
        else:
            # the event in progress at the block's end
            if ev_start is None:
                rest = starts[starts >= pos]
                if len(rest):
                    ev_start = int(rest[0])
                    self.event_at = base + ev_start
            if ev_start is not None:
                self._add(block[ev_start:], complete=False)
            self.depth = int(depth[-1])
            self.in_str = (int(self.in_str) + len(quotes)) % 2 == 1
            # backslashes at the block's end, for the next block's first quote
            k = n - 1 - int(last_other[-1]) + (self.backslashes if last_other[-1] < 0 else 0)
            self.backslashes = k if self.in_str else 0
        if len(self.out) >= CHUNK_BYTES:
            yield _Bytes(bytes(self.out), self.out_at)
            self.out = bytearray()
        self.raw.held(len(self.out) + len(self.event) + len(block))

    def _add(self, piece: bytes, complete: bool) -> None:
        if self.skipping or len(self.event) + len(piece) > MAX_EVENT_BYTES:
            if not self.skipping:
                self.skipping = True
                self.event = bytearray()
            if complete:
                self.tally.add(self.event_at, 0)
                self.skipping = False
            return
        self.event += piece
        if complete:
            if not self.out:
                self.out_at = self.event_at
            self.out += self.event
            self.out += b","
            self.event = bytearray()

    def finish(self) -> Iterator[_Bytes]:
        if self.out:
            yield _Bytes(bytes(self.out), self.out_at)
            self.out = bytearray()
        path = self.source.path  # type: ignore[attr-defined]
        if self.tail is not None:
            meta = _tail_meta(bytes(self.tail))
            if meta is not None:
                self.raw.meta.update(meta)
            return
        if self.event or self.skipping:
            self.raw.truncated = (
                f"{path}: trace is truncated (ends inside an event after {self.source.bytes_seen:,} bytes); "
                "analysed the complete events before the cut")
        else:
            self.raw.truncated = f"{path}: trace is truncated (the events array is not closed); analysed its events"


def _find_events_start(buf: Union[bytes, bytearray], source: _Source, raw: _Raw) -> int:
    """Index just after the ``[`` that opens the events array, or -1 if not seen yet."""
    i = 0
    n = len(buf)
    while i < n and buf[i] in b" \t\r\n\xef\xbb\xbf":
        i += 1
    if i >= n:
        return -1
    if buf[i] == ord("["):  # bare array form: must be an array of event objects
        j = i + 1
        while j < n and buf[j] in b" \t\r\n":
            j += 1
        if j >= n:
            return -1
        if buf[j] not in b"{]":
            raise TraceFormatError(
                f"{source.path}: not a Kineto/Chrome trace (a JSON array whose items are not event objects)"  # type: ignore[attr-defined]
            )
        raw.meta = {}
        return i + 1
    if buf[i] != ord("{"):
        raise TraceFormatError(
            f"{source.path}: not a JSON trace (starts with {bytes(buf[i:i + 20])!r})"  # type: ignore[attr-defined]
        )
    mt = _EVENTS_KEY.search(buf, 0, min(n, 64 * _WINDOW))
    if mt is None:
        return -1
    head = bytes(buf[: mt.end()]) + b"]}"
    try:
        meta = json.loads(head)
    except (ValueError, RecursionError):
        # "traceEvents" may appear inside a string of an earlier value; fall back to
        # treating the head as opaque metadata we cannot read.
        meta = {}
    if isinstance(meta, dict):
        meta.pop("traceEvents", None)
        raw.meta.update(meta)
    return mt.end()


def _final_chunks(buf: bytes, lo: int, hi: int, source: _Source, raw: _Raw) -> Iterator[Union[bytes, memoryview]]:
    """The last events of ``buf[lo:hi]`` (a view), after reading the closing ``]`` and the metadata
    keys after it."""
    end = _events_end(buf, lo, hi, source, raw)
    if end > lo:
        yield memoryview(buf)[lo:end]


def _events_end(buf: Any, lo: int, hi: int, source: _Source, raw: _Raw) -> int:
    """Offset just past the last complete event in ``buf[lo:hi]`` (the end of the file).

    Reads the metadata keys that follow the events array into ``raw.meta``. If the
    array is not closed (the file was cut), returns the end of the last event that
    decodes and sets ``raw.truncated``. Returns 0 if there are no events.
    """
    path = source.path  # type: ignore[attr-defined]
    window = _WINDOW
    while True:
        search_from = max(lo, hi - window)
        for start, stop in _close_brackets(buf, search_from, hi):
            # What follows the events array is nothing, a last "}" or more keys: anything else is
            # rejected here, without copying the tail. No "}]" inside a JSON string passes (a quote
            # in a string is escaped): a name of "}]}]..." made this search copy and parse the rest
            # of the file at each one (quadratic: 11 s for 0.4 MB).
            if not _TAIL_START.match(buf, stop, hi):
                continue
            tail_meta = _tail_meta(bytes(buf[stop:hi]))
            if tail_meta is not None:
                raw.meta.update(tail_meta)
                return start + 1
        if search_from == lo or window >= 64 * _WINDOW:
            break
        window *= 4
    head = bytes(buf[lo : min(hi, lo + 4096)]).strip()
    if head.startswith(b"]"):  # empty events array
        tail_meta = _tail_meta(head[1:] + bytes(buf[lo + 4096 : hi]))
        if tail_meta is not None:
            raw.meta.update(tail_meta)
        return 0
    # No closing bracket: the file was cut. Keep every complete event.
    seps = list(_SEP.finditer(buf, max(lo, hi - 8 * _WINDOW), hi))
    for i in range(len(seps) - 1, -1, -1):
        # Validate the last event before this cut, so that a separator inside a
        # string or a nested array does not poison the result.
        first = buf.find(b"{", seps[i - 1].start() + 1) if i > 0 else lo
        try:
            decode_chunk(bytes(buf[first : seps[i].start() + 1]))
        except ChunkError:
            continue
        raw.truncated = (
            f"{path}: trace is truncated (ends inside an event after {source.bytes_seen or hi:,} bytes); "
            "analysed the complete events before the cut"
        )
        return seps[i].start() + 1
    raw.truncated = f"{path}: trace is truncated; no complete event in its last part"
    return 0


def _close_brackets(buf: Any, lo: int, hi: int) -> Iterator[tuple[int, int]]:
    """``(start, end)`` of each ``}`` followed by whitespace and ``]`` in ``buf[lo:hi]``, in order, as
    :data:`_END`'s matches: found by the C scanner's memchr search where it is built (the regular
    expression tries a match at every ``}``: the end search of a 0.9 MB DLRM rank took 0.41 ms with
    it, 0.11 ms with this, line-profiled)."""
    if decode_mod._scan is None:
        for mt in _END.finditer(buf, lo, hi):
            yield mt.start(), mt.end()
        return
    find = decode_mod._scan.close_bracket
    found = find(buf, lo, hi)
    while found is not None:
        yield found
        found = find(buf, found[1], hi)


#: How what follows a closing "]" of the events array can begin (what :func:`_tail_meta` may accept):
#: nothing, a last "}", or a comma and another key (or the object's end).
_TAIL_START = re.compile(rb'\s*(?:\Z|\}\s*\Z|,\s*["}])')


def _tail_meta(rest: bytes) -> Optional[dict[str, Any]]:
    """Parse what follows the events array's ``]``: ``, "key": value ... }`` or nothing."""
    rest = rest.strip()
    if rest in (b"", b"}"):
        return {}
    if rest.startswith(b","):
        try:
            meta = json.loads(b"{" + rest[1:])
        except (ValueError, RecursionError):
            return None
        return meta if isinstance(meta, dict) else None
    return None


def _plan_file(source: "_FileSource", raw: _Raw) -> list[tuple[str, int, int]]:
    """Byte ranges of event chunks of an uncompressed file, found through mmap windows."""
    path = source.path
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        if size == 0:
            raise TraceFormatError(f"{path}: file is empty")
        mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    try:
        source.bytes_seen = size
        start = _find_events_start(mm, source, raw)  # type: ignore[arg-type]
        if start < 0:
            raise TraceFormatError(f"{path}: not a Kineto/Chrome trace (no traceEvents array)")
        end = _events_end(mm, start, size, source, raw)
        ranges = []
        pos = start
        while end - pos > CHUNK_BYTES + _WINDOW:
            mt = _SEP.search(mm, pos + CHUNK_BYTES, end)
            if mt is None:
                break
            nxt = mm.find(b"{", mt.start() + 1)
            ranges.append((path, pos, nxt))
            pos = nxt
        if end > pos:
            ranges.append((path, pos, end))
        return ranges
    finally:
        mm.close()


def _expand_ranges(ranges: list[tuple[str, int, int]], source: _Source, raw: _Raw,
                   tally: "_Tally") -> Iterator[Any]:
    """The planned ranges; one far larger than a chunk (a single separator after a huge gap or
    event) is read in blocks through :class:`_Stream`, never into one buffer."""
    for spec in ranges:
        path, start, end = spec
        if end - start <= 4 * CHUNK_BYTES + _WINDOW:
            raw.held(end - start)
            yield spec
            continue
        raw.stats["streamed"] = 1
        stream = _Stream(source, raw, tally, start)
        with open(path, "rb", buffering=0) as f:
            f.seek(start)
            pos = start
            while pos < end:
                block = f.read(min(CHUNK_BYTES, end - pos))
                if not block:
                    break
                pos += len(block)
                yield from stream.feed(block)
        if stream.out:
            yield _Bytes(bytes(stream.out), stream.out_at)
        if stream.event:  # the range ended inside an event (a separator inside a string): joined with the next
            yield _Bytes(bytes(stream.event), stream.event_at)


# --------------------------------------------------------------------------- decoding


#: A file modified less than this many seconds ago may still be written: it is read
#: into buffers, not mapped (a mapped file cut short under the reader ends it with SIGBUS).
RECENT_WRITE_S = 5.0


class _FileMap:
    """A read-only memory map of a plain trace file, for decoding its chunks in place."""

    def __init__(self, source: _Source):
        self.mm: Any = None
        if isinstance(source, _FileSource):
            import time

            try:
                with open(source.path, "rb") as f:
                    if time.time() - os.fstat(f.fileno()).st_mtime >= RECENT_WRITE_S:
                        self.mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
            except (OSError, ValueError):  # not mappable: chunks are read into buffers
                self.mm = None

    def __enter__(self) -> "_FileMap":
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.mm is not None:
            self.mm.close()

    def decode_or_none(self, spec: Any) -> Optional[dict[str, Any]]:
        if self.mm is None or not isinstance(spec, tuple):
            return decode_or_none(spec)
        _path, start, end = spec
        try:
            with memoryview(self.mm) as whole, whole[start:end] as view:
                try:
                    return decode_chunk(view)
                except ChunkError:
                    return None
        finally:
            # Unmap the chunk's pages (they stay in the page cache): mapped file
            # pages count in the resident size, and a 1 GB trace would otherwise
            # end up resident whole. A page shared with the next chunk is simply
            # faulted in again from the cache if that chunk still reads it.
            if hasattr(self.mm, "madvise"):
                lo = start - start % mmap.PAGESIZE
                self.mm.madvise(mmap.MADV_DONTNEED, lo, end - lo)


def _decode_all(chunks: Iterator[Any], pool: Union["Executor", "Pool", None], workers: int,
                decode: Any = None, tally: Optional["_Tally"] = None) -> list[dict[str, Any]]:
    """Decode chunks in order, none lost for one bad event.

    A chunk that fails to decode goes through :func:`decode_tolerant`, which
    keeps every event that decodes and skips (and counts in ``tally``) each
    undecodable one. A failure at the chunk's end may be a cut inside a string
    (a separator inside a name): that part is carried into the next chunk.
    """
    decode = decode or decode_or_none
    tally = tally if tally is not None else _Tally()
    results: list[dict[str, Any]] = []
    carry: list[Any] = []  # [offset, bytes] of an undecodable tail, to join with the next chunk

    def accept(out: Optional[dict[str, Any]], spec: Any) -> None:
        if out is not None:
            if carry:  # this chunk decoded alone: the carried part holds no cut event
                parts, _ = decode_tolerant(carry[1], carry[0], tally, final=True)
                results.extend(parts)
                carry.clear()
            results.append(out)
            return
        # the failure path works on bytes (a chunk may be a view of an inflated block)
        offset, data, joined = _spec_offset(spec), bytes(_chunk_bytes(spec)), 0
        if carry:
            offset, data, joined = carry[0], carry[1] + data, len(carry[1])
            carry.clear()
        parts, rest = decode_tolerant(data, offset, tally, final=False, cut_from=joined)
        results.extend(parts)
        if rest is not None:
            carry[:] = [offset + rest, data[rest:]]

    if pool is None:
        for spec in chunks:
            accept(decode(spec), spec)
    else:
        from collections import deque

        inflight: deque[tuple[Any, Any]] = deque()
        for spec in chunks:
            inflight.append((spec, pool.submit(decode, spec)))
            while len(inflight) > 2 * workers:  # bounded: each chunk in flight holds its buffers
                spec0, fut = inflight.popleft()
                accept(fut.result(), spec0)
        while inflight:
            spec0, fut = inflight.popleft()
            accept(fut.result(), spec0)
    if carry:
        parts, _ = decode_tolerant(carry[1], carry[0], tally, final=True)
        results.extend(parts)
    return results


#: Where an event may begin after an undecodable one: a "{" after a comma (strings are not
#: known there; a candidate inside one fails to decode and the search goes on).
_RESYNC = re.compile(rb",\s*\{")
_SKIP = b" \t\r\n,"
_AFTER_EVENT = re.compile(rb"\}\s*,\Z")


def _count_region(data: bytes, offset: int, tally: "_Tally") -> None:
    if data.strip(_SKIP):
        tally.add(offset, len(data))


def decode_tolerant(data: Any, offset: int, tally: "_Tally", final: bool = True, cut_from: int = 0,
                    ) -> tuple[list[dict[str, Any]], Optional[int]]:
    """Decode a run of events, skipping the ones that cannot be decoded.

    Each undecodable event (from its start to the next event that decodes,
    found after a comma) is counted once in ``tally`` with its file offset
    (``offset`` is that of ``data[0]``). Time is linear in ``len(data)`` for
    any number of bad events: each decode attempt stops at its first error,
    and the events before the error are decoded once more (the scanner says
    where the failing event began; without it a string-aware scan finds it).

    Unless ``final``, an event that fails and begins at or after ``cut_from``
    may be one cut by the chunker (a separator inside a string): nothing is
    skipped then, and the index where it begins is returned, to be joined with
    the next chunk (``cut_from`` is then the length of this carried part). An
    event that still fails and began in the carried part is undecodable, unless
    it fails at the very end (unfinished: a chunk of one event's middle, cut
    inside a string again) and is at most ``CHUNK_BYTES`` long: it is carried
    once more. Each byte is thus decoded a bounded number of times.

    Returns the decoded parts and the index of the carried tail, or None.
    """
    view = memoryview(data)
    n = len(data)
    parts: list[dict[str, Any]] = []
    pos = 0
    bad_from: Optional[int] = None

    def close_bad(upto: int) -> None:
        nonlocal bad_from
        if bad_from is not None:
            _count_region(bytes(view[bad_from:upto]), offset + bad_from, tally)
            bad_from = None

    while True:
        while pos < n and data[pos] in _SKIP:
            pos += 1
        if pos >= n:
            close_bad(n)
            return parts, None
        try:
            out = decode_chunk(view[pos:])
        except ChunkError as exc:
            good = _good_prefix(view, pos, exc)
            err_at = pos + exc.offset if exc.offset is not None else -1
        else:
            close_bad(pos)
            parts.append(out)
            return parts, None
        if good is not None:
            end, out = good
            close_bad(pos)
            parts.append(out)
            pos = end
            while pos < n and data[pos] in _SKIP:
                pos += 1
        unfinished = 0 <= err_at and n - err_at <= 64 and not bytes(view[err_at + 1 :]).strip(_SKIP)
        if not final and (pos >= cut_from or (unfinished and n - pos <= CHUNK_BYTES)):
            close_bad(pos)
            return parts, pos
        if bad_from is None:
            bad_from = pos
        mt = _RESYNC.search(data, pos + 1)
        if mt is not None and _AFTER_EVENT.search(data, max(bad_from, mt.start() - 64), mt.start() + 1):
            # the candidate follows a "}": the bad region up to it is one event, counted now
            close_bad(mt.end() - 1)
        if mt is None:
            if final:
                close_bad(n)
                return parts, None
            start = bad_from
            bad_from = None
            return parts, start
        pos = mt.end() - 1


def _good_prefix(view: memoryview, pos: int, exc: ChunkError) -> Optional[tuple[int, dict[str, Any]]]:
    """(end, columns) of the events before the one that failed at ``pos + exc.offset``; None if none."""
    cut: Optional[int] = None
    if exc.event_offset is not None:
        cut = exc.event_offset
    else:
        limit = len(view) - pos if exc.offset is None else min(len(view) - pos, exc.offset + 1)
        commas = _top_level_commas(view[pos : pos + limit])
        if exc.offset is not None:
            commas = commas[commas < exc.offset]
        if len(commas):
            cut = int(commas[-1])
            try:
                return pos + cut + 1, decode_chunk(view[pos : pos + cut])
            except ChunkError:
                # no offset from the decoder: the longest decodable prefix of whole events (bisection)
                lo, hi = 0, len(commas) - 1  # commas[:lo] known good (as a prefix), commas[hi] bad
                best = None
                while lo < hi:
                    mid = (lo + hi) // 2
                    try:
                        best = (int(commas[mid]), decode_chunk(view[pos : pos + int(commas[mid])]))
                        lo = mid + 1
                    except ChunkError:
                        hi = mid
                if best is None:
                    return None
                return pos + best[0] + 1, best[1]
        return None
    if not cut or not bytes(view[pos : pos + cut]).strip(_SKIP):
        return None
    try:
        return pos + cut, decode_chunk(view[pos : pos + cut])
    except ChunkError:
        return None


def _top_level_commas(data: Any) -> np.ndarray:
    """Offsets of the commas between events (outside strings, at nesting depth 0).

    Vectorised: quotes not escaped by an odd run of backslashes toggle the
    in-string state; braces/brackets outside strings give the nesting depth.
    Exact up to the first malformed byte.
    """
    b = np.frombuffer(data, dtype=np.uint8)
    n = len(b)
    if n == 0:
        return np.zeros(0, np.int64)
    idx = np.arange(n)
    last_other = np.maximum.accumulate(np.where(b == 92, -1, idx))
    quotes = np.flatnonzero(b == 34)
    before = np.maximum(quotes - 1, 0)
    run = np.where(quotes > 0, quotes - 1 - last_other[before], 0)
    quotes = quotes[run % 2 == 0]
    toggle = np.zeros(n, np.int8)
    toggle[quotes] = 1
    in_str = np.cumsum(toggle) % 2 == 1
    in_str[quotes] = True
    opens = ((b == 123) | (b == 91)) & ~in_str
    closes = ((b == 125) | (b == 93)) & ~in_str
    depth = np.cumsum(opens.astype(np.int64) - closes.astype(np.int64))
    return np.flatnonzero((b == 44) & ~in_str & (depth == 0))


def _spec_offset(spec: Any) -> int:
    if isinstance(spec, tuple):
        return spec[1]
    if isinstance(spec, _Bytes):
        return spec.offset
    return 0


def _chunk_bytes(spec: Any) -> Union[bytes, memoryview]:
    """A chunk is a :class:`_Bytes` or (path, start, end) of an uncompressed file."""
    if isinstance(spec, tuple):
        path, start, end = spec
        with open(path, "rb", buffering=0) as f:
            f.seek(start)
            return f.read(end - start)
    if isinstance(spec, _Bytes):
        return spec.data
    return spec


def decode_or_none(spec: Any) -> Optional[dict[str, Any]]:
    """Decode one chunk (worker entry point); None if it does not decode whole."""
    try:
        if isinstance(spec, tuple):
            return decode_chunk(read_range(*spec), bracketed=True)
        return decode_chunk(spec.data if isinstance(spec, _Bytes) else spec)
    except ChunkError:
        return None


# --------------------------------------------------------------------------- assembly


def _assemble(path: str, raw: _Raw, results: list[dict[str, Any]], nbytes: int) -> m.Trace:
    index: dict[str, int] = {}
    counts: dict[str, int] = {}
    meta_events: list[tuple[Any, Any, Any, Any]] = []
    remaps = []
    for r in results:
        local = r["names"]
        remap = None
        if not index:  # the first chunk's table (the decoders keep each name once) starts the whole one:
            index = dict(zip(local, range(len(local))))  # built in C (a DLRM rank's 280 names, one chunk:
            if len(index) == len(local):  # 22 -> 11 µs)
                remap = np.arange(len(local), dtype=np.int32)
            else:
                index = {}
        if remap is None:
            remap = np.fromiter((index.setdefault(s, len(index)) for s in local), np.int32, len(local))
        remaps.append(remap)
        for k, v in r["counts"].items():
            counts[k] = counts.get(k, 0) + v
        meta_events.extend(r["meta_events"])
    names = list(index)

    events: dict[str, np.ndarray] = {}
    for col, dtype in m.EVENT_COLUMNS.items():
        parts = []
        for r, remap in zip(results, remaps):
            arr = r["events"].pop(col)
            if col == m.NAME and len(arr):
                arr = remap[arr]
            elif col == m.STACK and len(arr):
                arr = np.where(arr >= 0, remap[np.maximum(arr, 0)], m.MISSING).astype(np.int32)
            parts.append(arr)
        # Id columns stay int32 when every chunk's ids fit (concatenate widens if one did not).
        events[col] = np.concatenate(parts) if parts else np.zeros(0, dtype)
        del parts
    memory = {
        col: (np.concatenate([r["memory"][col] for r in results]) if results else np.zeros(0, dt)).astype(dt)
        for col, dt in m.MEMORY_COLUMNS.items()
    }
    if nbytes > CHUNK_BYTES:  # one chunk's buffers (a small trace) are left to the next read: the trim
        _release_freed_memory()  # walks the whole heap (~0.07 ms of a 0.9 MB DLRM rank's ~10 ms)
    # Events stay in file order: every analysis pass sorts the subset it needs.
    morder = np.argsort(memory[m.MEM_TS], kind="stable")
    memory = {k: v[morder] for k, v in memory.items()}

    thread_names: dict[tuple[int, int], str] = {}
    process_names: dict[int, str] = {}
    from .decode import _int_id

    for name, pid, tid, arg in meta_events:
        if not isinstance(arg, str):
            continue
        if name == "thread_name":
            thread_names[(_int_id(pid), _int_id(tid))] = arg
        elif name == "process_name":
            process_names[_int_id(pid)] = arg
    warnings = []
    for key, (_code, text) in zip(decode_mod.PROBLEM_KEYS, decode_mod.PROBLEMS):
        n = counts.pop(key, 0)
        if n:
            warnings.append(f"{path}: " + text.format(n=f"{n:,}"))
    odd = sum(1 for x in names if "\ufffd" in x) if "\ufffd" in "\x00".join(names) else 0
    if odd:
        warnings.append(f"{path}: {odd:,} names hold U+FFFD, the mark of invalid UTF-8 in the file (shown as is)")
    meta, bad_meta = m.clean_meta(raw.meta)
    if bad_meta:
        shown = ", ".join(bad_meta[:3]) + (f" and {len(bad_meta) - 3} more" if len(bad_meta) > 3 else "")
        warnings.append(f"{path}: trace metadata of the wrong type or not finite, ignored: {shown}")
    early = _clamp_device_before_launch(events)
    if early:
        warnings.append(f"{path}: {early:,} GPU events that start before their launch (runtime call with the "
                        "same correlation id) were moved to the launch's start")
    return m.Trace(
        path=path,
        meta=meta,
        events=events,
        names=names,
        memory=memory,
        thread_names=thread_names,
        process_names=process_names,
        counts=counts,
        warnings=warnings,
        bytes_read=nbytes,
    )


def _clamp_device_before_launch(events: dict[str, np.ndarray]) -> int:
    """Device ops (kernel, memcpy, memset) that start before the runtime call that launched them
    start at the call's start instead (their end is kept, the duration shrinks; never below 0).
    Returns how many moved. Vectorised: the launches sorted by correlation id, searched once."""
    kind, corr, ts = events[m.KIND], events[m.CORR], events[m.TS]
    has = corr >= 0
    launch = np.flatnonzero(((kind == int(m.Kind.RUNTIME)) | (kind == int(m.Kind.DRIVER))) & has)
    dev = np.flatnonzero(((kind == int(m.Kind.KERNEL)) | (kind == int(m.Kind.MEMCPY)) | (kind == int(m.Kind.MEMSET))) & has)
    if not len(launch) or not len(dev):
        return 0
    lc = corr[launch]
    lts = ts[launch]
    hi = int(lc.max())
    if hi < 4 * len(kind) + 1024:  # correlation ids are small and dense: a lookup table (first launch wins)
        table = np.full(hi + 1, -np.inf)  # no launch: never early
        table[lc[::-1]] = lts[::-1]
        dc = corr[dev]
        inside = dc <= hi
        rows = dev[inside]
        start = table[dc[inside]]
    else:
        order = np.argsort(lc, kind="stable")
        lc, lts = lc[order], lts[order]
        at = np.searchsorted(lc, corr[dev])
        found = at < len(lc)
        found[found] = lc[at[found]] == corr[dev][found]
        rows = dev[found]
        start = lts[at[found]]
    early = ts[rows] < start
    if not early.any():
        return 0
    rows, start = rows[early], start[early]
    end = ts[rows] + events[m.DUR][rows]
    ts = events[m.TS] = np.array(ts, dtype=np.float64)  # writable (scanner columns may be read-only views)
    dur = events[m.DUR] = np.array(events[m.DUR], dtype=np.float64)
    ts[rows] = start
    dur[rows] = np.maximum(end - start, 0.0)
    return int(len(rows))


_MMAP_THRESHOLD_BYTES = 32 << 20
_TRIM_MIN_BYTES = 128 << 10
_TRIM_MAX_BYTES = 64 << 20


@functools.lru_cache(maxsize=1)
def _libc() -> Any:
    """glibc, loaded once (OSError where there is none)."""
    import ctypes

    return ctypes.CDLL("libc.so.6")


def _tune_malloc(json_bytes: int) -> None:
    """Set glibc's mmap and trim thresholds for an analysis of ``json_bytes`` of JSON.

    By default glibc raises both thresholds each time a large mapped block is
    freed, so the analysis' per-event temporaries end up in a heap that is
    trimmed late and stays resident. Setting them explicitly turns that
    adjustment off. Arrays below 32 MB come from the heap (no page faults for
    fresh mappings: a 1 MB mmap threshold cost ~20% of the analysis time on a
    1 GB trace). The trim threshold, the free memory the heap may keep at its top
    instead of returning it to the OS, is 1/16 of the JSON size (128 KB to 64 MB):
    a small trace keeps its peak low, a large one is not slowed by giving pages
    back and faulting them in again (1 GB trace: 2.0 -> 1.3 s of system time).
    Measured on a 171 MB trace: peak RSS 180 MB with glibc's defaults, ~150 MB
    with these (docs/performance.md). Process-wide, glibc only; elsewhere a no-op.

    One arena: the decode and table threads allocate from the main heap instead
    of per-thread arenas, whose freed memory glibc keeps (171 MB trace, tables
    on two threads: peak 161-167 -> 149-153 MB; 1 GB trace: 803 -> 770 MB; no
    time lost: the threads allocate few, large blocks).

    Never in a process that has imported torch: an analysis at the end of a
    ``perfkit.profile`` block (or in a notebook) must not change the allocator
    of a process that may go on training.
    """
    if "torch" in sys.modules:
        return
    trim = min(max(json_bytes // 16, _TRIM_MIN_BYTES), _TRIM_MAX_BYTES)
    try:
        libc = _libc()
        libc.mallopt(-3, _MMAP_THRESHOLD_BYTES)  # M_MMAP_THRESHOLD
        libc.mallopt(-1, int(trim))  # M_TRIM_THRESHOLD
        libc.mallopt(-8, 1)  # M_ARENA_MAX: threads share the main heap
    except (OSError, AttributeError):
        pass


def _release_freed_memory() -> None:
    """Hand the chunks' freed buffers back to the OS (glibc keeps them otherwise).

    Measured on a 1 GB trace: the peak RSS drops by ~200 MB, at no time cost.
    """
    try:
        _libc().malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: nothing to do
        pass
