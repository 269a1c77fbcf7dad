"""Attribute every device interval to one step, one phase and one category.

The output is a :class:`DeviceWork` table with one row per kernel, memcpy and
memset. The rules, in order:

1. **Launch link.** A device op is linked to the runtime call that launched it
   (same ``correlation``) and to the CPU op it ran under (same ``External id``;
   else the op enclosing the launch on its thread).
2. **Step.** The ``ProfilerStep#N`` whose CPU range holds the launch. Ops with no
   launch event (launched before the profiled window, GPU lagging the CPU) take
   the GPU-side ``ProfilerStep#N`` range they ran in, else the step of the
   previous op on the same stream, else none ("before the window").
3. **Phase.** optimizer: launched inside ``Optimizer.step#…``/``zero_grad#…``
   (for ``optimizer.step(closure)``, whose range holds the closure's forward and
   backward, only the part after the closure's backward pass).
   An explicit phase annotation (``## forward ##``...) wins next, then the
   DataLoader's ``__next__`` range (data loading is other). backward:
   launched inside an autograd-engine range (``evaluate_function``, backward
   nodes) or from an autograd engine thread. forward: launched before a backward
   pass that starts later in the same step (micro-batches each get their
   forward). Everything else (grad clipping, logging, work after the optimizer)
   is ``other``. Unlinked ops take the phase of their neighbour on the stream.
4. **Category.** :data:`perfkit.analysis.rules.CATEGORY_RULES`, first match wins.
5. **Time.** Each op's ``share_us`` is its part of the device's busy time when
   concurrent ops split overlapping time evenly; shares of a step add up to the
   step's GPU busy time.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cached_property
from typing import Any, Callable, Optional, Union

import numpy as np

from ..trace import model as m
from ..arrays import distinct, distinct_inverse, member
from ..threads import Pool, Task, done
from .fold import NameSearch
from . import intervals, rules
from .document import Category, Phase
from .timeline import Timeline, name_mask, remembering

NO_STEP = -1

PHASE_CODES = {p: i for i, p in enumerate(rules.PHASES)}
EVIDENCE_CODES = {e: i for i, e in enumerate(rules.PHASE_EVIDENCE)}
CATEGORY_CODES = {c: i for i, c in enumerate(rules.CATEGORIES)}


@dataclass
class Steps:
    """Step windows (one row per step; times in µs from the timeline origin)."""

    ids: np.ndarray  #: int64 N of ProfilerStep#N (0.. for synthetic windows)
    cpu_start: np.ndarray  #: float64
    cpu_end: np.ndarray  #: float64
    row: np.ndarray  #: int64 event row of the ProfilerStep event, -1 if synthetic
    synthetic: bool  #: True when the trace had no ProfilerStep (whole trace = one window)

    def __len__(self) -> int:
        return len(self.ids)


@dataclass
class DeviceWork:
    """One row per device interval; columns are numpy arrays."""

    row: np.ndarray  #: event row
    start: np.ndarray  #: µs from origin
    end: np.ndarray  #: µs from origin
    device: np.ndarray  #: int64 device index (pid)
    stream: np.ndarray  #: int64 stream (tid)
    kind: np.ndarray  #: int8 Kind (KERNEL/MEMCPY/MEMSET)
    name: np.ndarray  #: int32 string-table code
    launch: np.ndarray  #: int64 event row of the launching runtime call, -1 if not in the trace
    op: np.ndarray  #: int64 event row of the CPU op it ran under, -1 if unknown
    step: np.ndarray  #: int64 index into Steps, NO_STEP if outside every step
    phase: np.ndarray  #: int8 index into rules.PHASES
    category: np.ndarray  #: int8 index into rules.CATEGORIES
    share_us: np.ndarray  #: float64 exclusive share of busy time, µs
    phase_evidence: np.ndarray  #: int8 index into rules.PHASE_EVIDENCE: what decided the phase

    def __len__(self) -> int:
        return len(self.row)

    @cached_property
    def busy(self) -> intervals.Coverage:
        """When any device is busy: the union of the intervals, built once and shared by the passes."""
        return intervals.Coverage(self.start, self.end)


# ----------------------------------------------------------------------------- steps


def find_steps(tl: Timeline) -> Steps:
    """``ProfilerStep#N`` windows on the CPU; one synthetic window if there are none."""
    rows = np.flatnonzero(tl.matches(rules.STEP_PATTERN))
    rows = rows[(tl.kind[rows] == int(m.Kind.USER_ANNOTATION)) | (tl.kind[rows] == int(m.Kind.CPU_OP))]
    if len(rows):
        rx = re.compile(rules.STEP_PATTERN)
        names = tl.trace.names
        ids = np.array([int(rx.match(names[c]).group(1)) for c in tl.name[rows]], dtype=np.int64)  # type: ignore[union-attr]
        # Keep one event per step number (some traces repeat it on two threads).
        _, first = np.unique(ids, return_index=True)
        rows = rows[np.sort(first)]
        ids = ids[np.sort(first)]
        order = np.argsort(tl.start[rows], kind="stable")
        rows, ids = rows[order], ids[order]
        return Steps(ids=ids, cpu_start=tl.start[rows], cpu_end=tl.end[rows], row=rows, synthetic=False)
    hosts = tl.rows(*m.HOST_KINDS)
    span_rows = hosts if len(hosts) else np.arange(len(tl.start))
    lo = float(tl.start[span_rows].min()) if len(span_rows) else 0.0
    hi = float(tl.end[span_rows].max()) if len(span_rows) else 0.0
    return Steps(
        ids=np.array([0]), cpu_start=np.array([lo]), cpu_end=np.array([hi]), row=np.array([-1]), synthetic=True
    )


