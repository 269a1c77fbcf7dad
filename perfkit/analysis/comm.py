"""Communication in one trace: time in collectives, and the part no compute hides (exposed).

The ``communication`` section of the analysis document, per trace (per rank):

* On a GPU trace, communication is the device work of category
  ``communication`` (NCCL/RCCL kernels, see :data:`rules.CATEGORY_RULES`);
  it is *overlapped* where a compute kernel (any other kernel) runs at the same
  time on the same device, on another stream, and *exposed* elsewhere.
* On a CPU-only trace (gloo), communication is the host ranges of collectives
  (``gloo:all_reduce`` on gloo's threads, ``c10d::allreduce_`` ...,
  :data:`rules.COLLECTIVE_HOST_PATTERN`); it is overlapped where the training threads
  run an op (the outermost CPU ops, the same work items as the CPU time basis)
  and exposed where they wait.

All figures are per step: the union of communication inside each step's
window, and the part of it outside the compute union (vectorised interval
algebra, :mod:`perfkit.analysis.intervals`). Means are over kept steps.

A fast rank waiting for a slow one waits inside its collectives: its exposed
communication includes that wait. The job view (:mod:`perfkit.job.ranks`)
takes the least-exposed rank as the communication cost, and the rest as the
straggler's.

``communication.collectives`` lists the rank's collectives in kept steps (at most
:data:`COLLECTIVES_CAP`, the latest whole steps), columnar, on the trace's
absolute clock (``origin_ns`` plus the µs values): the job view matches the
n-th collective of each kind in each step across ranks and finds who arrives
last (:func:`perfkit.job.ranks.arrivals`).
"""

from __future__ import annotations

import re
from typing import Any, Optional

import numpy as np

from ..trace import model as m
from ..arrays import distinct, distinct_inverse, median, member, rounded
from .fold import name_search
from . import intervals, rules
from .attribute import CATEGORY_CODES, PHASE_CODES, DeviceWork, Steps, innermost_around, step_of
from .steps import StepStats
from .timeline import Timeline

#: Exposed communication / median step time: ``comm_exposed`` info, warning, critical.
COMM_EXPOSED_INFO = 0.05
COMM_EXPOSED_WARN = 0.15
COMM_EXPOSED_CRIT = 0.35
#: Collective names listed in ``communication.ops``.
TOP_OPS = 5
#: Collectives listed per rank in ``communication.collectives`` (the latest whole kept steps that fit).
COLLECTIVES_CAP = 2000

COMM_EXPOSED_REMEDY = (
    "Overlap communication with compute: let DDP start all-reduces during the backward (bucket_cap_mb "
    "around 25-100 MB, gradient_as_bucket_view=True, static_graph=True when the graph does not change), "
    "all-reduce less often with gradient accumulation (model.no_sync() on all but the last micro-batch), "
    "shrink what is sent (bf16 gradients: a bf16_compress_hook communication hook), and with FSDP prefetch "
    "the next all-gather (forward_prefetch / backward_prefetch). If nothing overlaps, the interconnect "
    "sets the pace: "
)
#: The last sentence of the remedy, by the backend the collectives ran on (the op name's prefix).
COMM_TRANSPORT_REMEDY = {
    "gloo": "gloo runs collectives on the CPU over TCP: check the network it uses (GLOO_SOCKET_IFNAME) and, "
            "on GPUs, use the nccl backend.",
    "mpi": "check the MPI library's transport and the network.",
    "": "check NCCL's transport (NCCL_DEBUG=INFO) and the topology.",
}


