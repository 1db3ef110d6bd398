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

from .._numba_cache import check_caches
from .select import HIGH, KEPT, LOW, mark_ranks, sorted_kept

__all__ = ["MIN_KEPT", "linear_fit_ranks", "linear_fit_stage"]

MIN_KEPT = 5


@njit(nogil=True, cache=True, fastmath={"reassoc"})
def _fit(kv, ramp, m):
    """Least-squares ``a, b`` of ``y ~ a + b j`` over the kept values ``kv[0:m]``
    (sorted, ``j`` their rank 0 .. m-1), and the mean |residual|.

    One pass for the sums: the ranks are 0 .. m-1, so their mean and spread
    are known (``sum (j - jbar)^2 = m (m^2 - 1) / 12``) and ``sxy = sum j y -
    jbar sum y``, with ``y`` taken from a pivot of the run (a constant shift,
    which leaves the slope alone and keeps the sums small). A second pass
    sums the absolute residuals. Both are branch-free and vectorize: the ranks
    come from ``ramp`` = 0, 1, 2 ... as floats, not from converting the loop
    counter, and the sums may be reassociated (``fastmath={"reassoc"}``: partial
    sums in SIMD lanes, added at the end; the same order for every pixel of
    the same count, so results still do not depend on the tiling).
    """
    r_mean = (m - 1) / 2.0
    pivot = kv[m // 2]
    sy = 0.0
    sjy = 0.0
    for j in range(m):
        y = kv[j] - pivot
        sy += y
        sjy += ramp[j] * y
    sxx = m * (m * m - 1.0) / 12.0
    b = (sjy - r_mean * sy) / sxx
    a = pivot + sy / m - b * r_mean
    dev = 0.0
    for j in range(m):
        dev += abs(kv[j] - (a + b * ramp[j]))
    return a, b, dev / m


@njit(nogil=True, cache=True)
def linear_fit_ranks(srt, total, dec, sigma_lower, sigma_upper, maxiters, work):
    """Iterated linear-fit rejection of the sorted values ``srt[0:total]`` by rank.

    ``dec[0:total]`` gets each rank's decision (KEPT, LOW or HIGH); the values
    still kept are left packed, in order, in ``work[0]`` and their ranks in
    ``work[1]`` (``work`` is a (3, n) scratch array; ``work[2]`` holds 0, 1,
    2 ... so that the passes run over the kept values alone, branch-free).
    Returns the number kept.
    """
    m = total
    kv = work[0]
    kr = work[1]
    ramp = work[2]
    for r in range(total):
        dec[r] = KEPT
        kv[r] = srt[r]
        kr[r] = r
        ramp[r] = r
    it = 0
    while m >= MIN_KEPT and (maxiters < 0 or it < maxiters):
        it += 1
        a, b, sigma = _fit(kv, ramp, m)
        lo_cut = sigma_lower * sigma
        hi_cut = sigma_upper * sigma
        keep = 0
        for j in range(m):
            y = kv[j]
            fit = a + b * ramp[j]
            if fit - y > lo_cut:
                dec[int(kr[j])] = LOW
            elif y - fit > hi_cut:
                dec[int(kr[j])] = HIGH
            else:
                kv[keep] = y
                kr[keep] = kr[j]
                keep += 1
        if keep == m:
            break
        m = keep
    return m


@njit(nogil=True, cache=True)
def linear_fit_stage(
    vals, flags, n, srt, dec, m, presorted, sigma_lower, sigma_upper, maxiters, work
):
    """Iterated linear-fit rejection of the kept values (``maxiters < 0``: to convergence).

    The sorted values stay in place; ``dec`` holds each rank's decision across
    the iterations (:func:`linear_fit_ranks`), and the ranks are mapped to
    frames once at the end (the same frames as mapping each iteration's
    rejections among the then kept values: the rank-to-frame order within a
    run of equal values is kept).
    """
    if not presorted:
        m = sorted_kept(vals, flags, n, srt)
    kept = linear_fit_ranks(srt, m, dec, sigma_lower, sigma_upper, maxiters, work)
    if kept < m:
        mark_ranks(vals, flags, n, srt, m, dec)


check_caches(__name__)  # drop caches compiled from other sources (see .._numba_cache)
