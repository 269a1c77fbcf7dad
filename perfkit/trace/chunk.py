"""What both decoders share (:mod:`perfkit.trace.decode`, the C scanner's front, and
:mod:`perfkit.trace.fallback`, the general decoder): the chunk error, the time bound, how ids are
cleaned and how the id columns of timed events are built."""

from __future__ import annotations

import zlib
from typing import Any, Optional

import numpy as np

from . import model as m

#: |ts| and dur beyond this many µs (~31,700 years) are absurd (_scan.c MAX_TIME_US).
MAX_TIME_US = 1e18


#: An id arg that is not an int64 integer, as both decoders mark it before :func:`id_columns`.
BAD_ID = -(2**63) + 1


def id_columns(kind: np.ndarray, ids: dict[str, np.ndarray], any_bad: bool = True,
               ) -> tuple[dict[str, np.ndarray], int]:
    """The id columns of timed events from the args as read (MISSING absent, BAD_ID of a wrong type).

    Each arg is kept only for the kinds that carry it (``correlation`` for launches and device ops,
    ``Sequence number`` for CPU ops, ``bytes`` for copies, ...). A BAD_ID is counted where it would
    be kept (ROCm traces write ``"bytes": "8"`` on runtime calls, where no column keeps it) and is
    then absent. ``External id`` falls back to the 2021 spelling ``external id``.
    """
    bad = 0

    def take(col: np.ndarray) -> np.ndarray:
        nonlocal bad
        if not any_bad:  # the decoder saw none (the common case: no pass over the column)
            return col
        hit = col == BAD_ID
        if hit.any():
            bad += int(hit.sum())
            col = np.where(hit, m.MISSING, col)
        return col

    def only(name: str, kinds: tuple[m.Kind, ...]) -> np.ndarray:
        # compared as plain ints: numpy probes an enum member for array attributes (~8 µs a
        # comparison, ~0.1 ms of every chunk's decode)
        mask = kind == int(kinds[0])
        for k in kinds[1:]:
            mask |= kind == int(k)
        return _narrow(take(np.where(mask, ids[name], m.MISSING)))

    ext = take(ids["ext_id"])
    missing = ext == m.MISSING
    if missing.any():  # 2021 traces spell it "external id" on device events
        ext = np.where(missing, take(np.where(missing, ids["ext_id_old"], m.MISSING)), ext)
    return {
        m.CORR: only("correlation", _LINKED_KINDS),
        m.EXT: _narrow(ext),
        m.SEQ: only("seq", (m.Kind.CPU_OP,)),
        m.FWD_TID: only("fwd_tid", (m.Kind.CPU_OP,)),
        m.BYTES: only("nbytes", (m.Kind.MEMCPY, m.Kind.MEMSET)),
        m.PY_ID: only("py_id", (m.Kind.PYTHON,)),
        m.PY_PARENT: only("py_parent", (m.Kind.PYTHON,)),
    }, bad


class ChunkError(ValueError):
    """The chunk is not a valid run of JSON event objects.

    ``offset``: the byte (in the bytes given to the decoder) where the error was found, or None
    if the decoder did not say; ``event_offset``: where the event holding it began, if known.
    """

    def __init__(self, message: str, offset: Optional[int] = None, event_offset: Optional[int] = None):
        super().__init__(message)
        self.offset = offset
        self.event_offset = event_offset


_INT64_MIN, _INT64_END = -(2**63), 2**63


def clean_id(value: Any) -> Any:
    """A pid/tid as the definition takes it: an int within int64 (an integral float becomes one),
    or a str; None for anything else (a fraction, beyond int64, inf, bool, null, object, list)."""
    t = type(value)
    if t is int:
        return value if _INT64_MIN <= value < _INT64_END else None
    if t is str:
        return value
    if t is float and value.is_integer() and _INT64_MIN <= value < _INT64_END:
        return int(value)
    return None


def clean_arg_id(value: Any) -> Optional[int]:
    """An id arg (correlation, External id, ...): its int64 value, MISSING for null, None if bad."""
    if value is None:
        return m.MISSING
    t = type(value)
    if t is int:
        return value if _INT64_MIN <= value < _INT64_END else None
    if t is float and value.is_integer() and _INT64_MIN <= value < _INT64_END:
        return int(value)
    return None


def _int_id(value: Any) -> int:
    """pid/tid/ids as written (int, integral float, numeric string, "stream 7", "Spans") -> int."""
    if type(value) is int:
        return value if _INT64_MIN <= value < _INT64_END else m.MISSING
    if type(value) is float:
        return int(value) if value.is_integer() and _INT64_MIN <= value < _INT64_END else m.MISSING
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("stream "):
            text = text[7:].strip()
        try:
            number = int(text)
            if _INT64_MIN <= number < _INT64_END:
                return number
        except ValueError:
            pass
        # Non-numeric names ("Spans", "Traces", ""), or numbers beyond int64: a stable negative id.
        return -1 - zlib.crc32(value.encode("utf-8", "replace"))
    return m.MISSING


def _narrow(col: np.ndarray) -> np.ndarray:
    """int64 ids -> int32 when they fit (halves memory; concatenation re-widens if needed)."""
    if len(col) and col.max() < 2**31 and col.min() >= -(2**31):
        return col.astype(np.int32)
    return col


_LINKED_KINDS = (m.Kind.RUNTIME, m.Kind.DRIVER, m.Kind.KERNEL, m.Kind.MEMCPY, m.Kind.MEMSET, m.Kind.SYNC)
