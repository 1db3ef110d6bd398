"""Star detection for photometric normalization (sep, SExtractor's engine).

:func:`find_stars` keeps isolated, unsaturated, star-like objects: a 64-pixel
background mesh is subtracted, the image is filtered with a small Gaussian
kernel and pixels above ``threshold`` times the noise *of the filtered image*
(measured, so that correlated noise from registration is accounted for) are
grouped and deblended (see :func:`find_stars` for the cuts). The per-star
``fwhm`` is twice the half-light radius (exactly the FWHM for a Gaussian PSF,
about 1.26 FWHM for a Moffat PSF of beta = 3); it scales with the seeing
whatever the PSF shape, which is what the apertures need.

Spikes: single pixels far brighter than all their neighbours (cosmic rays, hot
pixels; :func:`.fast.spike_candidates`) would each be extracted by sep and then
dropped as too sharp; a frame can hold thousands, and sep's cost grows with the
number of objects. Those that sep would detect on their own are set to the
background before extraction instead, and count as detected objects for the
blend cut, as before.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import sep
from scipy.spatial import cKDTree

from .background import background_map
from .fast import spike_candidates
from .starcuts import (
    filtered_noise,
    flat_topped,
    half_light_fwhm,
    neighbours,
    saturation_level,
    sharper_than,
    weighted_median,
)

__all__ = ["BACKGROUND_MESH", "MIN_STARS", "StarTable", "detect_stars", "find_stars"]

#: background mesh (pixels) subtracted before detection (:func:`.background.background_map`)
BACKGROUND_MESH = 64

#: fewest matched stars :func:`.photometry.fit_scale` accepts (after outlier rejection);
#: automatic detection broadens its kernel while it finds fewer stars
MIN_STARS = 8
_FWHM_SIGMA = 2.0 * math.sqrt(2.0 * math.log(2.0))  # FWHM / sigma of a Gaussian
_BLEND_FWHM = 3.0  # stars with a detected neighbour closer than this x fwhm are dropped
_MAX_ELONGATION = 2.0  # a/b above this: trails, cosmic-ray tracks, edge-on galaxies
_MAX_EXTRA_ELLIPTICITY = 0.2  # 1 - b/a above the bright stars' by more: unresolved pairs
_MIN_FWHM = 0.7  # pixels; sharper objects are hot pixels or cosmic rays
_SHARP, _BROAD = 0.5, 2.0  # kept fwhm range relative to the bright stars
_MIN_NEIGHBOUR_RATIO = 0.2  # neighbours / peak of a star of fwhm >= 1.5 px is larger
_NEIGHBOUR_FRACTION = 0.6  # and a star's is at least this x that of the bright stars
_NEAR_SATURATION = 0.8  # peaks above this fraction of the saturation level are non-linear
_DEFAULT_KERNEL_FWHM = 2.0  # sep's 3 x 3 kernel is about a Gaussian of this fwhm
_MAX_KERNEL_FWHM = 16.0  # broadest detection kernel tried automatically
_SPIKE_LEVEL = 3.0  # spike candidates are at least this x the background rms


@dataclass(frozen=True)
class StarTable:
    """Stars found in one frame (0-based pixel coordinates of the image given).

    Attributes
    ----------
    x, y : ndarray
        Barycentres (float64); pixel centres are integers.
    flux : ndarray
        sep's isophotal flux above the background (for ranking only).
    peak : ndarray
        The brightest pixel, background included (as in the image given).
    fwhm : ndarray
        Twice the half-light radius of each star (pixels).
    flags : ndarray
        sep's extraction flags (int64; 0 for every kept star).
    fwhm_median : float
        The frame's seeing: the median of ``fwhm`` weighted by sqrt(flux), so
        the bright, well-measured stars count most (NaN without stars). Pass it
        to :func:`.apertures.aperture_fluxes`.
    background_rms : float
        The global background noise of the image (per pixel): the mean of the
        mesh noise map of :func:`.background.background_map`.
    """

    x: np.ndarray
    y: np.ndarray
    flux: np.ndarray
    peak: np.ndarray
    fwhm: np.ndarray
    flags: np.ndarray
    fwhm_median: float
    background_rms: float

    def __len__(self) -> int:
        return int(self.x.size)


def _kernel_1d(fwhm: float | None) -> np.ndarray:
    """Separable detection kernel: sep's default [1, 2, 1] or a Gaussian of this fwhm."""
    if fwhm is None:
        return np.array([1.0, 2.0, 1.0])
    sigma = fwhm / _FWHM_SIGMA
    r = max(1, math.ceil(2.0 * sigma))
    k = np.exp(-0.5 * (np.arange(-r, r + 1) / sigma) ** 2)
    return k / k.sum()


