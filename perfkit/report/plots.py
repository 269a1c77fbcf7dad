"""matplotlib figures of an analysis document: what ``perfkit analyze --plots DIR`` writes and the HTML embeds.

Like every renderer, the figures take only the JSON document (schema
``perfkit.analysis/2``), so a saved ``analysis.json`` plots like a fresh one::

    from perfkit.report.plots import write_plots
    for plot in write_plots(doc, "plots/"):
        print(plot.name, plot.path or plot.skipped)

Figures (:data:`PLOT_NAMES`, in order):

* ``phases_per_step``: forward / backward / optimizer / other (/ unknown) GPU ms of each step, stacked;
  excluded steps (warm-up outliers, incomplete) hatched.
* ``categories_per_step``: GPU ms per kernel category of each step, stacked
  (``steps.table[i].categories_ms``).
* ``step_times``: CPU wall time and GPU window of each profiled step, the median of
  the kept steps, and the excluded steps marked with a red cross. For runs made by
  ``perfkit profile`` a second panel shows every step the run timed: its host wall
  time (``runtime.steps.wall_ms``) and, where measured, its GPU time between step
  boundaries (``runtime.steps.gpu_ms``, the step time), marking steps slower than
  ``rules.OUTLIER_FACTOR`` x the step time's median the same way.
* ``memory``: allocated and reserved device memory over time from the trace's
  ``[memory]`` events (``memory_timeline``, recorded with ``profile_memory=True``),
  steps shaded; else the allocator peak of each step from the run's counters
  (``runtime.memory.step_peak_bytes``) against weights, gradients and optimizer state.
* ``top_modules``: forward and backward median ms of the slowest modules
  (``runtime.modules``, ``perfkit profile --modules``); without module timings,
  the top ops by GPU ms per step instead (``top_ops``).

A job of several ranks (a document with ``ranks``) gets one more figure, first (:data:`JOB_PLOT_NAMES`):

* ``rank_steps``: ranks x steps, each cell the rank's step time (the step window on the time basis,
  ``steps.table`` rows with their ``rank``), colour bar in ms; the colour scale spans the kept steps, so a
  warm-up outlier saturates instead of flattening the rest; the straggler's row framed and labelled in red;
  failed or missing ranks are grey rows. Built for 1,000 ranks and tens of steps (one image, not a
  patch per cell).

A figure the document has no data for is not drawn; its :class:`Plot` says why.
Each :class:`Plot` also carries ``info``: what was drawn (step ids, the outliers
marked, the data source), so callers and tests need not read pixels.

matplotlib is optional (``pip install 'perfkit[plots]'``) and imported only inside
these functions; figures are drawn on their own Agg canvas (no pyplot, no global
backend). A missing matplotlib raises :class:`~perfkit.errors.MissingDependencyError`.
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Optional

from ..analysis.result import Analysis, document_of
from ..errors import MissingDependencyError
from ..variation import run_step_time
from .rows import CATEGORY_LABELS, PHASE_LABELS, basis_words
from .values import as_dict, as_list, num
from .scaling_plot import INSTALL_HINT

if TYPE_CHECKING:
    from matplotlib.figure import Figure

PLOT_NAMES = ("phases_per_step", "categories_per_step", "step_times", "memory", "top_modules")
#: Figures drawn only for a job of several ranks (before :data:`PLOT_NAMES`).
JOB_PLOT_NAMES = ("rank_steps",)
#: Rank labels on the heatmap's y axis (besides the straggler's).
RANK_TICKS = 24

#: Steps drawn as bars up to this many; beyond, as stacked areas.
MAX_BARS = 300
#: Rows in the top-modules / top-ops chart.
TOP_ROWS = 12
#: Figure size (inches) and resolution of the PNG files.
FIG_SIZE_IN = (9.0, 3.8)
DPI = 100

_PHASE_COLORS = {"forward": "#4C78A8", "backward": "#F58518", "optimizer": "#54A24B", "other": "#9D9D9D",
                 "unknown": "#D9D9D9"}
_CATEGORY_COLORS = {
    "matmul": "#4C78A8", "attention": "#F58518", "convolution": "#B279A2", "normalization": "#54A24B",
    "elementwise": "#72B7B2", "reduction": "#EECA3B", "indexing": "#FF9DA6", "copy": "#E45756",
    "memset": "#BAB0AC", "communication": "#9D755D", "compiled": "#8CD17D", "other": "#79706E",
}
_OUTLIER_COLOR = "#D62728"
GIB = 1024.0**3


@dataclass
class Plot:
    """One figure: drawn (``figure`` set) or skipped (``skipped`` says why).

    Attributes:
        name: one of :data:`PLOT_NAMES`.
        title: the figure's title (also the HTML caption).
        figure: the matplotlib Figure, or None when skipped.
        info: what was drawn (plain data): e.g. ``outlier_step_ids`` for ``step_times``.
        skipped: why the figure was not drawn, or None.
        path: the file written by :func:`write_plots`, or None.
    """

    name: str
    title: str
    figure: Optional["Figure"] = None
    info: dict[str, Any] = field(default_factory=dict)
    skipped: Optional[str] = None
    path: Optional[str] = None


def require_matplotlib() -> None:
    """Raise :class:`MissingDependencyError` with the install command when matplotlib is missing."""
    try:
        import matplotlib  # noqa: F401
        from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: F401
        from matplotlib.figure import Figure  # noqa: F401
    except ImportError:
        raise MissingDependencyError(f"plots need matplotlib: {INSTALL_HINT}") from None


def build_plots(doc: "Analysis | dict[str, Any]") -> list[Plot]:
    """Every figure of :data:`PLOT_NAMES`, drawn or skipped (in that order); a job's :data:`JOB_PLOT_NAMES` first."""
    doc = document_of(doc)
    require_matplotlib()
    doc = doc if isinstance(doc, dict) else {}
    builders: list[Callable[[dict[str, Any]], Plot]] = [
        plot_phases_per_step, plot_categories_per_step, plot_step_times, plot_memory, plot_top_modules,
    ]
    if as_list(doc.get("ranks")):
        builders.insert(0, plot_rank_steps)
    return [b(doc) for b in builders]


