"""The fast block kernel for an unweighted linear-fit rejection.

Linear-fit clipping decides by rank: the sorted values are fitted against
their ranks and the ranks far from the line are rejected
(:func:`stackengine.kernels.linear_fit.linear_fit_ranks`). Without weights the
combination only needs the values kept, not which frames they came from, so
this kernel, like the window kernel (:mod:`stackengine.kernels.window`),
never maps ranks back to frames:

1. load a group of pixels into a (frames x group) buffer and sort all columns
   at once with the comparator network (as the window kernel does);
2. run the linear-fit iterations on a float64 copy of each pixel's sorted
   column, which leaves the kept values packed in order;
3. combine those (mean, median, sum, min or max, and the noise) and count the
   rejected ranks.

The mean is summed over the kept values in sorted order (the general kernel
sums in frame order), so the two can differ in the last bit of a float64
mean; the float32 image is the same to rounding.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from .._numba_cache import check_caches
from .combine import (
    COMBINE_MAX,
    COMBINE_MEAN,
    COMBINE_MEDIAN,
    COMBINE_MIN,
    COMBINE_SUM,
    store_pixel,
)
from .linear_fit import linear_fit_ranks
from .select import median_sorted
from .window import PAD, load_sorted

__all__ = ["combine_sorted", "reduce_block_linear_fit"]

_SQRT_HALF_PI = math.sqrt(math.pi / 2.0)


@njit(nogil=True, cache=True)
def combine_sorted(kv, m, combine):
    """``(value, noise)`` of the sorted kept values ``kv[0:m]`` (m > 0), by the rules of
    :mod:`stackengine.kernels.combine`."""
    total = 0.0
    for j in range(m):
        total += kv[j]
    mean = total / m
    ss = 0.0
    for j in range(m):
        d = kv[j] - mean
        ss += d * d
    std = math.sqrt(ss / m)
    if combine == COMBINE_MEAN:
        return mean, std / math.sqrt(m)
    if combine == COMBINE_MEDIAN:
        return median_sorted(kv, 0, m), _SQRT_HALF_PI * std / math.sqrt(m)
    if combine == COMBINE_SUM:
        return total, std * math.sqrt(m)
    if combine == COMBINE_MIN:
        return kv[0], std
    if combine == COMBINE_MAX:
        return kv[m - 1], std
    return math.nan, math.nan


@njit(nogil=True, cache=True)
def reduce_block_linear_fit(
    block, pairs, prm, combine, fallback, buf, scale, offset, grad, geom, out
):
    """Linear-fit clipping (one stage, parameters ``prm``) and an unweighted combination.

    Parameters are those of :func:`stackengine.kernels.window.reduce_block_window`,
    with ``prm`` the stage's parameter row (sigma_lower, sigma_upper,
    maxiters). Fills and returns ``out`` (:func:`~.engine.out_rows`).
    """
    n = block.shape[0]
    npix = block.shape[1]
    group = buf.shape[1] - PAD
    raw = np.empty((n, group), dtype=np.float64)
    srt = np.empty(n, dtype=np.float64)
    dec = np.empty(n, dtype=np.int8)
    work = np.empty((3, n), dtype=np.float64)
    cnt = np.empty(group, dtype=np.int32)
    sigma_lower = prm[0]
    sigma_upper = prm[1]
    maxiters = np.int64(prm[2])
    for g0 in range(0, npix, group):
        gw = min(group, npix - g0)
        load_sorted(block, g0, gw, raw, buf, cnt, scale, offset, grad, geom, pairs)
        for g in range(gw):
            m = cnt[g]
            for k in range(m):
                srt[k] = buf[k, g]
            kept = linear_fit_ranks(srt, m, dec, sigma_lower, sigma_upper, maxiters, work)
            value = math.nan
            noise = math.nan
            if kept > 0:
                value, noise = combine_sorted(work[0], kept, combine)
            elif fallback and m > 0:
                value = median_sorted(srt, 0, m)
            store_pixel(out, g0 + g, value, kept, dec, m, noise)
    return out


check_caches(__name__)  # drop caches compiled from other sources (see .._numba_cache)