def section(tl: Timeline, dw: DeviceWork, stats: StepStats, basis: str, steps: Steps) -> dict[str, Any]:
    """The ``communication`` section of one trace's document (times in ms); ``steps`` as found for the document."""
    comm_code = CATEGORY_CODES[rules.COMMUNICATION]
    if basis == "gpu":
        is_comm = dw.category == comm_code
        lanes = dw.device.astype(np.int64)
        # One lane per device: overlap counts only on the same device.
        lane_ids, lane = distinct_inverse(lanes) if len(lanes) else (np.zeros(0, np.int64), lanes)
        off = lane.reshape(-1) * tl.span_us
        c_s, c_e = off[is_comm] + dw.start[is_comm], off[is_comm] + dw.end[is_comm]
        busy = (dw.kind == int(m.Kind.KERNEL)) & ~is_comm & is_comm.any()  # compute overlap matters only with communication
        p_s, p_e = off[busy] + dw.start[busy], off[busy] + dw.end[busy]
        n_lanes = max(len(lane_ids), 1)
        names, dur = dw.name[is_comm], dw.end[is_comm] - dw.start[is_comm]
        starts = dw.start[is_comm]
    else:
        host = tl.rows(m.Kind.CPU_OP, m.Kind.USER_ANNOTATION)
        rows = host[tl.matches(rules.COLLECTIVE_HOST_PATTERN)[host]]
        c_s, c_e = tl.start[rows], tl.end[rows]
        busy = ~tl.matches(rules.COLLECTIVE_HOST_PATTERN)[dw.row] if len(dw) else np.zeros(0, bool)
        p_s, p_e = dw.start[busy], dw.end[busy]
        n_lanes = 1
        names, dur, starts = tl.name[rows], c_e - c_s, c_s

    n = len(stats.ids)
    win_a = np.concatenate([stats.win_start + k * tl.span_us for k in range(n_lanes)]) if n else np.zeros(0)
    win_b = np.concatenate([stats.win_end + k * tl.span_us for k in range(n_lanes)]) if n else np.zeros(0)
    comm_cov = intervals.Coverage(c_s, c_e)
    over_s, over_e = intervals.intersection(comm_cov.starts, comm_cov.ends, p_s, p_e)
    comm_us = comm_cov.within(win_a, win_b).reshape(n_lanes, n).sum(axis=0) if n else np.zeros(0)
    over_us = intervals.Coverage(over_s, over_e).within(win_a, win_b).reshape(n_lanes, n).sum(axis=0) if n else np.zeros(0)
    exposed_us = np.maximum(comm_us - over_us, 0.0)

    kept = stats.kept
    n_kept = max(int(kept.sum()), 1)
    window_us = float((stats.win_end - stats.win_start)[kept].sum()) / n_kept
    exposed_mean = float(exposed_us[kept].sum()) / n_kept

    by_phase = {p: 0.0 for p in rules.PHASES}
    if basis == "gpu" and len(dw):
        sel = is_comm & (dw.step >= 0)
        sel[sel] = kept[dw.step[sel]]
        for p in rules.PHASES:
            by_phase[p] = float(dw.share_us[sel & (dw.phase == PHASE_CODES[p])].sum()) / 1000.0 / n_kept
    return {
        "basis": basis,
        "ms_per_step": float(comm_us[kept].sum()) / 1000.0 / n_kept,
        "exposed_ms_per_step": exposed_mean / 1000.0,
        "overlapped_ms_per_step": float(over_us[kept].sum()) / 1000.0 / n_kept,
        "exposed_share": exposed_mean / window_us if window_us > 0 else 0.0,
        "by_phase_ms_per_step": by_phase,
        "ops": _top_names(tl, stats, names, dur, starts, n_kept),
        "table": [
            {"id": int(i), "ms": float(c) / 1000.0, "exposed_ms": float(e) / 1000.0}
            for i, c, e in zip(stats.ids.tolist(), comm_us.tolist(), exposed_us.tolist())
        ],
        "collectives": collectives(tl, dw, stats, basis, steps),
    }


