"""The single-trace pipeline and the merge of several documents (imported by :mod:`perfkit.analysis`).

``analyze_trace(trace)`` runs the passes in order: timeline -> steps ->
attribution (step/phase/category/share per device op) -> step statistics ->
breakdowns (phases, categories, copies, overview, top ops and kernels).
``merge(results)`` combines analyses of several traces (step-weighted means).
"""

from __future__ import annotations

import functools
import os
from typing import Any, Callable, Optional, cast

import numpy as np

from ..trace import model as m
from ..trace import read_trace
from ..arrays import distinct
from ..threads import Pool
from . import ops, rules, series
from .attribute import CATEGORY_CODES, PHASE_CODES, DeviceWork, Steps, attribute, find_steps, has_host_evidence
from .overview import ROLES, overview
from .document import AnalysisDoc, Device, PhasesUnknown, Share, TimeBasis, finding_order
from .result import SCHEMA, Analysis
from .steps import (StepStats, column_spreads, in_kept_steps, kept_mask, mean_or_zero, median_or_zero, spread,
                    spread_warning, step_stats)
from .timeline import Timeline

__all__ = ["analyze_trace", "analyze_file", "Analysis", "SCHEMA"]

#: Attribution, the tables and the detectors use two threads from this many events on. Below
#: it one thread: the gain is under a few ms (the rank engines analyse many small traces at once).
#: On a 171 MB trace (0.5 M events) two threads took 0.77 s against 0.87 s for one (median of 3
#: runs, reading included) for a peak of 149-153 MB against 139-143 MB (glibc's arenas limited
#: to one, see trace/reader.py). On the 54 MB anchor trace (123 k events, 2 CPUs) the analysis
#: took 115-125 ms on two threads against 138-142 ms on one (6 runs each), at the same peak (70 MB).
TABLE_THREADS_MIN_EVENTS = 50_000


def analyze_file(path: str, workers: Optional[int] = None) -> Analysis:
    """Read and analyze one trace file (``workers``: decode threads, see :func:`perfkit.trace.read_trace`)."""
    return analyze_trace(read_trace(path, workers=workers))


def analyze_trace(trace: m.Trace) -> Analysis:
    """Analyze a loaded trace."""
    tl = Timeline.build(trace)
    steps = find_steps(tl)
    has_device_work = bool(len(tl.rows(*m.DEVICE_WORK_KINDS)))
    basis: TimeBasis = "gpu" if has_device_work else "cpu"
    threads = 2 if len(trace) >= TABLE_THREADS_MIN_EVENTS else 1
    dw = attribute(tl, steps, basis=basis, threads=threads)
    stats = step_stats(tl, steps, dw)
    return _document(tl, steps, dw, stats, basis)


def _share_group(values_us: dict[str, float], n_steps: int, total_us: float) -> dict[str, Share]:
    return {
        k: {"ms_per_step": v / 1000.0 / n_steps, "share": (v / total_us) if total_us > 0 else 0.0}
        for k, v in values_us.items()
    }


