"""The general decoder: msgspec, for chunks the C scanner does not take.

Used for malformed or unusual chunks (the scanner raises on anything it does
not expect: non-numeric ids, odd phases, broken JSON) and for every chunk when
the scanner was not built. It decodes into small typed structs that keep only
the fields perfkit uses (everything else, e.g. ``Input Dims``, is skipped
without building objects), then turns the structs into the same columns as
the scanner. Imported only when needed: it costs ~20 ms of imports.
"""

from __future__ import annotations

import gc
import math
import operator
from collections import Counter
from typing import Any, Optional, Union

import msgspec
import numpy as np

from . import model as m
from .decode import _LINKED_KINDS, ChunkError, _int_id, _narrow


class _Args(msgspec.Struct, gc=False):
    correlation: int = -1
    ext_id: int = msgspec.field(default=-1, name="External id")
    ext_id_old: int = msgspec.field(default=-1, name="external id")
    seq: int = msgspec.field(default=-1, name="Sequence number")
    fwd_tid: int = msgspec.field(default=-1, name="Fwd thread id")
    nbytes: int = msgspec.field(default=-1, name="bytes")
    py_id: Optional[int] = msgspec.field(default=-1, name="Python id")
    py_parent: Optional[int] = msgspec.field(default=-1, name="Python parent id")  # null for root frames
    stack: Any = msgspec.field(default=None, name="Call stack")
    # [memory] instants
    mem_bytes: int = msgspec.field(default=-1, name="Bytes")
    total_alloc: int = msgspec.field(default=-1, name="Total Allocated")
    total_res: int = msgspec.field(default=-1, name="Total Reserved")
    dev_type: int = msgspec.field(default=-1, name="Device Type")
    dev_id: int = msgspec.field(default=-1, name="Device Id")
    # metadata events (thread_name / process_name)
    name: Any = None


_NO_ARGS = _Args()


class _Event(msgspec.Struct, gc=False, tag="X", tag_field="ph"):
    """A complete (timed) event: the rows of the event table."""

    cat: Any = ""
    name: Any = ""
    pid: Any = 0
    tid: Any = 0
    ts: float = math.nan
    dur: float = 0.0
    args: Optional[_Args] = None


class _Meta(msgspec.Struct, gc=False, tag="M", tag_field="ph"):
    name: Any = ""
    pid: Any = 0
    tid: Any = 0
    args: Optional[_Args] = None


class _Instant(msgspec.Struct, gc=False, tag="i", tag_field="ph"):
    name: Any = ""
    ts: float = math.nan
    args: Optional[_Args] = None


class _InstantOld(_Instant, tag="I"):
    pass


# Every other Chrome trace-event phase: counted, not kept (flows, counters, async...).
_OTHER_PHASES = "BEbenstfCPONDR()Vv"
_OTHERS = tuple(
    msgspec.defstruct(f"_Ph_{ord(ph)}", [], tag=ph, tag_field="ph", gc=False) for ph in _OTHER_PHASES
)
_ANY_EVENT = Union[(_Event, _Meta, _Instant, _InstantOld) + _OTHERS]  # type: ignore[valid-type]


_DECODER = msgspec.json.Decoder(list[_ANY_EVENT])  # type: ignore[valid-type]
_LOOSE = msgspec.json.Decoder()


def decode(buf: Any) -> dict[str, Any]:
    """Columns of a bracketed chunk (``[`` events ``]``), as :func:`perfkit.trace.decode.decode_chunk` returns them.

    Raises:
        ChunkError: if the bytes are not valid JSON event objects.
    """
    was_enabled = gc.isenabled()
    gc.disable()  # millions of small acyclic objects: the cyclic GC only costs time here
    try:
        try:
            events = _DECODER.decode(buf)
        except msgspec.ValidationError:
            try:
                events = _loose_decode(bytes(buf))
            except msgspec.DecodeError as exc:
                raise ChunkError(str(exc)) from None
        except msgspec.DecodeError as exc:
            raise ChunkError(str(exc)) from None
        return _to_columns(events, has_stacks=_STACK_KEY in buf)
    finally:
        if was_enabled:
            gc.enable()


class _IdCache(dict):
    def __missing__(self, key: Any) -> int:
        value = _int_id(key)
        self[key] = value
        return value


