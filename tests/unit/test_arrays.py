"""perfkit.arrays gives numpy's answers (np.unique, np.isin, np.median, np.percentile) without importing
numpy.ma: compared value for value, float for float, over generated arrays of every small size."""

from __future__ import annotations

import numpy as np

from perfkit.arrays import distinct, distinct_inverse, median, member, percentiles

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


def test_rounded_gives_pythons_round() -> None:
    """The same floats as round(v, 3) (compared by repr, so -0.0 and 0.0 differ), NaN as None; values
    a rounding error from a half, huge and infinite ones included."""
    from perfkit.arrays import rounded

    rng = np.random.default_rng(3)
    sets = [
        rng.uniform(0, 1e7, 20000),
        np.round(rng.uniform(0, 1e6, 20000), 3) + 0.0005,  # halves at the third decimal, give or take an ulp
        rng.integers(0, 10**9, 20000) / 1000.0 + rng.integers(0, 2, 20000) * 0.0005,
        rng.standard_normal(20000) * 10.0 ** rng.integers(-8, 14, 20000),
        np.array([0.0005, 0.0015, 0.0025, 1.0005, -0.0005, -0.0, 1e300, -1e300, 5e-324, np.nan, np.inf, -np.inf,
                  4503599627370.4965, 1e15 + 0.5]),
    ]
    for values in sets:
        for digits in (3, 4):
            want = [None if v != v else round(v, digits) for v in values.tolist()]
            assert list(map(repr, rounded(values, digits))) == list(map(repr, want))


def test_medians_along_an_axis_and_with_nans() -> None:
    from perfkit.arrays import median_along

    rng = np.random.default_rng(4)
    for shape in [(1, 1), (3, 5), (4, 6), (7, 2), (2, 9)]:
        a = np.round(rng.standard_normal(shape) * 100, 1)
        for axis in (0, 1):
            assert np.array_equal(median_along(a, axis), np.median(a, axis=axis))
        a[0, 0] = np.nan  # a NaN makes its row's or column's median NaN, as numpy's
        for axis in (0, 1):
            assert np.array_equal(median_along(a, axis), np.median(a, axis=axis), equal_nan=True)
        assert np.isnan(median(a)) and np.isnan(np.median(a))
    assert median([3, 1, 2]) == 2.0 and median(np.array([1, 4], dtype=np.int64)) == 2.5


def test_distinct_inverse_and_member_are_numpys() -> None:
    """The analysis's keys and ids: int8 to int64 (negative ids too), and float times; every small size."""
    rng = np.random.default_rng(16)
    for n in [*range(0, 30), 500, 2500]:
        for dtype in (np.int8, np.int32, np.int64, np.float64):
            x = rng.integers(-3, 40, n).astype(dtype)
            test = rng.integers(-5, 45, int(rng.integers(0, 60))).astype(dtype)
            uniq, inverse = distinct_inverse(x)
            want_uniq, want_inverse = np.unique(x, return_inverse=True)
            assert uniq.dtype == want_uniq.dtype and np.array_equal(uniq, want_uniq)
            assert np.array_equal(inverse, want_inverse.reshape(-1))
            got = member(x, test)
            assert got.dtype == bool and np.array_equal(got, np.isin(x, test))
    assert member(np.arange(6).reshape(2, 3), [1, 5]).tolist() == [[False, True, False], [False, False, True]]