def step_of(steps: Steps, t: np.ndarray) -> np.ndarray:
    """Index of the step whose CPU window holds time t, NO_STEP otherwise."""
    k = np.searchsorted(steps.cpu_start, t, side="right") - 1
    kk = np.maximum(k, 0)
    inside = (k >= 0) & (t < steps.cpu_end[kk])
    if steps.synthetic:
        inside = np.ones(len(t), dtype=bool)  # everything belongs to the one window
        kk = np.zeros(len(t), dtype=np.int64)
    return np.where(inside, kk, NO_STEP)


# ----------------------------------------------------------------------------- linking


class _IdIndex:
    """values[i] where keys[i] == id (the first match), -1 where absent or id < 0.

    Keys are correlation / external ids: non-negative and dense in practice, so a
    direct-address table (O(n), no sort) is used when the key range is at most a
    few times the number of keys (plus the queries expected); otherwise a sort
    and a binary search. Built once, queried as often as needed.
    """

    def __init__(self, keys: np.ndarray, values: np.ndarray, n_queries: int = 0):
        self.n = len(keys)
        self.values = np.append(values, -1)  # position n: absent
        self.first: Optional[np.ndarray] = None
        if self.n == 0:
            return
        self.lo, hi = int(keys.min()), int(keys.max())
        self.span = hi - self.lo
        if self.lo >= 0 and self.span < 4 * (self.n + n_queries) + (1 << 20):
            pos_type = np.int32 if self.n < (1 << 31) else np.int64
            self.first = np.full(self.span + 1, self.n, dtype=pos_type)  # first position per key
            np.minimum.at(self.first, keys.astype(np.intp) - self.lo, np.arange(self.n, dtype=pos_type))
        else:
            order = np.argsort(keys, kind="stable")
            self.sorted_keys, self.sorted_values = keys[order], values[order]

    def get(self, query: np.ndarray) -> np.ndarray:
        if self.n == 0:
            return np.full(len(query), -1, dtype=np.int64)
        if self.first is not None:
            q = query.astype(np.intp) - self.lo
            pos = self.first[np.clip(q, 0, self.span)]
            pos[(q < 0) | (q > self.span)] = self.n  # outside the keys' range, and MISSING (< 0)
            return self.values[pos]
        k = self.sorted_keys
        pos = np.searchsorted(k, query)
        pos_c = np.minimum(pos, self.n - 1)
        hit = (pos < self.n) & (k[pos_c] == query) & (query >= 0)
        return np.where(hit, self.sorted_values[pos_c], -1)


