"""Frames' celestial WCS, read strictly, and the pixel mapping between two WCSs (issue 17).

Building blocks of ``register="wcs"`` (not wired into :func:`stackengine.stack`
yet):

:func:`frame_wcs`
    A frame's celestial WCS from its header (TAN, TPV, SIP: whatever astropy
    reads). astropy reads some malformed cards with a warning and goes on with a
    default: a quoted number (``CRVAL1 = '315.44'``) becomes 0, silently moving
    the frame across the sky. Here every such warning is an error naming the
    frame and the card (:class:`WCSError`); only astropy's harmless fixes (dates,
    units, obsolete spellings it translates exactly) pass.
:func:`pixel_map`
    For a region of the output grid, where each output pixel centre falls in a
    frame: output pixel -> sky (the output WCS) -> frame pixel (the frame's
    WCS). Evaluated exactly on a coarse grid of nodes and bilinearly
    interpolated in between; the grid is refined (halving its step) until the
    exact mapping at every cell's centre and edge midpoints is within
    ``accuracy`` pixels of the interpolation (SWarp's approach; Rubin
    interpolates every 10 px). ``accuracy=0`` evaluates every pixel exactly.
    Written here because neither astropy nor reproject exposes a bounded-error
    interpolated mapping (reproject interpolates on a fixed grid without a bound).
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np

from ..errors import FrameError

__all__ = [
    "WCSError",
    "choose_step",
    "estimated_error",
    "exact_map",
    "frame_wcs",
    "interpolate_nodes",
    "map_nodes",
    "mapping_error",
    "node_axis",
    "pixel_map",
]

#: FITSFixedWarning fixes that change nothing a mapping uses
_HARMLESS = ("'datfix'", "'unitfix'", "'obsfix'", "'celfix'", "'spcfix'", "'cylfix'")


class WCSError(FrameError):
    """A frame's WCS cannot be read as written (the message names the frame and card)."""


def _problems(caught: list) -> list[str]:
    out = []
    for w in caught:
        text = " ".join(str(w.message).split())
        if any(h in text for h in _HARMLESS) and "was expected" not in text:
            continue
        out.append(text)
    return out


def _defaulted(header: Any, axes: tuple[int, int]) -> list[str]:
    """The cards of the celestial ``axes`` that astropy would take a default for: the
    reference value and pixel, and a scale (CDi_j, or CDELTi)."""
    missing = [f"{key}{i}" for i in axes for key in ("CRVAL", "CRPIX") if f"{key}{i}" not in header]
    has_cd = any(f"CD{i}_{j}" in header for i in axes for j in axes)
    if not has_cd:
        missing += [f"CDELT{i}" for i in axes if f"CDELT{i}" not in header]
    return missing


def frame_wcs(header: Any, path: str = "frame") -> Any:
    """The celestial :class:`astropy.wcs.WCS` of a FITS header, read strictly.

    Parameters
    ----------
    header : astropy.io.fits.Header or mapping
        The frame's header (its WCS cards).
    path : str
        The frame's name for messages.

    Returns
    -------
    astropy.wcs.WCS
        The celestial part (two axes), distortions (SIP, TPV) included.

    Raises
    ------
    WCSError
        astropy warned about a card it could not read as written (it would have
        replaced it by a default), a card astropy would silently default is missing
        (CRVALi, CRPIXi, and CDi_j or CDELTi of the celestial axes), or the header
        has no celestial WCS.
    """
    from astropy.io import fits
    from astropy.wcs import WCS

    if not isinstance(header, fits.Header):
        header = fits.Header(dict(header))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            wcs = WCS(header, relax=True)
        except Exception as exc:  # astropy's own refusal (e.g. SIP without CRPIX)
            raise WCSError(f"{path}: WCS cannot be read: {' '.join(str(exc).split())}") from None
    problems = _problems(caught)
    if problems:
        raise WCSError(
            f"{path}: WCS cards astropy cannot read as written (it would replace them by a "
            f"default, e.g. an identity): {problems[0]}"
        )
    if not wcs.has_celestial:
        ctypes = [header.get(f"CTYPE{i}") for i in (1, 2)]
        raise WCSError(f"{path}: no celestial WCS (CTYPE1, CTYPE2 = {ctypes})")
    missing = _defaulted(header, (wcs.wcs.lng + 1, wcs.wcs.lat + 1))
    if missing:
        raise WCSError(
            f"{path}: WCS card(s) {', '.join(missing)} missing: astropy would silently take "
            "a default (0, or 1 degree per pixel) and put the frame in the wrong place"
        )
    if wcs.naxis == 2 and wcs.wcs.lng == 0 and wcs.wcs.lat == 1:
        return wcs  # already the celestial part
    return wcs.celestial


#: all_world2pix's tolerance (frame pixels): far below any accuracy asked for
TOLERANCE = 1e-7


