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
def _fit(srt, m):
    """Least-squares ``a, b`` of ``srt[r] ~ a + b r`` and the mean |residual|."""
    r_mean = (m - 1) / 2.0
    y_mean = 0.0
    for r in range(m):
        y_mean += srt[r]
    y_mean /= m
    sxy = 0.0
    sxx = 0.0
    for r in range(m):
        dr = r - r_mean
        sxy += dr * (srt[r] - y_mean)
        sxx += dr * dr
    b = sxy / sxx
    a = y_mean - b * r_mean
    dev = 0.0
    for r in range(m):
        dev += abs(srt[r] - (a + b * r))
    return a, b, dev / m


@njit(nogil=True, cache=True)
def linear_fit_stage(vals, flags, n, srt, dec, m, presorted, sigma_lower, sigma_upper, maxiters):
    """Iterated linear-fit rejection of the kept values (``maxiters < 0``: to convergence)."""
    if not presorted:
        m = sorted_kept(vals, flags, n, srt)
    it = 0
    while m >= MIN_KEPT and (maxiters < 0 or it < maxiters):
        it += 1
        a, b, sigma = _fit(srt, m)
        lo_cut = sigma_lower * sigma
        hi_cut = sigma_upper * sigma
        keep = 0
        for r in range(m):
            y = srt[r]
            fit = a + b * r
            if fit - y > lo_cut:
                dec[r] = LOW
            elif y - fit > hi_cut:
                dec[r] = HIGH
            else:
                dec[r] = KEPT
                keep += 1
        if keep == m:
            break
        mark_ranks(vals, flags, n, srt, m, dec)
        j = 0
        for r in range(m):
            if dec[r] == KEPT:
                srt[j] = srt[r]
                j += 1
        m = keep
