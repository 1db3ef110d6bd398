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

from numba import njit

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
    a, b = sigma_window(srt, 0, m, sigma_lower, sigma_upper, maxiters, center, spread)
    mark_window(vals, flags, n, srt, a, b, m)
