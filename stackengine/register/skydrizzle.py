"""Drizzle of WCS frames onto a tile of the sky grid (``interpolation="drizzle"``).

For a tile, each frame's input pixels whose shrunken footprint may land on it
(:func:`locate`: the tile widened by one input pixel, mapped into the frame)
are dropped onto the tile by :func:`stackengine.kernels.drizzle.drizzle_into`
through a *pixel map*: each input pixel centre's position on the output grid,
frame pixel -> sky -> output pixel, interpolated between exact nodes anchored to
the frame's own grid (the same error bound, ``wcs_accuracy``, as the other
direction). The frame's drizzled value of an output pixel is ``num / den`` and
its weight ``den`` (the overlap areas times the input weights); frames are then
rejected like any values and combined by those weights, which is what the
``drizzle`` package's running weighted mean computes (an unweighted mean of
per-frame drizzles would give a pixel half covered by one frame as much say as
a fully covered one).

The region read is the contributing box plus one input pixel on each side
inside the frame, marked missing: the pixel-corner interpolation of a pixel at
the box's edge sees its true neighbours' map values, so every output pixel gets
the same terms in the same order whatever the tiling.
"""

from __future__ import annotations

import functools
import math
from typing import Any

import numpy as np

from ..kernels.drizzle import drizzle_into
from ..kernels.resample_map import map_box
from ..kernels.resample_nodes import grid_positions
from .skycache import LOCK, parsed
from .wcs import exact_map, map_nodes

__all__ = ["back_region", "drizzle_frame", "locate"]


@functools.lru_cache(maxsize=1024)
def _back_nodes(out_text: str, frame_text: str, region: tuple, step: int) -> tuple:
    """Frame pixel -> output pixel on the nodes of the frame's (raw) ``region``."""
    return map_nodes(parsed(frame_text), parsed(out_text), region, step)


def back_region(reg: Any, k: int) -> tuple[int, int, int, int]:
    """Frame ``k``'s calibrated grid in raw frame pixels (y0, y1, x0, x1)."""
    (oy, ox), (h, w) = reg.origin, reg.shape_of(k)
    return (oy, oy + h, ox, ox + w)


def pixel_map(reg: Any, k: int, region: tuple[int, int, int, int]) -> tuple:
    """Output-grid positions (x, y) of frame ``k``'s calibrated pixels ``region``."""
    oy, ox = reg.origin
    y0, y1, x0, x1 = region[0] + oy, region[1] + oy, region[2] + ox, region[3] + ox
    step = reg.back_steps[k]
    with LOCK:
        if step == 0:
            yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float64)
            return exact_map(parsed(reg.frame_headers[k]), parsed(reg.out_header), xx, yy)
        px, py, ny0, nx0 = _back_nodes(reg.out_header, reg.frame_headers[k],
                                       back_region(reg, k), step)  # fmt: skip
    fx, fy, _ = grid_positions(px, py, ny0, nx0, step, y0, y1, x0, x1, back_region(reg, k))
    return fx, fy


def input_size(reg: Any, k: int) -> float:
    """Frame ``k``'s pixel side in output pixels (from its affine approximation)."""
    det = abs(float(np.linalg.det(reg.matrices[k][:2, :2])))
    return 1.0 / math.sqrt(det) if det > 0 else 1.0


def locate(reg: Any, k: int, y0: int, y1: int, x0: int, x1: int) -> tuple:
    """The frame region to read for the tile (contributing box plus a ring of one
    pixel) and the state :func:`drizzle_frame` needs."""
    pad = int(math.ceil(reg.pixfrac * input_size(reg, k))) + 2
    extent = reg.extent(k, y0 - pad, y1 + pad, x0 - pad, x1 + pad)
    h, w = reg.shape_of(k)
    box = (0, 0, 0, 0) if extent is None else map_box(None, None, 1, (h, w), extent)
    if box[1] <= box[0] or box[3] <= box[2]:
        return (0, 0, 0, 0), None
    region = (max(box[0] - 1, 0), min(box[1] + 1, h), max(box[2] - 1, 0), min(box[3] + 1, w))
    return region, (box, pixel_map(reg, k, region), reg.area(k, y0, y1, x0, x1))


def drizzle_frame(
    reg: Any, k: int, src: np.ndarray, region: tuple, state: tuple, out: np.ndarray,
    y0: int, x0: int, in_weight: np.ndarray | None = None,
) -> np.ndarray:  # fmt: skip
    """Drizzle frame ``k``'s ``src`` (the calibrated ``region``) onto the tile at
    (y0, x0): ``out`` gets the frame's drizzled values (NaN where it drops nothing),
    the return value its weights (``den``), both (rows, cols[, channels]);
    ``in_weight`` (as ``src``, 2-D): each input pixel's weight (a weight map)."""
    box, (px, py), area = state
    values = np.array(src, dtype=np.float32, copy=True)
    ry, rx = box[0] - region[0], box[2] - region[2]
    values[:ry] = np.nan  # the ring: neighbours' map values, not their pixels
    values[ry + box[1] - box[0] :] = np.nan
    values[:, :rx] = np.nan
    values[:, rx + box[3] - box[2] :] = np.nan
    px, py = np.ascontiguousarray(px), np.ascontiguousarray(py)
    planes = values[..., None] if values.ndim == 2 else values
    weights = np.empty(out.shape, dtype=np.float32)
    w3 = weights if weights.ndim == 3 else weights[..., None]
    o3 = out if out.ndim == 3 else out[..., None]
    num = np.empty(out.shape[:2], dtype=np.float64)
    den = np.empty(out.shape[:2], dtype=np.float64)
    for c in range(planes.shape[2]):
        num.fill(0.0)
        den.fill(0.0)
        drizzle_into(np.ascontiguousarray(planes[..., c]), px, py, y0, x0, num, den,
                     pixfrac=reg.pixfrac, kernel=reg.drizzle_kernel, in_weight=in_weight,
                     pixel_scale_ratio=1.0 / input_size(reg, k))  # fmt: skip
        with np.errstate(invalid="ignore", divide="ignore"):
            value = np.where(den > 0, num / den, np.nan)
        if area is not None:
            value = value * area
        o3[..., c] = value
        w3[..., c] = den
    return weights
