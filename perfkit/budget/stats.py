"""The Mann-Whitney U test (Wilcoxon rank-sum), with numpy only.

``mann_whitney_u(x, y, alternative)`` returns U for ``x`` (the number of pairs
in which the ``x`` value is larger, ties counting one half) and a p-value:

* **exact** when there are no ties and ``len(x) * len(y) <= EXACT_MAX_PAIRS``:
  the null distribution of U is counted by the recurrence
  ``p(m, n; u) = m/(m+n) p(m-1, n; u-n) + n/(m+n) p(m, n-1; u)``;
* otherwise the **normal approximation** with the tie correction of the
  variance and a continuity correction of 1/2.

``alternative``: ``"greater"`` (H1: ``x`` tends to be larger than ``y``),
``"less"``, or ``"two-sided"``. The conventions are those of
``scipy.stats.mannwhitneyu``, so the values can be checked against it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np

EXACT_MAX_PAIRS = 2500  #: exact distribution up to 50 x 50 samples (no ties)
ALTERNATIVES = ("greater", "less", "two-sided")


@dataclass(frozen=True)
class MannWhitney:
    u: float  #: U of x: pairs (x_i, y_j) with x_i > y_j, plus half the ties
    p_value: float
    method: str  #: "exact" or "normal"
    n_x: int
    n_y: int


def rank_data(values: np.ndarray) -> np.ndarray:
    """Ranks 1..n, tied values sharing the mean of their ranks."""
    values = np.asarray(values, dtype=float)
    order = np.argsort(values, kind="mergesort")
    sorted_vals = values[order]
    ranks = np.empty(len(values), dtype=float)
    # Start of each run of equal values in sorted order.
    starts = np.flatnonzero(np.r_[True, sorted_vals[1:] != sorted_vals[:-1]])
    ends = np.r_[starts[1:], len(values)]
    mean_rank = (starts + ends + 1) / 2.0  # mean of ranks start+1 .. end
    ranks[order] = np.repeat(mean_rank, ends - starts)
    return ranks


def u_distribution(m: int, n: int) -> np.ndarray:
    """P(U = u) for u = 0..m*n under H0 (no ties), sample sizes m and n."""
    # prev[j] holds the distribution for sizes (i-1, j); cur[j] for (i, j).
    prev = [np.ones(1) for _ in range(n + 1)]  # i = 0: U is always 0
    for i in range(1, m + 1):
        cur = [np.ones(1)]  # j = 0: U is always 0
        for j in range(1, n + 1):
            dist = np.zeros(i * j + 1)
            # The largest value is an x (probability i/(i+j)): it beats all j y's.
            dist[j:j + len(prev[j])] += i / (i + j) * prev[j]
            # ... or a y (probability j/(i+j)): it adds nothing to U.
            dist[:len(cur[j - 1])] += j / (i + j) * cur[j - 1]
            cur.append(dist)
        prev = cur
    return prev[n]


def _norm_sf(z: float) -> float:
    return 0.5 * math.erfc(z / math.sqrt(2.0))


def mann_whitney_u(x: Sequence[float], y: Sequence[float], alternative: str = "two-sided",
                   method: str = "auto") -> MannWhitney:
    """Mann-Whitney U test of ``x`` against ``y``; see the module docstring.

    ``method``: ``"auto"`` (exact where it applies), ``"exact"`` (ties or not:
    the untied distribution) or ``"normal"``.
    """
    if alternative not in ALTERNATIVES:
        raise ValueError(f"alternative must be one of {', '.join(ALTERNATIVES)}")
    if method not in ("auto", "exact", "normal"):
        raise ValueError("method must be auto, exact or normal")
    both = np.concatenate([np.asarray(x, dtype=float), np.asarray(y, dtype=float)])
    m, n = len(x), len(y)
    if m == 0 or n == 0:
        raise ValueError("both samples need at least one value")
    ranks = rank_data(both)
    u = float(ranks[:m].sum() - m * (m + 1) / 2.0)
    ties = len(np.unique(both)) < m + n
    if method == "exact" or (method == "auto" and not ties and m * n <= EXACT_MAX_PAIRS):
        dist = u_distribution(m, n)
        # With ties (method="exact" only) U can be a half: round towards H0.
        p_greater = float(dist[int(math.floor(u)):].sum())
        p_less = float(dist[:int(math.ceil(u)) + 1].sum())
        p = {"greater": p_greater, "less": p_less,
             "two-sided": 2.0 * min(p_greater, p_less)}[alternative]
        return MannWhitney(u, min(p, 1.0), "exact", m, n)
    total = m + n
    _, counts = np.unique(both, return_counts=True)
    tie_term = float((counts ** 3 - counts).sum()) / (total * (total - 1))
    var = m * n / 12.0 * ((total + 1) - tie_term)
    mu = m * n / 2.0
    if var <= 0:  # every value equal: no evidence either way
        return MannWhitney(u, 1.0, "normal", m, n)
    sd = math.sqrt(var)
    if alternative == "greater":
        p = _norm_sf((u - mu - 0.5) / sd)
    elif alternative == "less":
        p = _norm_sf((mu - u - 0.5) / sd)
    else:
        p = 2.0 * _norm_sf((abs(u - mu) - 0.5) / sd)
    return MannWhitney(u, min(p, 1.0), "normal", m, n)