def _kind_codes(names: list[str], codes: np.ndarray, kinds: list[str]) -> np.ndarray:
    """Index into ``kinds`` (appended to) of each string-table code's collective kind, -1 if none."""
    out = np.full(len(codes), -1, dtype=np.int64)
    rules_ = [(k, name_search(p, re.I)) for k, p in rules.COLLECTIVE_KINDS]
    for c in distinct(codes[codes >= 0]).tolist():  # one regex pass per distinct name
        text = rules.match_text(names[c])
        low = text.lower() if text.isascii() else None
        kind = next((k for k, search in rules_ if search(text, low)), None)
        if kind is not None:
            if kind not in kinds:
                kinds.append(kind)
            out[codes == c] = kinds.index(kind)
    return out


def _r(x: np.ndarray) -> list[Any]:
    """µs values as JSON numbers rounded to the ns; NaN (absent) as null."""
    return rounded(x, 3)


def collectives(tl: Timeline, dw: DeviceWork, stats: StepStats, basis: str, steps: Steps,
                cap: Optional[int] = None) -> dict[str, Any]:
    """The rank's collectives in kept steps, columnar, for matching across ranks.

    One row per collective kernel on a GPU trace: the kernels of category communication
    whose name is a collective's (:data:`rules.COLLECTIVE_KERNEL_PATTERN`, the same list as
    the category's kernel rule: NCCL/RCCL, custom all-reduce, DeepEP ...), not the copies and
    casts a collective op also launches; per backend range (``gloo:all_reduce`` ...) on a
    CPU-only trace. Columns: ``step`` (ProfilerStep id), ``kind`` (index into ``kinds``: from
    the innermost collective op around the launch, else from the kernel name), ``n`` (its
    order among the step's collectives of that kind, by launch), ``launch_us`` (host enqueue;
    null when the launch is not in the trace, and always on a CPU trace, where no enqueue is
    separate from the range), ``start_us``/``end_us`` (device kernel; the host range on a CPU
    trace), ``gap_us`` (device time since the previous collective of the step ended, or since
    the step's GPU window opened), ``before_busy_us`` (device work in that gap, streams
    summed), ``before_op`` (index into ``ops``: the CPU op whose device work filled most of
    that gap, -1 if none) and ``before_op_us`` (that op's own device work in the gap); the
    four ``gap``/``before`` columns are null on a CPU trace. Times are µs
    after ``origin_ns``, the trace's absolute clock (``ts`` + ``baseTimeNanoseconds``).
    ``steps`` gives the listed steps' CPU start. At most ``cap`` rows: the latest whole
    steps that fit (when the latest step alone has more, its first ``cap``: ``truncated``).
    """
    cap = COLLECTIVES_CAP if cap is None else cap
    names = tl.trace.names
    kinds: list[str] = []
    if basis == "gpu":
        comm_code = CATEGORY_CODES[rules.COMMUNICATION]
        sel = np.flatnonzero((dw.kind == int(m.Kind.KERNEL)) & (dw.category == comm_code) & (dw.step >= 0))
        sel = sel[tl.matches(rules.COLLECTIVE_KERNEL_PATTERN)[dw.row[sel]]]
        sel = sel[stats.kept[dw.step[sel]]]
        start, end, step_idx = dw.start[sel], dw.end[sel], dw.step[sel]
        lrow = dw.launch[sel]
        launch = np.where(lrow >= 0, tl.start[np.maximum(lrow, 0)], np.nan)
        host = tl.rows(m.Kind.CPU_OP, m.Kind.USER_ANNOTATION)
        host = host[tl.matches(rules.COLLECTIVE_HOST_PATTERN)[host]]
        op = np.full(len(sel), -1, dtype=np.int64)
        has = lrow >= 0
        if has.any():
            op[has] = innermost_around(tl, host, lrow[has])
        kind = _kind_codes(names, np.where(op >= 0, tl.name[np.maximum(op, 0)], -1), kinds)
        if (kind < 0).any():  # the op says nothing (record_param_comms): the kernel's name
            kind[kind < 0] = _kind_codes(names, tl.name[dw.row[sel[kind < 0]]].astype(np.int64), kinds)
    else:
        host = tl.rows(m.Kind.CPU_OP, m.Kind.USER_ANNOTATION)
        host = host[tl.matches(rules.COLLECTIVE_BACKEND_RANGE_PATTERN)[host]]
        step_idx = step_of(steps, tl.start[host]) if len(host) else np.zeros(0, np.int64)
        ok = step_idx >= 0
        ok[ok] = stats.kept[step_idx[ok]]
        host, step_idx = host[ok], step_idx[ok]
        start, end = tl.start[host], tl.end[host]
        launch = np.full(len(start), np.nan)  # no enqueue apart from the range itself: unknown, not the start
        kind = _kind_codes(names, tl.name[host].astype(np.int64), kinds)
    if "collective" not in kinds and (kind < 0).any():
        kinds.append("collective")
    kind = np.where(kind >= 0, kind, kinds.index("collective") if "collective" in kinds else 0)

    # Program order: by launch (the host's order is the same on every rank), within each step.
    t = np.where(np.isnan(launch), start, launch)
    order = np.lexsort((t, step_idx))
    start, end, launch, step_idx, kind = start[order], end[order], launch[order], step_idx[order], kind[order]
    n = _order_in_group(step_idx * (len(kinds) + 1) + kind)

    # The latest whole steps that fit under the cap.
    total = len(start)
    keep = np.ones(total, dtype=bool)
    truncated = False
    if total > cap:
        uniq, counts = np.unique(step_idx, return_counts=True)
        from_end = np.cumsum(counts[::-1])
        fit = int((from_end <= cap).sum())
        if fit == 0:  # the latest step alone is over the cap: its first `cap` collectives
            keep = step_idx == uniq[-1]
            keep[np.flatnonzero(keep)[cap:]] = False
            truncated = True
        else:
            keep = member(step_idx, uniq[len(uniq) - fit:])
    start, end, launch, step_idx, kind, n = (a[keep] for a in (start, end, launch, step_idx, kind, n))

    gap, busy, before, before_us, ops = _before(tl, dw, stats, start, end, step_idx) if basis == "gpu" and len(start) \
        else (np.full(len(start), np.nan), np.full(len(start), np.nan), np.full(len(start), -1, np.int64),
              np.full(len(start), np.nan), [])
    listed_steps = distinct(step_idx)
    base = tl.trace.meta.get("baseTimeNanoseconds")
    base_ns = int(base) if isinstance(base, (int, float)) and base > 0 else 0
    return {
        "basis": basis,
        "cap": cap,
        "count": int(total),
        "listed": int(len(start)),
        "truncated": truncated,
        "clock": "ts + baseTimeNanoseconds" if base_ns else "ts (absolute)",
        "origin_ns": base_ns + int(round(tl.t0_us)) * 1000 + int(round((tl.t0_us - round(tl.t0_us)) * 1000.0)),
        "kinds": kinds,
        "ops": ops,
        "steps": {"id": [int(stats.ids[i]) for i in listed_steps.tolist()],
                  "start_us": _r(steps.cpu_start[listed_steps]) if not steps.synthetic else [None] * len(listed_steps)},
        "step": [int(stats.ids[i]) for i in step_idx.tolist()],
        "kind": kind.tolist(),
        "n": n.tolist(),
        "launch_us": _r(launch),
        "start_us": _r(start),
        "end_us": _r(end),
        "gap_us": _r(gap),
        "before_busy_us": _r(busy),
        "before_op": before.tolist(),
        "before_op_us": _r(before_us),
    }