def write_plots(doc: dict[str, Any], out_dir: str | os.PathLike[str], fmt: str = "png") -> list[Plot]:
    """Draw every figure and write the drawn ones to ``out_dir/<name>.<fmt>`` (``png`` or ``svg``).

    Returns all plots, skipped ones included (with ``path`` None and ``skipped`` set).
    """
    if fmt not in ("png", "svg"):
        from ..errors import UsageError

        raise UsageError(f"plot format must be png or svg, not {fmt!r}")
    from .._io import OutputError, write_bytes

    plots = build_plots(doc)
    try:
        os.makedirs(out_dir, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"{os.fspath(out_dir)}: cannot create the folder for the figures "
                          f"({exc.strerror or exc})") from None
    for p in plots:
        if p.figure is not None:
            p.path = os.path.join(os.fspath(out_dir), f"{p.name}.{fmt}")
            write_bytes(p.path, figure_bytes(p.figure, fmt))  # atomic: never half a PNG
    return plots


def figure_bytes(fig: "Figure", fmt: str = "png") -> bytes:
    """The figure encoded as PNG or SVG bytes (no metadata, so output is reproducible)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    metadata = {"Software": None} if fmt == "png" else {"Creator": None, "Date": None}
    fig.savefig(buf, format=fmt, metadata=metadata)
    return buf.getvalue()


# ---------------------------------------------------------------------------
# The figures
# ---------------------------------------------------------------------------


def plot_phases_per_step(doc: dict[str, Any]) -> Plot:
    """Stacked GPU (or CPU: the basis' word) ms per phase for each step."""
    word = basis_words(doc).word
    title = f"{word} time per step by phase"
    rows = _step_rows(doc)
    if not rows:
        return Plot("phases_per_step", title, skipped="the document has no per-step table")
    values = {p: [num(r.get(f"{p}_ms")) for r in rows] for p in PHASE_LABELS}
    # A phase the document does not know (null in every step: phases unknown) is no band and no legend entry.
    series = {p: [v or 0.0 for v in vs] for p, vs in values.items() if any(v is not None for v in vs)}
    if "unknown" in series and not any(series["unknown"]):
        del series["unknown"]  # the unknown band only where some time has no phase
    if not series:
        return Plot("phases_per_step", title, skipped=f"no step has {word} time by phase")
    labels = {p: PHASE_LABELS[p] for p in series}
    fig, info = _stacked(rows, series, labels, _PHASE_COLORS, title, f"{word} ms")
    return Plot("phases_per_step", title, fig, info)


def plot_categories_per_step(doc: dict[str, Any]) -> Plot:
    """Stacked GPU (or CPU) ms per kernel category for each step."""
    word = basis_words(doc).word
    title = f"{word} time per step by kernel category"
    rows = _step_rows(doc)
    if not rows:
        return Plot("categories_per_step", title, skipped="the document has no per-step table")
    if not all(isinstance(r.get("categories_ms"), dict) for r in rows):
        return Plot("categories_per_step", title,
                    skipped="the document has no per-step categories (made by an older perfkit: analyze the trace again)")
    keys = list(dict.fromkeys(k for r in rows for k in r["categories_ms"]))
    series = {k: [num(r["categories_ms"].get(k)) or 0.0 for r in rows] for k in keys}
    series = {k: v for k, v in series.items() if any(v)}  # categories with time only
    labels = {k: CATEGORY_LABELS.get(k, k) for k in series}
    colors = {k: _CATEGORY_COLORS.get(k, "#777777") for k in series}
    fig, info = _stacked(rows, series, labels, colors, title, f"{word} ms")
    info["categories"] = list(series)
    return Plot("categories_per_step", title, fig, info)


def plot_step_times(doc: dict[str, Any]) -> Plot:
    """Step wall and GPU-window times with the median of kept steps; excluded steps marked as outliers."""
    from ..analysis.rules import OUTLIER_FACTOR

    title = "Step times"
    word = basis_words(doc).word
    rows = _step_rows(doc)
    rt_steps = as_dict(as_dict(doc.get("runtime")).get("steps"))
    rt_wall = [x for x in (num(v) for v in as_list(rt_steps.get("wall_ms"))) if x is not None]
    if not rows and not rt_wall:
        return Plot("step_times", title, skipped="the document has no step times")
    fig = _figure(height_scale=1.6 if rows and rt_wall else 1.0)
    panels = (2 if rows and rt_wall else 1)
    info: dict[str, Any] = {"step_ids": [], "outlier_step_ids": [], "runtime_outlier_steps": []}
    k = 1
    if rows:
        ax = fig.add_subplot(panels, 1, k)
        k += 1
        x = list(range(len(rows)))
        wall = [num(r.get("wall_ms")) or 0.0 for r in rows]
        window = [num(r.get("window_ms")) or 0.0 for r in rows]
        ax.plot(x, wall, "o-", color="#4C78A8", ms=3, lw=1, label="CPU wall ms (ProfilerStep)")
        ax.plot(x, window, "s-", color="#F58518", ms=3, lw=1, label=f"{word} window ms")
        kept_window = sorted(w for w, r in zip(window, rows) if r.get("kept", True))
        if kept_window:
            median_ms = _median(kept_window)
            ax.axhline(median_ms, color="#555555", ls="--", lw=1, label=f"median {word} window, kept steps: {median_ms:.1f} ms")
            info["median_gpu_window_ms"] = median_ms
        out = [i for i, r in enumerate(rows) if not r.get("kept", True)]
        if out:
            top = [max(wall[i], window[i]) for i in out]
            ax.plot(out, top, "x", color=_OUTLIER_COLOR, ms=10, mew=2, label="excluded step (outlier / incomplete)")
            for i, y in zip(out, top):
                right_half = i > (len(rows) - 1) / 2
                ax.annotate(_tex_safe(_short(rows[i].get("reason") or "excluded", 40)), (i, y), textcoords="offset points",
                            xytext=(-8 if right_half else 8, -12), ha="right" if right_half else "left",
                            fontsize=7, color=_OUTLIER_COLOR)
        _log_if_wide(ax, wall + window)
        _step_axis(ax, rows)
        ax.set_ylabel("ms")
        ax.set_title("Profiled steps (trace)", fontsize=10)
        ax.legend(fontsize=7, loc="best")
        info["step_ids"] = [r.get("id") for r in rows]
        info["outlier_step_ids"] = [rows[i].get("id") for i in out]
    if rt_wall:
        ax = fig.add_subplot(panels, 1, k)
        x = list(range(1, len(rt_wall) + 1))
        ax.plot(x, rt_wall, "o-", color="#4C78A8", ms=3, lw=1, label="host wall ms per step (run timer)")
        # the step time: the GPU's between step boundaries where measured (its last steps), else the wall's
        rt_gpu = [g for g in (num(v) for v in as_list(rt_steps.get("gpu_ms"))) if g is not None]
        step_ms, basis = run_step_time(rt_steps)
        on_gpu = basis == "gpu" and bool(rt_gpu)
        times, xs = (rt_gpu, x[len(x) - len(rt_gpu):]) if on_gpu else (rt_wall, x)
        if on_gpu:
            ax.plot(xs, rt_gpu, "s-", color="#F58518", ms=3, lw=1, label="GPU ms per step (CUDA events)")
        # the document's median when it is of the series drawn (a GPU step time without its list: the walls')
        median_ms = (num(step_ms) if (basis == "gpu") == on_gpu else None) or _median(sorted(times))
        ax.axhline(median_ms, color="#555555", ls="--", lw=1, label=f"median{' GPU' if on_gpu else ''}: {median_ms:.1f} ms")
        slow = [i for i, w in enumerate(times) if median_ms and w > OUTLIER_FACTOR * median_ms]
        if slow:
            ax.plot([xs[i] for i in slow], [times[i] for i in slow], "x", color=_OUTLIER_COLOR, ms=10, mew=2,
                    label=f"outlier (> {OUTLIER_FACTOR:g}x median)")
        _log_if_wide(ax, rt_wall + rt_gpu)
        ax.set_xlabel("step of the run")
        ax.set_ylabel("ms")
        ax.set_title("Every step of the run (perfkit profile)", fontsize=10)
        ax.legend(fontsize=7, loc="best")
        info["runtime_outlier_steps"] = [xs[i] for i in slow]
        info["runtime_basis"] = "gpu" if on_gpu else "wall"
        info["runtime_median_ms"] = median_ms
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    return Plot("step_times", title, fig, info)


def plot_memory(doc: dict[str, Any]) -> Plot:
    """Device memory over time (trace ``[memory]`` events) or per-step allocator peaks (run counters)."""
    timeline = as_dict(doc.get("memory_timeline"))
    devices = [d for d in as_list(timeline.get("devices")) if isinstance(d, dict) and d.get("t_ms")]
    if devices:
        return _memory_timeline(timeline, devices)
    mem = as_dict(as_dict(doc.get("runtime")).get("memory"))
    peaks = [x for x in (num(v) for v in as_list(mem.get("step_peak_bytes"))) if x is not None]
    if peaks:
        return _memory_step_peaks(mem, peaks)
    return Plot("memory", "Device memory", skipped=(
        "no memory data: the trace has no [memory] events (record with profile_memory=True) "
        "and the run measured no allocator counters (perfkit profile on CUDA)"))


def plot_top_modules(doc: dict[str, Any]) -> Plot:
    """Forward + backward median ms of the slowest modules; the top ops when modules were not timed."""
    modules = [m for m in as_list(as_dict(doc.get("runtime")).get("modules")) if isinstance(m, dict)]
    fig = None
    if modules:
        title = "Top modules (median ms per call)"
        modules.sort(key=lambda m: -((num(m.get("forward_ms_median")) or 0.0) + (num(m.get("backward_ms_median")) or 0.0)))
        rows = modules[:TOP_ROWS]
        names = [_short(m.get("name") or "?", 40) for m in rows]
        fwd = [num(m.get("forward_ms_median")) or 0.0 for m in rows]
        bwd = [num(m.get("backward_ms_median")) or 0.0 for m in rows]
        fig = _figure(height_scale=max(1.0, len(rows) / 10))
        ax = fig.add_subplot(1, 1, 1)
        y = list(range(len(rows)))[::-1]
        ax.barh(y, fwd, color=_PHASE_COLORS["forward"], label="forward")
        ax.barh(y, bwd, left=fwd, color=_PHASE_COLORS["backward"], label="backward")
        ax.set_xlabel("ms per call (median)")
        info = {"source": "runtime.modules", "names": [m.get("name") for m in rows]}
    else:
        ops = [o for o in as_list(doc.get("top_ops")) if isinstance(o, dict)]
        if not ops:
            return Plot("top_modules", "Top modules", skipped="no module timings (perfkit profile --modules) and no top ops")
        word = basis_words(doc).word
        title = f"Top ops by {word} time per step (no module timings: perfkit profile --modules)"
        rows = ops[:TOP_ROWS]
        names = [_short(o.get("name") or "?", 40) for o in rows]
        total = [num(o.get("ms_per_step")) or 0.0 for o in rows]
        self_ms = [min(num(o.get("self_ms_per_step")) or 0.0, t) for o, t in zip(rows, total)]
        fig = _figure(height_scale=max(1.0, len(rows) / 10))
        ax = fig.add_subplot(1, 1, 1)
        y = list(range(len(rows)))[::-1]
        ax.barh(y, total, color="#9ECAE9", label=f"{word} ms (with child ops)")
        ax.barh(y, self_ms, color="#4C78A8", label=f"self {word} ms")
        ax.set_xlabel(f"{word} ms per step")
        info = {"source": "top_ops", "names": [o.get("name") for o in rows]}
    ax.set_yticks(y)
    ax.set_yticklabels([_tex_safe(n) for n in names], fontsize=8)
    ax.legend(fontsize=8, loc="lower right")
    ax.grid(True, axis="x", alpha=0.3)
    ax.set_title(title, fontsize=11)
    fig.tight_layout()
    return Plot("top_modules", title, fig, info)


def rank_step_matrix(doc: dict[str, Any]) -> dict[str, Any]:
    """The heatmap's data: ``ranks`` (rows), ``step_ids`` (columns), ``ms`` (float array, NaN where unknown) and
    ``kept`` (bool array: the cell is a kept step).

    Rows: every rank of the ``ranks`` list (analysed, failed, missing) in rank order, plus any rank only the
    steps table names. A cell is the step row's ``window_ms`` (the basis' step time), else its ``wall_ms``.
    """
    import numpy as np

    table = _step_rows(doc)
    listed = [int(r["rank"]) for r in as_list(doc.get("ranks"))
              if isinstance(r, dict) and isinstance(r.get("rank"), int) and not isinstance(r.get("rank"), bool)]
    cells = []
    for r in table:
        rank, sid = r.get("rank"), num(r.get("id"))
        if not isinstance(rank, int) or isinstance(rank, bool) or sid is None:
            continue
        ms = num(r.get("window_ms"))
        ms = num(r.get("wall_ms")) if ms is None else ms
        cells.append((rank, int(sid), float("nan") if ms is None else ms, bool(r.get("kept", True))))
    ranks = sorted(set(listed) | {c[0] for c in cells})
    step_ids = sorted({c[1] for c in cells})
    ms_arr = np.full((len(ranks), len(step_ids)), np.nan)
    kept = np.zeros((len(ranks), len(step_ids)), dtype=bool)
    if cells:
        rk = np.searchsorted(np.array(ranks), np.array([c[0] for c in cells]))
        st = np.searchsorted(np.array(step_ids), np.array([c[1] for c in cells]))
        ms_arr[rk, st] = np.array([c[2] for c in cells])  # a step repeated on one rank: its last row
        kept[rk, st] = np.array([c[3] for c in cells])
    return {"ranks": ranks, "step_ids": step_ids, "ms": ms_arr, "kept": kept}


def plot_rank_steps(doc: dict[str, Any]) -> Plot:
    """Ranks x steps heatmap of step times (ms), the straggler marked (see the module's docstring)."""
    import numpy as np

    word = basis_words(doc).word
    title = f"Step time per rank ({word} step window, ms)"
    if not as_list(doc.get("ranks")):
        return Plot("rank_steps", title, skipped="not a job of several ranks")
    m = rank_step_matrix(doc)
    ms, kept, ranks, step_ids = m["ms"], m["kept"], m["ranks"], m["step_ids"]
    finite = np.isfinite(ms)
    if not finite.any():
        return Plot("rank_steps", title, skipped="the job document has no per-rank step times (steps.table with rank)")
    scale = ms[finite & kept] if (finite & kept).any() else ms[finite]
    vmin, vmax = float(scale.min()), float(scale.max())
    if vmax <= vmin:
        vmax = vmin + max(abs(vmin) * 1e-3, 1e-3)
    straggler = as_dict(as_dict(doc.get("job")).get("straggler")).get("rank")
    s_row = ranks.index(straggler) if isinstance(straggler, int) and straggler in ranks else None

    from matplotlib import colormaps

    cmap = colormaps["viridis"].with_extremes(bad="#D9D9D9")
    fig = _figure(height_scale=min(2.0, max(1.0, len(ranks) / 40)))
    ax = fig.add_subplot(1, 1, 1)
    image = ax.imshow(np.ma.masked_invalid(ms), aspect="auto", interpolation="nearest", cmap=cmap,
                      vmin=vmin, vmax=vmax, origin="upper")
    bar = fig.colorbar(image, ax=ax, pad=0.02)
    bar.set_label(f"{word} step time (ms)")
    every = max(1, len(step_ids) // 20)
    ax.set_xticks(list(range(0, len(step_ids), every)))
    ax.set_xticklabels([str(step_ids[i]) for i in range(0, len(step_ids), every)], fontsize=7)
    ax.set_xlabel("step (ProfilerStep#)")
    rows = list(range(0, len(ranks), max(1, -(-len(ranks) // RANK_TICKS))))
    if s_row is not None:  # the straggler's label, and no regular label crowding it
        near = len(ranks) // (2 * RANK_TICKS)
        rows = sorted({r for r in rows if abs(r - s_row) > near} | {s_row})
    ax.set_yticks(rows)
    ax.set_yticklabels([f"{ranks[r]} straggler" if r == s_row else str(ranks[r]) for r in rows], fontsize=7)
    if s_row is not None:
        from matplotlib.patches import Rectangle

        for label, r in zip(ax.get_yticklabels(), rows):
            if r == s_row:
                label.set_color(_OUTLIER_COLOR)
                label.set_fontweight("bold")
        ax.add_patch(Rectangle((-0.5, s_row - 0.5), len(step_ids), 1.0, fill=False, edgecolor=_OUTLIER_COLOR,
                               lw=1.5, clip_on=False))
    ax.set_ylabel("rank")
    ax.set_title(title, fontsize=11)
    fig.tight_layout()
    info = {
        "ranks": ranks,
        "step_ids": step_ids,
        "ms": [[None if not np.isfinite(v) else float(v) for v in row] for row in ms.tolist()],
        "vmin_ms": vmin,
        "vmax_ms": vmax,
        "straggler": straggler if s_row is not None else None,
        "straggler_row": s_row,
        "unknown_cells": int((~finite).sum()),
        "excluded_cells": int((finite & ~kept).sum()),
    }
    return Plot("rank_steps", title, fig, info)


# ---------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------


def _figure(height_scale: float = 1.0) -> "Figure":
    from matplotlib.figure import Figure

    return Figure(figsize=(FIG_SIZE_IN[0], FIG_SIZE_IN[1] * height_scale), dpi=DPI)


def _step_rows(doc: dict[str, Any]) -> list[dict[str, Any]]:
    return [r for r in as_list(as_dict(doc.get("steps")).get("table")) if isinstance(r, dict)]


def _stacked(rows: list[dict[str, Any]], series: dict[str, list[float]], labels: dict[str, str],
             colors: dict[str, str], title: str, ylabel: str) -> tuple["Figure", dict[str, Any]]:
    """Stacked bars (areas beyond MAX_BARS steps) of ``series`` over the steps; excluded steps hatched."""
    fig = _figure()
    ax = fig.add_subplot(1, 1, 1)
    x = list(range(len(rows)))
    excluded = [i for i, r in enumerate(rows) if not r.get("kept", True)]
    bottom = [0.0] * len(rows)
    as_bars = len(rows) <= MAX_BARS
    for key, values in series.items():
        if as_bars:
            bars = ax.bar(x, values, bottom=bottom, width=0.8, color=colors.get(key))
            for i in excluded:
                bars[i].set_alpha(0.45)
                bars[i].set_hatch("//")
        else:
            top = [b + v for b, v in zip(bottom, values)]
            ax.fill_between(x, bottom, top, step="mid", color=colors.get(key), lw=0)
        bottom = [b + v for b, v in zip(bottom, values)]
    from matplotlib.patches import Patch

    # Legend from plain patches: the first bar of a series may be an excluded (hatched) one.
    handles = [Patch(facecolor=colors.get(k), label=labels.get(k, k)) for k in series]
    if excluded and as_bars:
        handles.append(Patch(facecolor="white", edgecolor="#555555", hatch="//", label="excluded step"))
    ax.legend(handles=handles, fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    _step_axis(ax, rows)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=11)
    ax.grid(True, axis="y", alpha=0.3)
    fig.tight_layout()
    info = {
        "step_ids": [r.get("id") for r in rows],
        "excluded_step_ids": [rows[i].get("id") for i in excluded],
        "series": list(series),
        "style": "bars" if as_bars else "areas",
    }
    return fig, info


def _step_axis(ax: Any, rows: list[dict[str, Any]]) -> None:
    """X axis labelled with the step ids (a subset when there are many)."""
    n = len(rows)
    every = max(1, n // 20)
    ticks = list(range(0, n, every))
    ax.set_xticks(ticks)
    ax.set_xticklabels([str(rows[i].get("id", i)) for i in ticks], fontsize=7)
    ax.set_xlabel("step (ProfilerStep#)")
    if n:
        ax.set_xlim(-0.6, n - 0.4)


def _memory_timeline(timeline: dict[str, Any], devices: list[dict[str, Any]]) -> Plot:
    title = "Device memory over time (trace [memory] events)"
    accelerators = [d for d in devices if d.get("device_type") not in (0, None)]  # not the CPU
    shown = accelerators or devices[:1]
    fig = _figure()
    ax = fig.add_subplot(1, 1, 1)
    for i, d in enumerate(shown):
        color = f"C{i}"
        name = str(d.get("device", "?"))
        rel = " (change since the first event)" if d.get("relative") else ""
        t = [num(v) or 0.0 for v in d["t_ms"]]
        ax.plot(t, [(num(v) or 0.0) / GIB for v in d.get("allocated_bytes") or []], "-", color=color, lw=1,
                drawstyle="steps-post", label=f"{name} allocated{rel}")
        if d.get("reserved_bytes"):
            ax.plot(t, [(num(v) or 0.0) / GIB for v in d["reserved_bytes"]], "--", color=color, lw=1,
                    drawstyle="steps-post", label=f"{name} reserved")
    starts = [num(s) for s in as_list(timeline.get("step_start_ms"))]
    ends = [num(s) for s in as_list(timeline.get("step_end_ms"))]
    ids = as_list(timeline.get("step_ids"))
    for j, (s, e) in enumerate(zip(starts, ends)):
        if s is None or e is None:
            continue
        ax.axvspan(s, e, color="#000000", alpha=0.04 if j % 2 else 0.08, lw=0)
        if j < len(ids) and len(starts) <= 40:
            ax.annotate(f"step {ids[j]}", (s, 1.0), xycoords=("data", "axes fraction"), xytext=(2, -10),
                        textcoords="offset points", fontsize=7, color="#555555")
    _memory_axes(fig, ax, "ms since the trace start", title)
    info = {
        "source": "memory_timeline",
        "devices": [d.get("device") for d in shown],
        "peak_allocated_bytes": {str(d.get("device")): d.get("peak_allocated_bytes") for d in shown},
        "points": sum(len(d["t_ms"]) for d in shown),
    }
    return Plot("memory", title, fig, info)


def _memory_step_peaks(mem: dict[str, Any], peaks: list[float]) -> Plot:
    title = "Allocator peak per step (run counters; the trace has no [memory] events)"
    fig = _figure()
    ax = fig.add_subplot(1, 1, 1)
    x = list(range(1, len(peaks) + 1))
    ax.plot(x, [p / GIB for p in peaks], "o-", color="#4C78A8", ms=3, lw=1, label="peak allocated in the step")
    level = 0.0
    for key, name, color in (("weights_bytes", "weights", "#54A24B"), ("gradients_bytes", "+ gradients", "#F58518"),
                             ("optimizer_state_bytes", "+ optimizer state", "#B279A2")):
        v = num(mem.get(key))
        if v:
            level += v
            ax.axhline(level / GIB, color=color, ls="--", lw=1, label=name)
    ax.set_ylim(bottom=0)
    _memory_axes(fig, ax, "step of the run", title)
    info = {"source": "runtime.memory.step_peak_bytes", "steps": len(peaks), "peak_bytes": max(peaks)}
    return Plot("memory", title, fig, info)


def _memory_axes(fig: "Figure", ax: Any, xlabel: str, title: str) -> None:
    """The memory figures' common axes: GiB against ``xlabel``, grid, legend."""
    ax.set_xlabel(xlabel)
    ax.set_ylabel("GiB")
    ax.set_title(title, fontsize=11)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()


def _log_if_wide(ax: Any, values_ms: list[float]) -> None:
    """Log y axis when the values span more than 50x (a 10 s first step beside 10 ms steps)."""
    positive = [v for v in values_ms if v > 0]
    if positive and max(positive) / min(positive) > 50:
        ax.set_yscale("log")


def _median(sorted_values: list[float]) -> float:
    n = len(sorted_values)
    mid = n // 2
    return sorted_values[mid] if n % 2 else (sorted_values[mid - 1] + sorted_values[mid]) / 2.0


def _short(value: Any, n: int) -> str:
    s = " ".join(str(value).split())
    return s if len(s) <= n else s[: n - 1] + "…"


def _tex_safe(s: str) -> str:
    """Names from the trace are not mathtext: escape ``$``."""
    return s.replace("$", r"\$")


__all__ = ["PLOT_NAMES", "JOB_PLOT_NAMES", "Plot", "plot_rank_steps", "rank_step_matrix", "build_plots", "write_plots", "figure_bytes", "require_matplotlib"]
