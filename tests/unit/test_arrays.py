"""perfkit.arrays gives numpy's answers (np.unique, np.median, np.percentile) without importing
numpy.ma: compared value for value, float for float, over generated arrays of every small size."""

from __future__ import annotations

import numpy as np

from perfkit.arrays import distinct, median, percentiles

QS = (0, 10, 50, 90, 100)


def test_the_same_floats_as_numpy() -> None:
    rng = np.random.default_rng(15)
    for n in [*range(1, 40), 100, 1000, 1001]:
        for k in range(12):
            x = rng.standard_normal(n) * 10.0 ** int(rng.integers(-3, 6))
            if k % 3 == 0:
                x = np.round(x)  # ties
            assert np.array_equal(percentiles(x, QS), np.percentile(x, QS))
            assert median(x) == float(np.median(x))
            ints = rng.integers(-5, 5, n)
            assert np.array_equal(distinct(ints), np.unique(ints))
            assert np.array_equal(distinct(x), np.unique(x))


def test_edges() -> None:
    assert len(distinct(np.zeros(0, np.int64))) == 0 and distinct([3]).tolist() == [3]
    assert np.isnan(median([]))
    assert median([1, 2]) == 1.5 and median([5]) == 5.0
    assert percentiles([7.0], QS).tolist() == [7.0] * 5
