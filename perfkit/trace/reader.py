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

import json
import mmap
import os
import re
import sys
import zlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Iterator, Optional

import numpy as np

from ..errors import TraceFormatError
from . import model as m
from . import decode as decode_mod
from .decode import ChunkError, decode_chunk, read_range

if TYPE_CHECKING:
    from concurrent.futures import Executor

#: Target bytes of JSON per chunk handed to one decode call.
CHUNK_BYTES = 8 * 1024 * 1024
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


def read_trace(path: str, *, workers: Optional[int] = None) -> m.Trace:
    """Load a ``.json`` or ``.json.gz`` Kineto trace.

    Args:
        path: the trace file.
        workers: decode processes to use; defaults to the CPU count for large
            files and 0 (in-process) for small ones.

    Raises:
        TraceFormatError: the file is missing, unreadable or not a trace.
    """
    if not os.path.exists(path):
        raise TraceFormatError(f"{path}: no such file")
    if os.path.isdir(path):
        raise TraceFormatError(f"{path}: is a directory, expected a trace file")
    with open(path, "rb") as f:
        magic = f.read(2)
    source: _Source = _GzipSource(path) if magic == b"\x1f\x8b" else _FileSource(path)
    est = source.estimated_size()
    _tune_malloc(est)
    if workers is None:
        workers = min(os.cpu_count() or 1, 8) if est >= PARALLEL_MIN_BYTES else 0
    raw = _Raw(meta={})
    chunks: Iterator[Any]
    if isinstance(source, _FileSource):
        chunks = iter(_plan_file(source, raw))
    else:
        chunks = _chunks(source, raw)
    results: list[dict[str, Any]] = []
    if decode_mod._scan is not None and (workers > 1 or isinstance(source, _FileSource)):
        # The C scanner releases the GIL: threads share the columns without
        # pickling them between processes. It reads the chunks of a plain file
        # straight from the page cache through a memory map (no read buffers to
        # allocate, fault in and copy into).
        from concurrent.futures import ThreadPoolExecutor

        with _FileMap(source) as fmap:
            if workers > 1:
                with ThreadPoolExecutor(max_workers=workers) as tpool:
                    results = _decode_all(chunks, tpool, workers, fmap.decode_or_none)
            else:
                results = _decode_all(chunks, None, 0, fmap.decode_or_none)
    elif workers > 1:  # no C scanner: the msgspec decoder holds the GIL, so processes
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor

        ctx = mp.get_context("fork") if "fork" in mp.get_all_start_methods() else None
        with ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as pool:
            # Start the workers now, while this process is small: forked later they
            # would share (and count) whatever buffers the reader holds by then.
            for f in [pool.submit(os.getpid) for _ in range(workers)]:
                f.result()
            results = _decode_all(chunks, pool, workers)
    else:
        results = _decode_all(chunks, None, 0)
    trace = _assemble(path, raw, results, source.bytes_seen)
    if raw.truncated:
        trace.warnings.insert(0, raw.truncated)
    if source.problem:
        trace.warnings.insert(0, f"{path}: {source.problem}")
    from .samples import attach

    attach(trace)  # Python stack samples beside the trace, if any (never fails the read)
    return trace


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
        d = zlib.decompressobj(wbits=47)
        with open(self.path, "rb", buffering=0) as f:
            while True:
                comp = f.read(1024 * 1024)
                if not comp:
                    break
                while comp:
                    # Bounded output per call: traces compress ~20x, so one
                    # input block could otherwise expand into the whole file.
                    try:
                        out = d.decompress(comp, CHUNK_BYTES)
                    except zlib.error as exc:
                        self.problem = f"gzip data is corrupt ({exc}); kept what decompressed before it"
                        return
                    if out:
                        self.bytes_seen += len(out)
                        yield out
                    comp = d.unconsumed_tail
                    if d.eof and d.unused_data:  # concatenated gzip members
                        comp = d.unused_data
                        d = zlib.decompressobj(wbits=47)
            if not d.eof:
                self.problem = "gzip stream ends early (file truncated); kept what decompressed"
            tail = d.flush()
            if tail:
                self.bytes_seen += len(tail)
                yield tail


# --------------------------------------------------------------------------- chunking


def _chunks(source: _Source, raw: _Raw) -> Iterator[bytes]:
    """Yield chunks of complete, comma-separated event objects; fill ``raw.meta``."""
    blocks = source.blocks()
    buf = bytearray()
    start = -1
    head_done = False
    for block in blocks:
        buf += block
        if not head_done:
            start = _find_events_start(buf, source, raw)
            if start < 0:
                if len(buf) > 64 * _WINDOW:
                    raise TraceFormatError(f"{source.path}: no traceEvents array in the first 64 MB")  # type: ignore[attr-defined]
                continue
            head_done = True
            del buf[:start]
        while len(buf) > CHUNK_BYTES + _WINDOW:
            cut = _last_separator(buf, CHUNK_BYTES)
            if cut is None:
                break  # one huge event: read more
            nxt = _next_object(buf, cut)
            yield bytes(buf[:nxt])  # keeps the separator: chunks concatenate to the original bytes
            del buf[:nxt]
    if not head_done:
        text = bytes(buf[:200]).strip()
        if not text:
            raise TraceFormatError(f"{source.path}: file is empty")  # type: ignore[attr-defined]
        raise TraceFormatError(f"{source.path}: not a Kineto/Chrome trace (no traceEvents array)")  # type: ignore[attr-defined]
    yield from _final_chunks(buf, source, raw)


def _find_events_start(buf: bytearray, source: _Source, raw: _Raw) -> int:
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


