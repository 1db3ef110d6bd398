"""``register()``: per-frame transforms onto a reference frame, from the frames' stars.

Two rounds of small dask tasks, on dask's current scheduler:

1. **Stars** (pass 1, :mod:`.pass1`): one task per frame reads that frame only
   and returns its stars, seeing, roundness and background (cached per file).
2. **Matching** (:mod:`.match`): one task per frame matches its stars to the
   reference's by asterisms and fits the transform.

The result is a small per-frame :class:`xarray.Dataset` that users can inspect
and filter (``ds.where(ds.rms_px < 0.5, drop=True)``) before stacking.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import dask
import numpy as np
import xarray as xr

from ..errors import ParameterError
from ..frames import frame_index
from ..tasks.cluster import compute
from .match import MIN_MATCHES, MIN_POINTS, TRANSFORMS, Match, RegistrationError, match_stars
from .pass1 import as_frames, detect_frames
from .stars import FrameStars

__all__ = ["CONVENTION", "register"]

#: the pixel convention of the matrices (also in the result's attrs)
CONVENTION = (
    "matrix maps an output (reference) pixel (x, y, 1) to a frame pixel (divide by the third "
    "component); x = column, y = row, 0-based, integers at pixel centres (numpy/astropy)"
)


def _paths(frames: xr.DataArray) -> list[str]:
    if "path" in frames.coords:
        return [str(p) for p in frames.coords["path"].values]
    return [f"frame {k}" for k in range(frames.sizes["frame"])]


def _reference(reference: Any, paths: list[str], stars: list[FrameStars]) -> int:
    n = len(paths)
    if reference is None:  # most stars; the sharpest among equals; then the first
        score = [(len(s), -(s.fwhm if math.isfinite(s.fwhm) else math.inf)) for s in stars]
        return max(range(n), key=lambda k: (score[k], -k))
    return frame_index(reference, paths)


def _integer(value: Any) -> bool:
    return isinstance(value, int | np.integer) and not isinstance(value, bool)


def _validate(transform: Any, max_stars: Any, min_matches: Any, threshold: Any) -> int:
    if not isinstance(transform, str) or transform not in TRANSFORMS:
        raise ParameterError(f"transform={transform!r}: expected one of {', '.join(TRANSFORMS)}")
    if not _integer(max_stars) or max_stars < 3:
        raise ParameterError(f"max_stars={max_stars!r}: expected an integer >= 3")
    if min_matches is None:
        min_matches = MIN_MATCHES[transform]
    least = MIN_POINTS[transform] + 1
    if not _integer(min_matches) or min_matches < least:
        raise ParameterError(
            f"min_matches={min_matches!r}: transform={transform!r} needs an integer >= {least}"
        )
    if min_matches > max_stars:
        raise ParameterError(f"min_matches={min_matches} is more than max_stars={max_stars}")
    if isinstance(threshold, bool) or not isinstance(threshold, int | float) or not threshold > 0:
        raise ParameterError(f"threshold={threshold!r}: expected a positive number")
    return int(min_matches)


def _message(path: str, n_stars: int, needed: int, n_matched: int, ref_path: str) -> str:
    return (
        f"{path}: cannot register: {n_stars} stars found ({needed} needed), "
        f"{n_matched} matched to the reference {ref_path}"
    )


def _match_chain(
    ref: FrameStars, frames: list[FrameStars], transform: str, needed: int
) -> list[Match | None]:
    """Task body: match consecutive frames in order, each tried first with the previous
    frame's transform (a sequence drifts and turns slowly: the asterisms run only when
    that guess fails, e.g. at a meridian flip); None for a frame with too few stars."""
    out: list[Match | None] = []
    hint = None
    for frame in frames:
        if len(frame) < needed:
            out.append(None)
            continue
        found = match_stars(ref.xy, frame.xy, transform, fwhm=frame.fwhm, hint=hint)
        if found.matrix is not None:
            hint = found.matrix
        out.append(found)
    return out


def _chains(others: list[int]) -> list[list[int]]:
    """The frames to match cut into consecutive runs, a few per thread."""
    from ..tasks.plan import threads_per_worker

    n = max(1, min(len(others) // 16, 4 * threads_per_worker()))
    size = -(-len(others) // n) if others else 1
    return [others[i : i + size] for i in range(0, len(others), size)]


def register(
    frames: Any,
    reference: Any = None,
    transform: str = "similarity",
    *,
    max_stars: int = 200,
    min_matches: int | None = None,
    drop_failed: bool = False,
    threshold: float = 5.0,
    bayer: Any = None,
) -> xr.Dataset:
    """Register frames on a reference frame by their stars.

    Parameters
    ----------
    frames : xarray.DataArray or array
        Dims ("frame", "y", "x"[, "channel"]) from :func:`stackengine.open_frames`
        (each task reads its frame from its file) or any numpy or dask array.
    reference : int, str or None
        The reference frame: an index (negative counts from the end), a path or
        file name. None picks the frame with the most stars (the smallest fwhm
        among equals, then the first).
    transform : {"similarity", "shift", "affine", "homography"}
        The model fitted: "shift" (translation), "similarity" (translation,
        rotation of any angle, uniform scale; a mirror flip too when the frame
        is mirrored), "affine" or "homography" (a projective transform).
    max_stars : int
        Keep the brightest this many stars of each frame.
    min_matches : int or None
        Fewest stars matched to the reference that a frame needs; None: 3 for
        "shift", 4 for "similarity", 5 for "affine", 6 for "homography". A frame
        needs at least ``max(3, min_matches)`` stars to be tried.
    drop_failed : bool
        Drop frames that cannot be registered, with a warning naming each one,
        instead of raising :class:`RegistrationError`.
    threshold : float
        Star detection threshold in units of the background noise.
    bayer : None, bool or str
        Whether 2-D frames are Bayer mosaics whose stars are found on the 2 x 2
        binned luminance: None reads the FITS BAYERPAT card (in-memory frames:
        their ``attrs["BAYERPAT"]``), a pattern such as "RGGB" or True says
        yes, False no.

    Returns
    -------
    xarray.Dataset
        Along "frame" (the registered frames; the "frame" coordinate is their
        index among the input frames, and their other "frame" coordinates such
        as "path" are kept):

        ``matrix`` (frame, i, j) float64
            3 x 3 matrix mapping an output pixel, i.e. a pixel of the reference
            frame, ``(x, y, 1)`` to the frame's pixel ``(x', y', w)``, at
            ``(x'/w, y'/w)``; x = column, y = row, 0-based with integers at
            pixel centres, as numpy and astropy count (full-resolution pixels
            for Bayer frames). The reference's is the identity.
        ``n_stars``, ``n_matched`` (int64)
            Stars found in the frame (at most ``max_stars``), and matched to
            the reference's and kept by the fit.
        ``rms_px`` (float64)
            Root mean square distance, in frame pixels, between the matched
            stars and the reference's stars mapped by ``matrix``.
        ``fwhm``, ``roundness``, ``background`` (float64)
            Median star fwhm (half-light diameter, pixels), median minor/major
            axis ratio, median sky level per pixel (see :mod:`.stars`).

        attrs: ``reference`` (index), ``reference_path``, ``transform``,
        ``convention``, ``max_stars``, ``min_matches``, ``threshold``,
        ``dropped`` (paths of the frames dropped).

    Raises
    ------
    RegistrationError
        A frame has too few stars or too few matched to the reference (without
        ``drop_failed``), or the reference itself has too few stars; the
        message names the frame and the counts.
    ParameterError
        A parameter is invalid.
    """
    min_matches = _validate(transform, max_stars, min_matches, threshold)
    frames = as_frames(frames)
    paths = _paths(frames)
    if reference is not None:  # a bad reference is said before any pixel is read
        _reference(reference, paths, [])
    stars = detect_frames(frames, bayer=bayer, threshold=threshold, max_stars=int(max_stars))
    ref = _reference(reference, paths, stars)
    needed = max(3, min_matches)
    if len(stars[ref]) < needed:
        raise RegistrationError(
            f"{paths[ref]}: cannot register: {len(stars[ref])} stars found ({needed} needed) in "
            "the reference frame itself; choose another reference"
        )
    others = [k for k in range(len(paths)) if k != ref]
    chains = _chains(others)
    tasks = [dask.delayed(_match_chain, pure=True)(stars[ref], [stars[k] for k in chain],
                                                   transform, needed)
             for chain in chains]  # fmt: skip
    found: dict[int, Match | None] = {}
    for chain, matches in zip(chains, compute(*tasks), strict=True):
        found.update(zip(chain, matches, strict=True))
    matched = {k: 0 if m is None or m.matrix is None else m.n_matched for k, m in found.items()}
    failed = [k for k in others if matched[k] < min_matches]
    messages = [_message(paths[k], len(stars[k]), needed, matched[k], paths[ref]) for k in failed]
    if failed and not drop_failed:
        more = f" (and {len(failed) - 1} more frames; drop_failed=True drops them)"
        raise RegistrationError(messages[0] + (more if len(failed) > 1 else ""))
    for text in messages:
        warnings.warn(f"{text}; frame dropped", UserWarning, stacklevel=2)
    kept = [k for k in range(len(paths)) if k not in set(failed)]
    return _dataset(frames, kept, ref, stars, found, transform, attrs={
        "max_stars": int(max_stars), "min_matches": min_matches, "threshold": float(threshold),
        "dropped": [paths[k] for k in failed], "reference_path": paths[ref],
    })  # fmt: skip


def _dataset(frames, kept, ref, stars, found, transform, attrs) -> xr.Dataset:
    n = len(kept)
    matrix = np.empty((n, 3, 3))
    n_matched = np.empty(n, np.int64)
    rms = np.empty(n)
    for i, k in enumerate(kept):
        if k == ref:
            matrix[i], n_matched[i], rms[i] = np.eye(3), len(stars[k]), 0.0
        else:
            m = found[k]
            matrix[i], n_matched[i], rms[i] = m.matrix, m.n_matched, m.rms_px
    per_frame = [stars[k] for k in kept]
    data_vars = {
        "matrix": (("frame", "i", "j"), matrix),
        "n_stars": ("frame", np.array([len(s) for s in per_frame], np.int64)),
        "n_matched": ("frame", n_matched),
        "rms_px": ("frame", rms),
        "fwhm": ("frame", np.array([s.fwhm for s in per_frame], np.float64)),
        "roundness": ("frame", np.array([s.roundness for s in per_frame], np.float64)),
        "background": ("frame", np.array([s.background for s in per_frame], np.float64)),
    }
    coords = {"frame": ("frame", np.array(kept, np.int64))}
    for name, c in frames.coords.items():
        if c.dims == ("frame",) and name != "frame":
            coords[name] = ("frame", np.asarray(c.values)[kept])
    return xr.Dataset(data_vars, coords=coords, attrs={
        "reference": int(ref), "transform": transform, "convention": CONVENTION, **attrs,
    })  # fmt: skip