def _extract(data: np.ndarray, thresh: float, mask: np.ndarray | None, k1: np.ndarray):
    """sep.extract, enlarging sep's pixel buffer when a crowded frame overflows it."""
    kernel = np.outer(k1, k1).astype(np.float32)
    while True:
        try:
            return sep.extract(data, thresh, mask=mask, minarea=5, filter_kernel=kernel)
        except Exception as exc:  # sep raises a bare Exception for a full buffer
            if "pixel buffer full" not in str(exc):
                raise
            sep.set_extract_pixstack(4 * sep.get_extract_pixstack())


def _empty_table(rms: float) -> StarTable:
    e = np.empty(0)
    return StarTable(e, e, e, e, e, np.empty(0, np.int64), math.nan, rms)


def find_stars(
    image: np.ndarray,
    *,
    threshold: float = 5.0,
    max_stars: int = 500,
    saturation: float | None = None,
    kernel_fwhm: float | None = None,
) -> StarTable:
    """Detect isolated, unsaturated stars suitable for photometry.

    Parameters
    ----------
    image : ndarray
        A 2-D frame (any real dtype; NaN and inf are masked).
    threshold : float
        Detection threshold in units of the noise of the filtered,
        background-subtracted image (a detection significance). sep's own
        threshold is in units of the *unfiltered* pixel noise; with the
        default 3 x 3 kernel, 5 here is about 1.9 there.
    max_stars : int
        Keep at most this many stars, the brightest.
    saturation : float or None
        The saturation level of ``image``. Stars whose brightest pixel
        (background included) exceeds 0.8 x saturation are dropped as
        non-linear. None estimates it: the image maximum when at least 4
        pixels share that exact value (a clipped plateau), otherwise no
        level cut. Whatever the level, stars with a flat top (a plateau of
        >= 5 pixels near their peak, as a clipped star keeps even after
        flat-fielding or registration) are dropped.
    kernel_fwhm : float or None
        FWHM (pixels) of the Gaussian detection filter. None chooses: sep's
        3 x 3 kernel (about a Gaussian of fwhm 2) first; if the stars found
        are broader than twice the kernel, detect again with a kernel of
        their median fwhm; if fewer than :data:`MIN_STARS` are found, again
        with a kernel twice as broad (up to 16 px, at most 4 passes; the pass
        with the most stars wins). Ordinary frames need one pass.

    Returns
    -------
    StarTable
        The kept stars, brightest first.

    Notes
    -----
    Dropped, in order: objects sep flags (deblended from a blend, touching
    the edge or a masked pixel, overflows); elongation a/b > 2 (trails,
    tracks); objects whose 8 neighbour pixels average significantly (3
    sigma) less than 0.2 x their peak (hot pixels, cosmic-ray hits: any
    sampled PSF, fwhm >~ 1.5 px, is broader); fwhm < 0.7 px; saturated
    stars (above). Then, against the bright stars (medians weighted by
    sqrt(flux)): fwhm outside [0.5, 2] x theirs (remaining hits; galaxies),
    neighbour ratio significantly below 0.6 x theirs (cosmic-ray tracks),
    ellipticity 1 - b/a more than 0.2 above theirs (pairs sep could not
    split); and any star with another detected object (of any kind) closer
    than 3 x the seeing (blended pairs; a hit that close would spoil the
    aperture). Stars undersampled below fwhm ~1.5 px cannot be told from
    cosmic rays by shape; those hits are left to :func:`.photometry.match_stars`,
    as they are not in the reference.

    Before extraction, single-pixel spikes (the sharpness cut above applied to
    every local maximum of at least 3 x the background noise) that sep would
    extract on their own are set to the background (see the module notes);
    they still count as detected objects for the blend cut. The background
    is :func:`.background.background_map` (64-pixel meshes).
    """
    return detect_stars(
        image, threshold=threshold, max_stars=max_stars, saturation=saturation,
        kernel_fwhm=kernel_fwhm,
    )[0]  # fmt: skip


