"""torch.compile'd graphs: their time per step and the user code that called them.

Inductor records ``## Call CompiledFxGraph <hash> ##`` on the host around each call of a compiled
graph; Dynamo's ``Torch-Compiled Region: <frame>/<compile>`` and AOTAutograd's ``CompiledFunction``
(forward) / ``CompiledFunctionBackward`` ranges surround it. A backward graph runs on the autograd
engine, with no Python frame of the user's around it: its ``CompiledFunctionBackward`` carries the
autograd ``Sequence number`` of the forward ``CompiledFunction`` it differentiates, which names the
forward's region and calling line. The calling line is the innermost user frame around the region
(``Sources``: stack samples give the call site, torch's Python tracer the calling function's
definition line); ``None`` where the trace has neither (the report says "unknown").
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..trace import model as m
from . import rules
from .attribute import DeviceWork, Steps
from .ops import Sources, _best_source
from .steps import StepStats, in_kept_steps
from .timeline import Timeline

#: Graphs listed in ``compiled_graphs`` (the most time first).
TOP_GRAPHS = 15


def short_graph_name(name: str, hash_chars: int = 8) -> str:
    """``## Call CompiledFxGraph fx5y4x2v5alk... ##`` -> ``CompiledFxGraph fx5y4x2v…``."""
    import re

    mt = re.match(rules.COMPILED_GRAPH_PATTERN, name)
    if not mt:
        return name
    h = mt.group("hash")
    return f"CompiledFxGraph {h[:hash_chars]}…" if len(h) > hash_chars else f"CompiledFxGraph {h}"


def _enclosing(tl: Timeline, outer: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """For each of ``rows``, the row of ``outer`` (ranges of one kind, which do not nest in each other)
    that contains it on its thread, -1 when none."""
    out = np.full(len(rows), -1, dtype=np.int64)
    if len(outer) == 0 or len(rows) == 0:
        return out
    os_, oe = tl.offset_span(outer)
    order = np.argsort(os_, kind="stable")
    os_, oe, outer = os_[order], oe[order], outer[order]
    qs, qe = tl.offset_span(rows)
    k = np.searchsorted(os_, qs, side="right") - 1
    kk = np.maximum(k, 0)
    ok = (k >= 0) & (oe[kk] >= qe)
    out[ok] = outer[kk[ok]]
    return out


def compiled_graphs(tl: Timeline, steps: Steps, stats: StepStats, dw: DeviceWork, kept: np.ndarray,
                    src: Sources, basis: str) -> list[dict[str, Any]]:
    """[{name, short_name, phase, region, source, source_line, ms_per_step, host_ms_per_step, calls_per_step}]
    of the compiled graphs called in the kept steps; ``ms_per_step`` is the device time of the work
    launched inside the graph (CPU time of the ops inside it on a CPU-only trace)."""
    host = tl.rows(m.Kind.CPU_OP, m.Kind.USER_ANNOTATION)
    graphs = host[tl.matches(rules.COMPILED_GRAPH_PATTERN)[host]]
    graphs = graphs[in_kept_steps(steps, stats, tl.start[graphs])]
    if len(graphs) == 0:
        return []
    names = tl.trace.names
    regions = host[tl.matches(r"^Torch-Compiled Region: ")[host]]
    fwd = host[tl.matches(r"^CompiledFunction$")[host]]
    bwd = host[tl.matches(r"^CompiledFunctionBackward$")[host]]
    in_region = _enclosing(tl, regions, graphs)
    in_fwd = _enclosing(tl, fwd, graphs)
    in_bwd = _enclosing(tl, bwd, graphs)
    # The forward CompiledFunction of each backward one: the latest forward with its sequence number.
    seq = tl.col(m.SEQ)
    fwd_of_bwd = np.full(len(graphs), -1, dtype=np.int64)
    has_b = np.flatnonzero(in_bwd >= 0)
    if len(has_b) and len(fwd):
        f_seq, f_start = seq[fwd], tl.start[fwd]
        for i in has_b.tolist():  # one per backward graph call: a few per step
            b = in_bwd[i]
            cand = np.flatnonzero((f_seq == seq[b]) & (f_seq >= 0) & (f_start <= tl.start[b]))
            if len(cand):
                fwd_of_bwd[i] = fwd[cand[np.argmax(f_start[cand])]]
    fwd_region = _enclosing(tl, regions, np.where(fwd_of_bwd >= 0, fwd_of_bwd, graphs))
    region = np.where(in_bwd >= 0, np.where(fwd_of_bwd >= 0, fwd_region, -1), in_region)
    # The calling line: around the region (else the forward CompiledFunction, else the graph itself).
    anchor = np.where(in_bwd >= 0, np.where(fwd_of_bwd >= 0, np.where(fwd_region >= 0, fwd_region, fwd_of_bwd), -1),
                      np.where(in_region >= 0, in_region, np.where(in_fwd >= 0, in_fwd, graphs)))
    source = np.full(len(graphs), -1, dtype=np.int64)
    ok = anchor >= 0
    if ok.any():
        source[ok] = src.at(anchor[ok])
    # Work inside each graph call: the items launched within its span on its thread.
    sel = np.flatnonzero(kept & (dw.launch >= 0))
    work_us: np.ndarray = np.zeros(len(graphs))
    if len(sel):
        gs, ge = tl.offset_span(graphs)
        order = np.argsort(gs, kind="stable")
        lt = tl.offset(dw.launch[sel])
        k = np.searchsorted(gs[order], lt, side="right") - 1
        kk = np.maximum(k, 0)
        inside = (k >= 0) & (lt < ge[order][kk])
        work_us = np.bincount(order[kk[inside]], weights=dw.share_us[sel][inside], minlength=len(graphs))
    n = max(int(stats.kept.sum()), 1)
    phase = np.where(in_bwd >= 0, 1, np.where(in_fwd >= 0, 0, -1))
    # One row per graph name, phase and region; its calling line is the one most of its time has.
    key = np.stack([tl.name[graphs].astype(np.int64), phase, np.where(region >= 0, tl.name[np.maximum(region, 0)], -1)],
                   axis=1)
    uniq, inv = np.unique(key, axis=0, return_inverse=True)
    inv = inv.reshape(-1)
    work = np.bincount(inv, weights=work_us, minlength=len(uniq))
    dur = np.bincount(inv, weights=(tl.end[graphs] - tl.start[graphs]), minlength=len(uniq))
    calls = np.bincount(inv, minlength=len(uniq))
    best = _best_source(inv.astype(np.int64), source, np.maximum(work_us, 1e-6))
    out = []
    for i in np.argsort(-work, kind="stable")[:TOP_GRAPHS].tolist():
        name_code, ph, reg = (int(x) for x in uniq[i])
        s_code = best.get(i, -1)
        name = names[name_code]
        out.append({
            "name": name,
            "short_name": short_graph_name(name),
            "phase": {0: rules.FORWARD, 1: rules.BACKWARD}.get(ph),
            "region": names[reg] if reg >= 0 else None,
            "source": src.label(s_code) if s_code >= 0 else None,
            "source_line": src.line_kind(s_code) if s_code >= 0 else None,
            "source_basis": src.basis if s_code >= 0 else None,
            "ms_per_step": float(work[i]) / 1000.0 / n,
            "host_ms_per_step": float(dur[i]) / 1000.0 / n,
            "calls_per_step": float(calls[i]) / n,
        })
    return out