def _order_in_group(group: np.ndarray) -> np.ndarray:
    """0, 1, 2 ... within each group value, in the rows' order."""
    if not len(group):
        return np.zeros(0, dtype=np.int64)
    order = np.argsort(group, kind="stable")
    g = group[order]
    first = np.concatenate(([0], np.flatnonzero(g[1:] != g[:-1]) + 1))  # (np.r_: ~4 µs more a call)
    pos = np.arange(len(g)) - np.repeat(first, np.diff(np.concatenate((first, [len(g)]))))
    out = np.empty(len(g), dtype=np.int64)
    out[order] = pos
    return out


def _before(tl: Timeline, dw: DeviceWork, stats: StepStats, start: np.ndarray, end: np.ndarray,
            step_idx: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, list[str]]:
    """For each collective: the device gap before it, the device work in that gap, the op that ran most of it and that op's own work there.

    The gap opens when the step's previous collective ended (by start order; the step's GPU
    window start for the first) and closes at the collective's start. Work counts by its part
    inside the gap (streams summed, so busy may exceed the gap on several streams).
    """
    by_start = np.argsort(start, kind="stable")
    s, e, k = start[by_start], end[by_start], step_idx[by_start]
    prev_end = np.maximum.accumulate(e)
    lo = np.empty(len(s))
    lo[0] = stats.win_start[k[0]]
    lo[1:] = np.where(k[1:] == k[:-1], prev_end[:-1], stats.win_start[k[1:]])
    lo = np.minimum(lo, s)
    comm_code = CATEGORY_CODES[rules.COMMUNICATION]
    work = np.flatnonzero(dw.category != comm_code)
    w_s, w_e = dw.start[work], dw.end[work]
    # The collective whose gap holds each work item's start.
    c = np.searchsorted(s, w_s, side="right")
    inside = (c < len(s))
    c = np.minimum(c, len(s) - 1)
    inside &= w_s >= lo[c]
    work, w_s, w_e, c = work[inside], w_s[inside], w_e[inside], c[inside]
    w = np.maximum(np.minimum(w_e, s[c]) - w_s, 0.0)
    op = dw.op[work]
    code = np.where(op >= 0, tl.name[np.maximum(op, 0)], tl.name[dw.row[work]]).astype(np.int64)
    busy_sorted = np.bincount(c, weights=w, minlength=len(s))
    best_sorted = np.full(len(s), -1, dtype=np.int64)
    best_us_sorted = np.full(len(s), np.nan)
    if len(c):
        keys, inv = distinct_inverse(c * (int(code.max()) + 1) + code)
        tot = np.bincount(inv.reshape(-1), weights=w)
        kc, kcode = keys // (int(code.max()) + 1), keys % (int(code.max()) + 1)
        pick = np.lexsort((-tot, kc))
        first = np.concatenate(([True], kc[pick][1:] != kc[pick][:-1]))
        best_sorted[kc[pick][first]] = kcode[pick][first]
        best_us_sorted[kc[pick][first]] = tot[pick][first]
    used = distinct(best_sorted[best_sorted >= 0])
    ops = [tl.trace.names[i] for i in used.tolist()]
    best_sorted = np.where(best_sorted >= 0, np.searchsorted(used, best_sorted), -1)
    gap, busy, best, best_us = (np.empty(len(s)), np.empty(len(s)), np.empty(len(s), dtype=np.int64), np.empty(len(s)))
    gap[by_start], busy[by_start], best[by_start], best_us[by_start] = s - lo, busy_sorted, best_sorted, best_us_sorted
    return gap, busy, best, best_us, ops


