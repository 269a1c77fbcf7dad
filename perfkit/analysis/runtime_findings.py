"""Findings from what the live run measured (the ``runtime`` section of ``perfkit profile``).

The trace cannot see memory capacity, the logits tensor or a module's first
call; the live process can. These findings are merged into the same ranked list
as the trace's (see :mod:`perfkit.analysis.findings`).
"""

from __future__ import annotations

import statistics
from typing import Any, Optional

from .findings import MEMORY_WARN, finding
from .document import finding_order

#: The model's output (logits) taking this share of the step's peak is worth a remedy.
LOGITS_SHARE = 0.20


def memory_pressure(runtime: dict[str, Any], device_bytes: Optional[int]) -> Optional[dict[str, Any]]:
    """Peak near capacity, or a large output (logits) tensor, from the allocator counters."""
    mem = runtime.get("memory") or {}
    peak = mem.get("peak_bytes")
    if not peak:
        return None
    acts = mem.get("activations") or {}
    logits = acts.get("output_bytes") or 0
    frac = peak / device_bytes if device_bytes else 0.0
    logits_share = logits / peak if peak else 0.0
    if frac < MEMORY_WARN and logits_share < LOGITS_SHARE:
        return None
    sev = "warning" if frac >= MEMORY_WARN else "info"
    title = (f"Peak GPU memory {peak / 2**30:.1f} GiB is {frac:.0%} of the device" if frac >= MEMORY_WARN
             else f"The model's output (logits) holds {logits / 2**30:.2f} GiB, {logits_share:.0%} of the step's peak")
    where = [{"name": "model output (logits)", "bytes": logits}] if logits else None
    evidence = {"peak_bytes": peak, "device_bytes": device_bytes, "fraction_of_device": round(frac, 4),
                "output_bytes": logits, "output_share_of_peak": round(logits_share, 4),
                "peak_forward_bytes": mem.get("peak_forward_bytes"), "peak_backward_bytes": mem.get("peak_backward_bytes")}
    return finding(
        "memory_pressure", sev, title, where, evidence,
        "Avoid materialising the full logits: a chunked or fused cross-entropy (compute the loss over sequence "
        "chunks, or a fused linear+cross-entropy kernel) and no .float() copy of bf16 logits; checkpoint the "
        "largest blocks; or lower the micro-batch and accumulate gradients.",
        0.0,
    )


def first_call_outliers(runtime: dict[str, Any]) -> Optional[dict[str, Any]]:
    """Modules whose first call ran far longer than their steady calls (compilation, autotuning)."""
    rows = [r for r in runtime.get("modules") or [] if r.get("first_call_outlier")]
    if not rows:
        return None
    where = [{"name": r["name"], "first_call_ms": r.get("first_call_ms"), "steady_ms": r.get("forward_ms_median")}
             for r in rows[:5]]
    worst = max(rows, key=lambda r: (r.get("first_call_ms") or 0) / max(r.get("forward_ms_median") or 1e-9, 1e-9))
    ratio = (worst.get("first_call_ms") or 0) / max(worst.get("forward_ms_median") or 1e-9, 1e-9)
    return finding(
        "warmup_outlier", "info",
        f"{worst['name']} ran {ratio:.0f}x longer on its first call than in steady state",
        where, {"modules": len(rows), "worst_ratio": round(ratio, 1)},
        "A one-off first call (kernel compilation, cuDNN/cuBLAS autotuning, lazy initialisation) is not a "
        "bottleneck: leave it out of timings (perfkit already does); if it recurs, look for recompilation.",
        0.0,
    )


def measured_recording(runtime: dict[str, Any], gpu_busy_ms: Optional[float]) -> Optional[dict[str, Any]]:
    """The unprofiled steps' time against the traced steps' and the GPU busy time (``perfkit profile``).

    The step times are the GPU's (``runtime.steps.gpu_ms``: CUDA events at the step boundaries) where
    the run measured them, else the host's wall times (``step_basis``): a host that never waits for
    the GPU (CUDA graphs) has short wall times that say nothing of the recording's cost
    (:func:`perfkit.collect.runtime.step_time`). Unprofiled steps: those after the profiled window
    (the profiler is stopped then), else those before it past the start-up
    (:func:`perfkit.variation.step_windows`, as the run summary splits them). GPU-bound without the
    recording when the unprofiled median is within
    :data:`perfkit.analysis.findings.GPU_BOUND_TOLERANCE` of the GPU busy time per step.
    """
    from ..variation import step_windows
    from .findings import GPU_BOUND_TOLERANCE

    steps = runtime.get("steps") or {}
    sched = runtime.get("schedule") or {}
    basis = "gpu" if steps.get("gpu_ms") else "wall"
    times = [float(x) for x in steps.get(f"{basis}_ms") or [] if isinstance(x, (int, float))]
    if not times or not gpu_busy_ms or not sched:
        return None
    # the lists keep the last steps only
    parts = step_windows(times, int(steps.get("count") or len(times)), sched)
    unprofiled, traced = [w for _, w in parts["unprofiled"]], [w for _, w in parts["traced"]]
    if not unprofiled or not traced:
        return None
    u, t = statistics.median(unprofiled), statistics.median(traced)
    return {
        "basis": "measured",
        "step_basis": basis,
        "unprofiled_step_ms": round(u, 3),
        "unprofiled_steps": len(unprofiled),
        "profiled_step_ms": round(t, 3),
        "slowdown": round(t / u, 3) if u > 0 else None,
        "gpu_busy_ms_per_step": round(float(gpu_busy_ms), 3),
        "gpu_bound_without_recording": bool(u <= GPU_BOUND_TOLERANCE * float(gpu_busy_ms)),
    }


def merge(doc: dict[str, Any]) -> None:
    """Add the runtime findings to ``doc["findings"]``, keeping one finding per id and the ranking."""
    from .findings import lower_recording_artifacts

    runtime = doc.get("runtime") or {}
    gpu = doc.get("device") or {}
    if (doc.get("trace") or {}).get("time_basis") == "gpu":
        measured = measured_recording(runtime, gpu.get("busy_ms_per_step"))
        if measured is not None:
            rec = doc.get("recording")
            if not isinstance(rec, dict):
                rec = {}
            doc["recording"] = {**rec, "measured": measured}
            lower_recording_artifacts(doc.setdefault("findings", []), measured)
    devices = (doc.get("trace") or {}).get("devices") or []
    device_bytes = next((d.get("memory_bytes") for d in devices if d.get("memory_bytes")), None)
    found = doc.setdefault("findings", [])
    have = {f["id"] for f in found}
    for f in (memory_pressure(runtime, device_bytes), first_call_outliers(runtime)):
        if f is not None and f["id"] not in have:
            found.append(f)
            have.add(f["id"])
    found.sort(key=finding_order)
