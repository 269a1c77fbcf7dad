"""Decode one chunk of ``traceEvents`` JSON into columns.

A chunk is the bytes of a run of complete event objects separated by commas
(no surrounding brackets needed). :func:`decode_chunk` hands it to the C
scanner (``_scan.c``), which writes the fields perfkit uses straight into
columns; a chunk the scanner leaves to the general decoder (valid JSON of a
rare form: an escaped key, a time written as a string), or every chunk when
the scanner was not built, goes to the msgspec decoder in
:mod:`perfkit.trace.fallback`. Input and output are plain picklable data
(chunks may be decoded in worker processes).

Both decoders implement one definition (tests/test_decoders_agree.py checks
them against each other over generated inputs):

* **Malformed JSON** (RFC 8259: leading zeros, ``NaN``/``Infinity`` literals,
  bad escapes, lone surrogates, raw control characters, a missing comma,
  containers nested more than 257 levels below the events array) makes the chunk fail with
  :class:`ChunkError`, whose ``offset`` is the byte of the error;
  :func:`perfkit.trace.reader.decode_tolerant` then skips that event alone.
* **Invalid UTF-8** is not an error: in the strings perfkit keeps (names,
  categories, ids, call stacks) each invalid sequence reads as U+FFFD; other
  strings are not checked.
* **Keys** are compared after JSON unescaping (``"p\u0068"`` is ``ph``); a key
  given twice keeps its last value (a second ``args`` replaces the first).
* **Numbers** beyond double's range read as +-inf; integers need not fit 64
  bits in the JSON, only where perfkit stores them.
* **Values of the wrong type** (:data:`PROBLEMS`): a timed (``X``) event whose
  ``name``/``cat`` is not a string, whose ``pid``/``tid`` is not an integer
  within int64 (an integral number such as ``3.0`` counts as one) nor a
  string, or whose ``ts``/``dur`` is not a finite number within
  +-1e18 us (a string holding a number is read as that number) is dropped;
  a negative ``dur`` is clamped to 0; an id arg (``correlation``,
  ``External id``, ...) that is not an int64 integer is ignored, and counted
  where the event's kind keeps that arg (:func:`id_columns`; ``null`` is
  simply absent). Each is counted under its code, once per event (the first
  reason in the order ``bad-name``, ``bad-id``, ``no-ts``, ``bad-ts``,
  ``bad-dur``), and :mod:`perfkit.trace.reader` turns the counts into warnings.
  ``Call stack`` or ``args.name`` of another type is ignored.
* **Phases**: every event object is counted under ``ph:<c>`` when its ``ph``
  is one ASCII character, else under ``ph:?``; only ``X`` (timed),
  ``i`` named ``[memory]`` (allocator events; dropped and counted without a
  valid ``ts``) and ``M`` (thread and process names; ignored with a bad
  ``pid``/``tid`` or a ``name`` that is not a string) are read further. An
  item of ``traceEvents`` that is not an object is skipped and counted.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..arrays import distinct
from . import model as m
# Shared with the fallback decoder; importable from here as before.
from .chunk import (BAD_ID, MAX_TIME_US, ChunkError, _int_id, _narrow, clean_arg_id, clean_id,  # noqa: F401
                    id_columns)


try:  # the optional C scanner (setup.py builds it); fallback.py is the general decoder
    from . import _scan
except ImportError:  # pragma: no cover (depends on the build)
    _scan = None  # type: ignore[assignment]  # absent module: every use checks `_scan is not None` first


#: Problem codes, in the order of the scanner's ``problems`` array (_scan.c ``P_*``), with their
#: warning text (``{n}`` events). Counted in ``counts`` as ``"problem:<code>"``.
PROBLEMS: tuple[tuple[str, str], ...] = (
    ("no-ts", "{n} timed events without a ts were dropped"),
    ("bad-ts", "{n} timed events whose ts is not a finite number within +-1e18 us were dropped"),
    ("bad-dur", "{n} timed events whose dur is not a finite number within +-1e18 us were dropped"),
    ("neg-dur", "{n} timed events with a negative dur were clamped to dur 0"),
    ("bad-id", "{n} timed events whose pid or tid is not an integer within int64 nor a string were dropped"),
    ("bad-name", "{n} timed events whose name or cat is not a string were dropped"),
    ("bad-arg", "{n} id args (correlation, External id, ...) that are not int64 integers were ignored"),
    ("not-object", "{n} items of traceEvents that are not event objects were skipped"),
    ("mem-ts", "{n} [memory] events without a valid ts were dropped"),
)
PROBLEM_KEYS = tuple("problem:" + code for code, _ in PROBLEMS)



class UnsupportedChunk(Exception):
    """Valid JSON the C scanner leaves to the general decoder."""


def _decode_string(piece: bytes, escaped: int) -> str:
    """A raw JSON string's content -> str (invalid UTF-8 -> U+FFFD, as both decoders do)."""
    if not escaped:
        return piece.decode("utf-8", "replace")
    import msgspec  # escapes are rare: only chunks holding one need the decoder

    try:
        return msgspec.json.decode(b'"' + piece + b'"')
    except (msgspec.DecodeError, UnicodeDecodeError):  # invalid UTF-8 (the scanner validated the escapes):
        # msgspec 0.23 raises DecodeError for it, earlier releases the UnicodeDecodeError itself
        return msgspec.json.decode(b'"' + piece.decode("utf-8", "replace").encode("utf-8") + b'"')