def _top_names(tl: Timeline, stats: StepStats, names: np.ndarray, dur: np.ndarray, starts: np.ndarray,
               n_kept: int) -> list[dict[str, Any]]:
    """Collectives by the wall time they cover inside kept step windows: [{name, ms_per_step, calls_per_step}]."""
    if len(names) == 0:
        return []
    a, b = stats.win_start[stats.kept], stats.win_end[stats.kept]
    k = np.searchsorted(a, starts, side="right") - 1
    inside = (k >= 0) & (starts < b[np.maximum(k, 0)])
    names, dur = names[inside].astype(np.int64), dur[inside]
    if len(names) == 0:
        return []
    starts = starts[inside]
    codes, inv = distinct_inverse(names)
    inv = inv.reshape(-1)
    # Wall time each collective covers: calls that overlap (the same collective on two backend
    # threads, gloo's pair of threads) count once, so no row exceeds the steps' length.
    tot = np.array([intervals.Coverage(starts[inv == i], starts[inv == i] + dur[inv == i]).total
                    for i in range(len(codes))])  # one pass per distinct collective name
    calls = np.bincount(inv, minlength=len(codes))
    order = np.argsort(-tot, kind="stable")[:TOP_OPS]
    return [
        {"name": tl.trace.names[int(codes[i])], "ms_per_step": float(tot[i]) / 1000.0 / n_kept,
         "calls_per_step": float(calls[i]) / n_kept}
        for i in order.tolist()
    ]


