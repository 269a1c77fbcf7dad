"""A log-log plot of a scaling probe: time per call against size, with the fitted power law.

Takes only the document of ``ScaleResult.to_dict()`` (schema ``perfkit.scale/1``),
so a saved JSON plots like a fresh result::

    from perfkit.report.scaling_plot import plot_scaling
    plot_scaling(json.load(open("scale.json")), "scale.png")

matplotlib is optional (``pip install 'perfkit[plots]'``) and imported only here,
inside the functions. No pyplot: the figure is drawn on its own canvas, so no
global backend is touched.
"""

from __future__ import annotations

from typing import Any

from ..errors import MissingDependencyError
from ..units import format_seconds

INSTALL_HINT = "pip install 'perfkit[plots]'"


def require_matplotlib() -> None:
    """Raise :class:`MissingDependencyError` with the install command when matplotlib is missing."""
    try:
        import matplotlib  # noqa: F401
        from matplotlib.figure import Figure  # noqa: F401
    except ImportError:
        raise MissingDependencyError(f"plots need matplotlib: {INSTALL_HINT}") from None


def plot_scaling(result_dict: dict[str, Any], path: str) -> None:
    """Draw time per call against size on log-log axes, with the fit and its projections, to ``path``.

    Each measured size shows its median, with a bar from the fastest to the
    slowest run; sizes left out of the fit (at or under 1 ms) are hollow. The
    fitted line spans the measured sizes and continues, dashed, to the
    projected sizes.
    """
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise MissingDependencyError(f"plots need matplotlib: {INSTALL_HINT}") from None

    timings = result_dict.get("timings") or []
    if not timings:
        from ..errors import UsageError

        raise UsageError("nothing to plot: no size was measured")

    fig = Figure(figsize=(7.0, 4.5), dpi=120)
    ax = fig.add_subplot(1, 1, 1)
    ax.set_xscale("log")
    ax.set_yscale("log")

    key = "min_s" if result_dict.get("stat") == "min" else "median_s"
    what = "fastest run" if key == "min_s" else "median"
    groups = ((True, "C0", f"measured ({what}; bars: min to max)"), (False, "none", "left out of fit (<= 1 ms)"))
    for in_fit, face, lab in groups:
        pts = [t for t in timings if bool(t.get("in_fit")) == in_fit]
        if not pts:
            continue
        xs = [t["size"] for t in pts]
        ys = [t[key] for t in pts]
        lo = [max(t[key] - t["min_s"], 0.0) for t in pts]
        hi = [max(t["max_s"] - t[key], 0.0) for t in pts]
        ax.errorbar(xs, ys, yerr=[lo, hi], fmt="o", color="C0", mfc=face, capsize=3, label=lab, zorder=3)

    k = result_dict.get("exponent")
    c = result_dict.get("coefficient_s")
    if k is not None and c is not None:
        sizes = [t["size"] for t in timings]
        lo_n, hi_n = min(sizes), max(sizes)
        line_x = _geom(lo_n, hi_n)
        r2 = result_dict.get("r2") or 0.0
        fit_label = f"fit: {c:.3g} s * n^{k:.2f}  ({result_dict.get('label')}, r2 {r2:.3f})"
        ax.plot(line_x, [c * x**k for x in line_x], "-", color="C1", label=fit_label)
        proj = result_dict.get("projections") or []
        if proj:
            far = max(p["size"] for p in proj)
            if far > hi_n:
                ext = _geom(hi_n, far)
                ax.plot(ext, [c * x**k for x in ext], "--", color="C1", alpha=0.7)
            for p in proj:
                ax.plot([p["size"]], [p["predicted_s"]], "s", color="C1", mfc="none", zorder=3)
                ax.annotate(
                    f"n={p['size']}: {format_seconds(p['predicted_s'], exact=False, digits=2)}",
                    (p["size"], p["predicted_s"]),
                    textcoords="offset points",
                    xytext=(-6, 6),
                    ha="right",
                    fontsize=8,
                )

    skipped = result_dict.get("skipped_sizes") or []
    title = f"scaling of {result_dict.get('function', '?')}"
    if skipped:
        title += f"  (skipped: {', '.join(map(str, skipped))})"
    ax.set_title(title, fontsize=10)
    ax.set_xlabel("size n")
    ax.set_ylabel("time per call (s)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    fig.savefig(path)


def _geom(a: float, b: float, num: int = 50) -> list[float]:
    """``num`` points spaced evenly in log between ``a`` and ``b``."""
    if b <= a:
        return [float(a)]
    ratio = (b / a) ** (1.0 / (num - 1))
    return [a * ratio**i for i in range(num)]


__all__ = ["plot_scaling", "require_matplotlib"]
