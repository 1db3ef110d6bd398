"""Linear-fit clipping (PixInsight's LinearFit rejection) on one pixel.

Each iteration sorts nothing new: the kept values stay sorted in ``srt[0:m]``
and rejected ranks are compacted away. A straight line ``a + b * rank`` is
fitted by least squares to the sorted kept values; the mean absolute
deviation from it is the spread, and values farther than ``sigma_lower`` /
``sigma_upper`` of it below / above the line are rejected at once. A pass runs
only while at least 5 values are kept.
"""

from __future__ import annotations

from numba import njit

from .select import HIGH, KEPT, LOW, mark_ranks, sorted_kept

__all__ = ["MIN_KEPT", "linear_fit_stage"]

MIN_KEPT = 5


@njit(nogil=True, cache=True)
def _fit(srt, dec, total, m):
    """Least-squares ``a, b`` of ``y ~ a + b j`` over the kept values (``dec == KEPT``)
    of ``srt[0:total]``, ``j`` = the rank among the ``m`` kept ones; and the mean
    |residual|.

    One pass for the sums: the ranks are 0 .. m-1, so their mean and spread
    are known (``sum (j - jbar)^2 = m (m^2 - 1) / 12``) and ``sxy = sum j y -
    jbar sum y``, with ``y`` taken from a pivot of the run (a constant shift,
    which leaves the slope alone and keeps the sums small). A second pass
    sums the absolute residuals.
    """
    r_mean = (m - 1) / 2.0
    pivot = srt[total // 2]
    sy = 0.0
    sjy = 0.0
    j = 0
    for r in range(total):
        if dec[r] == KEPT:
            y = srt[r] - pivot
            sy += y
            sjy += j * y
            j += 1
    sxx = m * (m * m - 1.0) / 12.0
    b = (sjy - r_mean * sy) / sxx
    a = pivot + sy / m - b * r_mean
    dev = 0.0
    j = 0
    for r in range(total):
        if dec[r] == KEPT:
            dev += abs(srt[r] - (a + b * j))
            j += 1
    return a, b, dev / m


@njit(nogil=True, cache=True)
def linear_fit_stage(vals, flags, n, srt, dec, m, presorted, sigma_lower, sigma_upper, maxiters):
    """Iterated linear-fit rejection of the kept values (``maxiters < 0``: to convergence).

    The sorted values stay in place; ``dec`` holds each rank's decision across
    the iterations, and the ranks are mapped to frames once at the end (the
    same frames as mapping each iteration's rejections among the then kept
    values: the rank-to-frame order within a run of equal values is kept).
    """
    if not presorted:
        m = sorted_kept(vals, flags, n, srt)
    total = m
    for r in range(total):
        dec[r] = KEPT
    it = 0
    while m >= MIN_KEPT and (maxiters < 0 or it < maxiters):
        it += 1
        a, b, sigma = _fit(srt, dec, total, m)
        lo_cut = sigma_lower * sigma
        hi_cut = sigma_upper * sigma
        keep = 0
        j = 0
        for r in range(total):
            if dec[r] != KEPT:
                continue
            y = srt[r]
            fit = a + b * j
            j += 1
            if fit - y > lo_cut:
                dec[r] = LOW
            elif y - fit > hi_cut:
                dec[r] = HIGH
            else:
                keep += 1
        if keep == m:
            break
        m = keep
    if m < total:
        mark_ranks(vals, flags, n, srt, total, dec)
