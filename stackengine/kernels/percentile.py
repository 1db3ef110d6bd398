"""Percentile clipping (PixInsight, Siril) on one pixel: one pass around the median."""

from __future__ import annotations

from numba import njit

from .._numba_cache import check_caches
from .select import HIGH, KEPT, LOW, median_sorted, sorted_kept

__all__ = ["percentile_stage"]


@njit(nogil=True, cache=True)
def percentile_stage(vals, flags, n, srt, m, presorted, percentile_low, percentile_high):
    """Reject ``(med - x)/med > percentile_low`` (low) and ``(x - med)/med > percentile_high``."""
    if not presorted:
        m = sorted_kept(vals, flags, n, srt)
    if m == 0:
        return
    med = median_sorted(srt, 0, m)
    if med == 0.0:
        return
    for k in range(n):
        if flags[k] == KEPT:
            x = vals[k]
            if (med - x) / med > percentile_low:
                flags[k] = LOW
            elif (x - med) / med > percentile_high:
                flags[k] = HIGH


check_caches(__name__)  # drop caches compiled from other sources (see .._numba_cache)
