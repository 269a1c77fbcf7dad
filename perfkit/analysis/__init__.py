"""Stage 3: pure functions from a Trace to an Analysis. No printing, no plotting.

``analyze_trace(trace)`` runs the passes in order: timeline -> steps ->
attribution (step/phase/category/share per device op) -> step statistics ->
breakdowns (phases, categories, copies, overview, top ops and kernels).
"""

from __future__ import annotations

import functools
import os
from typing import Any, Callable, Iterable, Optional, Union

import numpy as np

from ..errors import TraceFormatError
from ..trace import model as m
from ..trace import read_trace
from . import ops, rules, series
from .attribute import CATEGORY_CODES, PHASE_CODES, DeviceWork, Steps, attribute, find_steps
from .overview import ROLES, overview
from .result import SCHEMA, Analysis
from .steps import StepStats, in_kept_steps, kept_mask, step_stats
from .timeline import Timeline

__all__ = ["analyze_trace", "analyze_paths", "Analysis", "SCHEMA"]

#: Attribution, the tables and the detectors use two threads from this many events on. Below
#: it one thread: the gain is a few ms and the two threads' temporaries at once
#: cost memory. On a 171 MB trace (0.5 M events) two threads took 0.77 s against
#: 0.87 s for one (median of 3 runs, reading included) for a peak of 149-153 MB
#: against 139-143 MB (glibc's arenas limited to one, see trace/reader.py).
TABLE_THREADS_MIN_EVENTS = 300_000


def analyze_paths(path_or_paths: Union[str, os.PathLike, Iterable[Any]], *,
                  progress: Optional[Callable[[str, int, int], None]] = None, **kwargs: Any) -> Analysis:
    """Load and analyze one trace, or several (merged: step-weighted means).

    ``progress(description, done, total)``, if given, is called before reading and
    before analysing each trace (two units per trace) and once at the end.
    """
    if isinstance(path_or_paths, (str, os.PathLike)):
        paths = [os.fspath(path_or_paths)]
    else:
        paths = [os.fspath(p) for p in path_or_paths]
    if not paths:
        raise TraceFormatError("no trace given")
    report = progress or (lambda description, done, total: None)
    if len(paths) > 1:  # each trace in its own process; ranks of one job -> the job view
        from . import ranks

        return ranks.analyze_many(paths, workers=kwargs.get("workers"), progress=report)
    results = []
    for i, p in enumerate(paths):
        report(f"reading {os.path.basename(p)}", 2 * i, 2 * len(paths))
        trace = read_trace(p, workers=kwargs.get("workers"))
        report(f"analyzing {os.path.basename(p)}", 2 * i + 1, 2 * len(paths))
        results.append(analyze_trace(trace))
        del trace
    report("analysed", 2 * len(paths), 2 * len(paths))
    return results[0] if len(results) == 1 else merge(results)


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


