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
communication includes that wait. The job view (:mod:`perfkit.analysis.ranks`)
takes the least-exposed rank as the communication cost, and the rest as the
straggler's.
"""

from __future__ import annotations

from typing import Any, Optional

import numpy as np

from ..trace import model as m
from . import intervals, rules
from .attribute import CATEGORY_CODES, PHASE_CODES, DeviceWork
from .steps import StepStats
from .timeline import Timeline

#: Exposed communication / median step time: ``comm_exposed`` info, warning, critical.
COMM_EXPOSED_INFO = 0.05
COMM_EXPOSED_WARN = 0.15
COMM_EXPOSED_CRIT = 0.35
#: Collective names listed in ``communication.ops``.
TOP_OPS = 5

COMM_EXPOSED_REMEDY = (
    "Overlap communication with compute: let DDP start all-reduces during the backward (bucket_cap_mb "
    "around 25-100 MB, gradient_as_bucket_view=True, static_graph=True when the graph does not change), "
    "all-reduce less often with gradient accumulation (model.no_sync() on all but the last micro-batch), "
    "shrink what is sent (bf16 gradients: a bf16_compress_hook communication hook), and with FSDP prefetch "
    "the next all-gather (forward_prefetch / backward_prefetch). If nothing overlaps, the interconnect "
    "sets the pace: check NCCL's transport (NCCL_DEBUG=INFO) and the topology."
)


def section(tl: Timeline, dw: DeviceWork, stats: StepStats, basis: str) -> dict[str, Any]:
    """The ``communication`` section of one trace's document (times in ms)."""
    comm_code = CATEGORY_CODES[rules.COMMUNICATION]
    if basis == "gpu":
        is_comm = dw.category == comm_code
        lanes = dw.device.astype(np.int64)
        # One lane per device: overlap counts only on the same device.
        lane_ids, lane = np.unique(lanes, return_inverse=True) if len(lanes) else (np.zeros(0, np.int64), lanes)
        off = lane.reshape(-1) * tl.span_us
        c_s, c_e = off[is_comm] + dw.start[is_comm], off[is_comm] + dw.end[is_comm]
        busy = (dw.kind == m.Kind.KERNEL) & ~is_comm & is_comm.any()  # compute overlap matters only with communication
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
    }


def _top_names(tl: Timeline, stats: StepStats, names: np.ndarray, dur: np.ndarray, starts: np.ndarray,
               n_kept: int) -> list[dict[str, Any]]:
    """Collectives by summed duration inside kept step windows: [{name, ms_per_step, calls_per_step}]."""
    if len(names) == 0:
        return []
    a, b = stats.win_start[stats.kept], stats.win_end[stats.kept]
    k = np.searchsorted(a, starts, side="right") - 1
    inside = (k >= 0) & (starts < b[np.maximum(k, 0)])
    names, dur = names[inside].astype(np.int64), dur[inside]
    if len(names) == 0:
        return []
    codes, inv = np.unique(names, return_inverse=True)
    tot = np.bincount(inv.reshape(-1), weights=dur, minlength=len(codes))
    calls = np.bincount(inv.reshape(-1), minlength=len(codes))
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
    step = float(np.median([float(r["step_ms"]) for r in rows]))
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
        "comm_ms_per_step": round(float(np.median(comm)), 3),
        "overlapped_share": round(1.0 - float(exposed[best] / comm[best]), 4) if comm[best] > 0 else 0.0,
        "step_ms": round(step, 3),
    }
    if len(rows) > 1:
        evidence["exposed_ms_per_step_by_rank"] = {str(r.get("rank")): round(float(e), 3) for r, e in zip(rows, exposed)}
    from .findings import finding

    return finding(
        "comm_exposed", sev,
        f"Communication not overlapped with compute: {cost:.1f} ms per step ({share:.0%}){who}, mostly {what}",
        where, evidence, COMM_EXPOSED_REMEDY, cost,
    )


def add_finding(doc: dict[str, Any]) -> None:
    """Add ``comm_exposed`` of one trace to its findings (ranked like the rest)."""
    from .findings import _SEVERITY_RANK

    section_ = doc.get("communication")
    if not isinstance(section_, dict):
        return
    step = float((doc.get("steps") or {}).get("gpu_ms_median") or 0.0)
    f = exposed_finding([{"rank": None, "step_ms": step, "communication": section_}])
    if f is not None:
        doc["findings"].append(f)
        doc["findings"].sort(key=lambda x: (_SEVERITY_RANK.get(x["severity"], 3), -x.get("cost_ms_per_step", 0.0)))
