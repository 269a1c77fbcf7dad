"""Top ops, top kernels, copies, and the Python source lines behind them."""

from __future__ import annotations

import re
import threading
from typing import Any, Iterable, Optional

import numpy as np

from ..trace import model as m
from ..arrays import distinct, distinct_inverse, median, member
from .fold import name_search
from . import intervals, rules
from .attribute import CATEGORY_CODES, DeviceWork, innermost_around
from .document import OP_BASIS_ANNOTATION, OP_BASIS_OP
from .timeline import Timeline, name_mask

_FRAME = re.compile(rules.FRAME_PATTERN)
_LIBRARY = re.compile(rules.LIBRARY_FRAME_PATTERN)
_INSTALL_PREFIX = re.compile(rules.INSTALL_PREFIX_PATTERN)


#: What the line number of a source means (docs/analysis.md "Top ops and kernels", "Source lines").
LINE_CALL = "call"  #: the line being executed: the call site (stack samples, 2021 ``Call stack`` args)
LINE_DEF = "def"  #: the function's definition line (torch's Python tracer, frames entered while tracing)
LINE_NONE = "none"  #: no meaningful line (the tracer's frames that were already running when it started)


def format_frame(frame: str, line: str = LINE_CALL) -> str:
    """``path/train.py(42): step`` -> ``path/train.py:42 step`` (a call-site line), ``path/train.py:42 step (def)``
    (the definition line) or ``path/train.py:? step`` (no line known)."""
    mt = _FRAME.match(frame.strip())
    if not mt:
        return frame.strip()
    if line == LINE_DEF:
        return f"{mt['file']}:{mt['line']} {mt['func']} (def)"
    if line == LINE_NONE:
        return f"{mt['file']}:? {mt['func']}"
    return f"{mt['file']}:{mt['line']} {mt['func']}"


def startup_frames(tl: Timeline) -> np.ndarray:
    """Python tracer rows (``python_function``) of frames that were already running when tracing started.

    torch's tracer records, when it starts, each thread's current stack as one chain of frames
    (consecutive ``Python id``s, each the parent of the next, from a root with no parent), with the
    line each frame was on at that moment, which is neither its definition nor a call of the
    profiled ops; frames entered later carry their definition line. Returns the chain's rows
    (empty without ``Python id``s). The chain of the thread that started the profiler may take in
    a few frames the profiler itself calls right after it: library frames, never a user's.
    """
    py = tl.rows(m.Kind.PYTHON)
    if len(py) == 0:
        return py
    pid, parent = tl.col(m.PY_ID)[py], tl.col(m.PY_PARENT)[py]
    ok = pid >= 0
    py, pid, parent = py[ok], pid[ok], parent[ok]
    if len(py) == 0:
        return py
    th = tl.thread[py]
    order = np.lexsort((pid, th))
    py, pid, parent, th = py[order], pid[order], parent[order], th[order]
    first = np.ones(len(py), dtype=bool)
    first[1:] = th[1:] != th[:-1]
    link = np.zeros(len(py), dtype=bool)
    link[1:] = (~first[1:]) & (pid[1:] == pid[:-1] + 1) & (parent[1:] == pid[:-1])
    run = np.cumsum(~link)  # runs of linked rows; a thread's first row starts a run
    head = first & (parent < 0)  # a thread's first frame is a root: the chain recorded at start
    runs, sizes = np.unique(run, return_counts=True)
    # A chain of one frame is no evidence of a recorded stack (a hand-built trace's frames carry ids but
    # no parents); a real start-up stack has at least the script's frame and the profiler's below it.
    long_runs = runs[sizes >= 2]
    chain_runs = np.intersect1d(distinct(run[head]), long_runs, assume_unique=True)
    return py[member(run, chain_runs)]


def user_frame(frames: Iterable[str]) -> Optional[str]:
    """The first of ``frames`` (innermost first) that is a Python frame (``rules.FRAME_PATTERN``)
    of user code (not ``rules.LIBRARY_FRAME_PATTERN``), None if there is none. An installed
    package's frame is taken without its install folder (``rules.INSTALL_PREFIX_PATTERN``), as
    torch's Python tracer writes it, and returned so."""
    for frame in frames:
        frame = _INSTALL_PREFIX.sub("", frame.strip(), count=1)
        if frame and _FRAME.match(frame) and not _LIBRARY.search(frame):
            return frame
    return None