def link(tl: Timeline, dev: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(launch row, op row) for each device row."""
    launch = launches_of(tl, dev)
    return launch, ops_of(tl, dev, launch)


def launches_of(tl: Timeline, dev: np.ndarray) -> np.ndarray:
    """The runtime call that launched each device row (by correlation id), -1 if none."""
    corr = tl.col(m.CORR)
    launches = tl.rows(m.Kind.RUNTIME, m.Kind.DRIVER)
    launches = launches[corr[launches] >= 0]
    return _IdIndex(corr[launches], launches, len(dev)).get(corr[dev])


def ops_of(tl: Timeline, dev: np.ndarray, launch: np.ndarray) -> np.ndarray:
    """The CPU op of each device row, -1 if none: by External id, else by its launch's External id,
    else the innermost CPU op around its launch."""
    ext = tl.col(m.EXT)
    ops = tl.rows(m.Kind.CPU_OP, m.Kind.USER_ANNOTATION)
    ops = ops[ext[ops] >= 0]
    # Prefer ATen ops over annotations that share an id (both carry External id).
    ops = ops[np.argsort(tl.kind[ops] != int(m.Kind.CPU_OP), kind="stable")]
    by_ext = _IdIndex(ext[ops], ops, len(dev))
    op = by_ext.get(ext[dev])
    missing = (op < 0) & (launch >= 0)
    if missing.any():
        op_via_launch = by_ext.get(ext[launch[missing]])
        op[np.flatnonzero(missing)] = op_via_launch
    missing = (op < 0) & (launch >= 0)
    if missing.any():
        op[np.flatnonzero(missing)] = innermost_around(tl, tl.rows(m.Kind.CPU_OP), launch[missing])
    return op


def innermost_around(tl: Timeline, ops: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """For each of ``rows``, the innermost of ``ops`` around its start on its thread (a row), -1 if none."""
    if len(ops) == 0 or len(rows) == 0:
        return np.full(len(rows), -1, dtype=np.int64)
    # Only ops holding at least one of the points can be innermost: filter with a
    # search over the (sorted) points before building the call tree of the rest.
    points = tl.offset(rows)
    sorted_points = np.sort(points)
    o_s, o_e = tl.offset_span(ops)
    holds = np.searchsorted(sorted_points, o_e, side="left") > np.searchsorted(sorted_points, o_s, side="left")
    ops, o_s, o_e = ops[holds], o_s[holds], o_e[holds]
    if len(ops) == 0:
        return np.full(len(rows), -1, dtype=np.int64)
    inner = intervals.innermost_containing(o_s, o_e, points)
    return np.where(inner >= 0, ops[np.maximum(inner, 0)], -1)


# ----------------------------------------------------------------------------- phases


def _backward_threads(tl: Timeline, backward_ops: np.ndarray, step_rows: np.ndarray, opt_rows: np.ndarray) -> np.ndarray:
    """Dense thread indices that run the autograd engine (not the training loop)."""
    named = set()
    for idx, (pid, tid) in tl.thread_ids.items():
        if re.search(rules.BACKWARD_THREAD_PATTERN, tl.thread_name(pid, tid)):
            named.add(idx)
    loop_threads = set(tl.thread[step_rows].tolist()) | set(tl.thread[opt_rows].tolist())
    hosts = set(tl.thread[backward_ops].tolist()) - loop_threads
    return np.array(sorted(named | hosts), dtype=np.int64)


def _split_closure_steps(
    tl: Timeline, opt_rows: np.ndarray, bwd_rows: np.ndarray, bwd_threads: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Optimizer ranges that hold no backward pass, and the update part of those that do.

    ``optimizer.step(closure)`` runs the closure (forward, ``zero_grad``, backward) inside
    its own ``Optimizer.step#`` range before it updates the weights. A step range is a
    closure step when a backward pass (an autograd range, or a runtime call on an autograd
    thread) starts inside it; its update is the rest of the range after the last such
    backward ends. Returns (plain optimizer rows, thread-offset update starts, ends).
    """
    empty = np.zeros(0, dtype=np.float64)
    step_opt = opt_rows[tl.matches(rules.OPTIMIZER_STEP_PATTERN)[opt_rows]]
    if not len(step_opt) or not len(bwd_rows) and not len(bwd_threads):
        return opt_rows, empty, empty
    ev = bwd_rows
    if len(bwd_threads):
        runtime = tl.rows(m.Kind.RUNTIME, m.Kind.DRIVER)
        ev = np.concatenate([ev, runtime[member(tl.thread[runtime], bwd_threads)]])
    order = np.argsort(tl.start[ev], kind="stable")
    ev_start, ev_end = tl.start[ev][order], tl.end[ev][order]
    s, e = tl.start[step_opt], tl.end[step_opt]
    lo = np.searchsorted(ev_start, s, side="left")
    hi = np.searchsorted(ev_start, e, side="left")
    closure = hi > lo
    if not closure.any():
        return opt_rows, empty, empty
    # last backward end inside each closure step (the events of one step are few: a loop per step)
    last_end = np.array([ev_end[a:b].max() for a, b in zip(lo[closure], hi[closure])], dtype=np.float64)
    rows = step_opt[closure]
    upd_start = tl.offset(rows, np.minimum(last_end, e[closure]))
    upd_end = tl.offset(rows, e[closure])
    plain = opt_rows[~member(opt_rows, rows)]
    return plain, upd_start, upd_end


def _phase_annotations(tl: Timeline, host: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Host rows that are explicit phase annotations, and the phase code each names."""
    rows, codes = [], []
    for phase_name, pattern in rules.PHASE_ANNOTATIONS:
        ann = host[tl.matches(pattern)[host]]
        rows.append(ann)
        codes.append(np.full(len(ann), PHASE_CODES[phase_name], dtype=np.int8))
    all_rows = np.concatenate(rows) if rows else np.zeros(0, np.int64)
    all_codes = np.concatenate(codes) if codes else np.zeros(0, np.int8)
    # a name matching both patterns names no single phase
    uniq, count = np.unique(all_rows, return_counts=True)
    both = uniq[count > 1]
    keep = ~member(all_rows, both)
    return all_rows[keep], all_codes[keep]


def kernel_name_phases(tl: Timeline, dev: np.ndarray) -> np.ndarray:
    """Phase code each device op's own name implies (backward, optimizer, forward), -1 where none."""
    out = np.full(len(dev), -1, dtype=np.int8)
    if len(dev) == 0:
        return out
    is_kernel = (tl.kind[dev] == int(m.Kind.KERNEL)) & ~tl.matches(rules.NO_PHASE_FROM_NAME_PATTERN)[dev]
    # a later pattern overwrites an earlier one: backward wins over optimizer, optimizer over forward
    by_name: tuple[tuple[Phase, str], ...] = (
        (rules.FORWARD, rules.FORWARD_KERNEL_PATTERN),
        (rules.OPTIMIZER, rules.OPTIMIZER_KERNEL_PATTERN),
        (rules.BACKWARD, rules.BACKWARD_KERNEL_PATTERN),
    )
    for phase_name, pattern in by_name:
        hit = tl.matches(pattern)[dev] & is_kernel
        out[hit] = PHASE_CODES[phase_name]
    return out


def _host_phases(
    tl: Timeline, steps: Steps, lrows: np.ndarray, lstep: np.ndarray, by_name: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(phase code, evidence code) per launch row from host evidence; kernel names before position."""
    n = len(lrows)
    result = np.full(n, -1, dtype=np.int8)
    evidence = np.full(n, EVIDENCE_CODES[rules.EVIDENCE_NONE], dtype=np.int8)
    t_off = tl.offset(lrows)
    host = tl.rows(m.Kind.CPU_OP, m.Kind.USER_ANNOTATION)
    opt_rows = host[tl.matches(rules.OPTIMIZER_PATTERN)[host]]
    bwd_rows = host[tl.matches(rules.BACKWARD_OP_PATTERN)[host] | (tl.col(m.FWD_TID)[host] > 0)]
    step_rows = steps.row[steps.row >= 0]

    def decide(mask: np.ndarray, code: Union[int, np.ndarray], ev: str) -> None:
        sel = mask & (result < 0)
        result[sel] = code[sel] if isinstance(code, np.ndarray) else code
        evidence[sel] = EVIDENCE_CODES[ev]

    bwd_threads = _backward_threads(tl, bwd_rows, step_rows, opt_rows)
    # (a) optimizer ranges on the launching thread; an optimizer step that runs a closure
    # (Lightning, LBFGS: forward and backward inside ``optimizer.step(closure)``) counts
    # only from the end of the closure's backward pass to its own end.
    plain_opt, upd_start, upd_end = _split_closure_steps(tl, opt_rows, bwd_rows, bwd_threads)
    in_opt = tl.thread_coverage(plain_opt).contains(t_off)
    if len(upd_start):
        in_opt |= intervals.Coverage(upd_start, upd_end).contains(t_off)
    decide(in_opt, PHASE_CODES[rules.OPTIMIZER], rules.EVIDENCE_OPTIMIZER)
    # (b) explicit phase / pipeline-stage annotations: the innermost one around the launch
    ann_rows, ann_codes = _phase_annotations(tl, host)
    if len(ann_rows):
        inner = innermost_around(tl, ann_rows, lrows)
        o = np.argsort(ann_rows)
        pos = np.clip(np.searchsorted(ann_rows[o], inner), 0, len(ann_rows) - 1)
        codes = np.where(inner >= 0, ann_codes[o][pos], -1).astype(np.int8)
        decide(codes >= 0, codes, rules.EVIDENCE_ANNOTATION)
    # (b') the DataLoader's fetch (a plain loop's ``for batch in loader`` runs it inside the step,
    # before the forward pass): other, whatever position rule (e) would say
    data_rows = host[tl.matches(rules.DATALOADER_PATTERN)[host]]
    if len(data_rows):
        decide(tl.thread_coverage(data_rows).contains(t_off), PHASE_CODES[rules.PHASE_OTHER], rules.EVIDENCE_DATALOADER)
    # (c) autograd engine ranges or threads
    in_bwd = tl.thread_coverage(bwd_rows).contains(t_off) | member(tl.thread[lrows], bwd_threads)
    decide(in_bwd, PHASE_CODES[rules.BACKWARD], rules.EVIDENCE_AUTOGRAD)
    # (d) the kernel's own name, backward or forward only: with host ops in the trace a real optimizer
    # update sits in its Optimizer.step# range (a); foreach kernels outside it are clipping,
    # zero_grad, GradScaler's unscale or an EMA, not the optimizer.
    decide((by_name >= 0) & (by_name != PHASE_CODES[rules.OPTIMIZER]), by_name, rules.EVIDENCE_KERNEL)
    # (e) forward = the next phase boundary in the step is a backward pass (not
    # an optimizer step); steps without any backward (eval, inference) are all
    # forward; the rest (clipping, logging, after the optimizer) is "other".
    rest = np.flatnonzero(result < 0)
    if len(rest):
        t = tl.start[lrows[rest]]
        bwd_ann = ann_rows[ann_codes == PHASE_CODES[rules.BACKWARD]] if len(ann_rows) else ann_rows
        bwd_starts = np.concatenate([tl.start[bwd_rows], tl.start[bwd_ann]])
        if len(bwd_threads):
            runtime = tl.rows(m.Kind.RUNTIME, m.Kind.DRIVER)
            on_bwd_thread = runtime[member(tl.thread[runtime], bwd_threads)]
            bwd_starts = np.concatenate([bwd_starts, tl.start[on_bwd_thread]])
        bwd_starts = np.sort(bwd_starts)
        step_opt = opt_rows[tl.matches(rules.OPTIMIZER_STEP_PATTERN)[opt_rows]]
        opt_starts = np.sort(tl.start[step_opt])
        marks = np.concatenate([bwd_starts, opt_starts])
        is_bwd = np.concatenate([np.ones(len(bwd_starts), bool), np.zeros(len(opt_starts), bool)])
        order = np.argsort(marks, kind="stable")
        marks, is_bwd = marks[order], is_bwd[order]
        st = lstep[rest]
        if steps.synthetic:
            win_start = np.full(len(rest), -np.inf)
            win_end = np.full(len(rest), np.inf)
        else:
            nxt = np.searchsorted(steps.cpu_start, t, side="right")
            prev_end = np.where(nxt > 0, steps.cpu_end[np.maximum(nxt - 1, 0)], -np.inf)
            win_start = np.where(st >= 0, steps.cpu_start[np.maximum(st, 0)], prev_end)
            win_end = np.where(
                st >= 0,
                steps.cpu_end[np.maximum(st, 0)],
                np.where(nxt < len(steps), steps.cpu_start[np.minimum(nxt, len(steps) - 1)], np.inf),
            )
        if len(marks):
            k = np.searchsorted(marks, t, side="right")
            kk = np.minimum(k, len(marks) - 1)
            next_is_bwd = (k < len(marks)) & (marks[kk] < win_end) & is_bwd[kk]
        else:
            next_is_bwd = np.zeros(len(rest), bool)
        no_bwd = (np.searchsorted(bwd_starts, win_end) - np.searchsorted(bwd_starts, win_start)) == 0
        result[rest] = np.where(next_is_bwd | no_bwd, PHASE_CODES[rules.FORWARD], PHASE_CODES[rules.PHASE_OTHER])
        evidence[rest] = np.where(
            next_is_bwd | ~no_bwd, EVIDENCE_CODES[rules.EVIDENCE_POSITION], EVIDENCE_CODES[rules.EVIDENCE_NO_BACKWARD]
        )
    return result, evidence


def _run_ids(*keys: np.ndarray) -> np.ndarray:
    """Id of each row's run of equal keys (rows sorted by the keys): 1, 1, 2, 2, 2, 3..."""
    change = np.ones(len(keys[0]), dtype=bool)
    change[1:] = False
    for k in keys:
        change[1:] |= k[1:] != k[:-1]
    return np.cumsum(change)


def _neighbour_marks(group: np.ndarray, known: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For rows in sorted order: index of the previous / next ``known`` row of the same group (-1 if none)."""
    n = len(group)
    if n == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    idx = np.where(known, np.arange(n), -1)
    # exclude the row itself: previous known strictly before, next strictly after
    prev = np.concatenate([[-1], np.maximum.accumulate(idx)[:-1]])
    idx_rev = np.where(known, np.arange(n), n)
    nxt = np.concatenate([np.minimum.accumulate(idx_rev[::-1])[::-1][1:], [n]])
    prev_ok = (prev >= 0) & (group[np.maximum(prev, 0)] == group)
    next_ok = (nxt < n) & (group[np.minimum(nxt, n - 1)] == group)
    return np.where(prev_ok, prev, -1), np.where(next_ok, nxt, -1)


def _kernel_order_phases(
    device: np.ndarray, step: np.ndarray, start: np.ndarray, by_name: np.ndarray
) -> np.ndarray:
    """Phases of unnamed device ops from the named ones around them (traces without CPU ops).

    On each device, within a step, in start order: an op between two ops whose names give
    the same phase takes it; an op after an optimizer kernel (or the start) and before a
    forward or backward kernel is forward, and so is one after a forward kernel and before
    a backward kernel. Anything else (after the last backward kernel, between a backward
    and a forward kernel with no optimizer kernel between) is left unknown (-1).
    """
    n = len(device)
    out = by_name.copy()
    if n == 0:
        return out
    order = np.lexsort((start, step, device))
    dev_o, step_o, named_o = device[order], step[order], by_name[order]
    prev, nxt = _neighbour_marks(_run_ids(dev_o, step_o), named_o >= 0)
    p = np.where(prev >= 0, named_o[np.maximum(prev, 0)], -1)
    q = np.where(nxt >= 0, named_o[np.maximum(nxt, 0)], -1)
    fwd, bwd, opt = (PHASE_CODES[x] for x in (rules.FORWARD, rules.BACKWARD, rules.OPTIMIZER))
    res = np.full(n, -1, dtype=np.int8)
    same = (p == q) & (p >= 0)
    res[same] = p[same]
    before_pass = ((p < 0) | (p == opt)) & ((q == fwd) | (q == bwd))
    res[before_pass] = fwd
    res[(p == fwd) & (q == bwd)] = fwd
    res[named_o >= 0] = named_o[named_o >= 0]
    out[order] = res
    return out


def has_host_evidence(tl: Timeline) -> bool:
    """Whether host ranges can tell phases: the trace has CPU ops, or phase / optimizer annotations."""
    if len(tl.rows(m.Kind.CPU_OP)):
        return True
    ann = tl.rows(m.Kind.USER_ANNOTATION)
    if not len(ann):
        return False
    named = tl.matches(rules.OPTIMIZER_PATTERN)[ann]
    for _, pattern in rules.PHASE_ANNOTATIONS:
        named = named | tl.matches(pattern)[ann]
    return bool(named.any())


def assign_phases(
    tl: Timeline,
    steps: Steps,
    dev: np.ndarray,
    launch: np.ndarray,
    launch_step: np.ndarray,
    step: np.ndarray,
    device: np.ndarray,
    stream: np.ndarray,
    start: np.ndarray,
    by_name: Optional[np.ndarray] = None,
) -> tuple[np.ndarray, np.ndarray]:
    """(phase code, evidence code) per device op. Every op gets one; "unknown" where nothing decides.

    ``by_name``: :func:`kernel_name_phases` of ``dev``, if already computed (on another thread).

    Rules in order (docs/analysis.md "Phases"): host ranges around the launch (optimizer,
    annotation, autograd), the kernel's name, its position between the step's backward and
    optimizer boundaries; ops without a launch: their name, else their stream neighbour's
    phase. A trace without CPU ops has no host ranges: names, then the order of the named
    kernels decide, and the rest is unknown.
    """
    n = len(dev)
    phase = np.full(n, -1, dtype=np.int8)
    evidence = np.full(n, EVIDENCE_CODES[rules.EVIDENCE_NONE], dtype=np.int8)
    if by_name is None:
        by_name = kernel_name_phases(tl, dev)
    if not has_host_evidence(tl):
        ordered = _kernel_order_phases(device, step, start, by_name)
        phase[:] = ordered
        evidence[by_name >= 0] = EVIDENCE_CODES[rules.EVIDENCE_KERNEL]
        evidence[(by_name < 0) & (ordered >= 0)] = EVIDENCE_CODES[rules.EVIDENCE_POSITION]
    else:
        linked = np.flatnonzero(launch >= 0)
        if len(linked):
            phase[linked], evidence[linked] = _host_phases(
                tl, steps, launch[linked], launch_step[linked], by_name[linked]
            )
        unlinked = launch < 0
        named = unlinked & (by_name >= 0)
        phase[named] = by_name[named]
        evidence[named] = EVIDENCE_CODES[rules.EVIDENCE_KERNEL]
        unknown = phase < 0
        if unknown.any() and (~unknown).any():
            filled, _ = _fill_from_stream_neighbours(device, stream, start, phase, ~unknown)
            got = unknown & (filled >= 0)
            phase[got] = filled[got]
            evidence[got] = EVIDENCE_CODES[rules.EVIDENCE_NEIGHBOUR]
    still = phase < 0
    phase[still] = PHASE_CODES[rules.PHASE_UNKNOWN]
    evidence[still] = EVIDENCE_CODES[rules.EVIDENCE_NONE]
    return phase, evidence


def _fill_from_stream_neighbours(
    device: np.ndarray, stream: np.ndarray, start: np.ndarray, values: np.ndarray, known: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """For unknown rows, the value of the previous known row on the same stream (else the next).

    Returns (filled values, which rows got a value from a previous row).
    """
    order = np.lexsort((start, stream, device))
    known_o = known[order]
    prev, nxt = _neighbour_marks(_run_ids(device[order], stream[order]), known_o)
    src = np.where(prev >= 0, prev, nxt)
    values_o = values[order]
    out_o = values_o.copy()
    fill = ~known_o & (src >= 0)
    out_o[fill] = values_o[src[fill]]
    out = np.empty_like(values)
    out[order] = out_o
    from_prev = np.empty(len(order), dtype=bool)
    from_prev[order] = ~known_o & (prev >= 0)
    return out, from_prev


# ----------------------------------------------------------------------------- categories


#: The device kinds' words in the category rules, by kind code (a plain int: ``m.Kind(k)`` costs ~0.35 µs,
#: ~0.03 ms for a DLRM rank's 95 distinct keys).
_KIND_WORDS = {int(m.Kind.KERNEL): "kernel", int(m.Kind.MEMCPY): "memcpy", int(m.Kind.MEMSET): "memset"}


def assign_categories(tl: Timeline, dev: np.ndarray, op: np.ndarray) -> np.ndarray:
    """Category code per device row (rules applied once per distinct (kind, name, op name))."""
    names = tl.trace.names
    kind = tl.kind[dev].astype(np.int64)
    kname = tl.name[dev].astype(np.int64)
    oname = np.where(op >= 0, tl.name[np.maximum(op, 0)], -1).astype(np.int64)
    # One int64 key per (kind, kernel name, op name); rules run once per distinct key.
    n_names = len(names) + 1
    key = (kname * n_names + (oname + 1)) * 16 + kind
    uniq_keys, inverse = distinct_inverse(key)
    compiled, memo = _category_rules()
    remember = remembering()
    codes = np.empty(len(uniq_keys), dtype=np.int8)
    uniq = np.stack([uniq_keys % 16, (uniq_keys // 16) // n_names, (uniq_keys // 16) % n_names - 1], axis=1)
    for i, (k, kn, on) in enumerate(uniq.tolist()):
        kernel_name = rules.match_text(names[kn])
        op_name = rules.match_text(names[on]) if on >= 0 else ""
        word = _KIND_WORDS.get(k, "")
        memo_key = (word, kernel_name, op_name)
        category = memo.get(memo_key) if remember else None
        if category is None:
            category = _classify(compiled, word, kernel_name, op_name)
            if remember:
                if len(memo) >= CATEGORY_MEMO_MAX:
                    memo.clear()
                memo[memo_key] = category
        codes[i] = CATEGORY_CODES[category]
    return codes[inverse.reshape(-1)]


#: Categories remembered across traces analysed by one process (the ranks of a job share their
#: kernel names, so a process analysing many ranks classifies each name once), once
#: :func:`perfkit.analysis.timeline.remember_across_traces` is on; cleared when full.
CATEGORY_MEMO_MAX = 200_000
_CATEGORY_MEMO: dict[tuple[rules.CategoryRule, ...], tuple[list["_CompiledRule"], dict[tuple[str, str, str], Category]]] = {}


def _category_rules() -> tuple[list["_CompiledRule"], dict[tuple[str, str, str], Category]]:
    """The compiled category rules and the memo of their answers (per set of rules: a changed
    ``rules.CATEGORY_RULES`` starts a new memo)."""
    key = tuple(rules.CATEGORY_RULES)
    hit = _CATEGORY_MEMO.get(key)
    if hit is None:
        _CATEGORY_MEMO.clear()
        hit = _CATEGORY_MEMO[key] = ([(r, *r.compiled()) for r in rules.CATEGORY_RULES], {})
    return hit


_CompiledRule = tuple[rules.CategoryRule, Optional[NameSearch], Optional[NameSearch]]


def _classify(compiled: list[_CompiledRule], word: str, kernel_name: str, op_name: str) -> Category:
    kernel_low = kernel_name.lower() if kernel_name.isascii() else None
    op_low = op_name.lower() if op_name.isascii() else None
    for rule, krx, orx in compiled:
        if rule.device_kind and rule.device_kind != word:
            continue
        if krx is not None and not krx(kernel_name, kernel_low):
            continue
        if orx is not None and not (op_name and orx(op_name, op_low)):
            continue
        return rule.category
    return rules.OTHER


def classify(kernel_name: str, op_name: str = "", device_kind: str = "kernel") -> Category:
    """The category of one device op (for tests and the slow reference implementation)."""
    compiled = [(r, *r.compiled()) for r in rules.CATEGORY_RULES]
    return _classify(compiled, device_kind, rules.match_text(kernel_name), rules.match_text(op_name))


# ----------------------------------------------------------------------------- all together


def cpu_self_items(tl: Timeline) -> tuple[np.ndarray, np.ndarray]:
    """CPU-basis work items: (CPU op rows, each one's share of CPU busy time, µs).

    Every CPU op is an item whose share is its self time (its duration not covered by the CPU
    ops it called on the same thread), so the work of ``aten::addmm`` inside a
    ``model_inference`` range counts as matmul and only the time between ops stays with the
    range. Each outermost op's exclusive share of its thread's busy time (as before) is split
    among the ops of its call tree in proportion to their self times: the shares still add up
    to the union of the outermost ops per thread. Items with no self time are left out.
    """
    tree = tl.cpu_calls()
    cpu = tree.rows
    if len(cpu) == 0:
        return cpu, np.zeros(0)
    self_us, root, roots = tree.self_us, tree.root, tree.outer
    has_parent = tree.parent >= 0
    root_share = np.zeros(len(cpu))
    root_share[roots] = _shares(tl.thread[cpu[roots]], tl.start[cpu[roots]], tl.end[cpu[roots]])
    tree_self = np.bincount(root, weights=self_us, minlength=len(cpu))
    share = np.zeros(len(cpu))
    ok = tree_self[root] > 0
    share[ok] = root_share[root[ok]] * self_us[ok] / tree_self[root[ok]]
    # A tree with no self time anywhere (zero-length ops) keeps its share on the root.
    empty = roots[tree_self[roots] <= 0]
    share[empty] = root_share[empty]
    keep = (self_us > 0) | ((~has_parent) & (tree_self[root] <= 0))
    rows = cpu[keep]
    order = np.argsort(tl.start[rows], kind="stable")
    return rows[order], share[keep][order]


def attribute(tl: Timeline, steps: Steps, basis: str = "gpu", threads: int = 1) -> DeviceWork:
    """Build the :class:`DeviceWork` table for a timeline.

    With ``basis="cpu"`` (traces with no device work: CPU training) the work
    items are the CPU ops instead, each its own launch and weighted by its self
    time (:func:`cpu_self_items`), so the same step / phase / category rules split
    CPU time by the op that does the work, innermost first.

    With ``threads=2`` the time shares and then the categories are computed on a
    second thread while linking, steps and phases run on this one (numpy work
    that releases the GIL; used for large traces).
    """
    pool = Pool(1) if threads > 1 else None

    def later(fn: Callable[..., Any], *args: Any) -> Task[Any]:
        return pool.submit(fn, *args) if pool is not None else done(fn(*args))

    try:
        return _attribute(tl, steps, basis, later)
    finally:
        if pool is not None:
            pool.shutdown()


def _shares(lanes: np.ndarray, start: np.ndarray, end: np.ndarray) -> np.ndarray:
    """Each interval's exclusive share of its lane's busy time (see intervals.exclusive_share)."""
    share = np.zeros(len(start))
    for d in distinct(lanes):
        sel = lanes == d
        share[sel] = intervals.exclusive_share(start[sel], end[sel])
    return share


def _attribute(
    tl: Timeline, steps: Steps, basis: str, later: Callable[..., Task[Any]]
) -> DeviceWork:
    if basis == "cpu":  # the CPU ops are the work items: each its own launch and op, weighted by self time
        dev, cpu_share = cpu_self_items(tl)
        f_share = done(cpu_share)
        f_by_name = later(kernel_name_phases, tl, dev)
        launch = dev.copy()
        f_op = done(dev.copy())
    else:
        # The other thread works out the time shares, each op's CPU op and its category, in that
        # order, while this one finds the launches, the names' phases, then steps and phases.
        dev = tl.rows(*m.DEVICE_WORK_KINDS)
        dev = dev[np.argsort(tl.start[dev], kind="stable")]
        f_share = later(_shares, tl.col(m.PID)[dev], tl.start[dev], tl.end[dev])
        launch = launches_of(tl, dev)
        f_op = later(ops_of, tl, dev, launch)
        f_by_name = done(kernel_name_phases(tl, dev))
    device = tl.col(m.PID)[dev]
    stream = tl.col(m.TID)[dev]
    start = tl.start[dev]
    end = tl.end[dev]
    # (one worker runs the calls in order: f_op is done when this one starts)
    f_category = later(lambda: assign_categories(tl, dev, f_op.result()))

    # Steps: by launch time; unlinked ops by GPU-side ProfilerStep ranges, then by stream order.
    step = np.full(len(dev), NO_STEP, dtype=np.int64)
    linked = launch >= 0
    launch_step = np.full(len(dev), NO_STEP, dtype=np.int64)
    if linked.any():
        launch_step[linked] = step_of(steps, tl.start[launch[linked]])
    step[linked] = launch_step[linked]
    unlinked = ~linked
    if unlinked.any() and not steps.synthetic:
        gpu_steps = _gpu_step_ranges(tl, steps)
        if gpu_steps is not None:
            g_dev, g_start, g_end, g_step = gpu_steps
            for d in distinct(device[unlinked]):
                sel = np.flatnonzero(unlinked & (device == d))
                mine = g_dev == d
                if not mine.any():
                    continue
                s, e, sid = g_start[mine], g_end[mine], g_step[mine]
                o = np.argsort(s)
                s, e, sid = s[o], e[o], sid[o]
                k = np.searchsorted(s, start[sel], side="right") - 1
                kk = np.maximum(k, 0)
                ok = (k >= 0) & (start[sel] < e[kk])
                step[sel[ok]] = sid[kk[ok]]
        still = unlinked & (step == NO_STEP)
        if still.any():
            filled, from_prev = _fill_from_stream_neighbours(device, stream, start, step, ~still)
            # Only inherit from an earlier op: an op before the first linked one was
            # launched before the profiled window and belongs to no recorded step.
            step[still & from_prev] = filled[still & from_prev]
    elif unlinked.any():
        step[unlinked] = 0

    phase, phase_evidence = assign_phases(tl, steps, dev, launch, launch_step, step, device, stream, start,
                                          by_name=f_by_name.result())

    category = f_category.result()
    share = f_share.result()
    op = f_op.result()
    return DeviceWork(
        row=dev,
        start=start,
        end=end,
        device=device,
        stream=stream,
        kind=tl.kind[dev],
        name=tl.name[dev],
        launch=launch,
        op=op,
        step=step,
        phase=phase.astype(np.int8),
        category=category,
        share_us=share,
        phase_evidence=phase_evidence,
    )


def _gpu_step_ranges(
    tl: Timeline, steps: Steps
) -> Optional[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]:
    """GPU-side ProfilerStep#N annotations as (device, start, end, step index), or None."""
    rows = tl.rows(m.Kind.GPU_ANNOTATION)
    if len(rows) == 0:
        return None
    is_step = name_mask(tl.trace.names, rules.STEP_PATTERN)[tl.name[rows]]
    rows = rows[is_step]
    if len(rows) == 0:
        return None
    rx = re.compile(rules.STEP_PATTERN)
    ids = np.array([int(rx.match(tl.trace.names[c]).group(1)) for c in tl.name[rows]])  # type: ignore[union-attr]
    index = {int(i): k for k, i in enumerate(steps.ids)}
    sidx = np.array([index.get(int(i), NO_STEP) for i in ids], dtype=np.int64)
    keep = sidx >= 0
    return tl.col(m.PID)[rows][keep], tl.start[rows][keep], tl.end[rows][keep], sidx[keep]