def _document(tl: Timeline, steps: Steps, dw: DeviceWork, stats: StepStats, basis: TimeBasis) -> Analysis:
    trace = tl.trace
    kept = kept_mask(dw, stats)
    n_kept = int(stats.kept.sum())
    busy_total = float(dw.share_us[kept].sum())
    window_total = float(stats.window_us[stats.kept].sum())
    warnings = list(trace.warnings)
    if steps.synthetic:
        warnings.append("trace has no ProfilerStep#N markers: the whole trace is analysed as one window")
    if basis == "cpu":
        warnings.append(
            "no device kernels, copies or memsets in the trace: figures are CPU time (busy = time inside "
            "ops, each op's own time in its category; idle = Python and other time between them)"
        )

    phase_us: dict[str, float] = {p: float(dw.share_us[kept & (dw.phase == PHASE_CODES[p])].sum()) for p in rules.PHASES}
    phases_evidence = _phase_evidence(dw, kept)
    phases_unknown = _phases_unknown(tl, phase_us, busy_total, max(n_kept, 1))
    cat_us: dict[str, float] = {c: float(dw.share_us[kept & (dw.category == CATEGORY_CODES[c])].sum()) for c in rules.CATEGORIES}
    other_share = cat_us[rules.OTHER] / busy_total if busy_total else 0.0
    if other_share > 0.2:
        warnings.append(f"{other_share:.0%} of GPU time fell in category 'other' (kernel names no rule knows)")

    step_spread = None if steps.synthetic else spread(
        (stats.window_us if basis == "gpu" else stats.wall_us)[stats.kept] / 1000.0, [int(i) for i in stats.ids[stats.kept]])
    unsteady = spread_warning(step_spread, "The analysed steps' times")
    if unsteady:
        warnings.append(unsteady)

    src = ops.Sources(tl)
    in_kept_step = functools.partial(in_kept_steps, steps, stats)
    # The tables are independent and mostly numpy work, which releases the GIL:
    # on large traces they are built on two threads.
    from . import comm, compiled, findings, frames

    def context(tables: Optional[findings.Tables]) -> findings.Context:
        return findings.Context(tl=tl, steps=steps, dw=dw, stats=stats, basis=basis, src=src, kept=kept,
                                tables=tables)

    threads = 2 if len(trace) >= TABLE_THREADS_MIN_EVENTS else 0  # 0: here, one after the other
    with Pool(threads) as pool:
        f_early = pool.submit(findings.run_early, context(None))
        f_top_ops = pool.submit(ops.top_ops, tl, dw, kept, max(n_kept, 1), busy_total, src, in_kept_step, basis=basis)
        f_roles = pool.submit(overview, tl, dw, stats)
        f_copies = pool.submit(ops.copies, tl, dw, kept, max(n_kept, 1), src)
        f_top_kernels = pool.submit(ops.top_kernels, tl, dw, kept, max(n_kept, 1), busy_total, src)
        f_comm = pool.submit(comm.section, tl, dw, stats, basis, steps)
        f_frames = pool.submit(frames.user_frames, tl, steps, stats, src)
        f_compiled = pool.submit(compiled.compiled_graphs, tl, steps, stats, dw, kept, src, basis)
        f_memory = pool.submit(series.memory_timeline, trace, tl.t0_us, steps)
        roles = f_roles.result()
        tables = {"copies": f_copies.result(), "top_ops": f_top_ops.result(), "top_kernels": f_top_kernels.result()}
    role_us = {r: float(roles[r][stats.kept].sum()) for r in ROLES}
    role_total = sum(role_us.values())

    outside = ~kept
    pre_window = (dw.step < 0) & (dw.launch < 0)
    devices = _devices(trace, dw) if basis == "gpu" else []
    step_rows: dict[str, Any] = {
        "id": stats.ids,
        "wall_ms": stats.wall_us / 1000.0,
        "window_ms": stats.window_us / 1000.0,
        "busy_ms": stats.busy_us / 1000.0,
        "active_ms": (stats.window_us - stats.idle_us) / 1000.0,
        "idle_ms": stats.idle_us / 1000.0,
        "kept": stats.kept,
        "reason": stats.reasons,
    }
    for p in rules.PHASES:
        step_rows[f"{p}_ms"] = _per_step(dw, PHASE_CODES[p], dw.phase, len(steps)) / 1000.0
    if phases_unknown and phases_unknown["whole_trace"]:  # no evidence for any phase: not 0 ms, unknown
        for p in rules.PHASES:
            if p != rules.PHASE_UNKNOWN:
                step_rows[f"{p}_ms"] = [None] * len(steps)
    step_rows["categories_ms"] = series.categories_ms_per_step(dw, len(steps))
    doc: dict[str, Any] = {
        "schema": SCHEMA,
        "trace": {
            "paths": [trace.path],
            "bytes": trace.bytes_read,
            "file_bytes": _file_bytes(trace.path),
            "events": len(trace),
            "devices": devices,
            "device": devices[0]["name"] if devices else None,
            "distributed": trace.meta.get("distributedInfo") if isinstance(trace.meta.get("distributedInfo"), dict) else None,
            "base_time_ns": trace.meta.get("baseTimeNanoseconds"),
            "time_basis": basis,
            "has_python_stacks": bool(len(tl.rows(m.Kind.PYTHON))) or bool((tl.col(m.STACK) >= 0).any())
            or src.samples is not None,
            "source_basis": src.basis,
            "stack_samples": _stack_samples_info(trace, src),
            "warnings": warnings,
        },
        "steps": {
            "count": n_kept,
            "total": len(steps),
            "synthetic": steps.synthetic,
            "ids": [int(i) for i in stats.ids[stats.kept]],
            "excluded": [{"id": int(stats.ids[i]), "reason": stats.reasons[i]} for i in np.flatnonzero(~stats.kept)],
            "window_ms_median": median_or_zero(stats.window_us[stats.kept]) / 1000.0,
            "wall_ms_median": median_or_zero(stats.wall_us[stats.kept]) / 1000.0,
            "variation": step_spread,
            "window_ms_mean": mean_or_zero(stats.window_us[stats.kept]) / 1000.0,
            "wall_ms_mean": mean_or_zero(stats.wall_us[stats.kept]) / 1000.0,
            "spread": column_spreads({"window_ms": stats.window_us[stats.kept] / 1000.0,
                               "wall_ms": stats.wall_us[stats.kept] / 1000.0,
                               "active_ms": (stats.window_us - stats.idle_us)[stats.kept] / 1000.0,
                               "idle_ms": stats.idle_us[stats.kept] / 1000.0}),
            "table": _records(step_rows),
        },
        "device": {
            "busy_ms_per_step": busy_total / 1000.0 / max(n_kept, 1),
            "active_ms_per_step": float((stats.window_us - stats.idle_us)[stats.kept].sum()) / 1000.0 / max(n_kept, 1),
            "idle_ms_per_step": float(stats.idle_us[stats.kept].sum()) / 1000.0 / max(n_kept, 1),
            "utilization": 1.0 - float(stats.idle_us[stats.kept].sum()) / window_total if window_total > 0 else 0.0,
            "outside_kept_steps_ms": float(dw.share_us[outside & ~pre_window].sum()) / 1000.0,
            "launched_before_window": {
                "count": int(pre_window.sum()),
                "ms": float(dw.share_us[pre_window].sum()) / 1000.0,
            },
        },
        "phases": _phase_group(phase_us, max(n_kept, 1), busy_total, phases_unknown),
        "phases_evidence": phases_evidence,
        "phases_unknown": phases_unknown,
        "categories": _share_group(cat_us, max(n_kept, 1), busy_total),
        "copies": tables["copies"],
        "top_ops": tables["top_ops"],
        "top_kernels": tables["top_kernels"],
        "overview": {
            r: {"ms_per_step": v / 1000.0 / max(n_kept, 1), "share": v / role_total if role_total else 0.0}
            for r, v in role_us.items()
        },
        "findings": [],
        "memory_timeline": f_memory.result(),
    }
    doc["communication"] = f_comm.result()
    doc["frames"] = f_frames.result()
    doc["compiled_graphs"] = f_compiled.result()
    finished = findings.Tables(steps=doc["steps"], device=doc["device"], categories=doc["categories"],
                               copies=doc["copies"], top_ops=doc["top_ops"], devices=cast(list[Device], devices))
    found, doc["recording"] = findings.detect(context(finished), early=f_early.result())
    exposed = comm.trace_finding(doc["communication"], doc["steps"]["window_ms_median"])
    doc["findings"] = sorted(found + ([exposed] if exposed else []), key=finding_order)
    # Built as JSON-shaped data; its keys are the contract's (tests/unit/test_document.py checks each one).
    return Analysis(doc=cast(AnalysisDoc, doc))


