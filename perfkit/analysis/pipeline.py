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
from . import ops, rules, series
from .attribute import CATEGORY_CODES, PHASE_CODES, DeviceWork, Steps, attribute, find_steps, has_host_evidence
from .overview import ROLES, overview
from .document import AnalysisDoc, PhasesUnknown, Share, finding_order
from .result import SCHEMA, Analysis
from .steps import StepStats, in_kept_steps, kept_mask, spread, spread_warning, step_stats
from .timeline import Timeline

__all__ = ["analyze_trace", "analyze_file", "merge", "Analysis", "SCHEMA"]

#: Attribution, the tables and the detectors use two threads from this many events on. Below
#: it one thread: the gain is a few ms and the two threads' temporaries at once
#: cost memory. On a 171 MB trace (0.5 M events) two threads took 0.77 s against
#: 0.87 s for one (median of 3 runs, reading included) for a peak of 149-153 MB
#: against 139-143 MB (glibc's arenas limited to one, see trace/reader.py).
TABLE_THREADS_MIN_EVENTS = 300_000


def analyze_file(path: str, workers: Optional[int] = None) -> Analysis:
    """Read and analyze one trace file (``workers``: decode threads, see :func:`perfkit.trace.read_trace`)."""
    return analyze_trace(read_trace(path, workers=workers))


def analyze_trace(trace: m.Trace) -> Analysis:
    """Analyze a loaded trace."""
    tl = Timeline.build(trace)
    steps = find_steps(tl)
    has_device_work = bool(len(tl.rows(*m.DEVICE_WORK_KINDS)))
    basis = "gpu" if has_device_work else "cpu"
    threads = 2 if len(trace) >= TABLE_THREADS_MIN_EVENTS else 1
    dw = attribute(tl, steps, basis=basis, threads=threads)
    stats = step_stats(tl, steps, dw)
    return _document(tl, steps, dw, stats, basis)


def _share_group(values_us: dict[str, float], n_steps: int, total_us: float) -> dict[str, Share]:
    return {
        k: {"ms_per_step": v / 1000.0 / n_steps, "share": (v / total_us) if total_us > 0 else 0.0}
        for k, v in values_us.items()
    }