def exposed_finding(ranks: list[dict[str, Any]]) -> Optional[dict[str, Any]]:
    """``comm_exposed`` from per-rank rows ``{rank, step_ms, communication}`` (one row for a single trace).

    The cost is the *least* exposed rank's exposed time: what every rank loses
    to communication even when no rank waits for another (the rest of the
    others' exposed time is waiting for a straggler: ``straggler_rank``).
    """
    rows = [r for r in ranks if isinstance(r.get("communication"), dict) and r.get("step_ms")]
    if not rows:
        return None
    exposed = np.array([float(r["communication"].get("exposed_ms_per_step") or 0.0) for r in rows])
    comm = np.array([float(r["communication"].get("ms_per_step") or 0.0) for r in rows])
    step = median([float(r["step_ms"]) for r in rows])
    best = int(np.argmin(exposed))
    cost = float(exposed[best])
    share = cost / step if step > 0 else 0.0
    if share < COMM_EXPOSED_INFO:
        return None
    sev = "critical" if share >= COMM_EXPOSED_CRIT else "warning" if share >= COMM_EXPOSED_WARN else "info"
    lead = rows[best]
    ops = lead["communication"].get("ops") or []
    where = [{"name": o["name"], "ms_per_step": round(float(o["ms_per_step"]), 4)} for o in ops[:3]]
    what = ops[0]["name"] if ops else "collectives"
    who = "" if len(rows) == 1 or lead.get("rank") is None else f" on every rank (least on rank {lead['rank']})"
    evidence: dict[str, Any] = {
        "exposed_ms_per_step": round(cost, 3),
        "share_of_step": round(share, 4),
        "comm_ms_per_step": round(median(comm), 3),
        "overlapped_share": round(1.0 - float(exposed[best] / comm[best]), 4) if comm[best] > 0 else 0.0,
        "step_ms": round(step, 3),
    }
    if len(rows) > 1:
        evidence["exposed_ms_per_step_by_rank"] = {str(r.get("rank")): round(float(e), 3) for r, e in zip(rows, exposed)}
    from .findings import finding

    return finding(
        "comm_exposed", sev,
        f"Communication not overlapped with compute: {cost:.1f} ms per step ({share:.0%}){who}, mostly {what}",
        where, evidence, COMM_EXPOSED_REMEDY + _transport_remedy([o["name"] for o in ops]), cost,
    )


def _transport_remedy(op_names: list[str]) -> str:
    for backend, text in COMM_TRANSPORT_REMEDY.items():
        if backend and any(n.lower().startswith(backend + ":") for n in op_names):
            return text
    return COMM_TRANSPORT_REMEDY[""]


def trace_finding(communication: Any, step_ms: Optional[float]) -> Optional[dict[str, Any]]:
    """``comm_exposed`` of one trace from its ``communication`` section (None when there is nothing to say)."""
    if not isinstance(communication, dict):
        return None
    return exposed_finding([{"rank": None, "step_ms": float(step_ms or 0.0), "communication": communication}])