def exact_map(out_wcs: Any, frame_wcs: Any, x: Any, y: Any) -> tuple[np.ndarray, np.ndarray]:
    """Frame pixel (x, y) of output pixels (x, y), through the sky, exactly.

    The inverse of a distortion (SIP) is iterated for each point on its own
    (astropy's adaptive mode), so a point's result does not depend on which other
    points are mapped with it: the same bits for any tiling. Points whose
    iteration does not converge keep astropy's best solution.
    """
    world = out_wcs.all_pix2world(np.asarray(x, dtype=np.float64),
                                  np.asarray(y, dtype=np.float64), 0)  # fmt: skip
    with np.errstate(invalid="ignore", over="ignore"):
        fx, fy = frame_wcs.all_world2pix(world[0], world[1], 0, tolerance=TOLERANCE,
                                         adaptive=True, quiet=True)  # fmt: skip
    return np.asarray(fx, dtype=np.float64), np.asarray(fy, dtype=np.float64)


def node_axis(start: int, stop: int, step: int) -> np.ndarray:
    """Grid nodes at the multiples of ``step`` around pixels ``start:stop`` (the first
    at or before ``start``, the last at or after ``stop - 1``; at least two): anchored
    to the whole grid, so every region sees the same nodes."""
    a = (start // step) * step
    b = max(-(-(stop - 1) // step) * step, a + step)
    return np.arange(a, b + 1, step, dtype=np.float64)


def interpolate_nodes(
    values: np.ndarray, ny0: float, nx0: float, step: int, y0: int, y1: int, x0: int, x1: int
) -> np.ndarray:
    """Bilinear interpolation at pixels rows ``y0:y1``, columns ``x0:x1`` of ``values``
    given on the nodes ``(ny0 + i * step, nx0 + j * step)``; each pixel from its own
    four nodes by one formula, so a pixel's value does not depend on the region."""
    ys = np.arange(y0, y1, dtype=np.float64)
    xs = np.arange(x0, x1, dtype=np.float64)
    iy = np.clip(((ys - ny0) // step).astype(np.int64), 0, values.shape[0] - 2)
    ix = np.clip(((xs - nx0) // step).astype(np.int64), 0, values.shape[1] - 2)
    ty = ((ys - (ny0 + iy * step)) / step)[:, None]
    tx = (xs - (nx0 + ix * step)) / step
    v00, v01 = values[iy][:, ix], values[iy][:, ix + 1]
    v10, v11 = values[iy + 1][:, ix], values[iy + 1][:, ix + 1]
    return (v00 * (1 - tx) + v01 * tx) * (1 - ty) + (v10 * (1 - tx) + v11 * tx) * ty


def map_nodes(
    out_wcs: Any, frame_wcs: Any, region: tuple[int, int, int, int], step: int
) -> tuple[np.ndarray, np.ndarray, float, float]:
    """The exact mapping on the anchored nodes around ``region`` (y0, y1, x0, x1):
    ``(fx, fy, ny0, nx0)`` with the first node's output row and column."""
    ny, nx = node_axis(region[0], region[1], step), node_axis(region[2], region[3], step)
    gy, gx = np.meshgrid(ny, nx, indexing="ij")
    fx, fy = exact_map(out_wcs, frame_wcs, gx, gy)
    return fx, fy, float(ny[0]), float(nx[0])


def mapping_error(
    out_wcs: Any, frame_wcs: Any, region: tuple[int, int, int, int], step: int
) -> float:
    """The largest distance (frame pixels) between the mapping interpolated from the
    nodes ``step`` apart and the exact one, at every cell's centre and edge midpoints
    inside ``region``; NaN where neither is finite is ignored, one side NaN is inf."""
    fx, fy, ny0, nx0 = map_nodes(out_wcs, frame_wcs, region, step)
    half = step / 2
    cy = np.arange(ny0, ny0 + (fx.shape[0] - 1) * step + 1, half)
    cx = np.arange(nx0, nx0 + (fx.shape[1] - 1) * step + 1, half)
    cy = cy[(cy >= region[0]) & (cy <= region[1] - 1)]
    cx = cx[(cx >= region[2]) & (cx <= region[3] - 1)]
    if not len(cy) or not len(cx):
        return 0.0
    qy, qx = np.meshgrid(cy, cx, indexing="ij")
    ex, ey = exact_map(out_wcs, frame_wcs, qx, qy)
    ix = _at(fx, ny0, nx0, step, qy, qx)
    iy = _at(fy, ny0, nx0, step, qy, qx)
    error = np.hypot(ix - ex, iy - ey)
    both_nan = ~np.isfinite(ex) & ~np.isfinite(ix)
    error[both_nan] = 0.0
    error[~np.isfinite(error)] = np.inf
    return float(error.max())


def _at(values: np.ndarray, ny0: float, nx0: float, step: int, qy, qx) -> np.ndarray:
    """Bilinear interpolation of node ``values`` at scattered points (qy, qx)."""
    iy = np.clip(((qy - ny0) // step).astype(np.int64), 0, values.shape[0] - 2)
    ix = np.clip(((qx - nx0) // step).astype(np.int64), 0, values.shape[1] - 2)
    ty = (qy - (ny0 + iy * step)) / step
    tx = (qx - (nx0 + ix * step)) / step
    v00, v01 = values[iy, ix], values[iy, ix + 1]
    v10, v11 = values[iy + 1, ix], values[iy + 1, ix + 1]
    return (v00 * (1 - tx) + v01 * tx) * (1 - ty) + (v10 * (1 - tx) + v11 * tx) * ty


def estimated_error(fx: np.ndarray, fy: np.ndarray) -> float:
    """The largest error (frame pixels) of bilinear interpolation between nodes holding
    ``fx``, ``fy``, estimated from their second differences: in a cell,
    ``(|d2f/dx2| hx**2 + |d2f/dy2| hy**2) / 8`` at most, with ``h**2 d2f`` the second
    difference of neighbouring nodes (exact for the quadratic and cubic terms of a
    distortion at the node; the mixed term is interpolated exactly). inf when no
    second difference is finite."""
    worst = []
    for f in (fx, fy):
        parts = []
        for axis in (0, 1):
            if f.shape[axis] < 3:
                parts.append(np.zeros(1))
                continue
            d2 = np.abs(np.diff(f, 2, axis=axis))
            parts.append(d2[np.isfinite(d2)] if np.isfinite(d2).any() else np.full(1, np.inf))
        worst.append((parts[0].max() + parts[1].max()) / 8)
    return float(np.hypot(*worst))


def choose_step(
    out_wcs: Any,
    frame_wcs: Any,
    region: tuple[int, int, int, int],
    accuracy: float,
    start: int = 64,
    nodes: Any = None,
) -> int:
    """The node spacing (output pixels, at most ``start``) whose interpolated mapping
    stays within ``accuracy`` frame pixels over ``region``; 0 (every pixel exactly)
    when ``accuracy`` is 0 or no spacing of at least 2 holds it.

    The error at a spacing is estimated from the exact mapping's nodes at that
    spacing alone (:func:`estimated_error`, no other point mapped), kept below 0.7
    ``accuracy``; from a coarse spacing the needed one follows from the error's
    ``h**2`` scaling, so a frame costs one or two node grids (which the tile tasks
    then reuse), not a dense check. ``nodes(step)``, when given, returns the nodes'
    ``(fx, fy)`` instead of :func:`map_nodes` (e.g. from a cache the tile tasks share).
    """
    if not accuracy >= 0:
        raise ValueError(f"accuracy={accuracy!r}: must be >= 0 pixels")
    if accuracy == 0:
        return 0
    target = 0.7 * accuracy
    step = max(2, int(start))
    span = max(region[1] - region[0], region[3] - region[2], 1)
    step = min(step, max(2, span // 2))  # at least three nodes along the longer side
    for _ in range(12):
        if nodes is not None:
            fx, fy = nodes(step)
        else:
            fx, fy, _, _ = map_nodes(out_wcs, frame_wcs, region, step)
        error = estimated_error(fx, fy)
        if error <= target:
            return step
        if not np.isfinite(error):
            smaller = step // 2
        else:
            smaller = min(step - 1, int(step * math.sqrt(target / error) * 0.95))
        if smaller < 2:
            return 0
        step = smaller
    return 0


def pixel_map(
    out_wcs: Any,
    frame_wcs: Any,
    y0: int,
    y1: int,
    x0: int,
    x1: int,
    accuracy: float = 1e-3,
    step: int = 64,
) -> tuple[np.ndarray, np.ndarray]:
    """Frame pixel positions of the output pixels rows ``y0:y1``, columns ``x0:x1``.

    Parameters
    ----------
    out_wcs, frame_wcs : astropy.wcs.WCS
        The output grid's and the frame's celestial WCS (0-based pixel centres).
    y0, y1, x0, x1 : int
        The output region (ends exclusive).
    accuracy : float
        Largest error of the interpolated positions, in frame pixels (checked
        against the exact mapping at every grid cell's centre and edge midpoints);
        0 evaluates every pixel exactly.
    step : int
        The first grid step in output pixels (halved until ``accuracy`` holds).

    Returns
    -------
    fx, fy : ndarray
        ``(y1 - y0, x1 - x0)`` float64 frame columns and rows (NaN where the sky
        position has no frame pixel, e.g. beyond the frame's projection).
    """
    region = (y0, y1, x0, x1)
    chosen = choose_step(out_wcs, frame_wcs, region, accuracy, step)
    if chosen == 0:
        yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float64)
        return exact_map(out_wcs, frame_wcs, xx, yy)
    fx, fy, ny0, nx0 = map_nodes(out_wcs, frame_wcs, region, chosen)
    return (interpolate_nodes(fx, ny0, nx0, chosen, y0, y1, x0, x1),
            interpolate_nodes(fy, ny0, nx0, chosen, y0, y1, x0, x1))  # fmt: skip
