"""Photometric scale between frames, in the spirit of NormalizeScaleGradient.

Pure functions on 2-D numpy images (no dask, no files); the pipeline calls
:func:`find_stars` (:mod:`.stars`) and :func:`aperture_fluxes`
(:mod:`.apertures`) per frame, independently and in parallel, then
:func:`match_stars` and :func:`fit_scale` (here) against the reference.

Detection (:func:`find_stars`, :mod:`.stars`)
    sep (SExtractor's engine): a 64-pixel background mesh is subtracted, the
    image is filtered with a small Gaussian kernel and pixels above
    ``threshold`` times the noise *of the filtered image* are grouped and
    deblended; kept are isolated, unsaturated, star-like objects only.
Photometry (:func:`aperture_fluxes`, :mod:`.apertures`)
    A circular aperture of radius ``3 fwhm`` (exact pixel overlap, as photutils),
    minus the 3-sigma clipped median of an annulus from 5 to 8 fwhm.
Scale (:func:`fit_scale`)
    ``ref_flux = k tgt_flux`` through the origin (both fluxes are
    background-subtracted), weighted least squares with iterative
    outlier rejection; at least :data:`MIN_STARS` stars.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.spatial import cKDTree

from .apertures import APERTURE_RADIUS, aperture_fluxes
from .stars import MIN_STARS, StarTable, find_stars

__all__ = [
    "APERTURE_RADIUS",
    "MIN_STARS",
    "ScaleFit",
    "StarTable",
    "aperture_fluxes",
    "find_stars",
    "fit_scale",
    "match_stars",
    "photometric_scale",
]

_MAD_STD = 1.482602218505602
_MAX_FIT_ROUNDS = 20  # fit_scale: reweighting / clipping rounds


@dataclass(frozen=True)
class ScaleFit:
    """The fitted photometric scale ``ref_flux = k tgt_flux``.

    Attributes
    ----------
    k : float
        The scale that brings the target to the reference.
    k_err : float
        Its standard error (from the residuals of the kept stars).
    n_used : int
        Stars kept by the outlier rejection.
    used : ndarray of bool
        Which of the input pairs were kept.
    residual_rms : float
        Root mean square of ``ref - k tgt`` over the kept stars (reference
        flux units).
    """

    k: float
    k_err: float
    n_used: int
    used: np.ndarray
    residual_rms: float


# ----------------------------------------------------------------------------- matching, fit


def match_stars(
    ref_x: np.ndarray,
    ref_y: np.ndarray,
    tgt_x: np.ndarray,
    tgt_y: np.ndarray,
    *,
    radius: float = 2.0,
) -> tuple[np.ndarray, np.ndarray]:
    """One-to-one nearest-neighbour pairs between two star lists.

    Parameters
    ----------
    ref_x, ref_y, tgt_x, tgt_y : array_like
        Positions in the same (registered) pixel frame.
    radius : float
        Largest separation of a pair (pixels, inclusive).

    Returns
    -------
    ref_idx, tgt_idx : ndarray of int
        Indices of the matched stars, sorted by ``ref_idx``. Pairs are taken
        closest first, each star at most once.
    """
    ref = np.column_stack([np.ravel(ref_x), np.ravel(ref_y)]).astype(np.float64)
    tgt = np.column_stack([np.ravel(tgt_x), np.ravel(tgt_y)]).astype(np.float64)
    empty = np.empty(0, np.intp)
    ref_ok = np.flatnonzero(np.isfinite(ref).all(axis=1))  # positions with a NaN never match
    tgt_ok = np.flatnonzero(np.isfinite(tgt).all(axis=1))
    if not ref_ok.size or not tgt_ok.size:
        return empty, empty
    dist = cKDTree(ref[ref_ok]).sparse_distance_matrix(
        cKDTree(tgt[tgt_ok]), radius, output_type="ndarray"
    )
    if not dist.size:
        return empty, empty
    order = np.lexsort((dist["j"], dist["i"], dist["v"]))  # closest first, ties by index
    used_r, used_t = set(), set()
    pairs = []
    for i, j in zip(dist["i"][order].tolist(), dist["j"][order].tolist(), strict=True):
        if i not in used_r and j not in used_t:
            used_r.add(i)
            used_t.add(j)
            pairs.append((i, j))
    pairs.sort()
    arr = np.array(pairs, dtype=np.intp)
    return ref_ok[arr[:, 0]], tgt_ok[arr[:, 1]]


def _too_few(n: int, what: str = "") -> ValueError:
    return ValueError(f"too few matched stars: {n}{what} (need at least {MIN_STARS})")


def fit_scale(ref_flux: np.ndarray, tgt_flux: np.ndarray, *, clip: float = 3.0) -> ScaleFit:
    """Robust straight line through the origin, ``ref_flux = k tgt_flux``.

    Parameters
    ----------
    ref_flux, tgt_flux : array_like
        Background-subtracted fluxes of matched stars (pairs with a NaN are
        ignored).
    clip : float
        Outlier threshold in units of the robust scatter of the normalised
        residuals.

    Returns
    -------
    ScaleFit

    Raises
    ------
    ValueError
        "too few matched stars: N (need at least 8)" when fewer than
        :data:`MIN_STARS` usable pairs are given or remain after the outlier
        rejection.

    Notes
    -----
    Start: k = median of ``ref / tgt`` over pairs with both fluxes positive,
    all pairs kept. Each round, about the current k: weights
    ``w = 1 / (f0 + |ref| + k |tgt|)`` with ``f0`` the median of
    ``|ref| + k |tgt|`` over the kept stars; normalised residuals
    ``z = (ref - k tgt) sqrt(w)``; kept are the pairs with
    ``|z - median(z)| <= clip x mad_std(z)`` (mad_std over the stars kept so
    far; a star may return); then ``k = sum(w ref tgt) / sum(w tgt**2)`` over
    them. Stop when neither the kept set nor k changes (at most 20 rounds).

    The variance of a star's flux is a sky term (constant) plus a photon term
    (proportional to the flux); without the gain their ratio is unknown, so the weights take
    the crossover at the median star: faint stars weigh equally (sky
    limited), bright ones as 1/flux (photon limited). ``k_err`` is the
    sandwich estimate ``sqrt(sum((w t e)**2) / sum(w t**2)**2 x n / (n - 1))``
    with ``e = ref - k tgt``, valid whatever the stars' true variances.
    """
    ref = np.asarray(ref_flux, dtype=np.float64).ravel()
    tgt = np.asarray(tgt_flux, dtype=np.float64).ravel()
    if ref.shape != tgt.shape:
        raise ValueError(f"ref_flux and tgt_flux differ in length: {ref.size} != {tgt.size}")
    used = np.isfinite(ref) & np.isfinite(tgt)
    if np.count_nonzero(used) < MIN_STARS:
        raise _too_few(int(np.count_nonzero(used)))
    pos = used & (ref > 0) & (tgt > 0)
    if np.count_nonzero(pos) < MIN_STARS:
        raise _too_few(int(np.count_nonzero(pos)), " with positive fluxes")
    valid = used
    k = float(np.median(ref[pos] / tgt[pos]))
    for _ in range(_MAX_FIT_ROUNDS):
        f0 = float(np.median(np.abs(ref[used]) + k * np.abs(tgt[used])))
        wt = 1.0 / (f0 + np.abs(ref) + k * np.abs(tgt))
        z = (ref - k * tgt) * np.sqrt(wt)
        zc = z - np.median(z[used])
        # scatter, floored at 1e-9 of the signal (a perfect line clips nothing)
        s = _MAD_STD * float(np.median(np.abs(zc[used])))
        s = max(s, 1e-9 * float(np.median(np.abs(k * tgt[used]) * np.sqrt(wt[used]))))
        new = valid & (np.abs(zc) <= clip * s)
        if np.count_nonzero(new) < MIN_STARS:
            raise _too_few(int(np.count_nonzero(new)), " left after outlier rejection")
        w, r, t = wt[new], ref[new], tgt[new]
        k_new = float(np.sum(w * r * t) / np.sum(w * t * t))
        done = np.array_equal(new, used) and abs(k_new - k) <= 1e-12 * abs(k)
        used, k = new, k_new
        if done:
            break
    n = int(np.count_nonzero(used))
    resid = r - k * t
    # sandwich (heteroscedasticity-consistent) variance: right whatever the true variances
    var = float(np.sum((w * t * resid) ** 2)) / float(np.sum(w * t * t)) ** 2 * n / max(n - 1, 1)
    return ScaleFit(
        k=k,
        k_err=math.sqrt(var),
        n_used=n,
        used=used,
        residual_rms=float(np.sqrt(np.mean(resid**2))),
    )


def photometric_scale(
    ref_image: np.ndarray,
    tgt_image: np.ndarray,
    *,
    threshold: float = 5.0,
    max_stars: int = 500,
    saturation: float | None = None,
    kernel_fwhm: float | None = None,
    radius: float = 2.0,
    clip: float = 3.0,
) -> ScaleFit:
    """The scale ``k`` with ``ref ~ k tgt``, from the stars of two registered frames.

    :func:`find_stars` on each frame, :func:`aperture_fluxes` at each frame's
    own star positions with its own fwhm, :func:`match_stars` within
    ``radius`` and :func:`fit_scale`; the keywords are passed to them.

    Returns
    -------
    ScaleFit
        ``used`` refers to the matched pairs.
    """
    kw = {"threshold": threshold, "max_stars": max_stars, "saturation": saturation,
          "kernel_fwhm": kernel_fwhm}  # fmt: skip
    ref_stars, tgt_stars = find_stars(ref_image, **kw), find_stars(tgt_image, **kw)
    if len(ref_stars) < MIN_STARS or len(tgt_stars) < MIN_STARS:
        raise ValueError(
            f"too few matched stars: {min(len(ref_stars), len(tgt_stars))} (need at least "
            f"{MIN_STARS}; stars found: {len(ref_stars)} in the reference, "
            f"{len(tgt_stars)} in the target)"
        )
    ref_f, _ = aperture_fluxes(ref_image, ref_stars.x, ref_stars.y, fwhm=ref_stars.fwhm_median)
    tgt_f, _ = aperture_fluxes(tgt_image, tgt_stars.x, tgt_stars.y, fwhm=tgt_stars.fwhm_median)
    i, j = match_stars(ref_stars.x, ref_stars.y, tgt_stars.x, tgt_stars.y, radius=radius)
    return fit_scale(ref_f[i], tgt_f[j], clip=clip)
