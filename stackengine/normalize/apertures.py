"""Aperture photometry with a local background annulus (:func:`aperture_fluxes`).

A circular aperture of radius ``r_ap = 3 fwhm`` (exact pixel overlap, as
photutils' ``method="exact"``, computed here in numba) encloses > 99.9 % of a
Gaussian star and ~99 % of a Moffat (beta = 3) star; because every radius is
proportional to the frame's own fwhm, the enclosed fraction is the same in
frames of different seeing. The local background is the 3-sigma clipped median of an annulus from
``r_ap + 2 fwhm`` to ``r_ap + 5 fwhm``.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from .._numba_cache import check_caches
from .fast import native

__all__ = ["ANNULUS_GAP", "ANNULUS_WIDTH", "APERTURE_RADIUS", "aperture_fluxes"]

#: aperture radius, annulus gap and annulus width, in units of the frame's fwhm
APERTURE_RADIUS, ANNULUS_GAP, ANNULUS_WIDTH = 3.0, 2.0, 3.0
_ANNULUS_PIXELS = 1500  # annuli larger than this are sampled on a coarser pixel grid


@njit(cache=True, nogil=True)
def _half_disc(x, r):  # pragma: no cover - compiled
    """Area of the disc of radius r (centre 0) left of x, above the x axis: int sqrt(r2 - t2)."""
    x = min(max(x, -r), r)
    return 0.5 * (x * math.sqrt(max(r * r - x * x, 0.0)) + r * r * math.asin(x / r)) + 0.25 * (
        math.pi * r * r
    )


@njit(cache=True, nogil=True)
def _corner(x, y, r):  # pragma: no cover - compiled
    """Area of the disc of radius r (centre 0) with abscissa <= x and ordinate <= y."""
    ay = abs(y)
    g = 0.0  # the part of the chord strip |t| <= sqrt(r2 - y2) beyond |y|, left of x
    if ay < r:
        xy = math.sqrt(r * r - ay * ay)
        xc = min(max(x, -xy), xy)
        g = _half_disc(xc, r) - _half_disc(-xy, r) - ay * (xc + xy)
    return 2.0 * _half_disc(x, r) - g if y >= 0.0 else g


@njit(cache=True, nogil=True)
def _circle_sums(image, xs, ys, r, out):  # pragma: no cover - compiled
    """Sum of image x exact overlap of each pixel with the circle; NaN if a non-finite
    pixel overlaps it. Pixel (i, j) covers [j - 0.5, j + 0.5] x [i - 0.5, i + 0.5]."""
    h, w = image.shape
    inner = (r - math.sqrt(0.5)) ** 2 if r > math.sqrt(0.5) else -1.0
    for s in range(xs.size):
        cx, cy = xs[s], ys[s]
        total = 0.0
        i0, i1 = int(math.floor(cy - r - 0.5)), int(math.floor(cy + r + 0.5)) + 1
        j0, j1 = int(math.floor(cx - r - 0.5)), int(math.floor(cx + r + 0.5)) + 1
        for i in range(max(i0, 0), min(i1, h)):
            for j in range(max(j0, 0), min(j1, w)):
                dx, dy = j - cx, i - cy
                if dx * dx + dy * dy <= inner:
                    frac = 1.0  # the whole pixel is inside
                else:
                    x0, x1, y0, y1 = dx - 0.5, dx + 0.5, dy - 0.5, dy + 0.5
                    frac = (
                        _corner(x1, y1, r) - _corner(x0, y1, r) - _corner(x1, y0, r)
                        + _corner(x0, y0, r)
                    )  # fmt: skip
                    if frac <= 1e-12:  # outside, up to rounding
                        continue
                v = np.float64(image[i, j])
                if not np.isfinite(v):
                    total = np.nan
                    break
                total += frac * v
            if not np.isfinite(total):
                break
        out[s] = total


def _annulus_background(
    image: np.ndarray, x: np.ndarray, y: np.ndarray, r_in: float, r_out: float
) -> np.ndarray:
    """3-sigma clipped median of each annulus (NaN with fewer than 10 usable pixels).

    Vectorised over stars: the annulus pixels (centres within [r_in, r_out]
    of the star; on a grid of every s-th pixel when the annulus holds more
    than ~1500 pixels) are gathered into one array, sorted once per star,
    and clipped about the median with the standard deviation, as
    astropy's ``sigma_clip`` (sigma 3, at most 5 iterations).
    """
    h, w = image.shape
    area = math.pi * (r_out**2 - r_in**2)
    step = max(1, math.ceil(math.sqrt(area / _ANNULUS_PIXELS)))
    reach = math.ceil(r_out) + 1
    off = np.arange(-reach, reach + 1, step)
    dy, dx = (g.ravel() for g in np.meshgrid(off, off, indexing="ij"))
    ring = np.hypot(dx, dy)  # offsets from the rounded centre: within 0.71 px of the true one
    dx, dy = (
        dx[(ring >= r_in - 1.0) & (ring <= r_out + 1.0)],
        dy[(ring >= r_in - 1.0) & (ring <= r_out + 1.0)],
    )
    out = np.full(x.size, np.nan)
    chunk = max(1, 4_000_000 // max(dx.size, 1))
    for s in range(0, x.size, chunk):
        xc, yc = (
            np.rint(x[s : s + chunk]).astype(np.intp),
            np.rint(y[s : s + chunk]).astype(np.intp),
        )
        px, py = xc[:, None] + dx, yc[:, None] + dy
        r2 = (px - x[s : s + chunk, None]) ** 2 + (py - y[s : s + chunk, None]) ** 2
        inside = (px >= 0) & (px < w) & (py >= 0) & (py < h)
        use = inside & (r2 >= r_in**2) & (r2 <= r_out**2)
        v = np.where(use, image[np.clip(py, 0, h - 1), np.clip(px, 0, w - 1)], np.nan)
        v[~np.isfinite(v)] = np.nan
        out[s : s + chunk] = _clipped_median_rows(v)
    return out


def _clipped_median_rows(v: np.ndarray, sigma: float = 3.0, maxiters: int = 5) -> np.ndarray:
    """Sigma-clipped (median centre, std spread) median of each row; NaN is missing."""
    v = np.sort(v.astype(np.float64), axis=1)  # NaN last
    n = np.count_nonzero(np.isfinite(v), axis=1)
    rows = np.arange(v.shape[0])
    lo, hi = np.zeros_like(n), n.copy()
    good = n >= 10
    med = np.full(v.shape[0], np.nan)
    for _ in range(maxiters + 1):
        m = np.maximum(hi - lo, 1)
        i0 = np.clip(lo + (m - 1) // 2, 0, v.shape[1] - 1)
        i1 = np.clip(lo + m // 2, 0, v.shape[1] - 1)
        med = 0.5 * (v[rows, i0] + v[rows, i1])
        col = np.arange(v.shape[1])
        kept = (col >= lo[:, None]) & (col < hi[:, None])
        dev = np.where(kept, v - med[:, None], 0.0)
        std = np.sqrt(np.sum(dev * dev, axis=1) / m - (np.sum(dev, axis=1) / m) ** 2)
        with np.errstate(invalid="ignore"):
            new_lo = np.sum(v < (med - sigma * std)[:, None], axis=1)
            new_hi = np.sum(v <= (med + sigma * std)[:, None], axis=1)
        new_lo, new_hi = np.maximum(new_lo, lo), np.minimum(new_hi, hi)
        if np.array_equal(new_lo, lo) and np.array_equal(new_hi, hi):
            break
        lo, hi = new_lo, new_hi
    med[~good | (hi - lo < 1)] = np.nan
    return med


def aperture_fluxes(
    image: np.ndarray, x: np.ndarray, y: np.ndarray, *, fwhm: float
) -> tuple[np.ndarray, np.ndarray]:
    """Aperture photometry with a local background annulus.

    Parameters
    ----------
    image : ndarray
        A 2-D frame.
    x, y : array_like
        Star positions (0-based pixel coordinates of ``image``).
    fwhm : float
        The frame's seeing (:attr:`StarTable.fwhm_median`); every radius is
        proportional to it, so the enclosed fraction of a star's light does
        not depend on the seeing.

    Returns
    -------
    flux : ndarray
        Sum over a circle of radius ``r_ap = 3 fwhm`` (exact pixel overlap, as
        photutils' ``aperture_photometry(method="exact")``) minus
        ``background x area``; NaN where the circle leaves the image or holds a
        NaN/inf pixel, or the annulus has fewer than 10 usable pixels.
    background : ndarray
        Background per pixel: the 3-sigma clipped median (astropy's
        sigma_clip rule, median centre and std) of the pixels whose centres
        lie in the annulus ``r_ap + 2 fwhm <= r <= r_ap + 5 fwhm`` (pixels
        outside the image or not finite are skipped; a large annulus is
        sampled on every s-th pixel, keeping ~1500).

    Notes
    -----
    The annulus statistic is computed here, vectorised, rather than with
    photutils' ``ApertureStats(sigma_clip=...)``, which clips each annulus
    separately and costs ~0.6 ms per star (0.3 s for 500 stars). The aperture
    sums are a numba kernel (the disc's area in each pixel from closed-form
    integrals), which releases the GIL.
    """
    img = np.asarray(image)
    if img.ndim != 2:
        raise ValueError(f"aperture_fluxes needs a 2-D image, got shape {img.shape}")
    x = np.atleast_1d(np.asarray(x, dtype=np.float64))
    y = np.atleast_1d(np.asarray(y, dtype=np.float64))
    if not (fwhm > 0 and math.isfinite(fwhm)):
        raise ValueError(f"fwhm must be a positive number, got {fwhm}")
    if x.shape != y.shape:
        raise ValueError(f"x and y differ in length: {x.size} != {y.size}")
    flux, background = np.full(x.size, np.nan), np.full(x.size, np.nan)
    ok = np.isfinite(x) & np.isfinite(y)
    if not ok.any():
        return flux, background
    x, y = x[ok], y[ok]
    r_ap = APERTURE_RADIUS * fwhm
    r_in = r_ap + ANNULUS_GAP * fwhm
    r_out = r_in + ANNULUS_WIDTH * fwhm
    bkg = _annulus_background(img, x, y, r_in, r_out)

    h, w = img.shape
    inside = (x - r_ap >= -0.5) & (x + r_ap <= w - 0.5) & (y - r_ap >= -0.5) & (y + r_ap <= h - 0.5)
    sub = np.full(x.size, np.nan)
    if inside.any():
        sums = np.empty(np.count_nonzero(inside))
        _circle_sums(native(img), x[inside], y[inside], float(r_ap), sums)
        sub[inside] = sums - bkg[inside] * (math.pi * r_ap * r_ap)
    flux[ok], background[ok] = sub, bkg
    return flux, background


check_caches(__name__)  # drop caches compiled from other sources (see .._numba_cache)
