"""The measures a budget can limit, and how each is read from an analysis document.

Every metric has

* a **run value**: the figure the report shows for one run (``value(doc, key)``);
* optionally **step samples**: one value per step of that run
  (``step_samples(doc, key)``), which feed the significance test when a side
  has fewer runs than ``min_samples``.

Keys: see ``METRICS`` and the namespaced families ``phases.<name>.<ms|share>``,
``categories.<name>.<ms|share>`` and ``findings.<id|critical|warning|info>``.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from typing import Any, Optional

from ..analysis.document import CATEGORIES, PHASES, SEVERITIES
from ..analysis.result import Analysis, document_of
from ..errors import PerfkitError


@dataclass(frozen=True)
class Metric:
    key: str
    unit: str  #: "ms", "bytes", "share" (0..1), "tokens/s", "samples/s", "count"
    better: str  #: "lower" or "higher": which way is an improvement
    label: str


METRICS: dict[str, Metric] = {m.key: m for m in (
    Metric("step_ms", "ms", "lower", "step time (wall, median)"),
    Metric("gpu_step_ms", "ms", "lower", "step time on the GPU (median)"),
    Metric("gpu_busy_ms", "ms", "lower", "GPU busy per step"),
    Metric("gpu_idle_ms", "ms", "lower", "GPU idle per step"),
    Metric("gpu_idle_share", "share", "lower", "GPU idle share of the step"),
    Metric("tokens_per_s", "tokens/s", "higher", "throughput (tokens/s)"),
    Metric("samples_per_s", "samples/s", "higher", "throughput (samples/s)"),
    Metric("peak_memory_bytes", "bytes", "lower", "peak allocated GPU memory"),
    Metric("mfu", "share", "higher", "model FLOPs utilisation"),
)}

FINDING_SEVERITIES = SEVERITIES
FAMILIES = {"phases": PHASES, "categories": CATEGORIES}
FIELDS = ("ms", "share")


def finding_ids() -> tuple[str, ...]:
    """The ids the detectors can raise (their function names)."""
    from ..analysis.findings import DETECTORS

    return tuple(d.__name__ for d in DETECTORS)


def accepted_keys(near: str = "") -> str:
    """One line listing the accepted keys (only those of its family when ``near`` starts with one)."""
    fams = {fam: f"{fam}.<{'|'.join(names)}>.<{'|'.join(FIELDS)}>" for fam, names in FAMILIES.items()}
    fams["findings"] = f"findings.<{'|'.join(finding_ids() + FINDING_SEVERITIES)}>"
    first = near.split(".")[0]
    if first in fams:
        return fams[first]
    return ", ".join([*METRICS, *fams.values()])


def metric(key: str) -> Optional[Metric]:
    """The metric for a dotted key, or None if the key is not one."""
    if key in METRICS:
        return METRICS[key]
    parts = key.split(".")
    if len(parts) == 3 and parts[0] in FAMILIES and parts[1] in FAMILIES[parts[0]] and parts[2] in FIELDS:
        what = "phase" if parts[0] == "phases" else "category"
        if parts[2] == "ms":
            return Metric(key, "ms", "lower", f"{what} {parts[1]} GPU time per step")
        return Metric(key, "share", "lower", f"{what} {parts[1]} share of GPU time")
    if len(parts) == 2 and parts[0] == "findings" and parts[1] in finding_ids() + FINDING_SEVERITIES:
        label = f"{parts[1]} findings" if parts[1] in FINDING_SEVERITIES else f"findings {parts[1]}"
        return Metric(key, "count", "lower", label)
    return None


def is_prefix(key: str) -> bool:
    """True for a table on the way to a metric (``phases``, ``phases.backward``, ``findings``)."""
    parts = key.split(".")
    if parts[0] in FAMILIES:
        return len(parts) == 1 or (len(parts) == 2 and parts[1] in FAMILIES[parts[0]])
    return key == "findings"


# --------------------------------------------------------------------------- reading documents


def _get(doc: Any, *keys: str) -> Any:
    for k in keys:
        if not isinstance(doc, dict):
            return None
        doc = doc.get(k)
    return doc


def _num(v: Any) -> Optional[float]:
    """A finite number as float; None for anything else (NaN and infinity are unknowns, not figures)."""
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    v = float(v)
    return v if math.isfinite(v) else None


def _kept_rows(doc: dict[str, Any]) -> list[dict[str, Any]]:
    rows = _get(doc, "steps", "table")
    return [r for r in rows if isinstance(r, dict) and r.get("kept", True)] if isinstance(rows, list) else []


def _steady(rt_steps: dict[str, Any], key: str) -> list[float]:
    """Per-step values the live run recorded, after its start-up steps (lists keep the last 1000)."""
    values = [float(v) for v in rt_steps.get(key) or [] if _num(v) is not None]
    count = int(_num(rt_steps.get("count")) or len(values))
    skip = max(int(_num(rt_steps.get("steady_from_step")) or 0) - (count - len(values)), 0)
    return values[skip:] if len(values) > skip else values


def _rows(doc: dict[str, Any], column: str) -> list[float]:
    return [float(r[column]) for r in _kept_rows(doc) if _num(r.get(column)) is not None]


def _units_per_step(doc: dict[str, Any], key: str, tokens_per_step: Optional[float],
                    samples_per_step: Optional[float]) -> Optional[float]:
    """Tokens (or samples) per step for ``tokens_per_s`` (``samples_per_s``): the run's own, else the budget file's."""
    kind = key.split("_")[0]
    own = _num(_get(doc, "runtime", "throughput", f"{kind}_per_step"))
    return own or (tokens_per_step if kind == "tokens" else samples_per_step)


def value(doc: "Analysis | dict[str, Any]", key: str, *, tokens_per_step: Optional[float] = None,
          samples_per_step: Optional[float] = None) -> Optional[float]:
    """The run value of ``key`` (None when the run does not have it)."""
    doc = document_of(doc)
    rt = _get(doc, "runtime") or {}
    if key == "step_ms":
        return _num(_get(rt, "steps", "wall_ms_median")) or _num(_get(doc, "steps", "wall_ms_median"))
    if key == "gpu_step_ms":
        return _num(_get(rt, "steps", "gpu_ms_median")) or _num(_get(doc, "steps", "window_ms_median"))
    if key == "gpu_busy_ms":
        return _num(_get(doc, "device", "busy_ms_per_step"))
    if key == "gpu_idle_ms":
        return _num(_get(doc, "device", "idle_ms_per_step"))
    if key == "gpu_idle_share":
        util = _num(_get(doc, "device", "utilization"))
        return None if util is None else 1.0 - util
    if key in ("tokens_per_s", "samples_per_s"):
        direct = _num(_get(rt, "throughput", key))
        if direct is not None:
            return direct
        per_step = _units_per_step(doc, key, tokens_per_step, samples_per_step)
        # the run's step time where the document names it (step_basis); a document from before step_basis
        # keeps the wall time its tokens/s was budgeted on, so its baselines still compare (the report's
        # perfkit.variation.run_step_time reads such a document's CUDA-event median instead)
        step_ms = _num(_get(rt, "steps", "step_ms_median")) or value(doc, "step_ms")
        return per_step * 1000.0 / step_ms if per_step and step_ms else None
    if key == "peak_memory_bytes":
        return _num(_get(rt, "memory", "peak_bytes"))
    if key == "mfu":
        return _num(_get(rt, "mfu"))
    parts = key.split(".")
    if parts[0] in FAMILIES:
        entry = _get(doc, parts[0], parts[1])
        if entry is None and isinstance(doc.get(parts[0]), dict):
            return 0.0  # a phase or category the run never saw
        return _num(_get(entry, "ms_per_step" if parts[2] == "ms" else "share"))
    if parts[0] == "findings":
        found = doc.get("findings") or []
        field = "severity" if parts[1] in FINDING_SEVERITIES else "id"
        return float(sum(1 for f in found if isinstance(f, dict) and f.get(field) == parts[1]))
    raise KeyError(key)


def step_samples(doc: "Analysis | dict[str, Any]", key: str, *, tokens_per_step: Optional[float] = None,
                 samples_per_step: Optional[float] = None) -> list[float]:
    """One value per step of the run for ``key``; [] for run-level metrics (memory, categories, findings).

    Only finite values: a NaN or infinite sample is left out.
    """
    doc = document_of(doc)
    return [v for v in _step_samples(doc, key, tokens_per_step, samples_per_step) if math.isfinite(v)]


def _step_samples(doc: dict[str, Any], key: str, tokens_per_step: Optional[float],
                  samples_per_step: Optional[float]) -> list[float]:
    rt_steps = _get(doc, "runtime", "steps") or {}
    if key in ("step_ms", "tokens_per_s", "samples_per_s"):
        walls = _steady(rt_steps, "wall_ms") if rt_steps.get("wall_ms") else _rows(doc, "wall_ms")
        if key == "step_ms":
            return walls
        # throughput is over the run's step time: the GPU's per step where the run took it as such
        times = _steady(rt_steps, "gpu_ms") if rt_steps.get("step_basis") == "gpu" and rt_steps.get("gpu_ms") else walls
        per_step = _units_per_step(doc, key, tokens_per_step, samples_per_step)
        return [per_step * 1000.0 / w for w in times if w > 0] if per_step else []
    if key == "gpu_step_ms":
        return _steady(rt_steps, "gpu_ms") if rt_steps.get("gpu_ms") else _rows(doc, "window_ms")
    if key == "gpu_busy_ms":
        return _rows(doc, "busy_ms")
    if key == "gpu_idle_ms":
        return _rows(doc, "idle_ms")
    if key == "gpu_idle_share":
        return [float(r["idle_ms"]) / float(r["window_ms"]) for r in _kept_rows(doc)
                if _num(r.get("idle_ms")) is not None and _num(r.get("window_ms"))]
    parts = key.split(".")
    if parts[0] == "phases":
        column = f"{parts[1]}_ms"
        if parts[2] == "ms":
            return _rows(doc, column)
        return [float(r[column]) / float(r["busy_ms"]) for r in _kept_rows(doc)
                if _num(r.get(column)) is not None and _num(r.get("busy_ms"))]
    return []


MISSING_HINTS = {
    "tokens_per_s": "the run recorded no tokens per step: perfkit profile --tokens-per-step N, "
                    "@perfkit.step(tokens=N), or tokens_per_step in [settings]",
    "samples_per_s": "the run recorded no samples per step: perfkit profile --samples-per-step N, "
                     "@perfkit.step(samples=N), or samples_per_step in [settings]",
    "peak_memory_bytes": "peak memory is measured only by perfkit profile on a CUDA device, in runtime.memory",
    "mfu": "MFU is measured only by perfkit profile --flops on a CUDA device, in runtime.mfu",
}


class MissingMetric(PerfkitError):
    """A run lacks a measure a limit needs (or has it only as NaN or infinity)."""


def known_value(doc: dict[str, Any], key: str, **units: Optional[float]) -> Optional[float]:
    """``value``, or None when it is missing, NaN or infinite: an unknown is never compared with a limit."""
    v = value(doc, key, **units)
    return v if v is not None and math.isfinite(v) else None


def run_value(doc: dict[str, Any], key: str, run: str, **units: Optional[float]) -> float:
    """``value`` or a MissingMetric naming the run and the measure (missing, NaN and infinity alike)."""
    v = value(doc, key, **units)
    if v is None:
        hint = MISSING_HINTS.get(key, "the analysis has no such figure")
        raise MissingMetric(f"{run}: no {key} in this run: {hint}")
    if not math.isfinite(v):
        raise MissingMetric(f"{run}: {key} is {v!r} in this run, not a measured value")
    return v


def median(values: list[float]) -> Optional[float]:
    """The median, or None for no values (never NaN)."""
    return float(statistics.median(values)) if values else None
