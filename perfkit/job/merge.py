"""Several traces as one document: per-step figures are means weighted by each trace's kept steps.

:func:`merge` combines the documents of traces that are not ranks of one job (the job view,
:func:`perfkit.job.ranks.job_view`, starts from it and adds the per-rank table and the cross-rank
findings). Rows of the top lists that a trace's (truncated) list lacks count as zero there, so merged
figures of rare rows are lower bounds; findings stay per trace, each naming its trace.
"""

from __future__ import annotations

from typing import Any, Callable, Optional, cast

import numpy as np

from ..analysis import rules
from ..analysis.document import AnalysisDoc, finding_order
from ..analysis.result import Analysis
from ..analysis.steps import column_spreads, mean_or_zero, median_or_zero

__all__ = ["merge"]


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


def _row_value(row: dict[str, Any], key: str) -> float:
    """A step-table figure; ``gpu_active_ms`` of a document written before it existed is window - idle."""
    v = row.get(key)
    if v is None and key == "active_ms":
        w, i = row.get("window_ms"), row.get("idle_ms")
        v = (w - i) if isinstance(w, (int, float)) and isinstance(i, (int, float)) else None
    return float(v) if isinstance(v, (int, float)) else float("nan")


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
    base["steps"]["window_ms_median"] = median_or_zero(np.array([r["window_ms"] for r in kept_rows]))
    base["steps"]["wall_ms_median"] = median_or_zero(np.array([r["wall_ms"] for r in kept_rows]))
    if len(docs) > 1:  # step ids repeat across traces: each trace's own variation is in its document
        base["steps"]["variation"] = None
    base["steps"]["window_ms_mean"] = mean_or_zero(np.array([r["window_ms"] for r in kept_rows]))
    base["steps"]["wall_ms_mean"] = mean_or_zero(np.array([r["wall_ms"] for r in kept_rows]))
    base["steps"]["spread"] = column_spreads({
        key: np.array([_row_value(r, key) for r in kept_rows], dtype=float)
        for key in ("window_ms", "wall_ms", "active_ms", "idle_ms")})
    base["device"] = {k: wmean(lambda d: d["device"][k]) for k in ("busy_ms_per_step", "idle_ms_per_step", "utilization")}
    # active = window - idle per step: from the kept rows, so active + idle = the mean window exactly
    active = np.array([_row_value(r, "active_ms") for r in kept_rows], dtype=float)
    base["device"]["active_ms_per_step"] = mean_or_zero(active[np.isfinite(active)])
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
