"""Stars for registration: detection on a frame's luminance with sep.

The kernels here know nothing of dask or files: :func:`luminance_strip` turns
rows of a frame into rows of its luminance (binned), and :func:`detect` finds
the stars of a whole luminance image.

Luminance
    A grey frame as it is; a colour frame (y, x, channel) summed over its
    channels; a Bayer mosaic (a 2-D frame whose header names a colour filter
    array, FITS ``BAYERPAT``) summed over 2 x 2 cells. Any 2 x 2 cell of a Bayer
    mosaic holds one red, two green and one blue pixel, so the sum is the same
    luminance whatever the pattern. Frames larger than :data:`MAX_DETECT_PIXELS`
    are binned further (``b x b`` sums, ``b`` even for Bayer frames) so that a
    task holds a bounded image.

Detection
    sep's background (64-pixel meshes, on the binned image) is subtracted;
    objects are extracted at ``threshold`` times the global background noise
    with sep's matched 3 x 3 filter, and cleaned of what cannot be a star:
    objects sep flags as truncated (image edge, masked pixels) or badly
    measured (overflows, singular moments); single-pixel spikes (hot pixels,
    cosmic rays: the 8 neighbours of the peak average less than
    :data:`_MIN_NEIGHBOUR_RATIO` of it); objects much sharper or broader than
    the frame's stars; trails and pairs (``a / b`` above
    :data:`MAX_ELONGATION`). The position of each kept star is sep's windowed
    centroid (SExtractor's ``XWIN_IMAGE``) with a Gaussian window of the star's
    own half-light size.

Coordinates
    Every position is in the frame's full-resolution pixels, 0-based, ``x`` the
    column and ``y`` the row, integers at pixel centres (numpy and astropy's
    convention): a position ``xb`` measured in ``b x b`` bins is
    ``(xb + 0.5) * b - 0.5``.

Per frame
    ``fwhm`` (median over the kept stars of twice the half-light radius; the
    FWHM for a Gaussian PSF, in full-resolution pixels), ``roundness`` (median
    ``b / a`` of sep's second moments, 1 for round stars) and ``background``
    (the median of sep's background map per full-resolution pixel and channel:
    the binned sums divided by the number of pixels summed).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import sep

__all__ = [
    "MAX_DETECT_PIXELS",
    "MAX_ELONGATION",
    "FrameStars",
    "binning_for",
    "detect",
    "luminance_strip",
]

#: luminance images with more pixels than this are binned further before detection
MAX_DETECT_PIXELS = 16_000_000
#: stars more elongated than this (a / b) are trails, pairs or galaxies
MAX_ELONGATION = 2.0
_MESH = 64  # sep background mesh (binned pixels)
_FWHM_SIGMA = 2.0 * math.sqrt(2.0 * math.log(2.0))
_MIN_NEIGHBOUR_RATIO = 0.04  # 8-neighbour mean / peak below this: a spike, not a star
_SHARP, _BROAD = 0.5, 2.5  # kept half-light fwhm, relative to the median of the candidates
_BAD_FLAGS = sep.OBJ_TRUNC | sep.OBJ_DOVERFLOW | sep.OBJ_SINGU  # edge, overflow, singular
_MIN_FWHM = 0.8  # (binned) pixels: a half-light diameter below this is a single pixel


@dataclass(frozen=True)
class FrameStars:
    """The stars of one frame and its seeing, roundness and background.

    Attributes
    ----------
    x, y : ndarray
        float64 full-resolution pixel positions (0-based, centres at integers),
        brightest first.
    flux : ndarray
        sep's isophotal flux of each star above the background (for ranking).
    fwhm : float
        Median of the stars' half-light diameters (full-resolution pixels; NaN
        without stars).
    roundness : float
        Median ``b / a`` of the stars (NaN without stars).
    background : float
        Median sky level per full-resolution pixel (and channel).
    background_rms : float
        sep's global background noise of the luminance image (binned units).
    shape : tuple of int
        ``(height, width)`` of the frame at full resolution.
    binning : int
        The ``b x b`` binning detection ran on (2 for Bayer frames).
    """

    x: np.ndarray
    y: np.ndarray
    flux: np.ndarray
    fwhm: float
    roundness: float
    background: float
    background_rms: float
    shape: tuple[int, int]
    binning: int

    def __len__(self) -> int:
        return int(self.x.size)

    @property
    def xy(self) -> np.ndarray:
        """``(n, 2)`` array of ``(x, y)`` positions."""
        return np.column_stack([self.x, self.y])


def binning_for(shape: tuple[int, ...], bayer: bool) -> int:
    """The ``b x b`` binning of a frame's luminance: 2 for Bayer mosaics, more for big frames.

    ``b`` is the smallest (even, for Bayer) factor that brings the binned image
    under :data:`MAX_DETECT_PIXELS`.
    """
    b = max(1, math.ceil(math.sqrt(shape[0] * shape[1] / MAX_DETECT_PIXELS)))
    if bayer:
        b = max(2, b + (b % 2))
    return b


def luminance_strip(rows: np.ndarray, b: int) -> np.ndarray:
    """The float32 luminance of full-width rows, summed over channels and ``b x b`` bins.

    Parameters
    ----------
    rows : ndarray
        ``(n_rows, width[, channels])``; ``n_rows`` a multiple of ``b`` (left-over
        rows and columns at the frame's bottom and right edge are dropped).
    b : int
        Binning factor.

    Returns
    -------
    ndarray
        ``(n_rows // b, width // b)`` float32; non-finite inputs give NaN.
    """
    a = np.asarray(rows)
    lum = a.astype(np.float32) if a.ndim == 2 else a.astype(np.float32).sum(axis=2)
    if b == 1:
        return lum
    h, w = (lum.shape[0] // b) * b, (lum.shape[1] // b) * b
    return lum[:h, :w].reshape(h // b, b, w // b, b).sum(axis=(1, 3), dtype=np.float32)


def _extract(data: np.ndarray, threshold: float, rms: float, mask: np.ndarray | None):
    """sep.extract, enlarging sep's pixel buffer when a crowded frame overflows it."""
    while True:
        try:
            return sep.extract(data, threshold, err=rms, mask=mask, minarea=5)
        except Exception as exc:  # sep raises a bare Exception for a full buffer
            if "pixel buffer full" not in str(exc) and "object buffer full" not in str(exc):
                raise
            if "object" in str(exc):
                sep.set_extract_object_limit(4 * sep.get_extract_object_limit())
            else:
                sep.set_extract_pixstack(4 * sep.get_extract_pixstack())


def _neighbour_ratio(data: np.ndarray, xp: np.ndarray, yp: np.ndarray) -> np.ndarray:
    """Mean of the 8 neighbours of each peak pixel over the peak (1 at the image edge)."""
    h, w = data.shape
    ratio = np.ones(xp.size)
    inside = (xp > 0) & (yp > 0) & (xp < w - 1) & (yp < h - 1)
    if not inside.any():
        return ratio
    x, y = xp[inside], yp[inside]
    offsets = [(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1) if dy or dx]
    around = np.mean([data[y + dy, x + dx] for dy, dx in offsets], axis=0, dtype=np.float64)
    peak = data[y, x].astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio[inside] = np.where(peak > 0, around / peak, 1.0)
    return ratio


def _empty(shape, b, back, rms) -> FrameStars:
    e = np.empty(0)
    return FrameStars(e, e, e, math.nan, math.nan, back, rms, shape, b)


def detect(
    lum: np.ndarray,
    *,
    binning: int = 1,
    shape: tuple[int, int] | None = None,
    per_pixel: int = 1,
    threshold: float = 5.0,
    max_stars: int = 200,
) -> FrameStars:
    """Detect the stars of a luminance image (see the module notes).

    Parameters
    ----------
    lum : ndarray
        2-D luminance, binned ``binning x binning`` (from :func:`luminance_strip`).
        NaN and inf are masked.
    binning : int
        The binning of ``lum``; positions and sizes are returned at full resolution.
    shape : (int, int) or None
        The full-resolution frame shape (default ``lum.shape * binning``).
    per_pixel : int
        How many values each luminance pixel sums (``binning**2 x channels``):
        the background is reported per full-resolution pixel and channel.
    threshold : float
        Detection threshold in units of the background noise (sep's matched filter).
    max_stars : int
        Keep at most this many stars, the brightest.

    Returns
    -------
    FrameStars
        The kept stars, brightest first, with the frame's fwhm, roundness and background.
    """
    data = np.array(lum, dtype=np.float32, order="C")
    if data.ndim != 2:
        raise ValueError(f"detect needs a 2-D image, got shape {data.shape}")
    b = int(binning)
    shape = tuple(shape) if shape is not None else (data.shape[0] * b, data.shape[1] * b)
    bad = ~np.isfinite(data)
    mask = bad if bad.any() else None
    if mask is not None:
        data[bad] = 0.0
    bkg = sep.Background(data, mask=mask, bw=_MESH, bh=_MESH)
    back = bkg.back()
    finite_back = back[~bad] if mask is not None else back
    level = float(np.median(finite_back)) / per_pixel if finite_back.size else math.nan
    rms = float(bkg.globalrms)
    data -= back
    if mask is not None:
        data[bad] = 0.0
    if not rms > 0:
        return _empty(shape, b, level, rms)
    objs = _extract(data, threshold, rms, mask)
    if not len(objs):
        return _empty(shape, b, level, rms)
    x, y = objs["x"].astype(np.float64), objs["y"].astype(np.float64)
    a, bb = objs["a"].astype(np.float64), objs["b"].astype(np.float64)
    flux = objs["flux"].astype(np.float64)
    keep = objs["flag"] & _BAD_FLAGS == 0
    keep &= (bb > 0) & (a <= MAX_ELONGATION * bb)
    xp, yp = objs["xpeak"].astype(np.intp), objs["ypeak"].astype(np.intp)
    keep &= _neighbour_ratio(data, xp, yp) >= _MIN_NEIGHBOUR_RATIO
    if not keep.any():
        return _empty(shape, b, level, rms)
    idx = np.flatnonzero(keep)
    mom = _FWHM_SIGMA * np.sqrt(0.5 * (a[idx] ** 2 + bb[idx] ** 2))
    rmax = np.maximum(3.0 * mom, 3.0)
    radius, rflag = sep.flux_radius(data, x[idx], y[idx], rmax, 0.5, mask=mask, subpix=5)
    fwhm = 2.0 * np.asarray(radius, dtype=np.float64)
    ok = (rflag == 0) & np.isfinite(fwhm) & (fwhm >= _MIN_FWHM)
    if ok.any():
        typical = float(np.median(fwhm[ok]))
        ok &= (fwhm >= _SHARP * typical) & (fwhm <= _BROAD * typical)
    idx, fwhm = idx[ok], fwhm[ok]
    if not idx.size:
        return _empty(shape, b, level, rms)
    order = np.argsort(-flux[idx], kind="stable")[: max(0, int(max_stars))]
    idx, fwhm = idx[order], fwhm[order]
    sig = np.maximum(fwhm / _FWHM_SIGMA, 0.5)
    xw, yw, wflag = sep.winpos(data, x[idx], y[idx], sig, mask=mask)
    good = (wflag == 0) & (np.hypot(xw - x[idx], yw - y[idx]) < fwhm)
    xs = np.where(good, xw, x[idx])
    ys = np.where(good, yw, y[idx])
    return FrameStars(
        x=(xs + 0.5) * b - 0.5,
        y=(ys + 0.5) * b - 0.5,
        flux=flux[idx],
        fwhm=float(np.median(fwhm)) * b,
        roundness=float(np.median(bb[idx] / a[idx])),
        background=level,
        background_rms=rms,
        shape=(int(shape[0]), int(shape[1])),
        binning=b,
    )
