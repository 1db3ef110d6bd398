"""Iterated sigma clipping and winsorized sigma clipping on one pixel.

The kept values are sorted once; because clipping by a lower and an upper
bound always keeps a contiguous run of the sorted values, every iteration only
shrinks a window ``srt[a:b]`` and never sorts again.

Winsorized sigma clipping (PixInsight, Siril) is the same iteration with the
median as center and a winsorized spread: starting from mad_std, the values
are clamped to ``median +- 1.5 s`` and ``s = 1.134 * std(clamped)`` is
repeated until it changes by at most 5e-4 relative (50 rounds at most).
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from .._numba_cache import check_caches
from .select import (
    MAD_TO_STD,
    mad_sorted,
    mark_outside,
    mean_std_sorted,
    median_sorted,
    sorted_kept,
)

__all__ = [
    "CENTER_MEDIAN",
    "CENTER_MEAN",
    "SPREAD_MAD_STD",
    "SPREAD_STD",
    "SPREAD_WINSORIZED",
    "median_mad_columns",
    "sigma_first_columns",
    "sigma_stage",
    "sigma_window",
    "winsorized_std",
]

CENTER_MEDIAN = 0
CENTER_MEAN = 1
SPREAD_MAD_STD = 0
SPREAD_STD = 1
SPREAD_WINSORIZED = 2

WINSOR_CLAMP = 1.5
WINSOR_FACTOR = 1.134
WINSOR_TOL = 5e-4
WINSOR_ROUNDS = 50


@njit(nogil=True, cache=True)
def winsorized_std(srt, a, b, med, s):
    """Iterate ``s = 1.134 * std(clamp(x, med -+ 1.5 s))`` over ``srt[a:b]`` to convergence."""
    length = b - a
    for _ in range(WINSOR_ROUNDS):
        lo = med - WINSOR_CLAMP * s
        hi = med + WINSOR_CLAMP * s
        total = 0.0
        for i in range(a, b):
            total += min(max(srt[i], lo), hi)
        mean = total / length
        ss = 0.0
        for i in range(a, b):
            d = min(max(srt[i], lo), hi) - mean
            ss += d * d
        s_new = WINSOR_FACTOR * math.sqrt(ss / length)
        done = abs(s_new - s) <= WINSOR_TOL * s
        s = s_new
        if done:
            break
    return s


@njit(nogil=True, cache=True)
def center_spread(srt, a, b, center, spread):
    """Center and spread of the sorted window ``srt[a:b]`` by the chosen estimators."""
    med = 0.0
    if center == CENTER_MEDIAN or spread != SPREAD_STD:
        med = median_sorted(srt, a, b)
    mean = 0.0
    std = 0.0
    if center == CENTER_MEAN or spread == SPREAD_STD:
        mean, std = mean_std_sorted(srt, a, b)
    c = med if center == CENTER_MEDIAN else mean
    if spread == SPREAD_STD:
        s = std
    else:
        s = mad_sorted(srt, a, b, med) * MAD_TO_STD
        if spread == SPREAD_WINSORIZED:
            s = winsorized_std(srt, a, b, med, s)
    return c, s


@njit(nogil=True, cache=True)
def clip_window(srt, a, b, lo, hi):
    """Shrink ``srt[a:b]`` to the values inside ``[lo, hi]`` (inclusive)."""
    while a < b and srt[a] < lo:
        a += 1
    while b > a and srt[b - 1] > hi:
        b -= 1
    return a, b


@njit(nogil=True, cache=True)
def mark_window(vals, flags, n, srt, a, b, m):
    """Flag every kept value outside the final window ``srt[a:b]`` of ``srt[0:m]``."""
    if a == 0 and b == m:
        return
    if b > a:
        mark_outside(vals, flags, n, srt[a], srt[b - 1])
    elif a < m:
        # empty window: srt[:a] went low, srt[a:] went high
        mark_outside(vals, flags, n, srt[a], -math.inf)
    else:
        mark_outside(vals, flags, n, math.inf, math.inf)


@njit(nogil=True, cache=True)
def sigma_window(srt, a, b, sigma_lower, sigma_upper, maxiters, center, spread):
    """Iterated sigma clipping of the sorted window ``srt[a:b]``; return the final window.

    ``maxiters < 0`` iterates until no new value is rejected.
    """
    it = 0
    while b > a and (maxiters < 0 or it < maxiters):
        it += 1
        c, s = center_spread(srt, a, b, center, spread)
        lo = c - s * sigma_lower
        hi = c + s * sigma_upper
        na, nb = clip_window(srt, a, b, lo, hi)
        if na == a and nb == b:
            break
        a = na
        b = nb
    return a, b


@njit(nogil=True, cache=True)
def sigma_stage(
    vals, flags, n, srt, m, presorted, sigma_lower, sigma_upper, maxiters, center, spread
):
    """Iterated, cumulative sigma clipping of the kept values of one pixel.

    ``srt[0:m]`` already holds the kept values sorted when ``presorted``.
    ``maxiters < 0`` iterates until no new value is rejected.
    """
    if not presorted:
        m = sorted_kept(vals, flags, n, srt)
    a, b = sigma_window(srt, np.int64(0), m, sigma_lower, sigma_upper, maxiters, center, spread)
    mark_window(vals, flags, n, srt, a, b, m)


# ------------------------------------------------- the first iteration, across a group
#
# Most pixels keep every value in the first iteration of sigma clipping (3 sigma,
# median and mad_std, on Gaussian noise: ~80% of the pixels of 10 to 50 frames),
# after which the iteration stops. For the median and mad_std, that first iteration only needs order
# statistics of the sorted columns, so it runs for a whole group of pixels at once,
# one row at a time, with the same float64 operations as the per-pixel path
# (:func:`~.select.median_sorted`, :func:`~.select.mad_sorted`, :func:`sigma_window`):
# the decision, and so every output, is bit-identical.


@njit(nogil=True, cache=True)
def _kth_columns(buf, gw, med, kk, res):
    """``res[g]``: the ``kk``-th smallest (1-based) of column g's deviations from
    ``med[g]``, i.e. of the runs ``med - buf[q-1-t]`` and ``buf[q+t] - med`` (q = n//2).

    The kk smallest take i values from the left run and kk - i from the right;
    the answer is the smallest, over the splits i, of the larger of the two runs'
    last values taken. Every column has the same n, so every split is a row
    operation across the group.
    """
    n = buf.shape[0]
    q = n // 2
    for g in range(gw):
        res[g] = math.inf
    for i in range(max(0, kk - (n - q)), min(kk, q) + 1):
        if i == 0:  # all from the right run
            rr = buf[q + kk - 1]
            for g in range(gw):
                d = rr[g] - med[g]
                res[g] = d if d < res[g] else res[g]
        elif i == kk:  # all from the left run
            rl = buf[q - kk]
            for g in range(gw):
                d = med[g] - rl[g]
                res[g] = d if d < res[g] else res[g]
        else:
            rl = buf[q - i]
            rr = buf[q + kk - 1 - i]
            for g in range(gw):
                dl = med[g] - rl[g]
                dr = rr[g] - med[g]
                d = dl if dl > dr else dr
                res[g] = d if d < res[g] else res[g]


@njit(nogil=True, cache=True)
def median_mad_columns(buf, gw, med, mad, tmp):
    """Median and MAD of every column ``buf[:, g]`` (g < gw), each sorted and all
    finite, as :func:`~.select.median_sorted` and :func:`~.select.mad_sorted` compute
    them; ``tmp`` is scratch space of the size of ``mad``."""
    n = buf.shape[0]
    q = n // 2
    upper = buf[q]
    if n % 2 == 1:
        for g in range(gw):
            med[g] = upper[g]
        _kth_columns(buf, gw, med, q + 1, mad)
        return
    lower = buf[q - 1]
    for g in range(gw):
        med[g] = (np.float64(lower[g]) + np.float64(upper[g])) / 2.0
    _kth_columns(buf, gw, med, q + 1, tmp)
    _kth_columns(buf, gw, med, q, mad)
    for g in range(gw):
        mad[g] = (mad[g] + tmp[g]) / 2.0


@njit(nogil=True, cache=True)
def sigma_first_columns(buf, gw, cnt, stage_params, start, work):
    """Run the first iteration of the leading median/mad_std sigma stages for a group.

    Only columns without missing values (``cnt[g] == n``, sorted) are decided
    here; the others get ``start[g] = 0``. For a full column, ``start[g]``
    becomes the number of leading stages that kept all its values (each stopped
    after its first iteration, the window unchanged); when that is less than
    the number of stages tried, ``work[2, g]`` and ``work[3, g]`` are the bounds
    ``lo``/``hi`` of the first iteration of stage ``start[g]``, which rejected
    something. ``work`` is float64 scratch space, shape (4, >= gw).

    Returns how many stages were tried: those before the first one of another
    kind or with ``maxiters == 0``.
    """
    n = buf.shape[0]
    for g in range(gw):
        start[g] = 0
    tried = 0
    while tried < stage_params.shape[0]:
        prm = stage_params[tried]
        if (
            np.int64(prm[2]) == 0
            or np.int64(prm[3]) != CENTER_MEDIAN
            or np.int64(prm[4]) != SPREAD_MAD_STD
        ):
            break
        tried += 1
    if tried == 0 or n == 0:
        return 0
    med = work[0]
    mad = work[1]
    blo = work[2]
    bhi = work[3]
    median_mad_columns(buf, gw, med, mad, blo)
    first = buf[0]
    last = buf[n - 1]
    for s in range(tried):
        sigma_lower = stage_params[s, 0]
        sigma_upper = stage_params[s, 1]
        for g in range(gw):
            c = med[g]
            sd = mad[g] * MAD_TO_STD
            lo = c - sd * sigma_lower
            hi = c + sd * sigma_upper
            here = (cnt[g] == n) & (start[g] == s)
            keep = here & ~(first[g] < lo) & ~(last[g] > hi)
            start[g] += np.int32(keep)
            # the bounds of the stage where the column first rejects something
            blo[g] = lo if here else blo[g]
            bhi[g] = hi if here else bhi[g]
    return tried


check_caches(__name__)  # drop caches compiled from other sources (see .._numba_cache)