def _last_separator(buf: bytearray, limit: int) -> Optional[int]:
    """Offset just after the ``}`` of the last event separator before ``limit``."""
    lo = max(0, limit - 4 * _WINDOW)
    last = None
    for mt in _SEP.finditer(buf, lo, limit + _WINDOW):
        last = mt
    if last is None:
        mt = _SEP.search(buf, limit)
        if mt is None:
            return None
        last = mt
    return last.start() + 1


def _next_object(buf: bytearray, cut: int) -> int:
    """Index of the ``{`` that follows the separator ending at ``cut``."""
    return buf.index(b"{", cut)


def _final_chunks(buf: bytearray, source: _Source, raw: _Raw) -> Iterator[bytes]:
    """The last events, the closing ``]`` and the metadata keys after it."""
    end = _events_end(buf, 0, len(buf), source, raw)
    if end > 0:
        yield bytes(buf[:end])


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
        for mt in _END.finditer(buf, search_from, hi):
            tail_meta = _tail_meta(bytes(buf[mt.end() : hi]))
            if tail_meta is not None:
                raw.meta.update(tail_meta)
                return mt.start() + 1
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


def _decode_all(chunks: Iterator[Any], pool: Optional["Executor"], workers: int,
                decode: Any = None) -> list[dict[str, Any]]:
    """Decode chunks in order.

    A chunk whose cut fell inside a string fails to decode; it is kept pending
    and joined with the next chunk (chunks concatenate to the original bytes).
    If joining does not help, the pending bytes are split at true event
    boundaries found by a string-aware scan.
    """
    decode = decode or decode_or_none
    results: list[dict[str, Any]] = []
    pending: list[bytes] = []
    if pool is None:
        for spec in chunks:
            _accept(decode(spec), spec, results, pending)
    else:
        from collections import deque

        inflight: deque[tuple[Any, Any]] = deque()
        for spec in chunks:
            inflight.append((spec, pool.submit(decode, spec)))
            while len(inflight) > 2 * workers:  # bounded: each chunk in flight holds its buffers
                spec0, fut = inflight.popleft()
                _accept(fut.result(), spec0, results, pending)
        while inflight:
            spec0, fut = inflight.popleft()
            _accept(fut.result(), spec0, results, pending)
    if pending:
        data = b"".join(pending)
        good, _rest = _split_exact(data)
        if good:
            results.append(decode_chunk(good))
        if _rest.strip(b" \t\r\n,"):
            raise TraceFormatError("events could not be decoded (malformed JSON inside traceEvents)")
    return results


def _accept(out: Optional[dict[str, Any]], spec: Any, results: list[dict[str, Any]], pending: list[bytes]) -> None:
    if out is not None and not pending:
        results.append(out)
        return
    pending.append(_chunk_bytes(spec))
    data = b"".join(pending)
    try:
        results.append(decode_chunk(data))
        pending.clear()
        return
    except ChunkError:
        pass
    good, rest = _split_exact(data)
    if good:
        results.append(decode_chunk(good))
        pending[:] = [rest]


def _split_exact(data: bytes) -> tuple[bytes, bytes]:
    """Split at the last top-level comma between events, found outside strings.

    Vectorised scan: quotes not escaped by an odd run of backslashes toggle the
    in-string state; braces/brackets outside strings give the nesting depth.
    """
    b = np.frombuffer(data, dtype=np.uint8)
    quotes = np.flatnonzero(b == ord('"'))
    if len(quotes):
        esc = quotes[(quotes > 0) & (b[np.maximum(quotes - 1, 0)] == ord("\\"))]
        escaped = set()
        for q in esc.tolist():  # rare: count the backslash run
            k = q - 1
            while k >= 0 and b[k] == ord("\\"):
                k -= 1
            if (q - 1 - k) % 2 == 1:
                escaped.add(q)
        if escaped:
            quotes = np.array([q for q in quotes.tolist() if q not in escaped], dtype=np.int64)
    toggle = np.zeros(len(b) + 1, dtype=np.int8)
    toggle[quotes] = 1
    in_str = (np.cumsum(toggle)[:-1] % 2).astype(bool)
    in_str[quotes] = True
    opens = ((b == ord("{")) | (b == ord("["))) & ~in_str
    closes = ((b == ord("}")) | (b == ord("]"))) & ~in_str
    depth = np.cumsum(opens.astype(np.int32) - closes.astype(np.int32))
    commas = np.flatnonzero((b == ord(",")) & ~in_str & (depth == 0))
    if len(commas) == 0:
        return b"", data
    cut = int(commas[-1])
    return data[:cut], data[cut + 1 :]


def _chunk_bytes(spec: Any) -> bytes:
    """A chunk is either its bytes or (path, start, end) of an uncompressed file."""
    if isinstance(spec, tuple):
        path, start, end = spec
        with open(path, "rb", buffering=0) as f:
            f.seek(start)
            return f.read(end - start)
    return spec


def decode_or_none(spec: Any) -> Optional[dict[str, Any]]:
    """Decode one chunk (worker entry point); None if the cut was not at an event boundary."""
    try:
        if isinstance(spec, tuple):
            return decode_chunk(read_range(*spec), bracketed=True)
        return decode_chunk(spec)
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
    _release_freed_memory()
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
    return m.Trace(
        path=path,
        meta=raw.meta,
        events=events,
        names=names,
        memory=memory,
        thread_names=thread_names,
        process_names=process_names,
        counts=counts,
        bytes_read=nbytes,
    )


_MMAP_THRESHOLD_BYTES = 32 << 20
_TRIM_MIN_BYTES = 128 << 10
_TRIM_MAX_BYTES = 64 << 20


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
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
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
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: nothing to do
        pass