def _num(value: Any) -> float:
    """A numeric arg -> float; None/garbage -> nan."""
    if value is None:
        return math.nan
    t = type(value)
    if t is int or t is float:
        return value
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def _float_col(values: list[Any]) -> np.ndarray:
    try:
        return np.array(values, dtype=np.float64)
    except (TypeError, ValueError):
        return np.array([_num(v) for v in values], dtype=np.float64)


def _id_col(values: list[int]) -> np.ndarray:
    """Integer ids (absent ones already MISSING, by the struct defaults) -> int64."""
    try:
        return np.array(values, dtype=np.int64)
    except TypeError:  # null ids (a root python frame has "Python parent id": null)
        return _id_col([m.MISSING if v is None else v for v in values])
    except OverflowError:  # ids beyond int64 (hashes): keep them distinct but bounded
        return np.array([v if -(2**63) <= v < 2**63 else hash(v) for v in values], dtype=np.int64)


# Call stacks (2021 traces) are rare: skip their Python-level extraction when absent.
_STACK_KEY = b'"Call stack"'


def _loose_decode(buf: bytes) -> list[Any]:
    """Slow path for chunks with unexpected types or phases: decode untyped, coerce."""
    raw = _LOOSE.decode(buf)
    out: list[Any] = []
    for item in raw:
        if not isinstance(item, dict):
            continue
        ph = item.get("ph")
        cls = {"X": _Event, "M": _Meta, "i": _Instant, "I": _Instant}.get(ph) if isinstance(ph, str) else None
        if cls is None:
            continue
        fields = {k: v for k, v in item.items() if k not in ("args", "ph")}
        for key in ("ts", "dur"):
            if key in fields and not isinstance(fields[key], (int, float)):
                try:
                    fields[key] = float(fields[key])
                except (TypeError, ValueError):
                    fields.pop(key)
        try:
            ev = msgspec.convert(fields, cls, strict=False)
        except msgspec.ValidationError:
            continue
        args = item.get("args")
        if isinstance(args, dict):
            ev.args = _loose_args(args)
        out.append(ev)
    return out


def _loose_args(args: dict[str, Any]) -> _Args:
    """Keep the args that convert; drop values of the wrong type (e.g. "N/A" ids)."""
    try:
        return msgspec.convert(args, _Args, strict=False)
    except msgspec.ValidationError:
        pass
    kept = {}
    for key, value in args.items():
        try:
            msgspec.convert({key: value}, _Args, strict=False)
        except msgspec.ValidationError:
            continue
        kept[key] = value
    return msgspec.convert(kept, _Args, strict=False)


