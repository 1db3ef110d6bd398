"""Matching a frame's stars to the reference's, and fitting the transform.

Three steps, all on star lists (no images, no dask, no files):

0. **A quick guess.** The shift on which most offsets between the two lists'
   brightest stars agree (and a caller's ``hint``) is tried first, through steps
   2 and 3; it stands when it pairs at least 30 % of the stars (8 at least), as
   for frames that drift without rotating. Otherwise the asterisms decide.
1. **Asterisms.** :func:`asterism_transform` matches triangles of neighbouring
   stars by their invariant side ratios with astroalign (Beroiz et al. 2020),
   which fits a similarity transform to the matched triangles with its own
   RANSAC. Side ratios do not change under rotation (any angle, 180 degrees
   included), scale or a mirror flip; astroalign's similarity cannot hold a
   flip, so when the direct match fails the frame's stars are matched again
   with ``x`` negated and the flip is put back into the result.
2. **Pairs.** Every reference star is mapped into the frame by the current
   transform and paired with the nearest frame star within :func:`match_radius`
   (each frame star paired at most once, to the closest reference star).
3. **Robust fit, then least squares** (:func:`.transforms.robust_fit`): a
   seeded RANSAC over minimal samples of the pairs for the chosen model, least
   squares on all pairs within ``tolerance`` of it, 4-sigma clipping. Steps 2
   and 3 repeat with the fitted model until the pairs do not change.

The matrices map a reference pixel ``(x, y, 1)`` to a frame pixel (see
:mod:`.transforms` for the models and the pixel convention). A "similarity"
includes a mirror flip when the frame is mirrored against the reference.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.spatial import cKDTree

from ..errors import StackEngineError
from .transforms import MIN_POINTS, TRANSFORMS, apply, distances, robust_fit

__all__ = [
    "MIN_MATCHES",
    "MIN_POINTS",
    "TRANSFORMS",
    "Match",
    "RegistrationError",
    "asterism_transform",
    "match_radius",
    "match_stars",
]

#: default fewest matched stars accepted per model
MIN_MATCHES = {"shift": 3, "similarity": 4, "affine": 5, "homography": 6}
#: brightest stars of each list astroalign builds its triangles from
CONTROL_POINTS = 50
_FLIP = np.diag([-1.0, 1.0, 1.0])
_VOTE_STARS = 40  # brightest stars of each list whose offsets vote for a shift
_SURE_MIN, _SURE_FRACTION = 8, 0.3  # a quick guess stands with this many stars matched


class RegistrationError(StackEngineError, ValueError):
    """A frame cannot be registered: too few stars found or matched to the reference."""


@dataclass(frozen=True)
class Match:
    """A frame's transform from the reference and the stars it rests on.

    Attributes
    ----------
    matrix : ndarray or None
        3 x 3 float64, reference pixel ``(x, y, 1)`` -> frame pixel; None when
        no transform was found.
    ref_index, frame_index : ndarray
        The matched (inlier) stars: indices into the two star lists.
    rms_px : float
        Root mean square distance between the matched frame stars and the
        reference stars mapped by ``matrix`` (frame pixels).
    mirrored : bool
        The frame is mirrored against the reference.
    """

    matrix: np.ndarray | None
    ref_index: np.ndarray
    frame_index: np.ndarray
    rms_px: float
    mirrored: bool = False

    @property
    def n_matched(self) -> int:
        return int(self.ref_index.size)


def asterism_transform(ref_xy: np.ndarray, frame_xy: np.ndarray) -> np.ndarray | None:
    """Reference -> frame similarity from matched triangles (astroalign), or None.

    The brightest :data:`CONTROL_POINTS` stars of each list are used; when the
    direct match fails, the frame's ``x`` is negated (a mirrored frame) and the
    flip composed into the result (determinant < 0).
    """
    import astroalign

    ref = np.asarray(ref_xy, dtype=np.float64)[:CONTROL_POINTS]
    frm = np.asarray(frame_xy, dtype=np.float64)[:CONTROL_POINTS]
    if len(ref) < 3 or len(frm) < 3:
        return None
    for flip in (False, True):
        target = frm * [-1.0, 1.0] if flip else frm
        try:
            t, _ = astroalign.find_transform(ref, target)
        except (ValueError, RuntimeError, TypeError, IndexError):  # no match found
            continue
        m = np.asarray(t.params, dtype=np.float64)
        return _FLIP @ m if flip else m
    return None


def match_radius(fwhm: float) -> float:
    """Pairing radius (frame pixels): the larger of 3 px and the frame's fwhm."""
    return max(3.0, fwhm) if math.isfinite(fwhm) else 3.0