def user_frame_codes(names: list[str], stacks: Iterable[Iterable[str]]) -> np.ndarray:
    """String-table code of each stack's :func:`user_frame` (appended to ``names`` if new), -1 if none."""
    user = [user_frame(frames) for frames in stacks]
    wanted = {u for u in user if u is not None}
    index: dict[str, int] = {}
    if wanted:
        for i, name in enumerate(names):
            if name in wanted:
                index.setdefault(name, i)
        for u in sorted(wanted - set(index)):
            index[u] = len(names)
            names.append(u)
    return np.array([index[u] if u is not None else -1 for u in user], dtype=np.int64)


class Sources:
    """Finds the innermost user-code Python frame around a point on a thread.

    Only frames of the threads that feed the device count (:meth:`feeding_threads`):
    a background thread (tqdm's monitor, a DataLoader queue feeder, a logger) runs
    a frame for the whole trace, and it explains nothing about the device's work.
    """

    def __init__(self, tl: Timeline):
        self.tl = tl
        names = tl.trace.names
        py = tl.rows(m.Kind.PYTHON)
        user = ~name_mask(names, rules.LIBRARY_FRAME_PATTERN) & name_mask(names, rules.FRAME_PATTERN)
        self.threads = self.feeding_threads(tl)  #: bool per dense thread index
        self.frames = py[user[tl.name[py]] & self.threads[tl.thread[py]]] if len(py) else py
        self._s, self._e = tl.offset_span(self.frames)
        self._lock = threading.Lock()
        self._stack_user: dict[int, int] = {}  #: "Call stack" string code -> its user frame's code
        # Without Python tracer frames: the stack samples recorded beside the trace (perfkit profile).
        self.samples = SampledFrames.build(tl, self.threads) if not len(self.frames) else None
        if self.samples is not None and not len(self.samples):
            self.samples = None
        #: Where source lines come from: ``python_function`` (torch's tracer: definition lines),
        #: ``sampled`` (stack samples: executing lines), ``call_stack`` (2021 op args), or None.
        self.basis: Optional[str] = None
        if len(self.frames):
            self.basis = "python_function"
        elif self.samples is not None:
            self.basis = "sampled"
        elif bool((tl.col(m.STACK) >= 0).any()):
            self.basis = "call_stack"
        #: python_function frame name codes -> what their line means (def, or none for startup frames)
        self._py_line: dict[int, str] = {}
        if len(self.frames):
            startup = set(tl.name[startup_frames(tl)].tolist())
            for c in distinct(tl.name[self.frames]).tolist():
                self._py_line[int(c)] = LINE_NONE if c in startup else LINE_DEF

    def line_kind(self, code: int) -> Optional[str]:
        """What the line of a source code means: ``call``, ``def`` or ``none``; None for no source."""
        if code < 0:
            return None
        return self._py_line.get(int(code), LINE_CALL)

    def label(self, code: int) -> Optional[str]:
        """The source text of a frame code as the evidence supports it (:func:`format_frame`), None if none."""
        if code < 0:
            return None
        return format_frame(self.tl.trace.names[int(code)], self.line_kind(code) or LINE_CALL)

    @staticmethod
    def feeding_threads(tl: Timeline) -> np.ndarray:
        """Bool per dense thread index: the threads that feed the device.

        Those that call a runtime/driver API which launches device work
        (``rules.LAUNCH_API_PATTERN``: kernel and graph launches, copies, memsets)
        and the main thread (the one holding ``ProfilerStep#N``). A trace with
        neither (CPU only, no step markers) keeps the threads that run ATen ops,
        and failing that every thread.
        """
        n = int(tl.thread.max()) + 1 if len(tl.thread) else 0
        out = np.zeros(n, dtype=bool)
        if n == 0:
            return out
        rt = tl.rows(m.Kind.RUNTIME, m.Kind.DRIVER)
        out[tl.thread[rt[tl.matches(rules.LAUNCH_API_PATTERN)[rt]]]] = True
        marks = tl.rows(m.Kind.USER_ANNOTATION, m.Kind.CPU_OP)
        out[tl.thread[marks[tl.matches(rules.STEP_PATTERN)[marks]]]] = True
        if not out.any():
            out[tl.thread[tl.rows(m.Kind.CPU_OP)]] = True
        if not out.any():
            out[:] = True
        return out

    def at(self, rows: np.ndarray, t: Optional[np.ndarray] = None) -> np.ndarray:
        """String-table code of the user frame around each row (or time t on its thread), -1 if none."""
        out = np.full(len(rows), -1, dtype=np.int64)
        if len(rows) == 0:
            return out
        if len(self.frames):
            idx = intervals.innermost_containing(self._s, self._e, self.tl.offset(rows, t))
            out = np.where(idx >= 0, self.tl.name[self.frames[np.maximum(idx, 0)]], -1).astype(np.int64)
        elif self.samples is not None:
            out = self.samples.at(rows, t)
        # 2021 traces: a "Call stack" arg on the op itself.
        stack = self.tl.col(m.STACK)[rows]
        need = (out < 0) & (stack >= 0)
        if need.any():
            out[need] = self._call_stack_frames(stack[need])
        return out

    def _call_stack_frames(self, codes: np.ndarray) -> np.ndarray:
        """User frame code of each "Call stack" string code (``;``-separated frames, innermost first)."""
        uniq, inv = distinct_inverse(codes)
        keys = uniq.tolist()
        with self._lock:  # tables are built on several threads; new frames are appended to the string table
            new = [c for c in keys if c not in self._stack_user]
            if new:
                names = self.tl.trace.names
                found = user_frame_codes(names, [names[c].split(";") for c in new])
                self._stack_user.update(zip(new, found.tolist()))
            resolved = np.array([self._stack_user[c] for c in keys], dtype=np.int64)
        return resolved[inv.reshape(-1)]