#: m.CATEGORY_KINDS as plain ints (numpy converts an enum member slowly).
_KIND_CODES = {k: int(v) for k, v in m.CATEGORY_KINDS.items()}
_OTHER = int(m.Kind.OTHER)


def _scan_columns(buf: Any, bare: int = -1) -> dict[str, Any]:
    """Columns from the C scanner, in the same form as :func:`_to_columns`.

    Raises:
        ChunkError: malformed JSON (``offset``: the byte of the error).
        UnsupportedChunk: valid JSON of a form the scanner leaves to the general decoder.
    """
    try:
        raw = _scan.scan(buf, bare)
    except ValueError as exc:
        kind, msg, offset, event_offset = exc.args if len(exc.args) == 4 else ("malformed", str(exc), None, None)
        if kind == "unsupported":
            raise UnsupportedChunk(msg) from None
        raise ChunkError(f"{msg} at byte {offset}", offset=offset, event_offset=event_offset) from None
    arena = raw["str_arena"]
    offs = np.frombuffer(raw["str_offsets"], np.int64).tolist()
    lens = np.frombuffer(raw["str_lengths"], np.int64).tolist()
    escs = raw["str_escaped"]
    strings: list[str]
    if arena.isascii() and escs.count(0) == len(escs):
        # ASCII without escapes (the usual table): byte offsets are character offsets, one decode for
        # the whole arena (a DLRM rank's 280 names: 0.09 -> 0.04 ms)
        text = arena.decode("ascii")
        strings = [text[o : o + n] for o, n in zip(offs, lens)]
    else:
        strings = [_decode_string(arena[o : o + n], e) for o, n, e in zip(offs, lens, escs)]
    i32 = lambda key: np.frombuffer(raw[key], np.int32)  # noqa: E731
    i64 = lambda key: np.frombuffer(raw[key], np.int64)  # noqa: E731
    f64 = lambda key: np.frombuffer(raw[key], np.float64)  # noqa: E731

    cat = i32("cat")
    if strings:  # the kind of each string used as a category (a few of the table's names): 0.07 -> 0.03 ms
        kind_of = np.full(len(strings), _OTHER, dtype=np.int8)
        used = distinct(cat).tolist()
        kind_of[used] = [_KIND_CODES.get(strings[c].lower(), _OTHER) for c in used]
    else:
        kind_of = np.zeros(1, np.int8)
    kind = kind_of[cat] if len(cat) else np.zeros(0, np.int8)

    def ids(values: np.ndarray, codes: np.ndarray) -> np.ndarray:
        out = values.copy()
        has = codes >= 0
        if has.any():
            sel = codes[has]
            uniq = np.sort(sel)  # the distinct codes; each one's id looked up once, vectorised
            uniq = uniq[np.concatenate(([True], uniq[1:] != uniq[:-1]))]
            lut = np.array([_int_id(strings[c]) for c in uniq.tolist()], dtype=out.dtype)
            out[has] = lut[np.searchsorted(uniq, sel)]
        return out

    id_cols, bad_args = id_columns(kind, {
        "correlation": i64("corr"), "ext_id": i64("ext_id"), "ext_id_old": i64("ext_id_old"), "seq": i64("seq"),
        "fwd_tid": i64("fwd_tid"), "nbytes": i64("bytes"), "py_id": i64("py_id"), "py_parent": i64("py_parent")},
        any_bad=bool(np.frombuffer(raw["bad_args"], np.int64).any()))
    dur = f64("dur")
    cols = {
        m.KIND: kind,
        m.PID: ids(i64("pid"), i32("pid_s")),
        m.TID: ids(i64("tid"), i32("tid_s")),
        m.TS: f64("ts"),  # read-only views on the scanner's bytes: concatenated later anyway
        m.DUR: dur,
        **id_cols,
        m.STACK: i32("stack"),
        m.NAME: i32("name"),
    }
    memory = {
        m.MEM_TS: f64("mem_ts"),
        m.MEM_BYTES: i64("mem_bytes"),
        m.MEM_ALLOCATED: i64("mem_alloc"),
        m.MEM_RESERVED: i64("mem_res"),
        m.MEM_DEVICE_TYPE: i64("mem_dtype"),
        m.MEM_DEVICE_ID: i64("mem_did"),
    }
    meta_events = []
    for name, pid, tid, ps, ts_, arg in zip(
        i32("meta_name").tolist(), i64("meta_pid").tolist(), i64("meta_tid").tolist(),
        i32("meta_pid_s").tolist(), i32("meta_tid_s").tolist(), i32("meta_arg").tolist(),
    ):
        meta_events.append((
            strings[name],
            strings[ps] if ps >= 0 else pid,
            strings[ts_] if ts_ >= 0 else tid,
            strings[arg] if arg >= 0 else None,
        ))
    counts_arr = np.frombuffer(raw["counts"], np.int64)
    counts = {f"ph:{chr(c) if c else '?'}": int(counts_arr[c])
              for c in np.flatnonzero(counts_arr).tolist() if c != ord("X")}
    problems = np.frombuffer(raw["problems"], np.int64)
    for key, n in zip(PROBLEM_KEYS, problems.tolist()):
        if n:
            counts[key] = n
    if bad_args:
        counts["problem:bad-arg"] = bad_args
    return {"events": cols, "names": strings, "memory": memory, "meta_events": meta_events, "counts": counts}