def _file_bytes(path: Any) -> Optional[int]:
    """The trace file's size on disk (compressed, for .gz), or None when it cannot be read."""
    try:
        return int(os.path.getsize(path))
    except (OSError, TypeError, ValueError):
        return None


def _stack_samples_info(trace: m.Trace, src: ops.Sources) -> Optional[dict[str, Any]]:
    """What the stack samples beside the trace gave (None when there were none)."""
    ss = trace.stack_samples
    if ss is None:
        return None
    sm = src.samples
    return {
        "path": ss.path, "samples": len(ss), "alignment": ss.alignment, "interval_us": ss.interval_us,
        "used": sm is not None and not len(src.frames),
        "samples_on_feeding_threads": len(sm) if sm is not None else 0,
        "typical_gap_us": sm.typical_us if sm is not None else None,
    }


def _phase_group(phase_us: dict[str, float], n_steps: int, busy_total: float,
                 unknown: Optional[PhasesUnknown]) -> dict[str, Share]:
    """The phases' figures; when nothing decided any phase, the decided phases are unknown (None), not 0."""
    group = _share_group(phase_us, n_steps, busy_total)
    if unknown and unknown["whole_trace"]:
        for p in rules.PHASES:
            if p != rules.PHASE_UNKNOWN:
                group[p] = {"ms_per_step": None, "share": None}
    return group


