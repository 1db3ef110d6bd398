"""Generalized extreme studentized deviate rejection (Rosner 1983) on one pixel.

Up to ``k = floor(max_outliers * m)`` candidates are removed one at a time,
each the value farthest from the mean of those left: on sorted values that is
always the lowest or the highest one, so each step is O(1) with running sums.
The critical values lambda_i depend only on the number of values left and
alpha; they come precomputed in ``lam`` (:func:`esd_lambdas`). Candidates
1..j are rejected for the largest j with R_j > lambda_j.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from .._numba_cache import check_caches
from .select import HIGH, KEPT, LOW, mark_ranks, median_sorted, sorted_kept

__all__ = ["esd_lambdas", "esd_stage"]


def esd_lambdas(n: int, alpha: float) -> np.ndarray:
    """lambda for every count 0..n of values left (NaN where fewer than 3 are left)."""
    from scipy.stats import t as student_t

    lam = np.full(n + 1, np.nan)
    for ni in range(3, n + 1):
        t = student_t.ppf(1.0 - alpha / (2.0 * ni), ni - 2)
        lam[ni] = (ni - 1) * t / math.sqrt(ni * (ni - 2 + t * t))
    return lam


@njit(nogil=True, cache=True)
def esd_stage(vals, flags, n, srt, dec, m, presorted, max_outliers, lam):
    """One generalized-ESD pass over the kept values."""
    if not presorted:
        m = sorted_kept(vals, flags, n, srt)
    if m < 3:
        return
    k = int(math.floor(max_outliers * m))
    med0 = median_sorted(srt, 0, m)
    # running sums of x - shift (shift = median) keep the variance accurate
    s1 = 0.0
    s2 = 0.0
    for i in range(m):
        d = srt[i] - med0
        s1 += d
        s2 += d * d
    a = 0
    b = m
    n_reject = 0
    for i in range(1, k + 1):
        ni = b - a
        if ni < 3:
            break
        mean = s1 / ni
        var1 = (s2 - s1 * mean) / (ni - 1)
        std1 = math.sqrt(var1) if var1 > 0.0 else 0.0
        lo_dist = mean - (srt[a] - med0)
        hi_dist = (srt[b - 1] - med0) - mean
        if hi_dist >= lo_dist:
            dist = hi_dist
            d = srt[b - 1] - med0
            b -= 1
        else:
            dist = lo_dist
            d = srt[a] - med0
            a += 1
        r = dist / std1 if std1 > 0.0 else 0.0
        if r > lam[ni]:
            n_reject = i
        s1 -= d
        s2 -= d * d
    if n_reject == 0:
        return
    # replay the removals: the first n_reject candidates, as ranks of the sorted values
    for r in range(m):
        dec[r] = KEPT
    a = 0
    b = m
    s1 = 0.0
    for i in range(m):
        s1 += srt[i] - med0
    for _ in range(n_reject):
        ni = b - a
        mean = s1 / ni
        lo_dist = mean - (srt[a] - med0)
        hi_dist = (srt[b - 1] - med0) - mean
        if hi_dist >= lo_dist:
            r = b - 1
            b -= 1
        else:
            r = a
            a += 1
        s1 -= srt[r] - med0
        dec[r] = LOW if srt[r] < med0 else HIGH
    mark_ranks(vals, flags, n, srt, m, dec)


check_caches(__name__)  # drop caches compiled from other sources (see .._numba_cache)
