"""The calibration of a strip of raw frames, in one pass (numba).

``out = (raw - overscan_row - bias - dark * scale) * inverse_flat`` for every
frame, row and column, computed in float64 and stored as float32. The inverse
flat is the flat normalized by its mean, inverted once per strip, with NaN where
the pixel is missing (a dead flat pixel, a bad pixel): the product is then NaN.
One pass instead of numpy's four (copy, three subtractions, a division) keeps
the strip in the cache; see :mod:`stackengine.calibrate.model` for the rules.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from .._numba_cache import check_caches

__all__ = ["calibrate_strip"]


@njit(nogil=True, cache=True)
def calibrate_strip(raw, overscan, bias, dark, scale, inverse_flat, out):  # pragma: no cover
    """Calibrate ``raw`` (frames, rows, cols) into ``out`` (float32, same shape).

    ``overscan`` (frames, rows), ``bias``, ``dark``, ``inverse_flat`` (rows, cols)
    and ``scale`` (frames,) are float64; absent terms are zeros (ones for the flat).
    """
    n, h, w = raw.shape
    for f in range(n):
        s = scale[f]
        for r in range(h):
            level = overscan[f, r]
            for c in range(w):
                value = np.float64(raw[f, r, c]) - level - bias[r, c] - dark[r, c] * s
                out[f, r, c] = np.float32(value * inverse_flat[r, c])


check_caches(__name__)  # drop caches compiled from other sources (see .._numba_cache)