def detect_stars(
    image: np.ndarray,
    *,
    threshold: float = 5.0,
    max_stars: int = 500,
    saturation: float | None = None,
    kernel_fwhm: float | None = None,
) -> tuple[StarTable, np.ndarray]:
    """:func:`find_stars`, also returning the image minus the background it removed.

    Returns
    -------
    stars : StarTable
        As :func:`find_stars`.
    flattened : ndarray
        float32 ``image - background`` (:func:`.background.background_map`,
        64-pixel meshes), NaN where the image is not finite: what aperture
        photometry measures on, without computing the map again.
    """
    img = np.asarray(image)
    if img.ndim != 2:
        raise ValueError(f"find_stars needs a 2-D image, got shape {img.shape}")
    data = np.array(img, dtype=np.float32, order="C")
    bad = ~np.isfinite(data)
    mask = bad if bad.any() else None
    if mask is not None:
        data[bad] = 0.0
    background, rms = background_map(data, mask, mesh=BACKGROUND_MESH)
    data -= background
    if mask is not None:
        data[bad] = 0.0
    table = _auto(data, img, mask, rms, threshold, max_stars, saturation, kernel_fwhm)
    if mask is not None:
        data[bad] = np.nan
    return table, data


def _auto(data, img, mask, rms, threshold, max_stars, saturation, kernel_fwhm) -> StarTable:
    """Detection with the kernel given, or chosen automatically (see :func:`find_stars`)."""
    args = (data, img, mask, rms, _spikes(data, rms), threshold, max_stars, saturation)
    if kernel_fwhm is not None:
        return _find(*args, float(kernel_fwhm))
    # auto: sep's kernel (fwhm ~2), then a kernel matched to the stars found if they are
    # broader than twice the kernel; with too few stars, a kernel twice as broad
    best, kernel = None, None
    for _ in range(4):
        table = _find(*args, kernel)
        if best is None or len(table) > len(best):
            best = table
        current = _DEFAULT_KERNEL_FWHM if kernel is None else kernel
        if len(table) >= MIN_STARS:
            if table.fwhm_median <= 2.0 * current:
                return table
            kernel = table.fwhm_median
        else:
            kernel = 2.0 * current
        if kernel > _MAX_KERNEL_FWHM:
            break
    return best


