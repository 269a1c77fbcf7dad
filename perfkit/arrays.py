"""Small array helpers shared by the analysis passes (base stage: numpy only)."""

from __future__ import annotations

from typing import Any, Optional, Sequence

import numpy as np


def distinct(values: Any) -> np.ndarray:
    """The sorted distinct values of ``values``: ``np.unique(values)`` for the analysis' arrays
    (integers, finite times; NaNs would each be kept), by one sort.

    numpy 2.x's ``np.unique`` without ``return_*`` imports ``numpy.ma`` at its first call (to
    check for a masked array): 6-10 ms of a ``perfkit analyze`` command, for nothing.
    """
    s = np.sort(np.asarray(values).ravel())
    if len(s) < 2:
        return s
    keep = np.empty(len(s), dtype=bool)
    keep[0] = True
    np.not_equal(s[1:], s[:-1], out=keep[1:])
    return s[keep]


def distinct_inverse(values: Any) -> tuple[np.ndarray, np.ndarray]:
    """``np.unique(values, return_inverse=True)`` of a 1-D array of integers (or finite floats): the
    sorted distinct values, and each value's index among them, by one sort and one search.

    The same arrays as ``np.unique``, ~5 µs sooner a call (its Python-level work: an argsort, a
    scatter, the checks for NaN and for the inverse's shape): 8 -> 4 µs on 50 values, 18 -> 13 µs
    on 500 (a small trace's tables make about ten such calls)."""
    v = np.asarray(values).ravel()
    uniq = distinct(v)
    return uniq, np.searchsorted(uniq, v)


def member(values: Any, test: Any) -> np.ndarray:
    """``np.isin(values, test)`` for integers (or finite floats): a search among the sorted distinct
    ``test`` values: 14 -> 5 µs on 50 values, 26 -> 17 µs on 2,500 (``np.isin``'s Python-level work,
    choosing between a table, a sort and a loop, dominates on a small trace's arrays)."""
    v = np.asarray(values)
    t = distinct(test)
    if len(t) == 0 or v.size == 0:
        return np.zeros(v.shape, dtype=bool)
    at = np.searchsorted(t, v)
    np.minimum(at, len(t) - 1, out=at)
    return t[at] == v


def median(values: Any) -> float:
    """``float(np.median(values))``, by one partition: NaN for no values (without numpy's warning)
    or where a value is NaN, as ``np.median`` gives.

    ``np.median`` imports ``numpy.ma`` at its first call too (to check its result for a masked
    array). The middle two values are averaged as ``np.median`` does: ``(a + b) / 2``.
    """
    return float(median_along(np.asarray(values, dtype=np.float64).ravel(), 0))


def median_along(values: Any, axis: int) -> np.ndarray:
    """``np.median(values, axis=axis)`` of a float array (see :func:`median`)."""
    a = np.asarray(values, dtype=np.float64)
    n = a.shape[axis]
    if n == 0:
        return np.full(np.delete(a.shape, axis), np.nan)
    k = n // 2
    if n % 2:
        out = np.take(np.partition(a, k, axis=axis), k, axis=axis)
    else:
        part = np.partition(a, (k - 1, k), axis=axis)
        out = (np.take(part, k - 1, axis=axis) + np.take(part, k, axis=axis)) / 2
    return np.where(np.isnan(a).any(axis=axis), np.nan, out)


def percentiles(values: Any, qs: Sequence[float]) -> np.ndarray:
    """``np.percentile(values, qs)`` (linear interpolation, numpy's default) of a non-empty array of
    finite numbers, computed as numpy does (the same lerp, so the same floats) after one sort.

    ``np.percentile`` imports ``numpy.ma`` at its first call (through ``np.unique``)."""
    a = np.sort(np.asarray(values, dtype=np.float64).ravel())
    n = len(a)
    if n == 0:
        raise ValueError("percentiles of no values")
    virtual = (n - 1) * np.true_divide(np.asarray(qs, dtype=np.float64), 100)
    lo = np.floor(virtual).astype(np.intp)
    hi = np.minimum(lo + 1, n - 1)
    lo = np.minimum(lo, n - 1)
    t = virtual - lo
    below, above = a[lo], a[hi]
    diff = above - below
    out = below + diff * t
    np.subtract(above, diff * (1 - t), out=out, where=t >= 0.5)
    return out


def rounded(values: Any, ndigits: int = 3) -> list[Optional[float]]:
    """``[round(v, ndigits) for v in values]`` with NaN as None: the same floats, vectorised.

    Python's ``round`` gives the double nearest to the value rounded (half to even) at the decimal.
    Here ``k = rint(v * 10**ndigits)`` is that decimal exactly unless ``v * 10**ndigits`` lies
    within a rounding error of a half (or beyond 2**52, or is infinite), and then ``k / 10**ndigits``,
    one correctly rounded division, is the same double. The few values near a half go through
    ``round`` itself. ~0.1 µs a value against ~0.5 µs (~9,000 values in the anchor trace's
    collectives table)."""
    x = np.asarray(values, dtype=np.float64).ravel()
    scale = 10.0 ** ndigits
    with np.errstate(invalid="ignore", over="ignore"):
        y = x * scale
        k = np.rint(y)
        frac = np.abs(y - np.floor(y) - 0.5)
        exact = np.isfinite(y) & (np.abs(y) < 2.0**52) & (frac > 1e-6 * np.maximum(1.0, np.abs(y) * 2.0**-40))
    out: list[Optional[float]] = (k / scale).tolist()
    for i in np.flatnonzero(~exact).tolist():
        v = float(x[i])
        out[i] = None if v != v else round(v, ndigits)
    return out
