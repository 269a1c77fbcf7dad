"""Series for plots: GPU time per step and category, and device memory over time.

Two small additions to the analysis document, both plain data (the report draws
them; nothing here prints or plots):

* :func:`categories_ms_per_step` -> ``steps.table[i].categories_ms``: GPU time
  (ms) of each kernel category in each step, the per-step counterpart of the
  ``categories`` group (one ``bincount`` over the attributed device ops).
* :func:`memory_timeline` -> ``memory_timeline``: allocated and reserved bytes
  over time per device, from the trace's ``[memory]`` instant events (recorded
  with ``profile_memory=True``), thinned to at most :data:`MAX_POINTS` points per
  device by keeping the highest value of each run of events, so peaks survive.
"""

from __future__ import annotations

from typing import Any, Optional

import numpy as np

from ..trace import model as m
from ..arrays import distinct
from . import rules
from .attribute import CATEGORY_CODES, DeviceWork, Steps

#: Most points kept per device in ``memory_timeline`` (each the maximum of a run of events).
MAX_POINTS = 2000

#: c10 DeviceType codes in ``[memory]`` events (c10/core/DeviceType.h). ROCm builds of PyTorch
#: usually report their GPUs as 1 ("cuda"); 6 is HIP proper.
DEVICE_TYPES = {
    0: "cpu", 1: "cuda", 2: "mkldnn", 3: "opengl", 4: "opencl", 5: "ideep", 6: "hip", 7: "fpga",
    8: "maia", 9: "xla", 10: "vulkan", 11: "metal", 12: "xpu", 13: "mps", 14: "meta", 15: "hpu",
    16: "ve", 17: "lazy", 18: "ipu", 19: "mtia", 20: "privateuse1",
}


def categories_ms_per_step(dw: DeviceWork, n_steps: int) -> list[dict[str, float]]:
    """Per step, GPU ms of each category (``rules.CATEGORIES`` order), from the ops' exclusive shares.

    Ops outside every recorded step are left out, as in the per-step phase columns.
    """
    n_cat = len(rules.CATEGORIES)
    sel = dw.step >= 0
    index = dw.step[sel].astype(np.int64) * n_cat + dw.category[sel].astype(np.int64)
    ms = np.bincount(index, weights=dw.share_us[sel], minlength=n_steps * n_cat)[: n_steps * n_cat] / 1000.0
    ms = ms.reshape(n_steps, n_cat)
    columns = [ms[:, CATEGORY_CODES[c]] for c in rules.CATEGORIES]
    return [dict(zip(rules.CATEGORIES, row)) for row in zip(*(c.tolist() for c in columns))]


def memory_timeline(trace: m.Trace, t0_us: float, steps: Steps, max_points: int = MAX_POINTS) -> Optional[dict[str, Any]]:
    """Allocated / reserved bytes over time per device, or None when the trace has no ``[memory]`` events.

    Times are ms from the same origin as the steps (``step_start_ms`` / ``step_end_ms``
    are the CPU ranges of ``ProfilerStep#N``, so a plot can mark steps). Traces from
    before PyTorch 1.10 carry no ``Total Allocated``: there the allocated curve is the
    running sum of allocations and frees since the first event (``relative``: True)
    and there is no reserved curve.
    """
    mem = trace.memory
    ts = mem.get(m.MEM_TS)
    if ts is None or not len(ts):
        return None
    dev_type = mem[m.MEM_DEVICE_TYPE]
    dev_id = mem[m.MEM_DEVICE_ID]
    devices = []
    # One int64 key per event (device ids are small): a 1-D unique, much cheaper than unique(axis=1).
    key = dev_type.astype(np.int64) * (1 << 32) + (dev_id.astype(np.int64) + 1)
    seen = distinct(key[:: max(len(key) // 4096, 1)])  # few devices: guess them from a sample
    if int(np.isin(key, seen).sum()) != len(key):
        seen = distinct(key)
    pairs = sorted(((k >> 32, (k & 0xFFFFFFFF) - 1) for k in seen.tolist()), key=lambda p: (p[0] == 0, p))  # accelerators first
    for t, i in pairs:
        sel = np.flatnonzero(key == (t << 32) + (i + 1))
        devices.append(_device_series(mem, sel, t, i, t0_us, max_points))
    return {
        "source": "trace [memory] events",
        "events": int(len(ts)),
        "devices": devices,
        "step_ids": [int(x) for x in steps.ids],
        "step_start_ms": ((steps.cpu_start) / 1000.0).tolist(),
        "step_end_ms": ((steps.cpu_end) / 1000.0).tolist(),
    }


def _device_series(mem: dict[str, np.ndarray], rows: np.ndarray, dev_type: int, dev_id: int,
                   t0_us: float, max_points: int) -> dict[str, Any]:
    allocated = mem[m.MEM_ALLOCATED][rows]
    reserved = mem[m.MEM_RESERVED][rows]
    relative = not bool((allocated >= 0).any())
    if relative:
        allocated = np.cumsum(mem[m.MEM_BYTES][rows])
        reserved = None
    elif not bool((reserved >= 0).any()):
        reserved = None
    t_ms = (mem[m.MEM_TS][rows] - t0_us) / 1000.0
    starts = _bins(len(rows), max_points)
    name = DEVICE_TYPES.get(dev_type, f"unknown device type {dev_type}")
    return {
        "device": name if dev_type == 0 else f"{name}:{dev_id}",
        "device_type": dev_type,
        "device_id": dev_id,
        "relative": relative,
        "events": int(len(rows)),
        "peak_allocated_bytes": int(allocated.max()),
        "peak_reserved_bytes": int(reserved.max()) if reserved is not None else None,
        "t_ms": t_ms[starts].tolist(),
        "allocated_bytes": np.maximum.reduceat(allocated, starts).tolist(),
        "reserved_bytes": np.maximum.reduceat(reserved, starts).tolist() if reserved is not None else None,
    }


def _bins(n: int, max_points: int) -> np.ndarray:
    """Start indexes of at most ``max_points`` consecutive runs covering ``range(n)``."""
    if n <= max_points:
        return np.arange(n)
    return distinct(np.linspace(0, n, max_points, endpoint=False).astype(np.int64))