def _spikes(data: np.ndarray, rms: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(y, x, value)`` of the pixels the sharpness cut would reject as a peak.

    The cut of :func:`sharper_than` (neighbours fainter than 0.2 x the peak by 3
    sigma), applied to every local maximum of at least 3 x the background rms,
    in two rounds (:func:`.fast.spike_candidates`).
    """
    ys, xs, vs = spike_candidates(
        data, _SPIKE_LEVEL * rms, 3.0 * rms / math.sqrt(8.0), _MIN_NEIGHBOUR_RATIO
    )
    _, first = np.unique(ys * data.shape[1] + xs, return_index=True)
    return ys[first], xs[first], vs[first]


def _without_spikes(data, spikes, k1, thresh) -> tuple[np.ndarray, np.ndarray]:
    """The image to extract from, and the (x, y) of the spikes set to 0 in it.

    A spike is removed when sep would detect it alone: when the filtered image
    is above ``thresh`` at its 4 edge neighbours too (5 pixels, sep's minarea).
    """
    ys, xs, vs = spikes
    k = k1 / k1.sum()
    c = len(k) // 2
    alone = vs * (k[c] * k[c - 1 if c else 0]) >= thresh
    if not alone.any():
        return data, np.empty((0, 2))
    det = data.copy()
    det[ys[alone], xs[alone]] = 0.0
    return det, np.column_stack([xs[alone], ys[alone]]).astype(np.float64)


def _find(data, img, mask, rms, spikes, threshold, max_stars, saturation, kernel_fwhm):
    k1 = _kernel_1d(kernel_fwhm)
    noise = filtered_noise(data, k1)
    if not noise > 0:
        return _empty_table(rms)
    det, removed = _without_spikes(data, spikes, k1, threshold * noise)
    objs = _extract(det, threshold * noise, mask, k1)
    if not len(objs):
        return _empty_table(rms)
    x = objs["x"].astype(np.float64)
    y = objs["y"].astype(np.float64)
    a, b = objs["a"].astype(np.float64), objs["b"].astype(np.float64)
    flux = objs["flux"].astype(np.float64)
    flags = objs["flag"].astype(np.int64)
    xp, yp = objs["xpeak"].astype(np.intp), objs["ypeak"].astype(np.intp)
    peak = img[yp, xp].astype(np.float64)
    weight = np.sqrt(np.maximum(flux, 0.0))  # favours bright stars, not just the brightest

    keep = (flags == 0) & (a <= _MAX_ELONGATION * np.maximum(b, 1e-6))
    # hot pixels and cosmic-ray hits: far sharper than any sampled PSF (fwhm >~ 1.5 px)
    top, around = neighbours(data, xp, yp)
    keep &= ~sharper_than(top, around, _MIN_NEIGHBOUR_RATIO, rms)
    # size: twice the half-light radius within 3 x the (moment-based) typical fwhm
    mom = _FWHM_SIGMA * np.sqrt(0.5 * (a * a + b * b))
    rough = weighted_median(mom[keep], weight[keep]) if keep.any() else float(np.median(mom))
    fwhm = np.full(x.size, np.nan)
    fwhm[keep] = half_light_fwhm(data, x[keep], y[keep], max(3.0 * rough, 3.0), mask)
    keep &= fwhm >= _MIN_FWHM
    # non-linear: near the saturation level, or flat-topped
    level = saturation_level(img) if saturation is None else float(saturation)
    if level is not None:
        keep &= ~(peak > _NEAR_SATURATION * level)
    keep &= ~flat_topped(data, xp, yp, fwhm)
    if not keep.any():
        return _empty_table(rms)
    # star-like: size and sharpness near those of the bright stars (sqrt(flux)-weighted)
    seeing = weighted_median(fwhm[keep], weight[keep])
    with np.errstate(divide="ignore", invalid="ignore"):
        typical = weighted_median((around / top)[keep], weight[keep])
    keep &= (fwhm >= _SHARP * seeing) & (fwhm <= _BROAD * seeing)
    # unresolved pairs: rounder than that is a single star
    ellipticity = 1.0 - b / np.maximum(a, 1e-6)
    keep &= ellipticity <= weighted_median(ellipticity[keep], weight[keep]) + _MAX_EXTRA_ELLIPTICITY
    keep &= ~sharper_than(top, around, _NEIGHBOUR_FRACTION * typical, rms)

    # blended pairs: any detected neighbour (removed spikes included) within 3 fwhm
    points = np.concatenate([np.column_stack([x, y]), removed])
    if len(points) > 1:
        pairs = cKDTree(points).query_pairs(_BLEND_FWHM * seeing, output_type="ndarray")
        pairs = pairs.ravel()
        keep[pairs[pairs < x.size]] = False

    idx = np.flatnonzero(keep)
    idx = idx[np.argsort(-flux[idx], kind="stable")][: max(0, int(max_stars))]
    if not idx.size:
        return _empty_table(rms)
    return StarTable(
        x=x[idx],
        y=y[idx],
        flux=flux[idx],
        peak=peak[idx],
        fwhm=fwhm[idx],
        flags=flags[idx],
        fwhm_median=weighted_median(fwhm[idx], weight[idx]),
        background_rms=rms,
    )
