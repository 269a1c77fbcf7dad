"""The general decoder: msgspec, for chunks the C scanner does not take.

Used for the chunks the scanner leaves to it (valid JSON of a rare form: an
escaped key, a time written as a string) and for every chunk when the scanner
was not built; both implement the definition in :mod:`perfkit.trace.decode`. It decodes into small typed structs that keep only
the fields perfkit uses (everything else, e.g. ``Input Dims``, is skipped
without building objects), then turns the structs into the same columns as
the scanner. Imported only when needed: it costs ~20 ms of imports.
"""

from __future__ import annotations

import gc
import re
from collections import Counter
from typing import Any, Optional, Union

import msgspec
import numpy as np

from . import model as m
from .chunk import BAD_ID, MAX_TIME_US, ChunkError, _int_id, _narrow, clean_arg_id, clean_id, id_columns


class _Args(msgspec.Struct, gc=False):
    # Values are untyped: the definition (decode.py) is applied to the columns, for both decoders alike.
    correlation: Any = -1
    ext_id: Any = msgspec.field(default=-1, name="External id")
    ext_id_old: Any = msgspec.field(default=-1, name="external id")
    seq: Any = msgspec.field(default=-1, name="Sequence number")
    fwd_tid: Any = msgspec.field(default=-1, name="Fwd thread id")
    nbytes: Any = msgspec.field(default=-1, name="bytes")
    py_id: Any = msgspec.field(default=-1, name="Python id")
    py_parent: Any = msgspec.field(default=-1, name="Python parent id")  # null for root frames
    stack: Any = msgspec.field(default=None, name="Call stack")
    # [memory] instants
    mem_bytes: Any = msgspec.field(default=-1, name="Bytes")
    total_alloc: Any = msgspec.field(default=-1, name="Total Allocated")
    total_res: Any = msgspec.field(default=-1, name="Total Reserved")
    dev_type: Any = msgspec.field(default=-1, name="Device Type")
    dev_id: Any = msgspec.field(default=-1, name="Device Id")
    # metadata events (thread_name / process_name)
    name: Any = None


_NO_ARGS = _Args()
#: The id args of timed events, in the scanner's order (_scan.c A_CORR .. A_PYPAR).
_EVENT_ID_ARGS = ("correlation", "ext_id", "ext_id_old", "seq", "fwd_tid", "nbytes", "py_id", "py_parent")
_ABSENT: Any = msgspec.UNSET  # a ts that was not given (None is a ts given as null)


class _Event(msgspec.Struct, gc=False, tag="X", tag_field="ph"):
    """A complete (timed) event: the rows of the event table."""

    cat: Any = ""
    name: Any = ""
    pid: Any = 0
    tid: Any = 0
    ts: Any = _ABSENT
    dur: Any = 0.0
    args: Optional[_Args] = None


class _Meta(msgspec.Struct, gc=False, tag="M", tag_field="ph"):
    name: Any = ""
    pid: Any = 0
    tid: Any = 0
    args: Optional[_Args] = None


class _Instant(msgspec.Struct, gc=False, tag="i", tag_field="ph"):
    name: Any = ""
    ts: Any = _ABSENT
    args: Optional[_Args] = None


class _InstantOld(_Instant, tag="I"):
    pass


# Every other Chrome trace-event phase: counted, not kept (flows, counters, async...).
_OTHER_PHASES = "BEbenstfCPONDR()Vv"
_OTHERS = tuple(
    msgspec.defstruct(f"_Ph_{ord(ph)}", [], tag=ph, tag_field="ph", gc=False) for ph in _OTHER_PHASES
)
_ANY_EVENT = Union[(_Event, _Meta, _Instant, _InstantOld) + _OTHERS]  # type: ignore[valid-type]
_CLASSES = {"X": _Event, "M": _Meta, "i": _Instant, "I": _InstantOld}


# float_hook: numbers beyond double's range read as +-inf (as the scanner's strtod reads them)
_DECODER = msgspec.json.Decoder(list[_ANY_EVENT], float_hook=float)  # type: ignore[valid-type]
_LOOSE = msgspec.json.Decoder(float_hook=float)
_BYTE = re.compile(r"\(byte (\d+)\)")

