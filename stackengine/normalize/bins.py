"""Background samples for gradient models: star masks and per-bin medians.

As in NormalizeScaleGradient (J. Murphy), the gradient comes from background
samples that avoid stars and their scattered light: :func:`star_mask` marks
discs around stars, wider for brighter ones; :func:`background_bins` takes on
one frame alone the median of the unmasked pixels of each bin, ``B_i``
(:mod:`.gradient` then fits a smooth surface through ``k_i B_i - B_r``).
Coordinates are frame pixel indices ``(y, x)``. Pure numpy plus one numba kernel.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numba import njit

from .._numba_cache import check_caches
from ..errors import ParameterError
from .fast import bin_medians

__all__ = ["BinSamples", "background_bins", "star_mask"]


def star_mask(
    shape: tuple[int, int],
    x: np.ndarray,
    y: np.ndarray,
    flux: np.ndarray,
    fwhm: float,
    *,
    base_radius: float | None = None,
    growth: float = 0.25,
    flux_ref: float | None = None,
    max_radius: float | None = None,
    step: int = 1,
) -> np.ndarray:
    """Boolean mask, True within a brightness-dependent radius of each star.

    Star ``i`` masks the disc of radius
    ``r_i = min(base_radius * max(flux_i / flux_ref, 1) ** growth, max_radius)``.
    If a star's wing falls as ``r**-p``, the radius where it drops to the level
    a ``flux_ref`` star has at ``base_radius`` grows as ``flux**(1/p)``;
    ``growth = 1/4`` is ``p = 4``, a Moffat wing with ``beta = 2`` (seeing wings
    have ``beta ~ 2.5-4.5``; aureoles ``p ~ 2-3``, bounded by ``max_radius``):
    10**4 times ``flux_ref`` masks 10 base radii. Discs are drawn star by star.

    Parameters
    ----------
    shape : tuple of int
        ``(ny, nx)`` of the image to mask (possibly binned).
    x, y, flux : array_like
        Star centres (frame pixels; non-finite ones skipped) and fluxes (any
        unit; non-finite or non-positive ones get ``base_radius``).
    fwhm : float
        Stellar FWHM, frame pixels (> 0).
    base_radius, growth, flux_ref, max_radius : float, optional
        The rule above; defaults ``2.5 * fwhm``, 1/4, the faintest positive
        flux, ``0.1 * max(ny, nx) * step`` (radii in frame pixels).
    step : int, optional
        The image is a ``step x step`` block average of the frame: its pixel
        ``i`` covers frame pixels ``step*i .. step*i + step - 1``, centre
        ``step*i + (step - 1)/2``.

    Returns
    -------
    numpy.ndarray
        ``bool`` array of ``shape``, True where a pixel centre is within ``r_i``.
    """
    ny, nx = (int(n) for n in shape)
    if not (np.isfinite(fwhm) and fwhm > 0):
        raise ParameterError(f"star_mask: fwhm must be a positive number, got {fwhm!r}")
    step = _check_step(step)
    x, y, flux = (np.atleast_1d(np.asarray(a, dtype=np.float64)).ravel() for a in (x, y, flux))
    if not x.size == y.size == flux.size:
        raise ParameterError("star_mask: x, y and flux must have the same length")
    base = 2.5 * fwhm if base_radius is None else float(base_radius)
    cap = 0.1 * max(ny, nx) * step if max_radius is None else float(max_radius)
    good = np.isfinite(flux) & (flux > 0)
    if flux_ref is None:
        flux_ref = float(flux[good].min()) if good.any() else 1.0
    ratio = np.where(good, flux / flux_ref, 1.0)
    radius = np.minimum(base * np.maximum(ratio, 1.0) ** growth, cap) / step
    off = 0.5 * (step - 1)  # frame coordinate c -> mask coordinate (c - off) / step
    cy, cx = (y - off) / step, (x - off) / step
    mask = np.zeros((ny, nx), dtype=bool)
    keep = np.isfinite(cy) & np.isfinite(cx) & (radius >= 0)
    _discs(mask, cy[keep], cx[keep], radius[keep])
    return mask


@njit(cache=True, nogil=True)
def _discs(mask, cy, cx, radius):  # pragma: no cover - compiled
    """Set the pixels whose centres lie within ``radius`` of each centre."""
    ny, nx = mask.shape
    for k in range(cy.size):
        yc, xc, r = cy[k], cx[k], radius[k]
        y0, y1 = max(math.ceil(yc - r), 0), min(math.floor(yc + r), ny - 1)
        x0, x1 = max(math.ceil(xc - r), 0), min(math.floor(xc + r), nx - 1)
        for i in range(y0, y1 + 1):
            dy2 = (i - yc) ** 2
            for j in range(x0, x1 + 1):
                if dy2 + (j - xc) ** 2 <= r * r:
                    mask[i, j] = True


@dataclass(frozen=True)
class BinSamples:
    """Background medians on a regular grid of bins (see :func:`background_bins`).

    Attributes
    ----------
    yc, xc : numpy.ndarray
        Bin-centre coordinates in full-resolution pixels, shapes ``(gy,)``, ``(gx,)``.
    value : numpy.ndarray
        ``(gy, gx)`` or ``(gy, gx, c)`` float64 medians; NaN where unusable.
    count : numpy.ndarray
        Usable pixels per bin, same shape as ``value``.
    bin_size, step : int
        Bin side in pixels of the measured image, and that image's binning step.
    """

    yc: np.ndarray
    xc: np.ndarray
    value: np.ndarray
    count: np.ndarray
    bin_size: int
    step: int

    def mesh(self) -> tuple[np.ndarray, np.ndarray]:
        """Bin-centre coordinates ``(Y, X)`` as two ``(gy, gx)`` arrays."""
        return np.meshgrid(self.yc, self.xc, indexing="ij")


def background_bins(
    image: np.ndarray,
    *,
    bin_size: int,
    mask: np.ndarray | None,
    step: int = 1,
    min_fraction: float = 0.5,
) -> BinSamples:
    """Median background of the unmasked pixels in each ``bin_size`` square.

    Bin ``(p, q)`` covers image rows ``p*bin_size .. (p+1)*bin_size - 1`` and the
    same columns (the last bin of an axis may be partial). Its value is the
    exact median (mean of the two middle values for an even count) of its
    finite, unmasked pixels, or NaN when fewer than
    ``min_fraction * bin_size**2`` remain (so thin partial edge bins are dropped).
    A plain median, not a clipped one: a cosmic ray among ``n`` pixels shifts
    it by about ``1.25 sigma / n``; ``mask`` removes stars. One selection per
    bin (:func:`.fast.bin_medians`, numba): about 0.01 s for 2048 x 2048.

    Parameters
    ----------
    image : numpy.ndarray
        ``(ny, nx)`` or ``(ny, nx, c)``: a frame or its ``step x step`` block
        average. Channels are measured separately with the same mask.
    bin_size : int
        Bin side in pixels of ``image`` (``bin_size * step`` frame pixels).
    mask : numpy.ndarray or None
        ``(ny, nx)`` bool, True for pixels to ignore (e.g. from :func:`star_mask`).
    step : int, optional
        Binning step: image pixel ``i`` has its centre at frame coordinate
        ``step*i + (step-1)/2`` (for a decimated image, off by ``(step-1)/2``).
    min_fraction : float, optional
        Minimum usable fraction of a full bin, in ``(0, 1]``.

    Returns
    -------
    BinSamples
        Centres (frame pixels; the centre of the bin's in-image pixels), values
        and usable counts.
    """
    image = np.asarray(image)
    if image.ndim not in (2, 3):
        raise ParameterError(f"background_bins: image must be 2-D or 3-D, got {image.shape}")
    bin_size, step = int(bin_size), _check_step(step)
    if bin_size < 1:
        raise ParameterError(f"background_bins: bin_size must be >= 1, got {bin_size}")
    if not 0.0 < min_fraction <= 1.0:
        raise ParameterError(f"background_bins: min_fraction must be in (0, 1], got {min_fraction}")
    ny, nx = image.shape[:2]
    if mask is not None:
        mask = np.asarray(mask, dtype=bool)
        if mask.shape != (ny, nx):
            raise ParameterError(f"background_bins: mask shape {mask.shape} != image {(ny, nx)}")
    gy, gx = -(-ny // bin_size), -(-nx // bin_size)
    values, counts = [], []
    for plane in [image] if image.ndim == 2 else np.moveaxis(image, -1, 0):
        val, cnt = bin_medians(plane, mask, bin_size)
        val[cnt < min_fraction * bin_size * bin_size] = np.nan
        values.append(val)
        counts.append(cnt)
    stack = (lambda a: a[0]) if image.ndim == 2 else (lambda a: np.stack(a, axis=-1))

    def centres(n: int, g: int) -> np.ndarray:
        lo = np.arange(g) * bin_size
        hi = np.minimum(lo + bin_size, n) - 1
        return step * 0.5 * (lo + hi) + 0.5 * (step - 1)

    return BinSamples(
        centres(ny, gy), centres(nx, gx), stack(values), stack(counts), bin_size, step
    )


def _check_step(step: int) -> int:
    if int(step) != step or int(step) < 1:
        raise ParameterError(f"step must be a positive integer, got {step!r}")
    return int(step)


check_caches(__name__)  # drop caches compiled from other sources (see .._numba_cache)