def _share_group(values_us: dict[str, float], n_steps: int, total_us: float) -> dict[str, dict[str, float]]:
    return {
        k: {"gpu_ms_per_step": v / 1000.0 / n_steps, "share": (v / total_us) if total_us > 0 else 0.0}
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
            "no device kernels, copies or memsets in the trace: figures are CPU time of the outermost "
            "ops (busy = time inside ops, idle = Python and other time between them)"
        )

    phase_us = {p: float(dw.share_us[kept & (dw.phase == PHASE_CODES[p])].sum()) for p in rules.PHASES}
    cat_us = {c: float(dw.share_us[kept & (dw.category == CATEGORY_CODES[c])].sum()) for c in rules.CATEGORIES}
    other_share = cat_us[rules.OTHER] / busy_total if busy_total else 0.0
    if other_share > 0.2:
        warnings.append(f"{other_share:.0%} of GPU time fell in category 'other' (kernel names no rule knows)")

    src = ops.Sources(tl)
    in_kept_step = functools.partial(in_kept_steps, steps, stats)
    # The tables are independent and mostly numpy work, which releases the GIL:
    # on large traces they are built on two threads.
    from concurrent.futures import ThreadPoolExecutor

    from . import comm, findings, frames

    def context(doc: dict[str, Any]) -> findings.Context:
        return findings.Context(tl=tl, steps=steps, dw=dw, stats=stats, doc=doc, src=src, kept=kept)

    threads = 2 if len(trace) >= TABLE_THREADS_MIN_EVENTS else 1
    with ThreadPoolExecutor(max_workers=threads) as pool:
        f_early = pool.submit(findings.run_early, context({"trace": {"time_basis": basis}}))
        f_top_ops = pool.submit(ops.top_ops, tl, dw, kept, max(n_kept, 1), busy_total, src, in_kept_step, basis=basis)
        f_roles = pool.submit(overview, tl, dw, stats)
        f_copies = pool.submit(ops.copies, tl, dw, kept, max(n_kept, 1), src)
        f_top_kernels = pool.submit(ops.top_kernels, tl, dw, kept, max(n_kept, 1), busy_total, src)
        f_comm = pool.submit(comm.section, tl, dw, stats, basis)
        f_frames = pool.submit(frames.user_frames, tl, steps, stats, src)
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
        "gpu_window_ms": stats.window_us / 1000.0,
        "gpu_busy_ms": stats.busy_us / 1000.0,
        "gpu_idle_ms": stats.idle_us / 1000.0,
        "kept": stats.kept,
        "reason": stats.reasons,
    }
    for p in rules.PHASES:
        step_rows[f"{p}_ms"] = _per_step(dw, PHASE_CODES[p], dw.phase, len(steps)) / 1000.0
    step_rows["categories_ms"] = series.categories_ms_per_step(dw, len(steps))
    doc: dict[str, Any] = {
        "schema": SCHEMA,
        "trace": {
            "paths": [trace.path],
            "bytes": trace.bytes_read,
            "events": len(trace),
            "devices": devices,
            "device": devices[0]["name"] if devices else None,
            "distributed": trace.meta.get("distributedInfo") if isinstance(trace.meta.get("distributedInfo"), dict) else None,
            "base_time_ns": trace.meta.get("baseTimeNanoseconds"),
            "time_basis": basis,
            "has_python_stacks": bool(len(tl.rows(m.Kind.PYTHON))) or bool((tl.col(m.STACK) >= 0).any()),
            "warnings": warnings,
        },
        "steps": {
            "count": n_kept,
            "total": len(steps),
            "synthetic": steps.synthetic,
            "ids": [int(i) for i in stats.ids[stats.kept]],
            "excluded": [{"id": int(stats.ids[i]), "reason": stats.reasons[i]} for i in np.flatnonzero(~stats.kept)],
            "gpu_ms_median": _median(stats.window_us[stats.kept]) / 1000.0,
            "wall_ms_median": _median(stats.wall_us[stats.kept]) / 1000.0,
            "table": _records(step_rows),
        },
        "gpu": {
            "busy_ms_per_step": busy_total / 1000.0 / max(n_kept, 1),
            "idle_ms_per_step": float(stats.idle_us[stats.kept].sum()) / 1000.0 / max(n_kept, 1),
            "utilization": 1.0 - float(stats.idle_us[stats.kept].sum()) / window_total if window_total > 0 else 0.0,
            "outside_kept_steps_ms": float(dw.share_us[outside & ~pre_window].sum()) / 1000.0,
            "launched_before_window": {
                "count": int(pre_window.sum()),
                "ms": float(dw.share_us[pre_window].sum()) / 1000.0,
            },
        },
        "phases": _share_group(phase_us, max(n_kept, 1), busy_total),
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
    doc["findings"] = findings.detect(context(doc), early=f_early.result())
    comm.add_finding(doc)
    return Analysis(doc=doc)


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


def _per_step(dw: DeviceWork, code: int, column: np.ndarray, n: int) -> np.ndarray:
    sel = (dw.step >= 0) & (column == code)
    return np.bincount(dw.step[sel], weights=dw.share_us[sel], minlength=n)[:n]


def _median(x: np.ndarray) -> float:
    return float(np.median(x)) if len(x) else 0.0


def _records(columns: dict[str, Any]) -> list[dict[str, Any]]:
    """Column arrays -> list of JSON-ready row dicts."""
    keys = list(columns)
    lists = [np.asarray(columns[k]).tolist() for k in keys]
    return [dict(zip(keys, row)) for row in zip(*lists)]


def _devices(trace: m.Trace, dw: DeviceWork) -> list[dict[str, Any]]:
    used = sorted({int(d) for d in np.unique(dw.device)}) if len(dw) else []
    props = {int(p.get("id", i)): p for i, p in enumerate(trace.device_properties)}
    out = []
    for d in used or ([] if not props else [min(props)]):
        p = props.get(d, {})
        mem = p.get("totalGlobalMem")
        major = p.get("computeMajor", p.get("major"))
        minor = p.get("computeMinor", p.get("minor"))
        out.append({
            "id": d,
            "name": p.get("name") or (f"device {d}" if used else None),
            "memory_bytes": int(mem) if isinstance(mem, (int, float)) else None,
            "compute_capability": f"{major}.{minor}" if major is not None else None,
            "sms": p.get("numSms", p.get("multiProcessorCount")),
        })
    return out


def merge(results: list[Analysis]) -> Analysis:
    """Combine analyses of several traces: per-step figures weighted by kept steps."""
    docs = [r.doc for r in results]
    weights = np.array([max(d["steps"]["count"], 1) for d in docs], dtype=float)
    total_w = float(weights.sum())

    def wmean(get) -> float:  # type: ignore[no-untyped-def]
        return float(sum(w * get(d) for w, d in zip(weights, docs)) / total_w)

    base = dict(docs[0])
    base["trace"] = dict(docs[0]["trace"])
    base["trace"]["paths"] = [p for d in docs for p in d["trace"]["paths"]]
    base["trace"]["warnings"] = [w for d in docs for w in d["trace"]["warnings"]]
    for key in ("bytes", "events"):  # the traces' together, not the first one's
        values = [d["trace"].get(key) for d in docs]
        base["trace"][key] = int(sum(values)) if all(isinstance(v, (int, float)) for v in values) else None
    base["steps"] = dict(docs[0]["steps"])
    base["steps"]["count"] = int(sum(d["steps"]["count"] for d in docs))
    base["steps"]["total"] = int(sum(d["steps"]["total"] for d in docs))
    base["steps"]["ids"] = [i for d in docs for i in d["steps"]["ids"]]
    base["steps"]["excluded"] = [e for d in docs for e in d["steps"]["excluded"]]
    base["steps"]["table"] = [row for d in docs for row in d["steps"]["table"]]
    kept_rows = [row for row in base["steps"]["table"] if row["kept"]]
    base["steps"]["gpu_ms_median"] = _median(np.array([r["gpu_window_ms"] for r in kept_rows]))
    base["steps"]["wall_ms_median"] = _median(np.array([r["wall_ms"] for r in kept_rows]))
    base["gpu"] = {k: wmean(lambda d, k=k: d["gpu"][k]) for k in ("busy_ms_per_step", "idle_ms_per_step", "utilization")}
    for group, value_key in (("phases", "gpu_ms_per_step"), ("categories", "gpu_ms_per_step"), ("overview", "ms_per_step")):
        ms = {k: wmean(lambda d, k=k: d[group][k][value_key]) for k in docs[0][group]}
        tot = sum(ms.values())
        base[group] = {k: {value_key: v, "share": v / tot if tot else 0.0} for k, v in ms.items()}
    copies = {}
    for direction in ("h2d", "d2h", "d2d"):
        copies[direction] = {k: wmean(lambda d, k=k: d["copies"][direction][k]) for k in docs[0]["copies"][direction]}
    copies["sources"] = _merge_rows(docs, weights, "sources", ("op", "source", "direction"),
                                    ("gpu_ms_per_step", "count_per_step"), of="copies")
    base["copies"] = copies
    busy = base["gpu"]["busy_ms_per_step"]
    for key, ident, additive in (
        ("top_ops", ("name",), ("gpu_ms_per_step", "self_gpu_ms_per_step", "calls_per_step")),
        ("top_kernels", ("name",), ("gpu_ms_per_step", "calls_per_step")),
    ):
        rows = _merge_rows(docs, weights, key, ident, additive)
        for r in rows:
            r["share"] = r["gpu_ms_per_step"] / busy if busy else 0.0
        base[key] = rows
    # Findings stay per trace (each names its own trace's steps); the worst first.
    found = []
    for d in docs:
        for f in d.get("findings", []):
            found.append({**f, "trace": d["trace"]["paths"][0]})
    rank = {"critical": 0, "warning": 1, "info": 2}
    base["findings"] = sorted(found, key=lambda f: (rank.get(f["severity"], 3), -f.get("cost_ms_per_step", 0.0)))
    return Analysis(doc=base)