#: Containers nested deeper than this below the events array are malformed, for both decoders: the C
#: scanner's ``MAX_DEPTH`` (256, counted from an event's fields) is 257 counted from the array. msgspec
#: has no limit of its own but the interpreter's recursion limit, which other code changes (torch's
#: compiler raises it), so the depth is checked here, the same way on every run.
MAX_NESTING = 257
#: Byte classes for the nesting check: 1 opens a container, -1 closes one, 2 a quote, 3 a backslash.
_NEST_CODES = np.zeros(256, np.int8)
_NEST_CODES[[ord("["), ord("{")]] = 1
_NEST_CODES[[ord("]"), ord("}")]] = -1
_NEST_CODES[ord('"')] = 2
_NEST_CODES[ord("\\")] = 3


def too_deep(buf: Any) -> Optional[int]:
    """Offset of the first container nested more than :data:`MAX_NESTING` levels in valid JSON ``buf``
    (brackets inside strings do not count), or None. Vectorised: one table lookup over the bytes, then
    work on the brackets, quotes and backslashes only."""
    b = np.frombuffer(buf, dtype=np.uint8)
    codes = _NEST_CODES[b]
    pos = np.flatnonzero(codes)
    c = codes[pos]
    is_quote = c == 2
    # A quote right after a backslash is escaped when the run of backslashes before it is odd (rare).
    maybe = np.flatnonzero(is_quote[1:] & (c[:-1] == 3) & (pos[:-1] == pos[1:] - 1)) + 1
    for k in maybe.tolist():
        j = k - 1
        while j >= 0 and c[j] == 3 and pos[j] == pos[k] - (k - j):
            j -= 1
        if (k - 1 - j) % 2 == 1:
            is_quote[k] = False
    inside = (np.cumsum(is_quote) & 1).astype(bool)  # from an opening quote up to its closing one
    delta = np.where(((c == 1) | (c == -1)) & ~inside, c, 0).astype(np.int32)
    over = np.flatnonzero(np.cumsum(delta) > MAX_NESTING)
    return int(pos[over[0]]) if len(over) else None


def decode(buf: Any) -> dict[str, Any]:
    """Columns of a bracketed chunk (``[`` events ``]``), as :func:`perfkit.trace.decode.decode_chunk` returns them.

    Raises:
        ChunkError: if the bytes are not valid JSON event objects (``offset`` in ``buf``, when known).
    """
    was_enabled = gc.isenabled()
    gc.disable()  # millions of small acyclic objects: the cyclic GC only costs time here
    try:
        try:
            events, counts = _decode_events(buf)
        except UnicodeError:
            # Invalid UTF-8: each invalid sequence reads as U+FFFD (byte offsets then shift: an error
            # found after this has no offset)
            fixed = bytes(buf).decode("utf-8", "replace").encode("utf-8")
            try:
                events, counts = _decode_events(fixed)
            except ChunkError as exc:
                exc.offset = exc.event_offset = None
                raise
        deep = too_deep(buf)
        if deep is not None:
            raise ChunkError("nested too deeply", offset=deep)
        return _to_columns(events, counts, has_stacks=_STACK_KEY in buf)
    finally:
        if was_enabled:
            gc.enable()


def _decode_events(buf: Any) -> tuple[list[Any], Counter]:
    """Structs of the events, and counts of what is not one; UnicodeError on invalid UTF-8."""
    try:
        try:
            return _DECODER.decode(buf), Counter()
        except msgspec.ValidationError:  # an unknown phase, args not an object, an item not an object
            return _loose_decode(buf)
    except msgspec.DecodeError as exc:
        text = str(exc)
        if "UTF-8" in text:
            raise UnicodeError(text) from None
        mt = _BYTE.search(text)
        offset = int(mt.group(1)) if mt else (len(buf) if "truncated" in text else None)
        raise ChunkError(text, offset=offset) from None
    except RecursionError:
        raise ChunkError("nested too deeply") from None


class _IdCache(dict):
    def __missing__(self, key: Any) -> int:
        value = _int_id(key)
        self[key] = value
        return value


def _time(value: Any) -> Optional[float]:
    """A ts/dur value -> float, or None if it is not a finite number within MAX_TIME_US."""
    t = type(value)
    if t is float or t is int:
        try:
            f = float(value)
        except OverflowError:
            return None
    elif t is str:
        try:
            f = float(value)
        except ValueError:
            return None
    else:
        return None
    return f if -MAX_TIME_US <= f <= MAX_TIME_US else None


def _times(values: list[Any]) -> tuple[np.ndarray, np.ndarray]:
    """(float64 column, bad mask): bad where a value is not a finite number within MAX_TIME_US."""
    if set(map(type, values)) <= {float, int}:
        try:
            col = np.array(values, dtype=np.float64)
        except OverflowError:  # an integer beyond double's range
            col = None
        if col is not None:
            return col, ~(np.abs(col) <= MAX_TIME_US)
    got = [_time(v) for v in values]
    bad = np.fromiter((g is None for g in got), bool, len(got))
    col = np.fromiter((0.0 if g is None else g for g in got), np.float64, len(got))
    return col, bad


