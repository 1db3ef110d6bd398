"""Helpers of star detection (:mod:`.stars`): the noise of the filtered image, and the
shape cuts (saturation, sharpness, size, plateaus)."""

from __future__ import annotations

import math

import numpy as np
import sep
from numba import njit

from .._numba_cache import check_caches
from .fast import max_count, median_of, native

__all__ = [
    "filtered_noise",
    "flat_topped",
    "half_light_fwhm",
    "neighbours",
    "saturation_level",
    "sharper_than",
    "weighted_median",
]

_PLATEAU_PIXELS = 4  # at least this many pixels at the image maximum make a plateau
_NOISE_BLOCK, _NOISE_BLOCKS = 128, 16  # filtered-noise sample: blocks of this size, count
_MAD_STD = 1.482602218505602


def saturation_level(image: np.ndarray) -> float | None:
    """The image maximum if at least 4 pixels share it (a clipped plateau), else None."""
    top, n = max_count(image)
    return top if n >= _PLATEAU_PIXELS else None


def flat_topped(data: np.ndarray, xp: np.ndarray, yp: np.ndarray, fwhm: np.ndarray) -> np.ndarray:
    """Stars whose peak is a plateau: >= 5 pixels of the 5 x 5 box within a band of the peak.

    An unsaturated star has at most 4 pixels (centred on a pixel corner) that
    close to its peak; the band, min(2 %, 1.4 / fwhm**2) of the
    (background-subtracted) peak, stays below the drop from the peak to the
    next pixel of a Gaussian of that fwhm.
    """
    h, w = data.shape
    band = np.minimum(0.02, 1.4 / np.maximum(np.nan_to_num(fwhm, nan=1.0), 1.0) ** 2)
    d = np.arange(-2, 3)
    yy = np.clip(yp[:, None, None] + d[None, :, None], 0, h - 1)
    xx = np.clip(xp[:, None, None] + d[None, None, :], 0, w - 1)
    box = data[yy, xx].reshape(len(xp), -1)
    peak = data[yp, xp].astype(np.float64)
    near = box >= (peak * (1.0 - band))[:, None]
    return (peak > 0) & (np.count_nonzero(near, axis=1) >= 5)


def half_light_fwhm(data, x, y, rmax, mask) -> np.ndarray:
    """Twice sep's half-light radius within ``rmax`` (NaN where it fails)."""
    if not x.size:
        return np.empty(0)
    r, flag = sep.flux_radius(data, x, y, np.full(x.size, rmax), 0.5, mask=mask, subpix=3)
    fwhm = 2.0 * np.asarray(r, dtype=np.float64)
    fwhm[(flag != 0) | ~(fwhm > 0) | (fwhm >= 2.0 * rmax)] = np.nan
    return fwhm


def weighted_median(values: np.ndarray, weights: np.ndarray) -> float:
    """Median of ``values`` with non-negative ``weights`` (the lower one at a tie)."""
    order = np.argsort(values, kind="stable")
    cum = np.cumsum(weights[order])
    if not cum.size or not cum[-1] > 0:
        return float(np.median(values)) if values.size else math.nan
    return float(values[order][np.searchsorted(cum, 0.5 * cum[-1])])


def neighbours(data: np.ndarray, xp: np.ndarray, yp: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(peak, mean of the 8 pixels around it) of the background-subtracted image.

    Their ratio is about 0.4 for a Gaussian star of fwhm 2 px and 0.65 at
    fwhm 3; a hot pixel or single cosmic-ray hit gives ~0, a 2- or 3-pixel
    track 0.12-0.25.
    """
    h, w = data.shape
    total = np.zeros(xp.size)
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            total += data[np.clip(yp + dy, 0, h - 1), np.clip(xp + dx, 0, w - 1)]
    peak = data[yp, xp].astype(np.float64)
    return peak, (total - peak) / 8.0


def sharper_than(peak, around, ratio, rms) -> np.ndarray:
    """Objects whose 8 neighbours are significantly (3 sigma) fainter than ``ratio x peak``."""
    return around + 3.0 * rms / math.sqrt(8.0) < ratio * peak


def filtered_noise(data: np.ndarray, k1: np.ndarray) -> float:
    """Robust noise of the background-subtracted image after the detection filter.

    Measured (mad_std) on up to 16 blocks of 128 x 128 pixels spread over the
    frame, so that noise correlated by registration or read-out is included.
    """
    h, w = data.shape
    b = min(_NOISE_BLOCK, h, w)
    n = max(1, int(math.sqrt(_NOISE_BLOCKS)))
    ys = np.unique(np.linspace(0, h - b, n).astype(int))
    xs = np.unique(np.linspace(0, w - b, n).astype(int))
    k = k1 / k1.sum()
    edge = min(len(k1) // 2, (b - 1) // 2)
    v = _filtered_blocks(native(data), ys, xs, b, k, edge)
    v = v[v != 0.0]  # masked pixels were zeroed
    if not v.size:
        return 0.0
    return _MAD_STD * median_of(v, median_of(v)[0])[0]


@njit(cache=True, nogil=True)
def _filtered_blocks(data, ys, xs, b, k, edge):  # pragma: no cover - compiled
    """The separable filter ``k`` applied to each b x b block at (ys, xs), its edge cut.

    Values within ``k.size // 2`` of a block's edge would need pixels beyond it
    (mirrored): with ``edge`` that wide they are cut, so none is computed.
    """
    r = k.size // 2
    inner = b - 2 * edge
    out = np.empty(ys.size * xs.size * inner * inner)
    tmp = np.empty((b, b))
    m = 0
    for y0 in ys:
        for x0 in xs:
            for i in range(edge, b - edge):  # along y, the rows kept
                for j in range(b):
                    s = 0.0
                    for t in range(-r, r + 1):
                        ii = min(max(i + t, 0), b - 1)  # (only when edge < r)
                        s += k[t + r] * np.float64(data[y0 + ii, x0 + j])
                    tmp[i, j] = s
            for i in range(edge, b - edge):  # along x
                for j in range(edge, b - edge):
                    s = 0.0
                    for t in range(-r, r + 1):
                        jj = min(max(j + t, 0), b - 1)
                        s += k[t + r] * tmp[i, jj]
                    out[m] = s
                    m += 1
    return out


check_caches(__name__)  # drop caches compiled from other sources (see .._numba_cache)