def _phase_evidence(dw: DeviceWork, kept: np.ndarray) -> dict[str, dict[str, float]]:
    """Per phase with GPU time in the kept steps: the share of that time each kind of evidence decided."""
    n_ev = len(rules.PHASE_EVIDENCE)
    key = dw.phase[kept].astype(np.int64) * n_ev + dw.phase_evidence[kept]
    us = np.bincount(key, weights=dw.share_us[kept], minlength=len(rules.PHASES) * n_ev).reshape(len(rules.PHASES), n_ev)
    out: dict[str, dict[str, float]] = {}
    for i, p in enumerate(rules.PHASES):
        total = float(us[i].sum())
        if total > 0:
            out[p] = {e: float(us[i, j]) / total for j, e in enumerate(rules.PHASE_EVIDENCE) if us[i, j] > 0}
    return out


def _phases_unknown(tl: Timeline, phase_us: dict[str, float], busy_total: float, n_steps: int) -> Optional[PhasesUnknown]:
    """None when every kept device op has a phase; else the unknown share and why nothing decided it."""
    unknown_us = phase_us.get(rules.PHASE_UNKNOWN, 0.0)
    if unknown_us <= 0 or busy_total <= 0:
        return None
    share = unknown_us / busy_total
    whole = share >= 1.0 - 1e-9
    if not has_host_evidence(tl):
        reason = "the trace has no CPU ops (no optimizer, annotation or autograd ranges), so only kernel names can tell phases"
        if whole:
            reason += ("; no kernel's name marks forward, backward or optimizer work (an inference run would be all "
                       "forward, but nothing in the trace says so)")
        else:
            reason += "; this time is not bracketed by kernels whose names tell its phase"
    else:
        reason = ("device ops without a launch event in the trace, on a stream with no op of known phase, "
                  "whose names tell nothing")
    return {"share": share, "ms_per_step": unknown_us / 1000.0 / n_steps, "whole_trace": whole, "reason": reason}


def _per_step(dw: DeviceWork, code: int, column: np.ndarray, n: int) -> np.ndarray:
    sel = (dw.step >= 0) & (column == code)
    return np.bincount(dw.step[sel], weights=dw.share_us[sel], minlength=n)[:n]


def _records(columns: dict[str, Any]) -> list[dict[str, Any]]:
    """Column arrays -> list of JSON-ready row dicts."""
    keys = list(columns)
    lists = [np.asarray(columns[k]).tolist() for k in keys]
    return [dict(zip(keys, row)) for row in zip(*lists)]


def _devices(trace: m.Trace, dw: DeviceWork) -> list[dict[str, Any]]:
    """The devices the trace's device work ran on, with their ``deviceProperties``.

    Kernels may run on a device id that ``deviceProperties`` does not list (ROCm traces often
    list only id 0 while the kernels run on device 2). Then, when every listed device has the
    same name (one kind of accelerator in the node), that name and its properties are shown,
    marked ``assumed`` with ``properties_from`` the listed id they were taken from; otherwise
    the device is named by its id only, with "no properties in the trace".
    """
    used = distinct(dw.device).tolist() if len(dw) else []
    props = {int(p.get("id", i)): p for i, p in enumerate(trace.device_properties)}
    listed_names = {p.get("name") for p in props.values()}
    homogeneous = len(props) > 0 and len(listed_names) == 1 and None not in listed_names
    out = []
    for d in used or ([] if not props else [min(props)]):
        source: Optional[int] = d if d in props else (min(props) if homogeneous else None)
        p = props.get(source, {}) if source is not None else {}
        mem = p.get("totalGlobalMem")
        major = p.get("computeMajor", p.get("major"))
        minor = p.get("computeMinor", p.get("minor"))
        assumed = source is not None and source != d
        if source == d:
            name = p.get("name") or f"device {d} (no name in its properties)"
        elif assumed:
            ids = ", ".join(str(i) for i in sorted(props))
            which = f"device {ids}" if len(props) == 1 else f"devices {ids}"
            name = f"{p.get('name')} (device {d}; properties listed for {which} only)"
        else:
            name = f"device {d} (no properties in the trace)"
        out.append({
            "id": d,
            "name": name,
            "memory_bytes": int(mem) if isinstance(mem, (int, float)) else None,
            "compute_capability": f"{major}.{minor}" if major is not None else None,
            "sms": p.get("numSms", p.get("multiProcessorCount")),
            "properties_from": source,
            "assumed": assumed,
        })
    return out
