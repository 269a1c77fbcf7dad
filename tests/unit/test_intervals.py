"""Interval algebra against brute force on random intervals."""

from __future__ import annotations

import numpy as np
import pytest

from perfkit.analysis import intervals


def _brute_union_len(s, e):
    pts = sorted(set(s.tolist()) | set(e.tolist()))
    total = 0.0
    for a, b in zip(pts, pts[1:]):
        mid = (a + b) / 2
        if any(x <= mid < y for x, y in zip(s, e)):
            total += b - a
    return total


def _brute_shares(s, e):
    pts = sorted(set(s.tolist()) | set(e.tolist()))
    out = np.zeros(len(s))
    for a, b in zip(pts, pts[1:]):
        mid = (a + b) / 2
        active = [i for i, (x, y) in enumerate(zip(s, e)) if x <= mid < y]
        for i in active:
            out[i] += (b - a) / len(active)
    return out


@pytest.mark.parametrize("seed", range(20))
def test_union_and_shares_match_brute_force(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 40))
    s = np.round(rng.uniform(0, 100, n), 1)
    e = s + np.round(rng.exponential(8, n), 1)
    assert intervals.union_length(s, e) == pytest.approx(_brute_union_len(s, e))
    shares = intervals.exclusive_share(s, e)
    np.testing.assert_allclose(shares, _brute_shares(s, e), atol=1e-9)
    assert shares.sum() == pytest.approx(_brute_union_len(s, e))


def _brute_union(s, e):
    """Sort by start and sweep: the obvious merge."""
    out = []
    for a, b in sorted(zip(s.tolist(), np.maximum(e, s).tolist())):
        if out and a <= out[-1][1]:
            out[-1][1] = max(out[-1][1], b)
        else:
            out.append([a, b])
    return out


@pytest.mark.parametrize("seed", range(20))
def test_union_is_the_sorted_disjoint_merge(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 60))
    s = np.round(rng.uniform(0, 100, n), 0)  # coarse: many equal and touching endpoints
    e = s + np.round(rng.exponential(6, n), 0) * rng.choice([1, 1, 1, -1], n)  # some end before they start
    got_s, got_e = intervals.union(s, e)
    assert [[a, b] for a, b in zip(got_s.tolist(), got_e.tolist())] == _brute_union(s, e)


@pytest.mark.parametrize("seed", range(10))
def test_coverage_within_windows(seed):
    rng = np.random.default_rng(seed)
    s = rng.uniform(0, 100, 30)
    e = s + rng.exponential(5, 30)
    cov = intervals.Coverage(s, e)
    a = rng.uniform(0, 100, 10)
    b = a + rng.uniform(0, 30, 10)
    for ai, bi, got in zip(a, b, cov.within(a, b)):
        cs, ce = np.clip(s, ai, bi), np.clip(e, ai, bi)
        assert got == pytest.approx(_brute_union_len(cs, ce), abs=1e-9)


def _random_tree(rng, n):
    """Properly nested intervals (a call tree)."""
    out = []

    def grow(lo, hi, depth):
        t = lo
        while t < hi and len(out) < n:
            a = t + rng.uniform(0, (hi - t) / 3)
            b = a + rng.uniform(0, hi - a)
            if b - a < 1e-3:
                break
            out.append((a, b))
            if depth < 6:
                grow(a, b, depth + 1)
            t = b
    grow(0.0, 1000.0, 0)
    return np.array([x for x, _ in out]), np.array([y for _, y in out])


@pytest.mark.parametrize("seed", range(10))
def test_innermost_containing_matches_brute_force(seed):
    rng = np.random.default_rng(seed)
    s, e = _random_tree(rng, 60)
    pts = rng.uniform(0, 1000, 200)
    got = intervals.innermost_containing(s, e, pts)
    for p, g in zip(pts, got):
        inside = [i for i in range(len(s)) if s[i] <= p < e[i]]
        if not inside:
            assert g == -1
        else:
            # innermost = shortest of the nested intervals holding the point
            best = min(inside, key=lambda i: e[i] - s[i])
            assert g == best


