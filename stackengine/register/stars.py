"""Stars for registration: detection on a frame's luminance with sep.

The kernels here know nothing of dask or files: :func:`luminance_strip` turns
rows of a frame into rows of its luminance (binned, a compiled loop), and
:func:`detect` finds the stars of a whole luminance image, measuring them at
full resolution in small cutouts when the image was binned for detection.

Luminance
    A grey frame as it is; a colour frame (y, x, channel) summed over its
    channels; a Bayer mosaic (a 2-D frame whose header names a colour filter
    array, FITS ``BAYERPAT``) summed over 2 x 2 cells. Any 2 x 2 cell of a Bayer
    mosaic holds one red, two green and one blue pixel, so the sum is the same
    luminance whatever the pattern. This is the frame's *base* luminance (base
    binning 1, or 2 for Bayer frames): stars are measured on it. Frames whose
    base luminance has more than :data:`MAX_DETECT_PIXELS` pixels are binned
    further for detection only (``b x b`` sums, ``b`` a multiple of the base
    binning), so that detection runs on a small image (about 1 Mpx).

Detection
    sep's background (64-pixel meshes, on the detection image) is subtracted;
    objects are extracted at ``threshold`` times the global background noise
    with sep's matched 3 x 3 filter. On a frame binned beyond its base binning,
    the brightest candidates (a few times ``max_stars``) are cut out of the base
    luminance (:func:`detect`'s ``tiles``), their background (sep's map)
    subtracted, and the tiles, side by side in one small mosaic separated by
    masked gutters, are extracted and measured again at base resolution, so
    that what follows sees each star as the unbinned frame shows it. The
    objects are cleaned of what cannot be a star: objects sep flags as
    truncated (image edge, masked pixels) or badly measured (overflows,
    singular moments); single-pixel spikes (hot pixels, cosmic rays: the 8
    neighbours of the peak average less than :data:`_MIN_NEIGHBOUR_RATIO` of
    it); objects much sharper or broader than the frame's stars; trails and
    pairs (``a / b`` above :data:`MAX_ELONGATION`). The position of each kept
    star is sep's windowed centroid (SExtractor's ``XWIN_IMAGE``) with a
    Gaussian window of the star's own half-light size.

Coordinates
    Every position is in the frame's full-resolution pixels, 0-based, ``x`` the
    column and ``y`` the row, integers at pixel centres (numpy and astropy's
    convention): a position ``xb`` measured in ``b x b`` bins is
    ``(xb + 0.5) * b - 0.5``.

Per frame
    ``fwhm`` (median over the kept stars of twice the half-light radius on the
    base luminance; the FWHM for a Gaussian PSF, in full-resolution pixels),
    ``roundness`` (median ``b / a`` of sep's second moments on the base
    luminance, 1 for round stars) and ``background`` (the median of sep's
    background map per full-resolution pixel and channel: the binned sums
    divided by the number of pixels summed).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import sep
from numba import njit
from scipy.spatial import cKDTree

from .._numba_cache import check_caches

__all__ = [
    "MAX_DETECT_PIXELS",
    "MAX_ELONGATION",
    "FrameStars",
    "base_binning",
    "binning_for",
    "detect",
    "luminance_strip",
]

#: base luminance images with more pixels than this are binned further for detection
MAX_DETECT_PIXELS = 1_500_000
#: stars more elongated than this (a / b) are trails, pairs or galaxies
MAX_ELONGATION = 2.0
_MESH = 64  # sep background mesh (binned pixels)
_FWHM_SIGMA = 2.0 * math.sqrt(2.0 * math.log(2.0))
_MIN_NEIGHBOUR_RATIO = 0.04  # 8-neighbour mean / peak below this: a spike, not a star
_SHARP, _BROAD = 0.5, 2.5  # kept half-light fwhm, relative to the median of the candidates
_BAD_FLAGS = sep.OBJ_TRUNC | sep.OBJ_DOVERFLOW | sep.OBJ_SINGU  # edge, overflow, singular
_MIN_FWHM = 0.8  # (binned) pixels: a half-light diameter below this is a single pixel
_MIN_AREA = 5  # pixels above the threshold (base resolution)
_BINNED_MIN_AREA = 3  # on a detection image binned beyond the base resolution
_CANDIDATES = 1.25  # candidates measured at base resolution: this many times max_stars (+16)
_MAX_CANDIDATES = 8  # candidates checked for spikes: this many times max_stars (+64)
_MIN_HALF, _MAX_HALF = 8, 64  # half-size of the cutouts (base pixels)
_SIZING = 32  # brightest candidates the cutouts are sized on
_GUTTER = 2  # masked pixels between the mosaic's tiles

#: ``tiles(cy, cx, half)``: base-luminance cutouts ``(n, 2 half + 1, 2 half + 1)``
#: float32 centred on base pixels ``(cy[i], cx[i])``, NaN outside the frame
Tiles = Callable[[np.ndarray, np.ndarray, int], np.ndarray]


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
        sep's global background noise of the detection image (binned units).
    shape : tuple of int
        ``(height, width)`` of the frame at full resolution.
    binning : int
        The ``b x b`` binning detection ran on (at least 2 for Bayer frames).
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


def base_binning(bayer: bool) -> int:
    """The binning stars are measured at: 2 for Bayer mosaics (their 2 x 2 cells), else 1."""
    return 2 if bayer else 1


def binning_for(shape: tuple[int, ...], bayer: bool) -> int:
    """The ``b x b`` binning of a frame's detection luminance.

    ``b`` is the smallest multiple of the base binning (:func:`base_binning`)
    that brings the binned image under :data:`MAX_DETECT_PIXELS`.
    """
    b0 = base_binning(bayer)
    k = max(1, math.ceil(math.sqrt(shape[0] * shape[1] / (b0 * b0) / MAX_DETECT_PIXELS)))
    return b0 * k


@njit(nogil=True, cache=True)
def _bin_sum(a, b, out, r0):  # pragma: no cover - compiled
    """Add the ``b x b`` sums of the 2-D ``a`` to rows ``r0``... of the float32 ``out``."""
    rows = a.shape[0] // b
    cols = min(a.shape[1] // b, out.shape[1])
    for i in range(rows):
        o = out[r0 + i]
        for dy in range(b):
            row = a[i * b + dy]
            for j in range(cols):
                s = np.float32(0.0)
                for dx in range(b):
                    s += np.float32(row[j * b + dx])
                o[j] += s


def bin_into(a: np.ndarray, b: int, out: np.ndarray, r0: int = 0) -> None:
    """Add the ``b x b`` float32 sums of the 2-D ``a`` into ``out[r0:r0 + len(a) // b]``
    (``out`` C-contiguous float32; left-over rows and columns of ``a`` dropped)."""
    a = np.asarray(a)
    if a.dtype.kind not in "uif" or a.dtype.itemsize < 1 or a.dtype == np.float16:
        a = a.astype(np.float32)
    elif not a.dtype.isnative:
        a = a.astype(a.dtype.newbyteorder("="))
    _bin_sum(a, int(b), out, int(r0))


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
        ``(n_rows // b, width // b)`` float32; non-finite inputs give NaN (or inf).
    """
    a = np.asarray(rows)
    if a.ndim == 3:
        a = a.astype(np.float32).sum(axis=2)
    out = np.zeros((a.shape[0] // b, a.shape[1] // b), np.float32)
    bin_into(a, b, out)
    return out


def _extract(data, threshold, rms, mask, minarea: int = _MIN_AREA, *, deblend: bool = True):
    """sep.extract, enlarging sep's pixel buffer when a crowded frame overflows it
    (``deblend=False``: without deblending, 2 to 4 times faster)."""
    more = {} if deblend else {"deblend_nthresh": 1}
    while True:
        try:
            return sep.extract(data, threshold, err=rms, mask=mask, minarea=minarea, **more)
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


@dataclass(frozen=True)
class _Measured:
    """Kept stars on one image (its pixels), brightest first."""

    x: np.ndarray
    y: np.ndarray
    flux: np.ndarray
    fwhm: np.ndarray
    ratio: np.ndarray
    index: np.ndarray  # into the objects measured


def _measure(data, mask, objs, idx, max_stars) -> _Measured | None:
    """Clean the objects ``idx`` of ``objs`` (extracted from ``data``; module notes),
    keep the ``max_stars`` brightest and centroid them (sep.winpos)."""
    x, y = objs["x"].astype(np.float64), objs["y"].astype(np.float64)
    a, bb = objs["a"].astype(np.float64), objs["b"].astype(np.float64)
    flux = objs["flux"].astype(np.float64)
    keep = np.zeros(len(objs), bool)
    keep[idx] = True
    keep &= objs["flag"] & _BAD_FLAGS == 0
    keep &= (bb > 0) & (a <= MAX_ELONGATION * bb)
    xp, yp = objs["xpeak"].astype(np.intp), objs["ypeak"].astype(np.intp)
    keep &= _neighbour_ratio(data, xp, yp) >= _MIN_NEIGHBOUR_RATIO
    if not keep.any():
        return None
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
        return None
    order = np.argsort(-flux[idx], kind="stable")[: max(0, int(max_stars))]
    idx, fwhm = idx[order], fwhm[order]
    sig = np.maximum(fwhm / _FWHM_SIGMA, 0.5)
    xw, yw, wflag = sep.winpos(data, x[idx], y[idx], sig, mask=mask)
    good = (wflag == 0) & (np.hypot(xw - x[idx], yw - y[idx]) < fwhm)
    xs = np.where(good, xw, x[idx])
    ys = np.where(good, yw, y[idx])
    return _Measured(xs, ys, flux[idx], fwhm, bb[idx] / a[idx], idx)


def _mosaic(tiles: np.ndarray, gutter: int) -> tuple[np.ndarray, np.ndarray, int]:
    """The tiles side by side in a square-ish grid, NaN gutters between them;
    returns the mosaic, each tile's (row, column) origin and the grid's columns."""
    n, t = tiles.shape[0], tiles.shape[1]
    cols = max(1, math.ceil(math.sqrt(n)))
    rows = math.ceil(n / cols)
    p = t + gutter
    out = np.full((rows * p + gutter, cols * p + gutter), np.nan, np.float32)
    k = np.arange(n)
    oy, ox = gutter + (k // cols) * p, gutter + (k % cols) * p
    view = out[gutter:, gutter:].reshape(rows, p, cols, p)
    full = np.full((rows * cols, t, t), np.nan, np.float32)
    full[:n] = tiles
    view[:, :t, :, :t] = full.reshape(rows, cols, t, t).transpose(0, 2, 1, 3)
    return out, np.column_stack([oy, ox]), cols


def _rmax(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """flux_radius's aperture: three times the moment fwhm, at least 3 pixels."""
    return np.maximum(3.0 * _FWHM_SIGMA * np.sqrt(0.5 * (a**2 + b**2)), 3.0)


def _cutouts(tiles: Tiles, cy, cx, half, sky):
    """The candidates' tiles (background subtracted) side by side in one mosaic,
    its mask (gutters, outside the frame, NaN), the tiles' origins and columns."""
    cut = np.asarray(tiles(cy, cx, half), dtype=np.float32) - sky[:, None, None]
    mos, origin, cols = _mosaic(cut, _GUTTER)
    bad = ~np.isfinite(mos)
    mos[bad] = 0.0
    return mos, bad, origin, cols


def _noise(mos: np.ndarray, bad: np.ndarray) -> float:
    """Robust standard deviation (median absolute deviation) of the unmasked pixels."""
    good = mos[~bad]
    sample = good[:: max(1, good.size // 50_000)]
    if not sample.size:
        return 0.0
    return 1.4826 * float(np.median(np.abs(sample - np.median(sample))))


def _nearest(found, origin, cols, half, n) -> tuple[np.ndarray, np.ndarray]:
    """For each of the ``n`` tiles the object nearest its centre (-1: none), and its
    distance from the centre."""
    nearest = np.full(n, -1, np.intp)
    dist = np.full(n, np.inf)
    if len(found):
        p = 2 * half + 1 + _GUTTER
        fx, fy = found["x"].astype(np.float64), found["y"].astype(np.float64)
        row, col = (fy - _GUTTER) // p, (fx - _GUTTER) // p
        tile = np.clip(row * cols + col, 0, n - 1).astype(np.intp)
        d = np.hypot(fx - origin[tile, 1] - half, fy - origin[tile, 0] - half)
        order = np.lexsort((-d, tile))  # per tile, the nearest last: its write stays
        nearest[tile[order]], dist[tile[order]] = order, d[order]
    return nearest, dist


def _spikes(tiles: Tiles, cy, cx, half: int, sky) -> np.ndarray:
    """Whether each candidate's brightest base pixel (within ``half`` - 1 of its
    position) is a single-pixel spike: its 8 neighbours average below
    :data:`_MIN_NEIGHBOUR_RATIO` of it."""
    cut = np.asarray(tiles(cy, cx, half), dtype=np.float32) - sky[:, None, None]
    n, t = cut.shape[0], cut.shape[1]
    inner = np.nan_to_num(cut[:, 1:-1, 1:-1], nan=-np.inf).reshape(n, -1)
    at = np.argmax(inner, axis=1)
    py, px = at // (t - 2) + 1, at % (t - 2) + 1
    k = np.arange(n)
    peak = cut[k, py, px].astype(np.float64)
    around = sum(cut[k, py + dy, px + dx].astype(np.float64)
                 for dy in (-1, 0, 1) for dx in (-1, 0, 1) if dy or dx) / 8.0  # fmt: skip
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(peak > 0, around / peak, 1.0)
    return ratio < _MIN_NEIGHBOUR_RATIO  # NaN neighbours (the frame's edge): not a spike


def _refine(data, back, objs, bin_k, tiles: Tiles, threshold, max_stars) -> _Measured | None:
    """Measure the brightest candidates found on a detection image binned ``bin_k x bin_k``
    beyond the base luminance again on base-luminance cutouts (see the module notes).
    Returns positions in base-luminance pixels."""
    ok = (objs["flag"] & _BAD_FLAGS == 0) & (objs["b"] > 0)
    idx = np.flatnonzero(ok)
    if not idx.size:
        return None
    idx = idx[np.argsort(-objs["flux"][idx], kind="stable")[: _MAX_CANDIDATES * max_stars + 64]]
    k = float(bin_k)
    xb, yb = objs["x"][idx].astype(np.float64), objs["y"][idx].astype(np.float64)
    cx = np.rint((xb + 0.5) * k - 0.5).astype(np.intp)
    cy = np.rint((yb + 0.5) * k - 0.5).astype(np.intp)
    h, w = back.shape
    sky = back[np.clip(yb.astype(np.intp), 0, h - 1), np.clip(xb.astype(np.intp), 0, w - 1)]
    sky = (sky / (k * k)).astype(np.float32)
    # single-pixel spikes (cosmic rays, hot pixels) are bright bins: drop them before
    # the cutouts, by the brightest base pixel of each candidate and its 8 neighbours
    n_cand = int(_CANDIDATES * max(0, int(max_stars))) + 16
    keep = np.flatnonzero(~_spikes(tiles, cy, cx, math.ceil(k / 2) + 1, sky))[:n_cand]
    idx, cx, cy, sky = idx[keep], cx[keep], cy[keep], sky[keep]
    if not idx.size:
        return None
    # tiles large enough for flux_radius's aperture: sized on the brightest candidates
    # (sep's objects without deblending), grown until they fit; stars more than 3
    # times the median size are left to be rejected as truncated
    half, few = _MIN_HALF, slice(0, _SIZING)
    for _ in range(3):
        mos, bad, origin, cols = _cutouts(tiles, cy[few], cx[few], half, sky[few])
        rms = _noise(mos, bad)
        if not rms > 0:
            return None
        found = _extract(mos, threshold, rms, bad, deblend=False)
        nearest, dist = _nearest(found, origin, cols, half, len(cy[few]))
        sel = nearest[(nearest >= 0) & (dist <= k + 1.0)]
        if not sel.size:
            break
        r = _rmax(found["a"][sel].astype(np.float64), found["b"][sel].astype(np.float64))
        need = math.ceil(min(float(r.max()), 3.0 * float(np.median(r)))) + 2
        if need <= half or half >= _MAX_HALF:
            break
        half = min(need, _MAX_HALF)
    mos, bad, origin, cols = _cutouts(tiles, cy, cx, half, sky)
    rms = _noise(mos, bad)
    if not rms > 0:
        return None
    found = _extract(mos, threshold, rms, bad)
    nearest, dist = _nearest(found, origin, cols, half, len(cy))
    near = (nearest >= 0) & (dist <= k + 1.0)
    if not near.any():
        return None
    t = np.flatnonzero(near)
    chosen = nearest[t]
    # a star cut out twice (candidates close together): keep its brightest measure
    bx = found["x"][chosen] - origin[t, 1] + cx[t] - half
    by = found["y"][chosen] - origin[t, 0] + cy[t] - half
    keep = _unique(bx, by, found["flux"][chosen])
    chosen, t = chosen[keep], t[keep]
    m = _measure(mos, bad, found, chosen, max_stars)
    if m is None:
        return None
    ti = _tile_of(chosen, t, m.index)
    return _Measured(m.x - origin[ti, 1] + cx[ti] - half, m.y - origin[ti, 0] + cy[ti] - half,
                     m.flux, m.fwhm, m.ratio, m.index)  # fmt: skip


def _tile_of(chosen: np.ndarray, tile: np.ndarray, index: np.ndarray) -> np.ndarray:
    """The tile of each object ``index`` (one of ``chosen``, found in tiles ``tile``)."""
    where = dict(zip(chosen.tolist(), tile.tolist(), strict=True))
    return np.array([where[i] for i in index.tolist()], np.intp)


def _unique(x, y, flux) -> np.ndarray:
    """Which objects to keep: those not within 1 pixel of a brighter one."""
    drop = np.zeros(x.size, bool)
    for i, j in cKDTree(np.column_stack([x, y])).query_pairs(1.0, output_type="ndarray"):
        drop[j if (flux[i], -i) > (flux[j], -j) else i] = True
    return ~drop


def detect(
    lum: np.ndarray,
    *,
    binning: int = 1,
    shape: tuple[int, int] | None = None,
    per_pixel: int = 1,
    threshold: float = 5.0,
    max_stars: int = 200,
    base: int | None = None,
    tiles: Tiles | None = None,
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
    base : int or None
        The base binning the stars are measured at (:func:`base_binning`; a
        divisor of ``binning``); None: ``binning``.
    tiles : callable or None
        ``tiles(cy, cx, half)``: cutouts of the base luminance (see
        :data:`Tiles`), needed when ``base < binning``.

    Returns
    -------
    FrameStars
        The kept stars, brightest first, with the frame's fwhm, roundness and background.
    """
    data = np.array(lum, dtype=np.float32, order="C")
    if data.ndim != 2:
        raise ValueError(f"detect needs a 2-D image, got shape {data.shape}")
    b = int(binning)
    b0 = b if base is None or tiles is None else int(base)
    if b % b0:
        raise ValueError(f"detect: base binning {b0} does not divide the binning {b}")
    shape = tuple(shape) if shape is not None else (data.shape[0] * b, data.shape[1] * b)
    bad = ~np.isfinite(data)
    mask = bad if bad.any() else None
    if mask is not None:
        data[bad] = 0.0
    bkg = sep.Background(data, mask=mask, bw=_MESH, bh=_MESH)
    back = bkg.back()
    finite_back = back[~bad] if mask is not None else back
    if b0 < b:  # a smooth map (64-pixel meshes): its median from every 7th value
        finite_back = finite_back.ravel()[::7]
    level = float(np.median(finite_back)) / per_pixel if finite_back.size else math.nan
    rms = float(bkg.globalrms)
    data -= back
    if mask is not None:
        data[bad] = 0.0
    if not rms > 0:
        return _empty(shape, b, level, rms)
    binned = b0 < b
    if binned:  # candidates only (measured again at base resolution): no deblending
        objs = _extract(data, threshold, rms, mask, _BINNED_MIN_AREA, deblend=False)
    else:
        objs = _extract(data, threshold, rms, mask)
    if not len(objs):
        return _empty(shape, b, level, rms)
    if binned:
        m = _refine(data, back, objs, b // b0, tiles, threshold, max_stars)
    else:
        m = _measure(data, mask, objs, np.arange(len(objs)), max_stars)
    if m is None:
        return _empty(shape, b, level, rms)
    return FrameStars(
        x=(m.x + 0.5) * b0 - 0.5,
        y=(m.y + 0.5) * b0 - 0.5,
        flux=m.flux,
        fwhm=float(np.median(m.fwhm)) * b0,
        roundness=float(np.median(m.ratio)),
        background=level,
        background_rms=rms,
        shape=(int(shape[0]), int(shape[1])),
        binning=b,
    )


check_caches(__name__)  # keep the kernel's cache out of the package (see .._numba_cache)