def _document(tl: Timeline, steps: Steps, dw: DeviceWork, stats: StepStats, basis: str) -> Analysis:
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
    from concurrent.futures import ThreadPoolExecutor

    from . import comm, compiled, findings, frames

    def context(doc: dict[str, Any]) -> findings.Context:
        return findings.Context(tl=tl, steps=steps, dw=dw, stats=stats, doc=doc, src=src, kept=kept)

    threads = 2 if len(trace) >= TABLE_THREADS_MIN_EVENTS else 1
    with ThreadPoolExecutor(max_workers=threads) as pool:
        f_early = pool.submit(findings.run_early, context({"trace": {"time_basis": basis}}))
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
            "window_ms_median": _median(stats.window_us[stats.kept]) / 1000.0,
            "wall_ms_median": _median(stats.wall_us[stats.kept]) / 1000.0,
            "variation": step_spread,
            "window_ms_mean": _mean(stats.window_us[stats.kept]) / 1000.0,
            "wall_ms_mean": _mean(stats.wall_us[stats.kept]) / 1000.0,
            "spread": _spread({"window_ms": stats.window_us[stats.kept] / 1000.0,
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
    doc["findings"] = findings.detect(context(doc), early=f_early.result())
    comm.add_finding(doc)
    # Built as JSON-shaped data; its keys are the contract's (tests/test_document.py checks each one).
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


def _merge_rows(docs: list[dict[str, Any]], weights: np.ndarray, key: str, ident: tuple[str, ...],
                additive: tuple[str, ...], of: Optional[str] = None) -> list[dict[str, Any]]:
    """Rows of a top list across traces: per-step figures averaged with the traces' step weights.

    A row missing from a trace's (truncated) list counts as zero there, so merged
    figures of rare rows are lower bounds.
    """
    total = float(weights.sum())
    merged: dict[tuple[Any, ...], dict[str, Any]] = {}
    for w, d in zip(weights, docs):
        rows = (d.get(of) or {}).get(key, []) if of else d.get(key, [])
        for r in rows:
            k = tuple(r.get(x) for x in ident)
            m_ = merged.setdefault(k, {**r, **{a: 0.0 for a in additive}})
            for a in additive:
                m_[a] += float(r.get(a) or 0.0) * w / total
    out = sorted(merged.values(), key=lambda r: -r[additive[0]])
    return out[: max(len((d.get(of) or {}).get(key, []) if of else d.get(key, [])) for d in docs)]


def _known_mean(docs: list[dict[str, Any]], weights: np.ndarray, group: str, key: str, value_key: str) -> Optional[float]:
    """Step-weighted mean of one figure over the traces that know it (a trace without the key counts 0)."""
    num, den = 0.0, 0.0
    for w, d in zip(weights, docs):
        entry = (d.get(group) or {}).get(key)
        v = entry.get(value_key) if isinstance(entry, dict) else 0.0
        if v is None:
            continue
        num += float(w) * float(v)
        den += float(w)
    return num / den if den else None


def _per_step(dw: DeviceWork, code: int, column: np.ndarray, n: int) -> np.ndarray:
    sel = (dw.step >= 0) & (column == code)
    return np.bincount(dw.step[sel], weights=dw.share_us[sel], minlength=n)[:n]


def _median(x: np.ndarray) -> float:
    return float(np.median(x)) if len(x) else 0.0


def _mean(x: np.ndarray) -> float:
    return float(np.mean(x)) if len(x) else 0.0


#: The per-step figures' spread across the analysed steps (docs/analysis.md "Statistics").
SPREAD_STATS = ("min", "p10", "median", "p90", "max")


def _spread(columns: dict[str, np.ndarray]) -> dict[str, Optional[dict[str, float]]]:
    """{column: {min, p10, median, p90, max}} over the analysed steps (None for a column with no step).

    Percentiles interpolate linearly between steps (numpy's default), so with few steps p10/p90 lie
    between the two smallest / largest values."""
    out: dict[str, Optional[dict[str, float]]] = {}
    for key, x in columns.items():
        x = np.asarray(x, dtype=float)
        x = x[np.isfinite(x)]
        if not len(x):
            out[key] = None
            continue
        q = np.percentile(x, [0, 10, 50, 90, 100])
        out[key] = {k: float(v) for k, v in zip(SPREAD_STATS, q)}
    return out


def _row_value(row: dict[str, Any], key: str) -> float:
    """A step-table figure; ``gpu_active_ms`` of a document written before it existed is window - idle."""
    v = row.get(key)
    if v is None and key == "active_ms":
        w, i = row.get("window_ms"), row.get("idle_ms")
        v = (w - i) if isinstance(w, (int, float)) and isinstance(i, (int, float)) else None
    return float(v) if isinstance(v, (int, float)) else float("nan")


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
    used = sorted({int(d) for d in np.unique(dw.device)}) if len(dw) else []
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


def merge(results: list[Analysis]) -> Analysis:
    """Combine analyses of several traces: per-step figures weighted by kept steps."""
    docs = [r.to_dict() for r in results]
    weights = np.array([max(d["steps"]["count"], 1) for d in docs], dtype=float)
    total_w = float(weights.sum())

    def wmean(get: Callable[[dict[str, Any]], float]) -> float:
        return float(sum(w * get(d) for w, d in zip(weights, docs)) / total_w)

    base: dict[str, Any] = dict(docs[0])
    base["trace"] = dict(docs[0]["trace"])
    base["trace"]["paths"] = [p for d in docs for p in d["trace"]["paths"]]
    base["trace"]["warnings"] = [w for d in docs for w in d["trace"]["warnings"]]
    for key in ("bytes", "file_bytes", "events"):  # the traces' together, not the first one's
        values = [d["trace"].get(key) for d in docs]
        base["trace"][key] = int(sum(values)) if all(isinstance(v, (int, float)) for v in values) else None
    if len(docs) > 1 and isinstance(docs[0].get("communication"), dict):
        # one trace's list of collectives (absolute times of that trace) says nothing of the merge
        base["communication"] = {**docs[0]["communication"], "collectives": None}
    base["steps"] = dict(docs[0]["steps"])
    base["steps"]["count"] = int(sum(d["steps"]["count"] for d in docs))
    base["steps"]["total"] = int(sum(d["steps"]["total"] for d in docs))
    base["steps"]["ids"] = [i for d in docs for i in d["steps"]["ids"]]
    base["steps"]["excluded"] = [e for d in docs for e in d["steps"]["excluded"]]
    base["steps"]["table"] = [row for d in docs for row in d["steps"]["table"]]
    kept_rows = [row for row in base["steps"]["table"] if row["kept"]]
    base["steps"]["window_ms_median"] = _median(np.array([r["window_ms"] for r in kept_rows]))
    base["steps"]["wall_ms_median"] = _median(np.array([r["wall_ms"] for r in kept_rows]))
    if len(docs) > 1:  # step ids repeat across traces: each trace's own variation is in its document
        base["steps"]["variation"] = None
    base["steps"]["window_ms_mean"] = _mean(np.array([r["window_ms"] for r in kept_rows]))
    base["steps"]["wall_ms_mean"] = _mean(np.array([r["wall_ms"] for r in kept_rows]))
    base["steps"]["spread"] = _spread({
        key: np.array([_row_value(r, key) for r in kept_rows], dtype=float)
        for key in ("window_ms", "wall_ms", "active_ms", "idle_ms")})
    base["device"] = {k: wmean(lambda d: d["device"][k]) for k in ("busy_ms_per_step", "idle_ms_per_step", "utilization")}
    # active = window - idle per step: from the kept rows, so active + idle = the mean window exactly
    active = np.array([_row_value(r, "active_ms") for r in kept_rows], dtype=float)
    base["device"]["active_ms_per_step"] = _mean(active[np.isfinite(active)])
    for group, value_key in (("phases", "ms_per_step"), ("categories", "ms_per_step"), ("overview", "ms_per_step")):
        keys = list(dict.fromkeys(k for d in docs for k in (d.get(group) or {})))
        # a figure a trace does not know (None: its phases are unknown) is left out of the mean
        ms = {k: _known_mean(docs, weights, group, k, value_key) for k in keys}
        tot = sum(v for v in ms.values() if v is not None)
        base[group] = {k: {value_key: v, "share": (v / tot if tot else 0.0) if v is not None else None}
                       for k, v in ms.items()}
    evidence_us: dict[str, dict[str, float]] = {}
    for w, d in zip(weights, docs):
        for p, shares in (d.get("phases_evidence") or {}).items():
            ms_p = ((d.get("phases") or {}).get(p) or {}).get("ms_per_step") or 0.0
            for e, x in shares.items():
                evidence_us.setdefault(p, {}).setdefault(e, 0.0)
                evidence_us[p][e] += float(x) * float(ms_p) * float(w)
    base["phases_evidence"] = {p: {e: v / sum(ev.values()) for e, v in ev.items()}
                               for p, ev in evidence_us.items() if sum(ev.values()) > 0}
    unknown = base["phases"].get(rules.PHASE_UNKNOWN) or {}
    reasons = [d["phases_unknown"]["reason"] for d in docs if d.get("phases_unknown")]
    base["phases_unknown"] = None if not reasons else {
        "share": unknown.get("share"),
        "ms_per_step": unknown.get("ms_per_step"),
        "whole_trace": all((d.get("phases_unknown") or {}).get("whole_trace") for d in docs),
        "reason": reasons[0],
    }
    copies: dict[str, Any] = {}
    for direction in ("h2d", "d2h", "d2d"):
        copies[direction] = {k: wmean(lambda d: d["copies"][direction][k]) for k in docs[0]["copies"][direction]}
    copies["sources"] = _merge_rows(docs, weights, "sources", ("op", "source", "direction"),
                                    ("ms_per_step", "count_per_step"), of="copies")
    base["copies"] = copies
    busy = base["device"]["busy_ms_per_step"]
    for key, ident, additive in (
        ("top_ops", ("name",), ("ms_per_step", "self_ms_per_step", "calls_per_step")),
        ("top_kernels", ("name",), ("ms_per_step", "calls_per_step")),
    ):
        rows = _merge_rows(docs, weights, key, ident, additive)
        for r in rows:
            r["share"] = r["ms_per_step"] / busy if busy else 0.0
        base[key] = rows
    # Findings stay per trace (each names its own trace's steps); the worst first.
    found = []
    for d in docs:
        for f in d.get("findings", []):
            found.append({**f, "trace": d["trace"]["paths"][0]})
    base["findings"] = sorted(found, key=finding_order)
    return Analysis(doc=cast(AnalysisDoc, base))
