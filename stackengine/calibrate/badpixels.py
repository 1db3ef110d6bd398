"""Bad pixels derived from the masters, as ccdproc's ``ccdmask`` does for flats.

* Hot pixels: master dark values above its median + ``hot_sigma`` x mad_std.
* Dead or low-response pixels: the master flat divided by a 7x7 moving median of
  itself (which follows vignetting and dust donuts) deviating by more than
  ``lsigma``/``hsigma`` x mad_std of that ratio (ccdmask's default 9 and 9), and
  flat pixels that are not positive or not finite.

The result is a boolean mask, true where a pixel is bad: those pixels are
missing in the calibrated lights (rejection and combination skip them, ``count``
shows it).
"""

from __future__ import annotations

import numpy as np
from astropy.stats import mad_std
from scipy.ndimage import median_filter

__all__ = ["bad_pixel_mask"]


def bad_pixel_mask(
    dark: np.ndarray | None = None,
    flat: np.ndarray | None = None,
    *,
    hot_sigma: float = 5.0,
    lsigma: float = 9.0,
    hsigma: float = 9.0,
    size: int = 7,
) -> np.ndarray:
    """The bad pixels of a master dark (hot) and a master flat (dead, low, high response).

    Parameters
    ----------
    dark, flat : numpy.ndarray, optional
        The masters (2-D, the same shape); at least one.
    hot_sigma : float
        Dark pixels above median + hot_sigma x mad_std are hot.
    lsigma, hsigma : float
        Flat pixels whose ratio to the local median is below 1 - lsigma x s or above
        1 + hsigma x s (s: mad_std of the ratio) are bad.
    size : int
        The moving median's box (pixels).

    Returns
    -------
    numpy.ndarray
        bool, true where bad.
    """
    if dark is None and flat is None:
        raise ValueError("bad_pixel_mask needs a master dark or a master flat")
    shape = (dark if dark is not None else flat).shape
    bad = np.zeros(shape, dtype=bool)
    if dark is not None:
        d = np.asarray(dark, dtype=np.float64)
        finite = np.isfinite(d)
        level, spread = np.median(d[finite]), mad_std(d[finite])
        bad |= ~finite | (d > level + hot_sigma * spread)
    if flat is not None:
        f = np.asarray(flat, dtype=np.float64)
        usable = np.isfinite(f) & (f > 0)
        filled = np.where(usable, f, np.median(f[usable]))
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = filled / median_filter(filled, size=size, mode="nearest")
        s = mad_std(ratio[usable])
        bad |= ~usable | (ratio < 1 - lsigma * s) | (ratio > 1 + hsigma * s)
    return bad
