"""Combination of the kept values of one pixel, with its standard error.

``noise`` is the standard error of the combined value, estimated from the
spread of the kept values (population std, ddof 0, as ccdproc does):

* mean: ``std / sqrt(count)`` (ccdproc's average_combine uncertainty);
* median: ``sqrt(pi / 2) * std / sqrt(count)`` (the median's asymptotic
  efficiency for Gaussian data);
* sum: ``std * sqrt(count)`` (ccdproc's sum_combine uncertainty);
* min, max: ``std`` (no averaging takes place).

A pixel with no kept value gives NaN for both; so does a weighted mean whose
kept values all have weight 0 (count still says how many were kept).
"""

from __future__ import annotations

import math

from numba import njit

from .._numba_cache import check_caches
from .select import HIGH, KEPT, LOW, median_sorted, sorted_kept

__all__ = ["COMBINE_CODES", "combine_pixel", "store_pixel"]

COMBINE_MEAN = 0
COMBINE_MEDIAN = 1
COMBINE_SUM = 2
COMBINE_MIN = 3
COMBINE_MAX = 4

COMBINE_CODES = {
    "mean": COMBINE_MEAN,
    "median": COMBINE_MEDIAN,
    "sum": COMBINE_SUM,
    "min": COMBINE_MIN,
    "max": COMBINE_MAX,
}

_SQRT_HALF_PI = math.sqrt(math.pi / 2.0)


@njit(nogil=True, cache=True)
def combine_pixel(vals, flags, n, srt, combine, weights, use_weights):
    """Return ``(value, count, noise)`` over the values flagged KEPT, in frame order."""
    count = 0
    wsum = 0.0
    s = 0.0
    lo = math.inf
    hi = -math.inf
    for k in range(n):
        if flags[k] == KEPT:
            v = vals[k]
            w = weights[k] if use_weights else 1.0
            count += 1
            wsum += w
            s += w * v
            if v < lo:
                lo = v
            if v > hi:
                hi = v
    if count == 0:
        return math.nan, 0, math.nan
    if wsum <= 0.0:
        # every kept value has weight 0: nothing to average
        return math.nan, count, math.nan
    mean = s / wsum
    # spread about the (weighted) mean; weighted: effective-sample standard error
    ss = 0.0
    w2 = 0.0
    for k in range(n):
        if flags[k] == KEPT:
            w = weights[k] if use_weights else 1.0
            d = vals[k] - mean
            ss += w * d * d
            w2 += w * w
    var = ss / wsum
    std = math.sqrt(var)
    if use_weights:
        # standard error of a weighted mean: sqrt(var * sum(w^2)) / sum(w)
        se = math.sqrt(var * w2) / wsum
    else:
        se = std / math.sqrt(count)
    if combine == COMBINE_MEAN:
        return mean, count, se
    if combine == COMBINE_MEDIAN:
        m = sorted_kept(vals, flags, n, srt)
        return median_sorted(srt, 0, m), count, _SQRT_HALF_PI * std / math.sqrt(count)
    if combine == COMBINE_SUM:
        return s, count, std * math.sqrt(count)
    if combine == COMBINE_MIN:
        return lo, count, std
    return hi, count, std


@njit(nogil=True, cache=True)
def store_pixel(out, p, value, count, decisions, m, noise):
    """Write pixel ``p``'s five outputs into ``out`` (:func:`~.engine.out_rows`): the value, the
    kept count, the numbers of LOW and HIGH among ``decisions[0:m]`` (per-frame flags
    or per-rank decisions) and the noise."""
    low = 0
    high = 0
    for k in range(m):
        low += decisions[k] == LOW
        high += decisions[k] == HIGH
    out[0][p] = value
    out[1][p] = count
    out[2][p] = low
    out[3][p] = high
    out[4][p] = noise


check_caches(__name__)  # drop caches compiled from other sources (see .._numba_cache)
