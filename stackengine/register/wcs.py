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

import warnings
from typing import Any

import numpy as np

from ..errors import FrameError

__all__ = ["WCSError", "frame_wcs", "pixel_map"]

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
        replaced it by a default), or the header has no celestial WCS.
    """
    from astropy.io import fits
    from astropy.wcs import WCS

    if not isinstance(header, fits.Header):
        header = fits.Header(dict(header))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        wcs = WCS(header, relax=True)
    problems = _problems(caught)
    if problems:
        raise WCSError(f"{path}: WCS cards astropy cannot read as written: {problems[0]}")
    if not wcs.has_celestial:
        ctypes = [header.get(f"CTYPE{i}") for i in (1, 2)]
        raise WCSError(f"{path}: no celestial WCS (CTYPE1, CTYPE2 = {ctypes})")
    return wcs.celestial


def _exact(out_wcs: Any, frame_wcs: Any, x: np.ndarray, y: np.ndarray) -> tuple:
    """Frame pixel (x, y) of output pixels (x, y): through the sky, exactly."""
    world = out_wcs.pixel_to_world_values(x, y)
    fx, fy = frame_wcs.world_to_pixel_values(*world)
    return np.asarray(fx, dtype=np.float64), np.asarray(fy, dtype=np.float64)


def _nodes(start: int, stop: int, step: int) -> np.ndarray:
    """Grid nodes from ``start`` to ``stop - 1`` inclusive, ``step`` apart (last one
    at the end)."""
    nodes = np.arange(start, stop - 1, step, dtype=np.float64)
    return np.append(nodes, float(stop - 1))


def _interpolate(nodes_y, nodes_x, values, y, x) -> np.ndarray:
    """Bilinear interpolation of ``values`` (on the node grid) at points (y, x)."""
    iy = np.clip(np.searchsorted(nodes_y, y, side="right") - 1, 0, len(nodes_y) - 2)
    ix = np.clip(np.searchsorted(nodes_x, x, side="right") - 1, 0, len(nodes_x) - 2)
    ty = (y - nodes_y[iy]) / (nodes_y[iy + 1] - nodes_y[iy])
    tx = (x - nodes_x[ix]) / (nodes_x[ix + 1] - nodes_x[ix])
    v00, v01 = values[iy, ix], values[iy, ix + 1]
    v10, v11 = values[iy + 1, ix], values[iy + 1, ix + 1]
    return (v00 * (1 - tx) + v01 * tx) * (1 - ty) + (v10 * (1 - tx) + v11 * tx) * ty


def pixel_map(
    out_wcs: Any,
    frame_wcs: Any,
    y0: int,
    y1: int,
    x0: int,
    x1: int,
    accuracy: float = 1e-3,
    step: int = 32,
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
    if not accuracy >= 0:
        raise ValueError(f"accuracy={accuracy!r}: must be >= 0 pixels")
    yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float64)
    step = max(1, int(step))
    while accuracy > 0 and step > 1 and min(y1 - y0, x1 - x0) > 1:
        ny, nx = _nodes(y0, y1, step), _nodes(x0, x1, step)
        gy, gx = np.meshgrid(ny, nx, indexing="ij")
        fx_nodes, fy_nodes = _exact(out_wcs, frame_wcs, gx, gy)
        # the check points: each cell's centre and the midpoints of its edges
        cy = np.concatenate([(ny[:-1] + ny[1:]) / 2, ny])
        cx = np.concatenate([(nx[:-1] + nx[1:]) / 2, nx])
        qy, qx = np.meshgrid(cy, cx, indexing="ij")
        ex, ey = _exact(out_wcs, frame_wcs, qx, qy)
        ix = _interpolate(ny, nx, fx_nodes, qy, qx)
        iy = _interpolate(ny, nx, fy_nodes, qy, qx)
        error = np.hypot(ix - ex, iy - ey)
        if np.all(np.isfinite(error)) and float(error.max()) <= accuracy:
            return (_interpolate(ny, nx, fx_nodes, yy, xx),
                    _interpolate(ny, nx, fy_nodes, yy, xx))  # fmt: skip
        step //= 2
    return _exact(out_wcs, frame_wcs, xx, yy)
