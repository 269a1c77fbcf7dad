"""Per-step GPU windows, busy/idle time, which steps are excluded (and why), and how much steps vary."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional, Sequence

import numpy as np

from ..arrays import median, percentiles

from ..trace import model as m
from ..variation import STEP_CV_WARN, spread, spread_warning
from . import rules
from .attribute import NO_STEP, DeviceWork, Steps, step_of
from .intervals import Coverage
from .timeline import Timeline


@dataclass
class StepStats:
    """One row per step; times in µs."""

    ids: np.ndarray  #: ProfilerStep numbers
    wall_us: np.ndarray  #: CPU duration of the step
    win_start: np.ndarray  #: GPU window start (µs from origin)
    win_end: np.ndarray  #: GPU window end
    busy_us: np.ndarray  #: GPU busy time attributed to the step (sum of shares)
    idle_us: np.ndarray  #: window length minus busy
    kept: np.ndarray  #: bool, counted in steady-state figures
    reasons: list[str]  #: why each step was excluded ("" when kept)

    @property
    def window_us(self) -> np.ndarray:
        return self.win_end - self.win_start


def step_stats(tl: Timeline, steps: Steps, dw: DeviceWork) -> StepStats:
    n = len(steps)
    busy = np.bincount(dw.step[dw.step >= 0], weights=dw.share_us[dw.step >= 0], minlength=n)[:n]
    first = np.full(n, np.inf)
    last = np.full(n, -np.inf)
    sel = dw.step >= 0
    np.minimum.at(first, dw.step[sel], dw.start[sel])
    np.maximum.at(last, dw.step[sel], dw.end[sel])
    # Work that runs before a step's first op (earlier steps, or ops launched
    # before the profiled window while the GPU lagged) delays the step's start
    # on the GPU: the step's GPU window opens when that work is done.
    order = np.argsort(dw.start, kind="stable")
    reach = np.maximum.accumulate(dw.end[order]) if len(order) else np.zeros(0)
    k = np.searchsorted(dw.start[order], first, side="left") - 1 if len(order) else np.full(n, -1)
    earlier_end = np.where((k >= 0) & np.isfinite(first), reach[np.maximum(k, 0)] if len(reach) else -np.inf, -np.inf)
    win_start = np.empty(n)
    win_end = np.empty(n)
    prev_end = -np.inf
    for i in range(n):  # one iteration per step, not per event
        lo = steps.cpu_start[i]
        if steps.synthetic and np.isfinite(first[i]):
            lo = min(lo, first[i])
        win_start[i] = max(lo, prev_end, min(earlier_end[i], first[i]) if np.isfinite(first[i]) else lo)
        win_end[i] = max(steps.cpu_end[i], last[i], win_start[i])
        prev_end = win_end[i]
    # Idle = the part of the window where no device work of any step runs.
    covered = dw.busy.within(win_start, win_end)
    idle = np.maximum(win_end - win_start - covered, 0.0)
    wall = steps.cpu_end - steps.cpu_start
    kept, reasons = _exclusions(tl, steps, dw, win_end - win_start, wall)
    return StepStats(
        ids=steps.ids, wall_us=wall, win_start=win_start, win_end=win_end, busy_us=busy,
        idle_us=idle, kept=kept, reasons=reasons,
    )


def _exclusions(
    tl: Timeline, steps: Steps, dw: DeviceWork, window: np.ndarray, wall: np.ndarray
) -> tuple[np.ndarray, list[str]]:
    n = len(steps)
    reasons = [""] * n
    if steps.synthetic:
        return np.ones(n, dtype=bool), reasons
    # Incomplete steps: launches whose device work is not in the trace.
    launches = tl.rows(m.Kind.RUNTIME, m.Kind.DRIVER)
    launches = launches[(tl.col(m.CORR)[launches] >= 0) & tl.matches(rules.LAUNCH_API_PATTERN)[launches]]
    launches = launches[~capture_windows(tl).contains(tl.start[launches])]  # captured, not run
    if len(launches):
        linked = np.zeros(len(tl.start), dtype=bool)
        linked[dw.launch[dw.launch >= 0]] = True
        matched = linked[launches]
        k = np.searchsorted(steps.cpu_start, tl.start[launches], side="right") - 1
        inside = (k >= 0) & (tl.start[launches] < steps.cpu_end[np.maximum(k, 0)])
        total = np.bincount(k[inside], minlength=n)[:n]
        missing = np.bincount(k[inside & ~matched], minlength=n)[:n]
        for i in np.flatnonzero((missing >= 5) & (missing > rules.INCOMPLETE_FRACTION * np.maximum(total, 1))):
            reasons[i] = (
                f"incomplete: {missing[i]} of {total[i]} launches have no recorded GPU work "
                "(the profiler stopped before the GPU finished them)"
            )
    kept = np.array([r == "" for r in reasons])
    # Warm-up outliers among the complete steps.
    dur = np.maximum(window, wall)
    cand = np.flatnonzero(kept)
    if len(cand) >= 3:
        med = median(dur[cand])
        is_slow = dur[cand] > rules.OUTLIER_FACTOR * med
        # Warm-up is at the start: the slow steps before the first steady one. A slow step later in
        # the run (a stall, a checkpoint, a slow collective) is part of the run and stays counted.
        leading = np.cumprod(is_slow).astype(bool)
        slow = cand[leading]
        if 0 < len(slow) <= len(cand) // 2:
            for i in slow:
                reasons[i] = (
                    f"warm-up outlier: {dur[i] / 1000:.1f} ms, {dur[i] / med:.1f}x the median "
                    f"{med / 1000:.1f} ms (compilation, autotuning, allocator growth or a one-off stall)"
                )
    kept = np.array([r == "" for r in reasons])
    if not kept.any():
        kept[:] = True
        reasons = [""] * n
    return kept, reasons




def capture_windows(tl: Timeline) -> Coverage:
    """When a host thread was capturing a CUDA/HIP graph: from each ``*StreamBeginCapture`` to the next
    ``*StreamEndCapture`` on its thread (to the end of the trace when none follows)."""
    rt = tl.rows(m.Kind.RUNTIME, m.Kind.DRIVER)
    begin = rt[tl.matches(rules.GRAPH_CAPTURE_BEGIN_PATTERN)[rt]]
    if len(begin) == 0:
        return Coverage(np.zeros(0), np.zeros(0))
    end = rt[tl.matches(rules.GRAPH_CAPTURE_END_PATTERN)[rt]]
    last = float(tl.end.max())
    starts, ends = [], []
    for b in begin.tolist():  # captures are few (one per graph)
        mine = end[(tl.thread[end] == tl.thread[b]) & (tl.start[end] >= tl.start[b])]
        starts.append(float(tl.start[b]))
        ends.append(float(tl.end[mine].min()) if len(mine) else last)
    return Coverage(np.array(starts), np.array(ends))


def in_kept_steps(steps: Steps, stats: StepStats, t: np.ndarray) -> np.ndarray:
    """Whether each CPU time t lies inside a kept step's CPU window."""
    k = step_of(steps, t)
    return (k >= 0) & stats.kept[np.maximum(k, 0)]


def kept_mask(dw: DeviceWork, stats: StepStats) -> np.ndarray:
    """Device rows that belong to kept steps."""
    ok = dw.step >= 0
    out = np.zeros(len(dw), dtype=bool)
    out[ok] = stats.kept[dw.step[ok]]
    return out


__all__ = ["StepStats", "step_stats", "kept_mask", "in_kept_steps", "capture_windows", "spread", "spread_warning",
           "STEP_CV_WARN", "NO_STEP"]


def median_or_zero(x: np.ndarray) -> float:
    """The median; 0.0 for no values (callers show a count of 0 steps beside it)."""
    return median(x) if len(x) else 0.0


def mean_or_zero(x: np.ndarray) -> float:
    """The mean; 0.0 for no values."""
    return float(np.mean(x)) if len(x) else 0.0


#: The per-step figures' spread across the analysed steps (docs/analysis.md "Statistics").
SPREAD_STATS = ("min", "p10", "median", "p90", "max")


def column_spreads(columns: dict[str, np.ndarray]) -> dict[str, Optional[dict[str, float]]]:
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
        q = percentiles(x, (0, 10, 50, 90, 100))
        out[key] = {k: float(v) for k, v in zip(SPREAD_STATS, q)}
    return out
