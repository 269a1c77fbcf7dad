"""Before/after comparison of two analyses (``perfkit diff A B``).

Pure data in, data out: ``diff(doc_a, doc_b)`` takes two analysis documents
(schema ``perfkit.analysis/2``) and returns a document (schema
``perfkit.diff/2``) of deltas and ratios: step time, GPU busy/idle, phases,
categories, top ops, memory (when the runs measured it), and the findings that
appeared or disappeared. ``ratio`` is B / A; ``delta`` is B - A (ms unless the
key says otherwise).
"""

from __future__ import annotations

import math
from typing import Any, Optional

from .result import Analysis, document_of

SCHEMA = "perfkit.diff/2"


def _known(x: Any) -> Optional[float]:
    """A finite number as float, else None (unknown): NaN, infinity, booleans and other types are not figures."""
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        return None
    x = float(x)
    return x if math.isfinite(x) else None


def _pair(a: Optional[float], b: Optional[float]) -> dict[str, Any]:
    """``a``, ``b``, ``delta`` = b - a and ``ratio`` = b / a; each None (unknown) where it is not a finite number."""
    a, b = _known(a), _known(b)
    out: dict[str, Any] = {"a": a, "b": b}
    if a is not None and b is not None:
        out["delta"] = _known(b - a)
        out["ratio"] = _known(b / a) if a else None
    return out


def _group(a: dict[str, Any], b: dict[str, Any], value: str) -> dict[str, Any]:
    keys = list(dict.fromkeys([*a.keys(), *b.keys()]))
    return {k: _pair((a.get(k) or {}).get(value), (b.get(k) or {}).get(value)) for k in keys}


def _rows(a: list[dict[str, Any]], b: list[dict[str, Any]], value: str, limit: int) -> list[dict[str, Any]]:
    """Top rows of either side, matched by name, largest absolute change first."""
    va = {r["name"]: r.get(value) for r in a if "name" in r}
    vb = {r["name"]: r.get(value) for r in b if "name" in r}
    rows = []
    for name in dict.fromkeys([*va, *vb]):
        p = _pair(va.get(name, 0.0), vb.get(name, 0.0))
        p["name"] = name
        p["only_in"] = "a" if name not in vb else ("b" if name not in va else None)
        rows.append(p)
    rows.sort(key=lambda r: -abs(r.get("delta") or 0.0))
    return rows[:limit]


def diff(a: "Analysis | dict[str, Any]", b: "Analysis | dict[str, Any]", *, top: int = 10) -> dict[str, Any]:
    """Compare analysis documents ``a`` (before) and ``b`` (after)."""
    a = document_of(a)
    b = document_of(b)
    sa, sb = a.get("steps") or {}, b.get("steps") or {}
    ga, gb = a.get("device") or {}, b.get("device") or {}
    fa = {f["id"]: f for f in a.get("findings") or []}
    fb = {f["id"]: f for f in b.get("findings") or []}
    ma = ((a.get("runtime") or {}).get("memory") or {})
    mb = ((b.get("runtime") or {}).get("memory") or {})
    memory_keys = ("peak_bytes", "weights_bytes", "gradients_bytes", "optimizer_state_bytes",
                   "activations_and_temporaries_bytes_estimate")
    return {
        "schema": SCHEMA,
        "a": {"paths": (a.get("trace") or {}).get("paths"), "device": (a.get("trace") or {}).get("device")},
        "b": {"paths": (b.get("trace") or {}).get("paths"), "device": (b.get("trace") or {}).get("device")},
        "step": {
            "window_ms_median": _pair(sa.get("window_ms_median"), sb.get("window_ms_median")),
            "wall_ms_median": _pair(sa.get("wall_ms_median"), sb.get("wall_ms_median")),
            "busy_ms_per_step": _pair(ga.get("busy_ms_per_step"), gb.get("busy_ms_per_step")),
            "idle_ms_per_step": _pair(ga.get("idle_ms_per_step"), gb.get("idle_ms_per_step")),
            "utilization": _pair(ga.get("utilization"), gb.get("utilization")),
        },
        "phases": _group(a.get("phases") or {}, b.get("phases") or {}, "ms_per_step"),
        "categories": _group(a.get("categories") or {}, b.get("categories") or {}, "ms_per_step"),
        "top_ops": _rows(a.get("top_ops") or [], b.get("top_ops") or [], "ms_per_step", top),
        "memory": {k: _pair(ma.get(k), mb.get(k)) for k in memory_keys if k in ma or k in mb},
        "findings": {
            "appeared": [{"id": i, "severity": fb[i]["severity"], "title": fb[i]["title"]} for i in fb if i not in fa],
            "disappeared": [{"id": i, "severity": fa[i]["severity"], "title": fa[i]["title"]} for i in fa if i not in fb],
            "remaining": [{"id": i, "a": fa[i]["severity"], "b": fb[i]["severity"], "title": fb[i]["title"]}
                          for i in fb if i in fa],
        },
    }
