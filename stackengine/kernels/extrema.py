"""Extrema rejection (IRAF imcombine minmax, ccdproc's clip_extrema) on one pixel."""

from __future__ import annotations

from numba import njit

from .._numba_cache import check_caches
from .select import HIGH, KEPT, LOW, mark_ranks, sorted_kept

__all__ = ["extrema_stage"]


@njit(nogil=True, cache=True)
def extrema_stage(vals, flags, n, srt, dec, m, presorted, n_low, n_high):
    """Reject the ``n_low`` lowest and then the ``n_high`` highest kept values.

    The kept values are ordered by (value, frame index), so among equal
    values the earliest frame is the lowest (IRAF/ccdproc tie rule).
    """
    if not presorted:
        m = sorted_kept(vals, flags, n, srt)
    low = min(n_low, m)
    high = min(n_high, m - low)
    if low == 0 and high == 0:
        return
    for r in range(m):
        dec[r] = LOW if r < low else (HIGH if r >= m - high else KEPT)
    mark_ranks(vals, flags, n, srt, m, dec)


check_caches(__name__)  # drop caches compiled from other sources (see .._numba_cache)
