"""Range rejection (PixInsight's range clipping, ccdproc's minmax_clip) on one pixel."""

from __future__ import annotations

from numba import njit

from .._numba_cache import check_caches
from .select import mark_outside

__all__ = ["minmax_stage"]


@njit(nogil=True, cache=True)
def minmax_stage(vals, flags, n, min_value, max_value):
    """Reject ``x < min_value`` (low) and ``x > max_value`` (high); +-inf disables a side."""
    mark_outside(vals, flags, n, min_value, max_value)


check_caches(__name__)  # drop caches compiled from other sources (see .._numba_cache)