def _bracketed(data: Any) -> bytearray:
    """``[`` + the events + ``]`` in one new buffer (one copy), dropping a trailing comma."""
    view = memoryview(data)
    k = len(view)
    while k and view[k - 1] in b" \t\r\n":
        k -= 1
    if k and view[k - 1] == ord(","):
        k -= 1
    buf = bytearray(k + 2)
    buf[0] = ord("[")
    buf[1 : k + 1] = view[:k]
    buf[k + 1] = ord("]")
    return buf


def read_range(path: str, start: int, end: int) -> bytearray:
    """File bytes [start, end) read straight into a bracketed buffer (no extra copy)."""
    buf = bytearray(end - start + 2)
    view = memoryview(buf)
    with open(path, "rb", buffering=0) as f:
        f.seek(start)
        with view[1 : end - start + 1] as target:
            got = f.readinto(target)
    view.release()
    k = got + 1  # one past the last byte read
    while k > 1 and buf[k - 1] in b" \t\r\n":
        k -= 1
    if k > 1 and buf[k - 1] == ord(","):
        k -= 1
    buf[0] = ord("[")
    buf[k] = ord("]")
    for i in range(k + 1, len(buf)):  # at most the separator's few bytes
        buf[i] = ord(" ")
    return buf


def decode_chunk(data: Any, bracketed: bool = False) -> dict[str, Any]:
    """Decode a comma-separated run of event objects into columns.

    Args:
        data: the events' bytes (a trailing comma is allowed), or with
            ``bracketed=True`` a buffer already wrapped in ``[`` ``]``.

    Returns a dict with ``events`` (column -> array, names as local codes),
    ``names`` (local string table), ``threads`` (local (pid, tid) table for the
    ``thread`` codes), ``memory`` (column -> array), ``meta_events`` (list of
    (name, pid, tid, args.name)) and ``counts``.

    Raises:
        ChunkError: if the bytes are not valid JSON event objects; ``offset`` is relative to ``data``
            (both decoders report it so; the fallback's own ``[`` is accounted for).
    """
    if _scan is not None:  # the scanner takes the bare events as well as the bracketed array
        try:
            return _scan_columns(data, 0 if bracketed else 1)
        except UnsupportedChunk:
            pass
    from . import fallback  # the general decoder: malformed or unusual chunks, or no C scanner

    try:
        return fallback.decode(data if bracketed else _bracketed(data))
    except ChunkError as exc:
        if not bracketed and exc.offset is not None:  # the "[" added in front
            exc.offset = min(max(exc.offset - 1, 0), len(data))
        raise