def _to_columns(events: list[Any], has_stacks: bool) -> dict[str, Any]:
    counts: dict[str, int] = {}
    meta_events: list[tuple[Any, Any, Any, Any]] = []
    xs = [e for e in events if type(e) is _Event]
    if len(xs) != len(events):
        for t, c in Counter(map(type, events)).items():
            if t is not _Event:
                counts["ph:" + t.__struct_config__.tag] = c
        meta_events = [
            (e.name, e.pid, e.tid, e.args.name if e.args is not None else None)
            for e in events
            if type(e) is _Meta
        ]
    if counts.get("ph:i"):
        memory = _memory_columns([e for e in events if type(e) is _Instant and e.name == "[memory]"])
    else:
        memory = _memory_columns([])
    del events

    n = len(xs)
    cat_local: dict[Any, int] = {}
    cat_codes = np.fromiter(map(cat_local.setdefault, [e.cat for e in xs], range(n)), np.int64, n)
    lut = np.zeros(n + 1 if n else 1, dtype=np.int8)
    for c, first in cat_local.items():
        lut[first] = m.CATEGORY_KINDS.get(c.lower() if isinstance(c, str) else "", m.Kind.OTHER)
    kind = lut[cat_codes] if n else np.zeros(0, np.int8)
    del cat_codes

    names_local: dict[Any, int] = {}
    name_first = np.fromiter(map(names_local.setdefault, [e.name for e in xs], range(n)), np.int64, n)
    names, name_codes = _compact(names_local, name_first, n)

    pid = _pid_col([e.pid for e in xs])
    tid = _pid_col([e.tid for e in xs])
    ts = _float_col([e.ts for e in xs])
    dur = _float_col([e.dur for e in xs])
    np.nan_to_num(dur, copy=False, nan=0.0)

    args = [e.args or _NO_ARGS for e in xs]
    del xs
    ext = _id_col([a.ext_id for a in args])
    missing_ext = np.flatnonzero(ext == m.MISSING)
    if len(missing_ext):  # 2021 traces spell it "external id" on device events
        ext[missing_ext] = _id_col([args[i].ext_id_old for i in missing_ext.tolist()])
    # Args that only some kinds carry are read for those rows alone.
    linked = _rows(kind, _LINKED_KINDS)
    cpu_ops = _rows(kind, (m.Kind.CPU_OP,))
    python = _rows(kind, (m.Kind.PYTHON,))
    cols = {
        m.KIND: kind,
        m.PID: pid,
        m.TID: tid,
        m.TS: ts,
        m.DUR: dur,
        m.CORR: _subset_col(args, linked, "correlation", n),
        m.EXT: _narrow(ext),
        m.SEQ: _subset_col(args, cpu_ops, "seq", n),
        m.FWD_TID: _subset_col(args, cpu_ops, "fwd_tid", n),
        m.BYTES: _subset_col(args, _rows(kind, (m.Kind.MEMCPY, m.Kind.MEMSET)), "nbytes", n),
        m.PY_ID: _subset_col(args, python, "py_id", n),
        m.PY_PARENT: _subset_col(args, python, "py_parent", n),
    }
    # Call stacks (old traces, with_stack=True): interned into the same string table.
    stack_codes = np.full(n, m.MISSING, dtype=np.int32)
    if has_stacks:
        stack_index: dict[str, int] = {}
        for i, s in [(i, a.stack) for i, a in enumerate(args) if a.stack is not None]:
            if not isinstance(s, str):
                s = ";".join(map(str, s)) if isinstance(s, list) else str(s)
            code = stack_index.get(s)
            if code is None:
                code = stack_index[s] = len(names)
                names.append(s)
            stack_codes[i] = code
    cols[m.STACK] = stack_codes
    cols[m.NAME] = name_codes

    keep = ~np.isnan(ts)
    if not keep.all():
        counts["X:no-ts"] = int((~keep).sum())
        cols = {k: v[keep] for k, v in cols.items()}
    return {"events": cols, "names": names, "memory": memory, "meta_events": meta_events, "counts": counts}


def _pid_col(values: list[Any]) -> np.ndarray:
    """pid/tid column: ints (and numeric strings) fast; other strings through _int_id."""
    try:
        return np.array(values, dtype=np.int64)
    except (TypeError, ValueError, OverflowError):
        return np.fromiter(map(_IdCache().__getitem__, values), np.int64, len(values))


def _rows(kind: np.ndarray, kinds: tuple[m.Kind, ...]) -> list[int]:
    return np.flatnonzero(np.isin(kind, np.array(kinds, dtype=np.int8))).tolist()


def _subset_col(args: list[_Args], rows: list[int], attr: str, n: int) -> np.ndarray:
    """Column ``attr`` of ``args`` read for ``rows`` only; MISSING elsewhere."""
    out = np.full(n, m.MISSING, dtype=np.int64)
    if len(rows):
        get = operator.attrgetter(attr)
        out[rows] = _id_col([get(args[i]) for i in rows])
    return _narrow(out)


def _compact(first_of: dict[Any, int], first_idx: np.ndarray, n: int) -> tuple[list[str], np.ndarray]:
    """Map first-occurrence indices to dense codes 0..k-1 and return the string table."""
    names: list[str] = []
    lut = np.zeros(n + 1 if n else 1, dtype=np.int32)
    for value, first in first_of.items():
        lut[first] = len(names)
        names.append(value if isinstance(value, str) else str(value))
    return names, (lut[first_idx] if n else np.zeros(0, np.int32))


def _memory_columns(events: list[_Event]) -> dict[str, np.ndarray]:
    args = [e.args or _NO_ARGS for e in events]
    return {
        m.MEM_TS: _float_col([e.ts for e in events]),
        m.MEM_BYTES: _id_col([a.mem_bytes for a in args]),
        m.MEM_ALLOCATED: _id_col([a.total_alloc for a in args]),
        m.MEM_RESERVED: _id_col([a.total_res for a in args]),
        m.MEM_DEVICE_TYPE: _id_col([a.dev_type for a in args]),
        m.MEM_DEVICE_ID: _id_col([a.dev_id for a in args]),
    }
