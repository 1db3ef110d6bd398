"""Extrema rejection (IRAF imcombine minmax, ccdproc's clip_extrema) on one pixel."""

from __future__ import annotations

from numba import njit

from .select import HIGH, LOW, mark_value, sorted_kept

__all__ = ["extrema_stage"]


@njit(nogil=True, cache=True)
def extrema_stage(vals, flags, n, srt, m, presorted, n_low, n_high):
    """Reject the ``n_low`` lowest and then the ``n_high`` highest kept values.

    Ties are broken by frame order (the earliest equal frame goes first).
    """
    if not presorted:
        m = sorted_kept(vals, flags, n, srt)
    low = min(n_low, m)
    high = min(n_high, m - low)
    for r in range(low):
        mark_value(vals, flags, n, srt[r], LOW)
    for r in range(m - high, m):
        mark_value(vals, flags, n, srt[r], HIGH)
