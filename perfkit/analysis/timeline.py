"""Derived views of a trace that every analysis pass shares.

:class:`Timeline` holds the trace's columns with times relative to the trace
start (µs), a per-thread time offset that lets one vectorised interval query
serve all threads at once, and name masks computed once per string table.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from functools import cached_property
from typing import Optional

import numpy as np

from ..trace import model as m
from ..arrays import distinct
from .fold import lowered, name_search
from . import intervals


#: Answers of :func:`name_mask` remembered across traces analysed by one process (the ranks of a job
#: share their names), once :func:`remember_across_traces` is on; for at most this many distinct
#: names, forgotten when full.
NAME_MEMO_MAX = 500_000
#: Up to this many events, :meth:`Timeline.matches` keeps each pattern's per-event answer (one byte an
#: event; ~25 patterns: at most ~6.5 MB) instead of gathering it from the per-name answer at every call
#: (a DLRM rank asks 21 patterns 32 times); larger traces keep only the per-name answers.
EVENT_MASK_MAX_EVENTS = 1 << 18
_REMEMBER = [False]


class _Remembered:
    """Every distinct name seen gets an index once; each pattern keeps its answers as a bool array
    over the indices (grown as new names come). A trace's names are mapped to indices once, then each
    pattern's answer for the whole trace is one gather (a job's ranks ask ~25 patterns each)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.clear()

    def clear(self) -> None:
        self.index: dict[str, int] = {}
        self.texts: list[str] = []
        self.masks: dict[str, np.ndarray] = {}
        self.last: Optional[tuple[list[str], np.ndarray]] = None  # a names list (by identity), its indices

    def mask(self, names: list[str], pattern: str) -> np.ndarray:
        with self.lock:
            if self.last is not None and self.last[0] is names:
                idx = self.last[1]
            else:
                if len(self.texts) + len(names) > NAME_MEMO_MAX:
                    self.clear()
                texts = _match_texts(names)
                # A later rank's names are all known: one lookup per name in C (map over dict.get), the
                # Python-level _index_of only when one is new (a DLRM rank's 280 names: 34 -> 23 µs).
                known = list(map(self.index.get, texts))
                if None in known:
                    known = list(map(self._index_of, texts))
                idx = np.array(known, dtype=np.int64) if known else np.zeros(0, np.int64)
                self.last = (names, idx)
            have = self.masks.get(pattern)
            done = 0 if have is None else len(have)
            if done < len(self.texts):
                new = _answers(self.texts[done:], pattern)
                have = new if have is None else np.concatenate([have, new])
                self.masks[pattern] = have
            assert have is not None
            return have[idx]

    def _index_of(self, text: str) -> int:
        i = self.index.get(text)
        if i is None:
            i = self.index[text] = len(self.texts)
            self.texts.append(text)
        return i


_REMEMBERED = _Remembered()


def remember_across_traces(on: bool = True) -> None:
    """Remember name-pattern answers and device-op categories across the traces this process analyses.

    Off by default: remembering costs about 15 ms on the first trace and saves about 50 ms on every
    later one of the same job (the ranks share their op and kernel names), so the rank engines
    (:mod:`perfkit.job.engines`), which analyse many traces per process, turn it on.
    """
    _REMEMBER[0] = on
    if not on:
        with _REMEMBERED.lock:
            _REMEMBERED.clear()


def remembering() -> bool:
    return _REMEMBER[0]


def _match_texts(names: list[str]) -> list[str]:
    """The part of each name the patterns look at (rules.match_text, inlined)."""
    from .rules import MATCH_CHARS

    return [t if len(t) <= MATCH_CHARS else t[:MATCH_CHARS] for t in names]


def _answers(texts: list[str], pattern: str) -> np.ndarray:
    """Does each text match ``pattern`` (regex search)."""
    search = name_search(pattern)
    if search.folded is None:
        return np.fromiter((search.exact(t) is not None for t in texts), dtype=bool, count=len(texts))
    return np.fromiter(map(search, texts, lowered(texts)), dtype=bool, count=len(texts))