def _arg_ids(values: list[Any], bad_as: int = m.MISSING) -> tuple[np.ndarray, int]:
    """(int64 column: MISSING where absent, ``bad_as`` where not an int64 integer; number of those)."""
    if set(map(type, values)) <= {int}:
        try:
            return np.array(values, dtype=np.int64), 0
        except OverflowError:
            pass
    got = [clean_arg_id(v) for v in values]
    bad = sum(1 for g in got if g is None)
    return np.fromiter((bad_as if g is None else g for g in got), np.int64, len(got)), bad


# Call stacks (old traces) are rare: skip their Python-level extraction when absent.
_STACK_KEY = b'"Call stack"'


def _loose_decode(buf: Any) -> tuple[list[Any], Counter]:
    """Slow path for chunks with unknown phases or items of an odd shape: decode untyped, then build structs."""
    raw = _LOOSE.decode(buf)
    out: list[Any] = []
    counts: Counter = Counter()
    for item in raw if isinstance(raw, list) else ():
        if not isinstance(item, dict):
            counts["problem:not-object"] += 1
            continue
        ph = item.get("ph")
        code = ph if isinstance(ph, str) and len(ph) == 1 and ph < "\x80" else "?"
        cls = _CLASSES.get(code)
        if cls is None:
            counts["ph:" + code] += 1
            continue
        fields = {k: item[k] for k in cls.__struct_fields__ if k != "args" and k in item}
        ev = cls(**fields)
        args = item.get("args")
        if isinstance(args, dict):
            ev.args = msgspec.convert(args, _Args)  # untyped fields: never fails
        out.append(ev)
    return out, counts


def _to_columns(events: list[Any], counts: Counter, has_stacks: bool) -> dict[str, Any]:
    counts = Counter(counts)
    meta_events: list[tuple[Any, Any, Any, Any]] = []
    xs = [e for e in events if type(e) is _Event]
    if len(xs) != len(events):
        classes: Counter[type[msgspec.Struct]] = Counter(map(type, events))  # every event is a struct
        for t, c in classes.items():
            if t is not _Event:
                counts["ph:" + str(t.__struct_config__.tag)] += c  # the tags are one-character strings
        for e in events:
            if type(e) is _Meta and type(e.name) is str:
                pid, tid = clean_id(e.pid), clean_id(e.tid)
                if pid is not None and tid is not None:
                    arg = e.args.name if e.args is not None else None
                    meta_events.append((e.name, pid, tid, arg if type(arg) is str else None))
    instants = [e for e in events if type(e) is _Instant and e.name == "[memory]"] if counts.get("ph:i") else []
    memory = _memory_columns(instants, counts)
    del events

    # Drop what the definition drops, counted once per event (first reason: name, id, ts, dur).
    n = len(xs)
    names_raw = [e.name for e in xs]
    cats_raw = [e.cat for e in xs]
    bad_name = _not_str(names_raw) | _not_str(cats_raw)
    pid_raw = [e.pid for e in xs]
    tid_raw = [e.tid for e in xs]
    pid, bad_pid = _pid_col(pid_raw)
    tid, bad_tid = _pid_col(tid_raw)
    ts_raw = [e.ts for e in xs]
    no_ts = np.fromiter((v is _ABSENT for v in ts_raw), bool, n)
    ts, bad_ts = _times([0.0 if v is _ABSENT else v for v in ts_raw])
    dur, bad_dur = _times([e.dur for e in xs])
    reasons = [("bad-name", bad_name), ("bad-id", bad_pid | bad_tid), ("no-ts", no_ts),
               ("bad-ts", bad_ts), ("bad-dur", bad_dur)]
    dropped = np.zeros(n, bool)
    for code, mask in reasons:
        hit = mask & ~dropped
        if hit.any():
            counts["problem:" + code] += int(hit.sum())
            dropped |= hit
    keep_rows = np.flatnonzero(~dropped)
    if len(keep_rows) != n:
        keep = keep_rows.tolist()
        xs = [xs[i] for i in keep]
        names_raw = [names_raw[i] for i in keep]
        cats_raw = [cats_raw[i] for i in keep]
        pid, tid, ts, dur = pid[keep_rows], tid[keep_rows], ts[keep_rows], dur[keep_rows]
        n = len(xs)
    neg = dur < 0
    if neg.any():
        counts["problem:neg-dur"] += int(neg.sum())
        dur = np.where(neg, 0.0, dur)

    cat_local: dict[Any, int] = {}
    cat_codes = np.fromiter(map(cat_local.setdefault, cats_raw, range(n)), np.int64, n)
    lut = np.zeros(n + 1 if n else 1, dtype=np.int8)
    for c, first in cat_local.items():
        lut[first] = m.CATEGORY_KINDS.get(c.lower(), m.Kind.OTHER)
    kind = lut[cat_codes] if n else np.zeros(0, np.int8)
    del cat_codes

    names_local: dict[Any, int] = {}
    name_first = np.fromiter(map(names_local.setdefault, names_raw, range(n)), np.int64, n)
    names, name_codes = _compact(names_local, name_first, n)

    args = [e.args or _NO_ARGS for e in xs]
    del xs
    read = {attr: _arg_ids([getattr(a, attr) for a in args], BAD_ID) for attr in _EVENT_ID_ARGS}
    id_cols, bad_args = id_columns(kind, {attr: col for attr, (col, _) in read.items()},
                                   any_bad=any(nbad for _, nbad in read.values()))
    if bad_args:
        counts["problem:bad-arg"] += bad_args
    cols = {
        m.KIND: kind,
        m.PID: pid,
        m.TID: tid,
        m.TS: ts,
        m.DUR: dur,
        **id_cols,
    }
    # Call stacks (old traces, with_stack=True): interned into the same string table; not a string: absent.
    stack_codes = np.full(n, m.MISSING, dtype=np.int32)
    if has_stacks:
        stack_index = {s: i for i, s in enumerate(names)}
        for i, a in enumerate(args):
            s = a.stack
            if type(s) is not str:
                continue
            stack_code = stack_index.get(s)
            if stack_code is None:
                stack_code = stack_index[s] = len(names)
                names.append(s)
            stack_codes[i] = stack_code
    cols[m.STACK] = stack_codes
    cols[m.NAME] = name_codes
    return {"events": cols, "names": names, "memory": memory, "meta_events": meta_events, "counts": dict(counts)}


