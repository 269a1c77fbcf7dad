"""How much step times vary: one statistic for the trace's steps (perfkit.analysis.steps) and for the run
timer's steps measured in the training process (perfkit.collect.runtime), and which of the run timer's
steps the profiler recorded (``step_windows``: one rule for the run summary and the analysis' measured
recording cost), and the run's step time (``run_step_time``: one rule for throughput, budgets and the
report). Base stage: numpy only."""

from __future__ import annotations

from typing import Any, Optional, Sequence

import numpy as np

from .arrays import median

__all__ = ["START_UP_STEPS", "STEP_CV_WARN", "run_step_time", "spread", "spread_warning", "step_windows"]

#: Step times whose coefficient of variation (sample standard deviation / mean) exceeds this are
#: flagged: a median of a few such steps moves by that much from one run to the next.
STEP_CV_WARN = 0.15


def spread(values_ms: Sequence[Any], ids: Sequence[Any]) -> Optional[dict[str, Any]]:
    """How much step times vary: count, coefficient of variation, the fastest and the slowest step.

    ``values_ms``: one time per step (ms); ``ids``: the steps' names (same order). Values that are
    not finite numbers are left out. None with fewer than two steps (a spread of one is unknown).
    """
    pairs = [(float(v), i) for v, i in zip(values_ms, ids)
             if isinstance(v, (int, float)) and not isinstance(v, bool) and np.isfinite(v)]
    if len(pairs) < 2:
        return None
    v = np.array([p[0] for p in pairs])
    mean = float(v.mean())
    if mean <= 0:
        return None
    cv = float(v.std(ddof=1)) / mean
    lo, hi = int(np.argmin(v)), int(np.argmax(v))
    return {
        "steps": len(v),
        "cv": round(cv, 4),
        "median_ms": round(median(v), 4),
        "min_ms": round(float(v[lo]), 4),
        "min_step": pairs[lo][1],
        "max_ms": round(float(v[hi]), 4),
        "max_step": pairs[hi][1],
        "unstable": bool(cv > STEP_CV_WARN),
    }


def spread_warning(sp: Optional[dict[str, Any]], what: str, step_word: str = "step") -> Optional[str]:
    """One warning sentence when ``sp`` (from :func:`spread`) is unstable, naming the extreme steps."""
    if not sp or not sp.get("unstable"):
        return None
    return (
        f"{what} vary by {sp['cv']:.0%} (coefficient of variation over {sp['steps']} steps, threshold "
        f"{STEP_CV_WARN:.0%}): from {sp['min_ms']:,.1f} ms ({step_word} {sp['min_step']}) to {sp['max_ms']:,.1f} ms "
        f"({step_word} {sp['max_step']}); a median of such steps is not a stable figure: record more steps "
        f"(--active) and look for what slowed {step_word} {sp['max_step']} (data loading, a stall, a checkpoint, "
        "other work on the machine)"
    )


#: Steps at the start of a run never taken as steady (compilation, allocator growth, FLOP counting in step 2).
START_UP_STEPS = 2


def step_windows(wall_ms: list[float], count: int, schedule: dict[str, Any]) -> dict[str, Any]:
    """Split the run's step times by what the profiler did in them.

    ``wall_ms``: the last ``len(wall_ms)`` of ``count`` steps; ``schedule``: skip_first, wait, warmup,
    active. Returns ``{"traced": [(step, ms)], "unprofiled": [(step, ms)], "unprofiled_where": ...}``
    with 1-based run step numbers. Traced: the recorded (active) steps. Unprofiled: those after the
    profiled window (the profiler is stopped then) when there are two or more, else those before it
    past the start-up; the profiler's warm-up steps are neither.
    """
    first = int(count) - len(wall_ms)
    skip, wait, warm, active = (int(schedule.get(k) or 0) for k in ("skip_first", "wait", "warmup", "active"))
    lo, hi = skip + wait + warm, skip + wait + warm + active
    rows = [(first + i, w) for i, w in enumerate(wall_ms)]  # 0-based index, ms
    after = [(i + 1, w) for i, w in rows if i >= hi]
    before = [(i + 1, w) for i, w in rows if START_UP_STEPS <= i < skip]
    traced = [(i + 1, w) for i, w in rows if lo <= i < hi]
    if len(after) >= 2 or not before:
        return {"traced": traced, "unprofiled": after, "unprofiled_where": "after the profiled window"}
    return {"traced": traced, "unprofiled": before, "unprofiled_where": "before the profiled window"}


def run_step_time(steps: dict[str, Any]) -> tuple[Optional[float], str]:
    """(the run timer's step time in ms, its basis "gpu" or "wall") from ``runtime.steps``:
    ``step_ms_median`` and ``step_basis`` (the GPU's time between step boundaries where CUDA events
    were recorded, :func:`perfkit.collect.runtime.step_time`); documents written before them: the
    CUDA-event median where there is one, else the wall median. None when the run timed no step."""
    def ms(v: Any) -> Optional[float]:
        return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) and np.isfinite(v) else None

    if steps.get("step_basis") in ("gpu", "wall"):
        return ms(steps.get("step_ms_median")), str(steps["step_basis"])
    if ms(steps.get("gpu_ms_median")) is not None:
        return ms(steps.get("gpu_ms_median")), "gpu"
    return ms(steps.get("wall_ms_median")), "wall"