def name_mask(names: list[str], pattern: str) -> np.ndarray:
    """Boolean per string-table entry: does the name match ``pattern`` (regex search)."""
    if _REMEMBER[0]:
        return _REMEMBERED.mask(names, pattern)
    return _answers(_match_texts(names), pattern)


@dataclass(frozen=True)
class CallTree:
    """The call tree of a trace's CPU ops (``cpu_op`` events; annotations are not parents).

    Nesting is per thread (thread-offset times, :meth:`Timeline.offset_span`). Indices
    (``parent``, ``root``, ``outer``) are positions in ``rows``.
    """

    rows: np.ndarray  #: CPU op event rows, ascending
    start: np.ndarray  #: thread-offset start, µs
    end: np.ndarray  #: thread-offset end, µs
    parent: np.ndarray  #: the immediate parent, -1 for an outermost op
    root: np.ndarray  #: the outermost op of each op's tree (itself for an outermost op)
    outer: np.ndarray  #: the outermost ops, by thread-offset start (they do not overlap)
    dur_us: np.ndarray  #: duration, µs
    self_us: np.ndarray  #: duration minus that of the ops called directly inside it (at least 0), µs

    @classmethod
    def build(cls, tl: "Timeline") -> "CallTree":
        rows = tl.rows(m.Kind.CPU_OP)
        s, e = tl.offset_span(rows)
        parent = intervals.parent_index(s, e)
        dur = tl.end[rows] - tl.start[rows]
        has = parent >= 0
        child_sum = np.bincount(parent[has], weights=dur[has], minlength=len(rows))
        outer = np.flatnonzero(~has)
        outer = outer[np.argsort(s[outer], kind="stable")]
        return cls(rows=rows, start=s, end=e, parent=parent, root=intervals.root_index(parent), outer=outer,
                   dur_us=dur, self_us=np.maximum(dur - child_sum, 0.0))


