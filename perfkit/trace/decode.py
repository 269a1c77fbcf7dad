"""Decode one chunk of ``traceEvents`` JSON into columns.

A chunk is the bytes of a run of complete event objects separated by commas
(no surrounding brackets needed). :func:`decode_chunk` hands it to the C
scanner (``_scan.c``), which writes the fields perfkit uses straight into
columns; a chunk the scanner does not take (malformed or unusual JSON), or
every chunk when the scanner was not built, goes to the general msgspec
decoder in :mod:`perfkit.trace.fallback`. Both give the same columns. Input and
output are plain picklable data (chunks may be decoded in worker processes).
"""

from __future__ import annotations

import zlib
from typing import Any, Optional

import numpy as np

from . import model as m


try:  # the optional C scanner (setup.py builds it); fallback.py is the general decoder
    from . import _scan
except ImportError:  # pragma: no cover (depends on the build)
    _scan = None


def _scan_columns(buf: Any) -> Optional[dict[str, Any]]:
    """Columns from the C scanner, in the same form as :func:`_to_columns`; None to fall back."""
    try:
        raw = _scan.scan(buf)  # type: ignore[union-attr]
    except ValueError:
        return None
    arena = raw["str_arena"]
    offs = np.frombuffer(raw["str_offsets"], np.int64).tolist()
    lens = np.frombuffer(raw["str_lengths"], np.int64).tolist()
    escs = raw["str_escaped"]
    strings: list[str] = []
    for o, n, e in zip(offs, lens, escs):
        piece = arena[o : o + n]
        if e:
            import msgspec  # escapes are rare: only chunks holding one need the decoder

            try:
                strings.append(msgspec.json.decode(b'"' + piece + b'"'))
            except msgspec.DecodeError:
                return None
        else:
            strings.append(piece.decode("utf-8", "replace"))
    i32 = lambda key: np.frombuffer(raw[key], np.int32)  # noqa: E731
    i64 = lambda key: np.frombuffer(raw[key], np.int64)  # noqa: E731
    f64 = lambda key: np.frombuffer(raw[key], np.float64)  # noqa: E731

    cat = i32("cat")
    kind_of = np.array(
        [m.CATEGORY_KINDS.get(x.lower(), m.Kind.OTHER) for x in strings] or [0], dtype=np.int8
    )
    kind = kind_of[cat] if len(cat) else np.zeros(0, np.int8)

    def ids(values: np.ndarray, codes: np.ndarray) -> np.ndarray:
        out = values.copy()
        has = codes >= 0
        if has.any():
            uniq = np.unique(codes[has])
            lut = {int(c): _int_id(strings[int(c)]) for c in uniq}
            out[has] = [lut[int(c)] for c in codes[has]]
        return out

    def only(col: np.ndarray, kinds: tuple[m.Kind, ...]) -> np.ndarray:
        out = np.where(np.isin(kind, np.array(kinds, dtype=np.int8)), col, m.MISSING)
        return _narrow(out)

    ext = i64("ext_id").copy()
    old = i64("ext_id_old")
    missing = ext == m.MISSING
    ext[missing] = old[missing]
    dur = f64("dur").copy()
    np.nan_to_num(dur, copy=False, nan=0.0)
    cols = {
        m.KIND: kind,
        m.PID: ids(i64("pid"), i32("pid_s")),
        m.TID: ids(i64("tid"), i32("tid_s")),
        m.TS: f64("ts"),  # read-only views on the scanner's bytes: concatenated later anyway
        m.DUR: dur,
        m.CORR: only(i64("corr"), _LINKED_KINDS),
        m.EXT: _narrow(ext),
        m.SEQ: only(i64("seq"), (m.Kind.CPU_OP,)),
        m.FWD_TID: only(i64("fwd_tid"), (m.Kind.CPU_OP,)),
        m.BYTES: only(i64("bytes"), (m.Kind.MEMCPY, m.Kind.MEMSET)),
        m.PY_ID: only(i64("py_id"), (m.Kind.PYTHON,)),
        m.PY_PARENT: only(i64("py_parent"), (m.Kind.PYTHON,)),
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
    counts = {f"ph:{chr(c)}": int(counts_arr[c]) for c in np.flatnonzero(counts_arr).tolist() if c not in (0, ord("X"))}
    if counts_arr[0]:
        counts["X:no-ts"] = int(counts_arr[0])
    return {"events": cols, "names": strings, "memory": memory, "meta_events": meta_events, "counts": counts}


class ChunkError(ValueError):
    """The chunk is not a valid run of JSON event objects."""


def _int_id(value: Any) -> int:
    """pid/tid/ids as written (int, float, numeric string, "stream 7", "Spans") -> int."""
    if type(value) is int:
        return value
    if isinstance(value, float) and value == value:
        return int(value)
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("stream "):
            text = text[7:].strip()
        try:
            return int(text)
        except ValueError:
            # Non-numeric names ("Spans", "Traces", ""): a stable negative id.
            return -1 - zlib.crc32(value.encode("utf-8", "replace"))
    return m.MISSING


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
        ChunkError: if the bytes are not valid JSON event objects.
    """
    if _scan is not None:  # the scanner takes the bare events as well as the bracketed array
        fast = _scan_columns(data)
        if fast is not None:
            return fast
    from . import fallback  # the general decoder: malformed or unusual chunks, or no C scanner

    return fallback.decode(data if bracketed else _bracketed(data))


def _narrow(col: np.ndarray) -> np.ndarray:
    """int64 ids -> int32 when they fit (halves memory; concatenation re-widens if needed)."""
    if len(col) and col.max() < 2**31 and col.min() >= -(2**31):
        return col.astype(np.int32)
    return col


_LINKED_KINDS = (m.Kind.RUNTIME, m.Kind.DRIVER, m.Kind.KERNEL, m.Kind.MEMCPY, m.Kind.MEMSET, m.Kind.SYNC)