@pytest.mark.parametrize("seed", range(10))
def test_tree_order_is_the_lexsort(seed):
    rng = np.random.default_rng(seed)
    n = 500
    s = np.round(np.sort(rng.uniform(0, 50, n)) + rng.normal(0, 2, n))  # nearly sorted, many equal starts
    e = s + np.round(rng.exponential(3, n))
    e[::7] = s[::7]  # zero-length ones
    s[::11], e[::11] = s[0], e[0]  # fully equal intervals keep the input order
    np.testing.assert_array_equal(intervals.tree_order(s, e), np.lexsort((-e, s)))


@pytest.mark.parametrize("seed", range(10))
def test_root_index_is_the_outermost_interval_holding_each(seed):
    rng = np.random.default_rng(seed)
    s, e = _random_tree(rng, 80)
    perm = rng.permutation(len(s))  # input order need not be tree order
    s, e = s[perm], e[perm]
    got = intervals.root_index(intervals.parent_index(s, e))
    for i in range(len(s)):
        # the root is the longest interval holding this one (itself when none holds it)
        holding = [j for j in range(len(s)) if s[j] <= s[i] and e[i] <= e[j]]
        assert got[i] == max(holding, key=lambda j: e[j] - s[j])


def _parents_level_by_level(s, e):
    """The former implementation of intervals._parents, one level at a time: the oracle for the one-search form."""
    n = len(s)
    depth = np.maximum(np.arange(n) - np.searchsorted(np.sort(e), s, side="right"), 0)
    parent = np.full(n, -1, dtype=np.int64)
    by_depth = [np.flatnonzero(depth == d) for d in range(int(depth.max()) + 1 if n else 0)]
    for d in range(1, len(by_depth)):
        kids, ups = by_depth[d], by_depth[d - 1]
        if len(kids) and len(ups):
            pos = np.searchsorted(ups, kids, side="left") - 1
            parent[kids] = np.where(pos >= 0, ups[np.maximum(pos, 0)], -1)
    return parent


@pytest.mark.parametrize("seed", range(30))
def test_parents_in_one_search_are_the_level_by_level_ones(seed):
    rng = np.random.default_rng(seed)
    if seed % 3 == 0:  # properly nested
        s, e = _random_tree(rng, 120)
    else:  # overlapping, equal starts and ends, zero-length ones: what real traces also hold
        n = int(rng.integers(1, 400))
        s = np.round(rng.uniform(0, 100, n))
        e = s + np.round(rng.exponential(8 if seed % 3 == 1 else 30, n))
    order = intervals.tree_order(s, e)
    s, e = s[order], e[order]
    got = intervals._parents(s, e)
    assert got.dtype == np.int64
    np.testing.assert_array_equal(got, _parents_level_by_level(s, e))


def test_parents_of_no_interval_and_of_one():
    assert len(intervals._parents(np.zeros(0), np.zeros(0))) == 0
    np.testing.assert_array_equal(intervals._parents(np.array([1.0]), np.array([2.0])), [-1])


@pytest.mark.parametrize("seed", range(10))
def test_coverage_within_equal_length_windows_as_one_search_or_two(seed):
    """Coverage.within searches both ends at once for 1-D windows: the same as each end on its own."""
    rng = np.random.default_rng(seed)
    s = rng.uniform(0, 1000, 200)
    cov = intervals.Coverage(s, s + rng.exponential(5, 200))
    a = rng.uniform(-10, 1010, 300)
    b = a + rng.exponential(20, 300)
    want = np.maximum(cov._before(b) - cov._before(a), 0.0)
    np.testing.assert_array_equal(cov.within(a, b), want)
    np.testing.assert_array_equal(cov.within(a[:, None], b[:, None])[:, 0], want)  # the two-search form