@dataclass
class Timeline:
    """The trace in analysis form.

    Attributes:
        trace: the loaded trace.
        t0_us: the origin subtracted from all times (the earliest event start).
        start: event starts, µs from ``t0_us``.
        end: event ends, µs from ``t0_us``.
        thread: dense thread index per event (one per (pid, tid) pair).
        span_us: per-thread offset unit; ``thread * span_us + start`` keeps threads apart.
    """

    trace: m.Trace
    t0_us: float = 0.0
    start: np.ndarray = field(default_factory=lambda: np.zeros(0))
    end: np.ndarray = field(default_factory=lambda: np.zeros(0))
    thread: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    span_us: float = 1.0
    _rows_cache: dict = field(default_factory=dict, repr=False)
    _name_masks: dict = field(default_factory=dict, repr=False)
    _cpu_calls: Optional[CallTree] = field(default=None, init=False, repr=False, compare=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False, compare=False)

    @classmethod
    def build(cls, trace: m.Trace) -> "Timeline":
        ev = trace.events
        ts = ev[m.TS]
        t0 = float(ts.min()) if len(ts) else 0.0
        start = ts - t0
        end = start + np.maximum(ev[m.DUR], 0.0)
        thread = _thread_index(ev[m.PID], ev[m.TID])
        span = float(end.max()) + 1.0 if len(end) else 1.0
        return cls(trace=trace, t0_us=t0, start=start, end=end, thread=thread.astype(np.int64, copy=False), span_us=span)

    @property
    def kind(self) -> np.ndarray:
        return self.trace.events[m.KIND]

    @property
    def name(self) -> np.ndarray:
        return self.trace.events[m.NAME]

    def col(self, name: str) -> np.ndarray:
        return self.trace.events[name]

    def rows(self, *kinds: m.Kind) -> np.ndarray:
        """Row indices of events of the given kinds (cached: passes ask for the same sets)."""
        hit = self._rows_cache.get(kinds)  # as asked (Kind members hash and compare as their ints): the
        if hit is not None:  # sorted key (~0.7 µs a call, 32 calls a DLRM rank) only the first time
            return hit
        key = tuple(sorted(int(k) for k in kinds))
        hit = self._rows_cache.get(key)
        if hit is None:
            wanted = np.zeros(256, dtype=bool)  # a table by kind code: cheaper than np.isin on small traces
            wanted[list(key)] = True
            codes = self.kind.view(np.uint8) if self.kind.dtype == np.int8 else self.kind.astype(np.intp)
            hit = np.flatnonzero(wanted[codes])
            hit.flags.writeable = False  # shared between passes
            self._rows_cache[key] = hit
        self._rows_cache[kinds] = hit
        return hit

    def matches(self, pattern: str) -> np.ndarray:
        """Per-event boolean (read-only): the event's name matches ``pattern``."""
        n = len(self.name)
        if not n:
            return np.zeros(0, bool)
        small = n <= EVENT_MASK_MAX_EVENTS
        mask = self._name_masks.get(pattern)
        if mask is None:
            mask = name_mask(self.trace.names, pattern)  # one regex pass over the string table per pattern
            if small:  # spread over the events once, shared between passes
                mask = mask[self.name]
                mask.flags.writeable = False
            self._name_masks[pattern] = mask
        return mask if small else mask[self.name]

    def offset(self, rows: np.ndarray, t: np.ndarray | None = None) -> np.ndarray:
        """Thread-offset times (start of ``rows``, or ``t`` on the rows' threads)."""
        base = self.start[rows] if t is None else t
        return self.thread[rows] * self.span_us + base

    def offset_span(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Thread-offset (start, end) of ``rows``: intervals of different threads never meet."""
        off = self.thread[rows] * self.span_us
        return off + self.start[rows], off + self.end[rows]

    def thread_coverage(self, rows: np.ndarray) -> intervals.Coverage:
        """Union of the given events' intervals, kept per thread (query with :meth:`offset`)."""
        return intervals.Coverage(*self.offset_span(rows))

    def cpu_calls(self) -> CallTree:
        """The CPU ops' call tree: built once, shared by the passes (and the threads they run on)."""
        with self._lock:
            if self._cpu_calls is None:
                self._cpu_calls = CallTree.build(self)
            return self._cpu_calls

    def thread_name(self, pid: int, tid: int) -> str:
        return self.trace.thread_names.get((pid, tid), "")

    @cached_property
    def thread_ids(self) -> dict[int, tuple[int, int]]:
        """Dense thread index -> (pid, tid)."""
        pid = self.trace.events[m.PID]
        tid = self.trace.events[m.TID]
        n_threads = int(self.thread.max()) + 1 if len(self.thread) else 0
        out = {}
        for i in range(n_threads):  # few threads, millions of events: one scan per thread
            r = int(np.argmax(self.thread == i))
            if self.thread[r] == i:
                out[i] = (int(pid[r]), int(tid[r]))
        return out


def _thread_index(pid: np.ndarray, tid: np.ndarray) -> np.ndarray:
    """Dense index per distinct (pid, tid), in the order of the pairs.

    Traces hold few threads but millions of events, and events of one thread
    come in runs: the pairs are resolved once per run (a run starts where pid or
    tid changes), then spread over the run.
    """
    n = len(pid)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    change = np.empty(n, dtype=bool)
    change[0] = True
    np.not_equal(pid[1:], pid[:-1], out=change[1:])
    change[1:] |= tid[1:] != tid[:-1]
    run_start = np.flatnonzero(change)
    p = pid[run_start].astype(np.int64, copy=False)
    t = tid[run_start].astype(np.int64, copy=False)
    lim = 1 << 31
    if -lim <= min(p.min(), t.min()) and max(p.max(), t.max()) < lim:
        # Both fit in 32 bits (the usual case): one key that sorts like the pair.
        key = (p << 32) + (t + lim)
    else:
        # (pid, tid) -> small codes -> one key, ordered as the pairs; unique() without
        # return_inverse plus a search is much faster than unique(..., return_inverse).
        pu, tu = distinct(p), distinct(t)
        key = np.searchsorted(pu, p) * len(tu) + np.searchsorted(tu, t)
    index = np.searchsorted(distinct(key), key)
    lengths = np.diff(np.append(run_start, n))
    return np.repeat(index.astype(np.int64, copy=False), lengths)
