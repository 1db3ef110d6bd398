"""Shared per-pixel helpers: gathering, sorting, order statistics, moments.

Every rejection algorithm works on the same per-pixel buffers:

``vals[0:n]``
    the pixel's values in frame order, as float64;
``flags[0:n]``
    what happened to each value: :data:`MISSING` (NaN/inf input),
    :data:`KEPT`, :data:`LOW` or :data:`HIGH` (rejected on that side);
``srt[0:m]``
    scratch space for the sorted kept values.

All functions are numba ``njit(nogil=True, cache=True)`` so the dask threads
that call the block kernels run truly in parallel. Arithmetic is float64.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from .._numba_cache import check_caches

__all__ = [
    "MISSING",
    "KEPT",
    "LOW",
    "HIGH",
    "MAD_TO_STD",
    "batcher_pairs",
    "cache_blocked",
    "network_sort",
    "load_pixel",
    "sorted_kept",
    "median_sorted",
    "mad_sorted",
    "mean_std_sorted",
    "mark_outside",
    "mark_ranks",
    "count_kept",
]

MISSING = 0
KEPT = 1
LOW = 2
HIGH = 3

#: 1 / Phi^-1(3/4): the factor that turns a MAD into a Gaussian sigma (astropy's mad_std).
MAD_TO_STD = 1.482602218505602


def batcher_pairs(n: int) -> np.ndarray:
    """Comparators of Batcher's odd-even merge sort for ``n`` values, as (K, 2) int64.

    The network is built for the next power of two; comparators that touch
    the padding are dropped, which is valid because padding (+inf) only ever
    sits at the top indices.
    """
    size = 1
    while size < n:
        size *= 2
    pairs = []
    p = 1
    while p < size:
        k = p
        while k >= 1:
            for j in range(k % p, size - k, 2 * k):
                for i in range(min(k, size - j - k)):
                    if (i + j) // (2 * p) == (i + j + k) // (2 * p) and i + j + k < n:
                        pairs.append((i + j, i + j + k))
            k //= 2
        p *= 2
    return np.array(pairs, dtype=np.int64).reshape(-1, 2)


def cache_blocked(pairs: np.ndarray, n: int, block: int) -> np.ndarray:
    """The comparators ``pairs`` of a network for ``n`` rows, reordered to work on one
    block of ``block`` rows at a time for as long as the network allows.

    :func:`network_sort` applies each comparator to a whole row of pixels, so a
    group's buffer is streamed once per comparator: through the L2 cache when
    the buffer is larger than the L1 cache (from about 50 frames). Comparators
    on disjoint rows commute, so any order that keeps each row's comparators in
    their original sequence sorts exactly as the original: a list schedule that
    emits the ready comparators inside one block after another (a block of rows
    that fits the L1 cache), and those that cross blocks when nothing else is
    ready. Batcher's network sorts blocks first and merges across them later,
    so most of its comparators run block by block: 16 to 32 % less time
    sorting from 50 to 500 frames on the development machine.
    """
    from collections import deque

    rows: list[deque] = [deque() for _ in range(n)]
    for c, (a, b) in enumerate(pairs):
        rows[a].append(c)
        rows[b].append(c)
    nblocks = -(-n // block)
    inside: list[deque] = [deque() for _ in range(nblocks)]
    crossing: deque = deque()
    for c, (a, b) in enumerate(pairs):
        (inside[a // block] if a // block == b // block else crossing).append(c)

    def ready(c: int) -> bool:
        a, b = pairs[c]
        return rows[a][0] == c and rows[b][0] == c

    order: list[int] = []
    while len(order) < len(pairs):
        before = len(order)
        for queue in [*inside, crossing]:
            while queue and ready(queue[0]):
                c = queue.popleft()
                rows[pairs[c][0]].popleft()
                rows[pairs[c][1]].popleft()
                order.append(c)
        if len(order) == before:  # cannot happen: the first comparator left is always ready
            raise AssertionError("cache_blocked: no comparator ready")
    return np.ascontiguousarray(pairs[np.array(order, dtype=np.int64)])


@njit(nogil=True, cache=True)
def network_sort(buf, gw, pairs):
    """Sort every column ``buf[:, g]`` (g < gw) in place with a comparator network.

    The same compare-exchange is applied to a whole row of pixels at once, so
    the inner loop is branch-free and vectorizes.
    """
    for c in range(pairs.shape[0]):
        ri = buf[pairs[c, 0]]
        rj = buf[pairs[c, 1]]
        for g in range(gw):
            a = ri[g]
            b = rj[g]
            ri[g] = a if a < b else b
            rj[g] = b if a < b else a


@njit(nogil=True, cache=True)
def load_pixel(raw, g, vals, flags):
    """Copy column ``g`` of ``raw`` (frames x group, normalized values) into
    ``vals``/``flags``. Returns the number of finite values; the others are
    flagged MISSING."""
    n = raw.shape[0]
    m = 0
    for k in range(n):
        v = raw[k, g]
        vals[k] = v
        if math.isfinite(v):
            flags[k] = KEPT
            m += 1
        else:
            flags[k] = MISSING
    return m


@njit(nogil=True, cache=True)
def sorted_kept(vals, flags, n, srt):
    """Write the kept values into ``srt[0:m]`` in ascending order; return m."""
    m = 0
    for k in range(n):
        if flags[k] == KEPT:
            srt[m] = vals[k]
            m += 1
    # insertion sort: fastest for the few tens of frames a pixel usually has
    if m <= 128:
        for i in range(1, m):
            x = srt[i]
            j = i - 1
            while j >= 0 and srt[j] > x:
                srt[j + 1] = srt[j]
                j -= 1
            srt[j + 1] = x
    else:
        srt[:m].sort()
    return m


@njit(nogil=True, cache=True)
def median_sorted(srt, a, b):
    """Median of the sorted window ``srt[a:b]`` (b > a); numpy's convention for even sizes.

    In float64 whatever the dtype of ``srt`` (a float32 column gives the bits of
    its float64 copy), as are :func:`mad_sorted` and :func:`mean_std_sorted`."""
    length = b - a
    h = a + length // 2
    if length % 2 == 1:
        return np.float64(srt[h])
    return (np.float64(srt[h - 1]) + np.float64(srt[h])) / 2.0


@njit(nogil=True, cache=True)
def _deviation(srt, q, n_left, n_right, med, side, t):
    """Deviation number ``t`` of the left (side 0: ``med - srt[q-1-t]``) or right
    (side 1: ``srt[q+t] - med``) run; -inf before the start of a run."""
    if t < 0:
        return -math.inf
    if side == 0:
        return med - np.float64(srt[q - 1 - t])
    return np.float64(srt[q + t]) - med


@njit(nogil=True, cache=True)
def _kth_deviations(srt, q, n_left, n_right, med, k):
    """The k-th and (k-1)-th (0-based) smallest of the deviations ``med - srt[q-1-t]``
    (t < n_left) and ``srt[q+t] - med`` (t < n_right), two non-decreasing runs.

    A binary search on how many of the k+1 smallest come from the left run;
    the search steps are branch-free (its comparisons are unpredictable).
    """
    lo = max(0, k + 1 - n_right)
    hi = min(k + 1, n_left)
    while lo < hi:
        i = (lo + hi) // 2
        more = np.int64(med - np.float64(srt[q - 1 - i]) < np.float64(srt[q + k - i]) - med)
        lo = lo + more * (i + 1 - lo)
        hi = hi + (1 - more) * (i - hi)
    j = k + 1 - lo  # taken from the right run
    left = np.int64(0)  # not literals: one compiled _deviation for both sides
    right = np.int64(1)
    top_left = _deviation(srt, q, n_left, n_right, med, left, lo - 1)
    top_right = _deviation(srt, q, n_left, n_right, med, right, j - 1)
    if top_left >= top_right:
        return top_left, max(_deviation(srt, q, n_left, n_right, med, left, lo - 2), top_right)
    return top_right, max(top_left, _deviation(srt, q, n_left, n_right, med, right, j - 2))


@njit(nogil=True, cache=True)
def mad_sorted(srt, a, b, med):
    """Median of ``|x - med|`` over the sorted window ``srt[a:b]``, without sorting again.

    ``med`` is the window's median: the deviations left of the middle grow
    leftwards and those right of it grow rightwards, so the middle deviations
    are a selection from two sorted runs (O(log n)).
    """
    length = b - a
    q = a + length // 2  # srt[a:q] <= med <= srt[q:b]
    kth, before = _kth_deviations(srt, q, q - a, b - q, med, length // 2)
    if length % 2 == 1:
        return kth
    return (before + kth) / 2.0


@njit(nogil=True, cache=True)
def mean_std_sorted(srt, a, b):
    """Mean and population standard deviation (ddof 0) of ``srt[a:b]`` (two-pass)."""
    length = b - a
    s = 0.0
    for i in range(a, b):
        s += srt[i]
    mean = s / length
    ss = 0.0
    for i in range(a, b):
        d = srt[i] - mean
        ss += d * d
    return mean, math.sqrt(ss / length)


@njit(nogil=True, cache=True)
def mark_outside(vals, flags, n, lo, hi):
    """Flag kept values below ``lo`` LOW and above ``hi`` HIGH; return how many were flagged."""
    newly = 0
    for k in range(n):
        if flags[k] == KEPT:
            v = vals[k]
            if v < lo:
                flags[k] = LOW
                newly += 1
            elif v > hi:
                flags[k] = HIGH
                newly += 1
    return newly


@njit(nogil=True, cache=True)
def mark_ranks(vals, flags, n, srt, m, dec):
    """Apply per-rank decisions ``dec[0:m]`` (KEPT, LOW or HIGH) of the sorted kept values.

    The kept values are ordered by (value, frame index): rank r of a run of
    equal values belongs to the (r - first rank of the run)-th kept frame, in
    frame order, holding that value. Only runs with a rejection are mapped.
    """
    r0 = 0
    while r0 < m:
        r1 = r0 + 1
        while r1 < m and srt[r1] == srt[r0]:
            r1 += 1
        busy = False
        for r in range(r0, r1):
            if dec[r] != KEPT:
                busy = True
                break
        if busy:
            value = srt[r0]
            r = r0
            # flags change as we go, so collect frames first by walking in order
            for k in range(n):
                if r >= r1:
                    break
                if flags[k] == KEPT and vals[k] == value:
                    if dec[r] != KEPT:
                        flags[k] = dec[r]
                    r += 1
        r0 = r1


@njit(nogil=True, cache=True)
def count_kept(flags, n):
    """Number of values flagged KEPT."""
    m = 0
    for k in range(n):
        if flags[k] == KEPT:
            m += 1
    return m


check_caches(__name__)  # drop caches compiled from other sources (see .._numba_cache)