def _pairs(matrix, ref, frm, radius) -> tuple[np.ndarray, np.ndarray]:
    """(ref index, frame index): each mapped reference star with its nearest frame star
    within ``radius``, each frame star kept once (for its closest reference star)."""
    if not len(ref) or not len(frm):
        return np.empty(0, np.intp), np.empty(0, np.intp)
    pred = apply(matrix, ref)
    d, j = cKDTree(frm).query(pred, distance_upper_bound=radius)
    i = np.flatnonzero(np.isfinite(d))
    j, d = j[i], d[i]
    order = np.lexsort((d, j))  # closest reference star first for each frame star
    first = np.ones(order.size, bool)
    first[1:] = j[order][1:] != j[order][:-1]
    keep = np.sort(order[first])
    return i[keep], j[keep]


def match_stars(
    ref_xy: np.ndarray,
    frame_xy: np.ndarray,
    model: str = "similarity",
    *,
    fwhm: float = math.nan,
    tolerance: float | None = None,
    hint: np.ndarray | None = None,
) -> Match:
    """Match a frame's stars to the reference's and fit ``model`` (module notes).

    Parameters
    ----------
    ref_xy, frame_xy : ndarray
        ``(n, 2)`` star positions (full-resolution pixels), brightest first.
    model : {"shift", "similarity", "affine", "homography"}
        The transform to fit.
    fwhm : float
        The frame's seeing (pixels); sets the pairing radius (:func:`match_radius`).
    tolerance : float or None
        Inlier distance for the robust fit (frame pixels); None: half the pairing
        radius.
    hint : ndarray or None
        A 3 x 3 transform likely close to the frame's (a neighbouring frame's),
        tried first.

    Returns
    -------
    Match
        ``matrix`` None (and no stars) when the asterisms do not match.
    """
    ref = np.asarray(ref_xy, dtype=np.float64).reshape(-1, 2)
    frm = np.asarray(frame_xy, dtype=np.float64).reshape(-1, 2)
    empty = np.empty(0, np.intp)
    radius = match_radius(fwhm)
    tol = 0.5 * radius if tolerance is None else float(tolerance)
    for guess in _guesses(ref, frm, radius, hint):
        found = _refine(ref, frm, guess, model, radius, tol)
        if found.matrix is not None and found.n_matched >= _sure(len(ref), len(frm)):
            return found
    approx = asterism_transform(ref, frm)
    if approx is None:
        return Match(None, empty, empty, math.nan)
    return _refine(ref, frm, approx, model, radius, tol)


def _sure(n_ref: int, n_frame: int) -> int:
    """Matched stars that make a quick guess certain (else the asterisms decide)."""
    return max(_SURE_MIN, math.ceil(_SURE_FRACTION * min(n_ref, n_frame)))


def _guesses(ref: np.ndarray, frm: np.ndarray, radius: float, hint) -> list[np.ndarray]:
    """Quick first transforms to try before the asterisms: ``hint`` (e.g. a
    neighbouring frame's transform) if given, then the shift on which most
    offsets between the brightest stars of the two lists agree (no rotation)."""
    out = []
    a, b = ref[:_VOTE_STARS], frm[:_VOTE_STARS]
    if hint is not None:
        hint = np.asarray(hint, dtype=np.float64)
        out.append(hint)
        if len(a) and len(b):  # the hint's rotation and scale, a dither's shift on top
            p = hint @ np.vstack([a.T, np.ones(len(a))])
            out.append(_voted_shift((p[:2] / p[2]).T, b, radius) @ hint)
    if len(a) and len(b):
        out.append(_voted_shift(a, b, radius))
    return out


def _voted_shift(a: np.ndarray, b: np.ndarray, radius: float) -> np.ndarray:
    """The shift from ``a`` to ``b`` on which most offsets between their stars agree."""
    offsets = (b[None, :, :] - a[:, None, :]).reshape(-1, 2)
    votes = cKDTree(offsets).query_ball_point(offsets, radius, return_length=True)
    shift = np.eye(3)
    shift[:2, 2] = offsets[int(np.argmax(votes))]
    return shift


def _refine(ref, frm, approx, model, radius, tol) -> Match:
    """Pairs under ``approx``, robust fit, repeated until the pairs do not change."""
    empty = np.empty(0, np.intp)
    mirrored = bool(np.linalg.det(approx[:2, :2]) < 0)
    matrix, pairs, inl = approx, None, np.zeros(0, bool)
    for _ in range(5):
        new = _pairs(matrix, ref, frm, radius)
        if pairs is not None and all(np.array_equal(a, b) for a, b in zip(new, pairs, strict=True)):
            break
        pairs = new
        fitted, inl = robust_fit(ref[pairs[0]], frm[pairs[1]], model, tol, mirrored=mirrored)
        if fitted is None:
            return Match(None, empty, empty, math.nan, mirrored)
        matrix = fitted
    ri, fi = pairs[0][inl], pairs[1][inl]
    d = distances(matrix, ref[ri], frm[fi])
    return Match(matrix, ri, fi, float(np.sqrt(np.mean(d**2))), mirrored)