def _not_str(values: list[Any]) -> np.ndarray:
    if set(map(type, values)) <= {str}:
        return np.zeros(len(values), bool)
    return np.fromiter((type(v) is not str for v in values), bool, len(values))


def _pid_col(values: list[Any]) -> tuple[np.ndarray, np.ndarray]:
    """pid/tid column and bad mask: ints fast; strings through _int_id; other values bad."""
    n = len(values)
    if set(map(type, values)) <= {int}:
        try:
            return np.array(values, dtype=np.int64), np.zeros(n, bool)
        except OverflowError:
            pass
    clean = [clean_id(v) for v in values]
    bad = np.fromiter((c is None for c in clean), bool, n)
    cache = _IdCache()
    return np.fromiter((0 if c is None else cache[c] for c in clean), np.int64, n), bad


def _compact(first_of: dict[Any, int], first_idx: np.ndarray, n: int) -> tuple[list[str], np.ndarray]:
    """Map first-occurrence indices to dense codes 0..k-1 and return the string table."""
    names: list[str] = []
    lut = np.zeros(n + 1 if n else 1, dtype=np.int32)
    for value, first in first_of.items():
        lut[first] = len(names)
        names.append(value if isinstance(value, str) else str(value))
    return names, (lut[first_idx] if n else np.zeros(0, np.int32))


def _memory_columns(events: list[Any], counts: Counter) -> dict[str, np.ndarray]:
    """Columns of the ``[memory]`` instants with a valid ts (the others are counted as mem-ts)."""
    ts_raw = [e.ts for e in events]
    ts, bad = _times([0.0 if v is _ABSENT else v for v in ts_raw])
    bad |= np.fromiter((v is _ABSENT for v in ts_raw), bool, len(ts_raw))
    if bad.any():
        counts["problem:mem-ts"] += int(bad.sum())
        keep = np.flatnonzero(~bad)
        events = [events[i] for i in keep.tolist()]
        ts = ts[keep]
    args = [e.args or _NO_ARGS for e in events]

    def col(attr: str) -> np.ndarray:
        return _arg_ids([getattr(a, attr) for a in args])[0]

    return {
        m.MEM_TS: ts,
        m.MEM_BYTES: col("mem_bytes"),
        m.MEM_ALLOCATED: col("total_alloc"),
        m.MEM_RESERVED: col("total_res"),
        m.MEM_DEVICE_TYPE: col("dev_type"),
        m.MEM_DEVICE_ID: col("dev_id"),
    }