class SampledFrames:
    """User frames from Python stack samples (``Trace.stack_samples``), placed on the timeline.

    A sample's user frame is the innermost frame of its stack that is not library
    code (:func:`user_frame`), with the line being executed (the call
    site of whatever ran below it). Only samples of the threads that feed the
    device, inside the timeline, are kept. Each sample stands for the time since
    the previous sample of its thread, at most :attr:`bound_us`: the sampler
    gets the GIL when the loop thread lets it go, at a switch-interval timeout
    (then the sample shows the Python code that held it) or when it enters a call
    that releases it (an op: then the sample falls inside that op, which makes
    the op's line exact, while the Python time before it is credited to the op's
    line too).
    """

    def __init__(self, tl: Timeline, t: np.ndarray, thread: np.ndarray, code: np.ndarray, weight_us: np.ndarray,
                 bound_us: float, typical_us: float, interval_us: float):
        self.tl = tl
        self.t = t  #: µs on the timeline's axis (tl.start), sorted by (thread, t)
        self.thread = thread  #: dense thread index
        self.code = code  #: string-table code of the user frame, -1 when the stack has none
        self.weight_us = weight_us
        self.bound_us = bound_us  #: a sample's weight is at most this
        self.typical_us = typical_us  #: the median gap between consecutive samples of a thread
        #: an op with no sample inside its outermost op takes the nearest sample at most this far away:
        #: a tenth of an interval (100 µs at 1 ms), a little more than the clock pairing's error. Two
        #: intervals (2 ms) gave the ops at the start of a CPU step the line sampled at the end of the
        #: previous one; a sample this close can still be on the next or previous line.
        self.match_us = 0.1 * interval_us
        self.off = thread * tl.span_us + t
        # Thread-offset spans of the outermost CPU ops, by start (they do not overlap): built
        # here, once, so the tables' threads only read them.
        tree = tl.cpu_calls()
        self._outer_s, self._outer_e = tree.start[tree.outer], tree.end[tree.outer]

    def __len__(self) -> int:
        return len(self.t)

    @classmethod
    def build(cls, tl: Timeline, feeding: np.ndarray) -> Optional["SampledFrames"]:
        ss = tl.trace.stack_samples
        if ss is None or not len(ss):
            return None
        dense = {pt: i for i, pt in tl.thread_ids.items()}
        keys = np.stack([ss.pid, ss.tid], axis=1)
        uniq, inv = np.unique(keys, axis=0, return_inverse=True)
        th_of = np.array([dense.get((int(p), int(q)), -1) for p, q in uniq.tolist()], dtype=np.int64)
        th = th_of[inv.reshape(-1)]
        t = ss.ts_us - tl.t0_us
        ok = (th >= 0) & (t >= 0) & (t < tl.span_us)
        ok &= feeding[np.maximum(th, 0)] if len(feeding) else False
        if not ok.any():
            return None
        stack_code = user_frame_codes(tl.trace.names, ss.stacks)
        th, t, code = th[ok], t[ok], stack_code[ss.stack[ok].astype(np.int64)]
        order = np.lexsort((t, th))
        th, t, code = th[order], t[order], code[order]
        gap = np.diff(t)
        same = th[1:] == th[:-1]
        gaps = gap[same]
        typical = median(gaps) if len(gaps) else ss.interval_us
        # A thread holding the GIL in Python is sampled only every switch interval.
        bound = 2.0 * max(ss.interval_us, ss.switch_interval_us, typical)
        weight = np.full(len(t), min(typical, bound))
        weight[1:][same] = np.minimum(gap[same], bound)
        return cls(tl, t, th, code, weight, bound, typical, ss.interval_us)

    def totals(self, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(user frame codes, weight µs, sample count) of the samples in ``mask`` that have a user
        frame, the heaviest frame first."""
        keep = mask & (self.code >= 0)
        codes, us, count = group_sum(self.code[keep], self.weight_us[keep])
        order = np.argsort(-us, kind="stable")
        return codes[order], us[order], count[order]

    def at(self, rows: np.ndarray, t: Optional[np.ndarray] = None) -> np.ndarray:
        """User frame of each row: a sample inside the row's interval, else the nearest one within
        :attr:`match_us` (-1 when none: a short op between two far samples has no known line)."""
        out = np.full(len(rows), -1, dtype=np.int64)
        if len(rows) == 0 or len(self.t) == 0:
            return out
        th = self.tl.thread[rows]
        if t is None:
            qs, qe = self._outer_span(rows)
            point = self.tl.offset(rows)
        else:
            qs = qe = point = self.tl.offset(rows, t)
        n = len(self.off)
        right = np.searchsorted(self.off, qs, side="left")
        r = np.minimum(right, n - 1)
        inside = (right < n) & (self.off[r] <= qe) & (self.thread[r] == th)
        # No sample inside: the nearest one to the point, within match_us.
        near = np.searchsorted(self.off, point, side="left")
        nr = np.minimum(near, n - 1)
        nl = np.maximum(near - 1, 0)
        d_right = np.where((near < n) & (self.thread[nr] == th), np.abs(self.off[nr] - point), np.inf)
        d_left = np.where((near > 0) & (self.thread[nl] == th), np.abs(point - self.off[nl]), np.inf)
        pick = np.where(inside, r, np.where(d_right <= d_left, nr, nl))
        ok = inside | (np.minimum(d_left, d_right) <= self.match_us)
        out[ok] = self.code[pick[ok]]
        return out

    def _outer_span(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Thread-offset span of the outermost CPU op around each row's start (the row's own span
        if none), widened to hold the row.

        All of an op tree runs under one Python line, so a sample anywhere in the
        outermost op tells the line of a launch or op nested in it."""
        qs, qe = self.tl.offset_span(rows)
        if len(self._outer_s) == 0:
            return qs, qe
        k = np.searchsorted(self._outer_s, qs, side="right") - 1
        kk = np.maximum(k, 0)
        has = (k >= 0) & (qs < self._outer_e[kk])
        return (np.where(has, np.minimum(self._outer_s[kk], qs), qs),
                np.where(has, np.maximum(self._outer_e[kk], qe), qe))


def _source_fields(src: Sources, code: int) -> dict[str, Any]:
    """``source`` (labelled text), ``source_line`` (call / def / none) and ``source_basis`` of a frame code."""
    if code < 0:
        return {"source": None, "source_line": None, "source_basis": None}
    return {"source": src.label(code), "source_line": src.line_kind(code), "source_basis": src.basis}


def group_sum(keys: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(distinct keys, sum of weights per key, count per key), keys sorted ascending.

    Keys are string-table codes (>= -1, bounded by the table size), so one
    bincount does it without sorting.
    """
    keys = np.asarray(keys, dtype=np.int64)
    if len(keys) == 0:
        return keys, np.zeros(0), np.zeros(0, dtype=np.int64)
    shifted = keys + 1  # -1 ("no op") becomes bin 0
    counts = np.bincount(shifted)
    sums = np.bincount(shifted, weights=weights, minlength=len(counts))
    present = np.flatnonzero(counts)
    return present - 1, sums[present], counts[present]


def _best_source(keys: np.ndarray, sources: np.ndarray, weights: np.ndarray) -> dict[int, int]:
    """For each key, the source code carrying the most weight (ignoring -1)."""
    ok = sources >= 0
    if not ok.any():
        return {}
    k, s = keys[ok].astype(np.int64), sources[ok].astype(np.int64)
    span = int(s.max()) + 2
    combined, inverse = distinct_inverse((k + 1) * span + (s + 1))
    w = np.bincount(inverse.reshape(-1), weights=weights[ok], minlength=len(combined))
    uk, us = combined // span - 1, combined % span - 1
    order = np.lexsort((-w, uk))  # per key, heaviest source first
    best: dict[int, int] = {}
    for key, src in zip(uk[order].tolist(), us[order].tolist()):
        best.setdefault(key, src)
    return best


#: Copy-source labels where nothing names the launcher.
NO_OP_LABEL = "(no CPU op or annotation around its launch)"
NO_LAUNCH_LABEL = "(launch not in the trace)"


def launchers(tl: Timeline, dw: DeviceWork, rows: np.ndarray) -> np.ndarray:
    """Event row naming what launched each device row, -1 if nothing does: its CPU op (``dw.op``: an
    ATen op, or an annotation sharing its External id), else the innermost user annotation around its
    launch on the launching thread, step markers (``rules.STEP_PATTERN``) left out.

    Code that launches kernels from its own extensions records no CPU op but may annotate its work
    (DeepSeek's DualPipe profile: ``record_function`` ranges such as ``combine(B)`` and ``mlp(W)``
    around its DeepEP and grouped-GEMM kernels: 189 of its 244 ms of kernel time have no CPU op): the
    annotation is the nearest name the trace gives for them.
    """
    out = dw.op[rows].astype(np.int64, copy=True)
    launch = dw.launch[rows]
    want = (out < 0) & (launch >= 0)
    if want.any():
        ann = tl.rows(m.Kind.USER_ANNOTATION)
        ann = ann[~tl.matches(rules.STEP_PATTERN)[ann]]
        out[np.flatnonzero(want)] = innermost_around(tl, ann, launch[want])
    return out


def op_basis(tl: Timeline, row: int) -> Optional[str]:
    """``op_basis`` of a :func:`launchers` row: annotation or op, None for -1."""
    if row < 0:
        return None
    return OP_BASIS_ANNOTATION if int(tl.kind[row]) == int(m.Kind.USER_ANNOTATION) else OP_BASIS_OP


def launcher_bases(tl: Timeline, codes: np.ndarray, by: np.ndarray) -> dict[int, Optional[str]]:
    """``op_basis`` of each distinct launcher name code in ``codes`` (one row of each: ``by``, the rows
    :func:`launchers` gave; a name is an op's or an annotation's, not both)."""
    uniq, first = np.unique(codes, return_index=True)
    return {int(c): op_basis(tl, int(r)) for c, r in zip(uniq.tolist(), by[first].tolist())}


def top_kernels(
    tl: Timeline, dw: DeviceWork, kept: np.ndarray, n_steps: int, busy_us: float, src: Sources, limit: int = 15
) -> list[dict[str, Any]]:
    sel = np.flatnonzero(kept)
    if len(sel) == 0:
        return []
    name = dw.name[sel]
    codes, share, calls = group_sum(name, dw.share_us[sel])
    dur_sum = np.bincount(np.searchsorted(codes, name), weights=(dw.end[sel] - dw.start[sel]), minlength=len(codes))
    order = np.argsort(-share, kind="stable")[:limit]
    top = codes[order]
    in_top = member(name, top)
    rows = sel[in_top]
    by = launchers(tl, dw, rows)
    op_names = np.where(by >= 0, tl.name[np.maximum(by, 0)], -1)
    best_op = _best_source(name[in_top], op_names, dw.share_us[rows])
    basis_of = launcher_bases(tl, op_names, by)
    # A kernel's category is the one carrying most of its GPU time (the same kernel can be
    # classified differently when different ops launch it).
    best_cat = _best_source(name[in_top], dw.category[rows].astype(np.int64), dw.share_us[rows])
    linked = dw.launch[rows] >= 0
    srcs = np.full(len(rows), -1, dtype=np.int64)
    if linked.any():
        srcs[linked] = src.at(dw.launch[rows][linked])
    best_src = _best_source(name[in_top], srcs, dw.share_us[rows])
    out = []
    for i in order.tolist():
        code = int(codes[i])
        out.append({
            "name": tl.trace.names[code],
            "category": rules.CATEGORIES[best_cat[code]],
            "ms_per_step": float(share[i]) / 1000.0 / n_steps,
            "share": float(share[i]) / busy_us if busy_us else 0.0,
            "calls_per_step": float(calls[i]) / n_steps,
            "avg_us": float(dur_sum[i]) / max(int(calls[i]), 1),
            "op": tl.trace.names[best_op[code]] if code in best_op else None,
            "op_basis": basis_of[best_op[code]] if code in best_op else None,
            **_source_fields(src, best_src.get(code, -1)),
        })
    return out


def top_ops(
    tl: Timeline, dw: DeviceWork, kept: np.ndarray, n_steps: int, busy_us: float, src: Sources,
    step_of_time: Any, limit: int = 15, basis: str = "gpu",
) -> list[dict[str, Any]]:
    """CPU ops ranked by the GPU time of the kernels they and their children launched.

    With ``basis="cpu"`` (no device work in the trace) an op's time is its own
    CPU duration, and its self time excludes the ops it called.
    """
    sel = np.flatnonzero(kept & (dw.launch >= 0))
    if len(sel) == 0:
        return []
    # Launch points on thread-offset time, with a running sum of their GPU share.
    lt = tl.offset(dw.launch[sel])
    by_time = np.argsort(lt)
    lt = lt[by_time]
    cum = np.concatenate([[0.0], np.cumsum(dw.share_us[sel][by_time])])
    ops = tl.rows(m.Kind.CPU_OP)
    skip = name_mask(tl.trace.names, rules.STEP_PATTERN + "|^autograd::engine::evaluate_function: ")
    ops = ops[~skip[tl.name[ops]]]
    # Count only op instances inside kept steps.
    ops = ops[step_of_time(tl.start[ops])]
    o_s, o_e = tl.offset_span(ops)
    if basis == "cpu":
        incl, own_time = _cpu_times(tl, ops)
        self_codes, self_sum, _ = group_sum(tl.name[ops], own_time)
    else:
        incl = cum[np.searchsorted(lt, o_e, side="left")] - cum[np.searchsorted(lt, o_s, side="left")]
        own = np.where(dw.op[sel] >= 0, tl.name[np.maximum(dw.op[sel], 0)], -1)
        self_codes, self_sum, _ = group_sum(own, dw.share_us[sel])
    self_of = dict(zip(self_codes.tolist(), self_sum.tolist()))
    # An op inside an op of the same name (aten::layer_norm recorded inside aten::layer_norm, as a
    # composite op's dispatch records it in some torch versions) is the same call: counted once, or
    # its time would be counted twice (an A100 trace: layer_norm 30.3 ms of 91.7 ms busy, twice its
    # kernels' time).
    outer = outermost_of_name(tl.name[ops], o_s, o_e)
    ops, incl = ops[outer], incl[outer]
    codes, incl_sum, calls = group_sum(tl.name[ops], incl)
    order = [i for i in np.argsort(-incl_sum, kind="stable").tolist() if incl_sum[i] > 0][:limit]
    top = codes[order]
    is_top = member(tl.name[ops], top)
    top_rows = ops[is_top]
    best_src = _best_source(tl.name[top_rows].astype(np.int64), src.at(top_rows), incl[is_top])
    out = []
    for i in order:
        code = int(codes[i])
        out.append({
            "name": tl.trace.names[code],
            "ms_per_step": float(incl_sum[i]) / 1000.0 / n_steps,
            "self_ms_per_step": float(self_of.get(code, 0.0)) / 1000.0 / n_steps,
            "share": float(incl_sum[i]) / busy_us if busy_us else 0.0,
            "calls_per_step": float(calls[i]) / n_steps,
            "avg_us": float(incl_sum[i]) / max(int(calls[i]), 1),
            **_source_fields(src, best_src.get(code, -1)),
        })
    return out


def outermost_of_name(names: np.ndarray, start: np.ndarray, end: np.ndarray) -> np.ndarray:
    """Whether each interval lies inside no other interval of the same name (``start``/``end``:
    thread-offset spans, so intervals of different threads never contain each other). Intervals of
    one name on one thread nest or are disjoint, so an interval is nested exactly when it starts
    before the latest end among the same name's intervals that started before it."""
    n = len(names)
    if n == 0:
        return np.zeros(0, dtype=bool)
    order = np.lexsort((-end, start, names))  # by name, then start; the longer of two equal starts first
    nm, s, e = names[order], start[order], end[order]
    first = np.ones(n, dtype=bool)
    first[1:] = nm[1:] != nm[:-1]
    # A running maximum of the ends that restarts at each name: shift every name's spans above the last.
    width = float(np.max(end) - np.min(start)) + 1.0
    shift = np.cumsum(first) * width
    reach = np.maximum.accumulate(e + shift)
    nested = np.zeros(n, dtype=bool)
    nested[1:] = ~first[1:] & (s[1:] + shift[1:] < reach[:-1])
    out = np.empty(n, dtype=bool)
    out[order] = ~nested
    return out


def _cpu_times(tl: Timeline, ops: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(duration, duration minus the ops called inside) of each CPU op, µs."""
    tree = tl.cpu_calls()
    pos = np.searchsorted(tree.rows, ops)
    return tree.dur_us[pos], tree.self_us[pos]


def copies(
    tl: Timeline, dw: DeviceWork, kept: np.ndarray, n_steps: int, src: Sources
) -> dict[str, Any]:
    """Copy time by direction (memcpy engine + copy kernels) and by issuing op."""
    copy = kept & (dw.category == CATEGORY_CODES[rules.COPY])
    rows = np.flatnonzero(copy)
    names = tl.trace.names
    direction = np.full(len(rows), "d2d", dtype=object)
    memcpy = dw.kind[rows] == int(m.Kind.MEMCPY)
    dir_of_name: dict[int, str] = {}
    for code in distinct(dw.name[rows][memcpy]):
        label = "other"
        for d, pattern in rules.COPY_DIRECTIONS:
            if name_search(pattern, re.I)(rules.match_text(names[int(code)])):
                label = d
                break
        dir_of_name[int(code)] = label
    direction[memcpy] = [dir_of_name[int(c)] for c in dw.name[rows][memcpy]]
    nbytes = tl.col(m.BYTES)[dw.row[rows]]
    out: dict[str, Any] = {}
    for d in ("h2d", "d2h", "d2d"):
        s = direction == d
        b = nbytes[s]
        out[d] = {
            "count_per_step": float(s.sum()) / n_steps,
            "bytes_per_step": float(b[b > 0].sum()) / n_steps,
            "ms_per_step": float(dw.share_us[rows][s].sum()) / 1000.0 / n_steps,
            "memcpy_engine_count_per_step": float((s & memcpy).sum()) / n_steps,
        }
    # Which ops issue the copy time, with the source line.
    by = launchers(tl, dw, rows)
    # -1: a launch with nothing around it, -2: no launch in the trace
    op_code = np.where(by >= 0, tl.name[np.maximum(by, 0)], np.where(dw.launch[rows] >= 0, -1, -2)).astype(np.int64)
    basis_of = launcher_bases(tl, op_code, by)
    share = dw.share_us[rows]
    srcs = np.full(len(rows), -1, dtype=np.int64)
    linked = dw.launch[rows] >= 0
    if linked.any():
        srcs[linked] = src.at(dw.launch[rows][linked])
    sources = []
    if len(rows):
        dir_code = np.searchsorted(np.array(["d2d", "d2h", "h2d", "other"]), direction.astype(str))
        pair = np.stack([op_code, srcs], axis=1)
        uniq, inverse = np.unique(pair, axis=0, return_inverse=True)
        inverse = inverse.reshape(-1)
        tot = np.bincount(inverse, weights=share, minlength=len(uniq))
        cnt = np.bincount(inverse, minlength=len(uniq))
        for i in np.argsort(-tot, kind="stable")[:8].tolist():
            op, s_code = (int(x) for x in uniq[i])
            dirs = np.bincount(dir_code[inverse == i], minlength=4)
            sources.append({
                "op": names[op] if op >= 0 else NO_OP_LABEL if op == -1 else NO_LAUNCH_LABEL,
                "op_basis": basis_of[op],
                **_source_fields(src, s_code),
                "direction": ("d2d", "d2h", "h2d", "other")[int(np.argmax(dirs))],
                "ms_per_step": float(tot[i]) / 1000.0 / n_steps,
                "count_per_step": float(cnt[i]) / n_steps,
            })
    out["sources"] = sources
    return out
