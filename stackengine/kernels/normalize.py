"""Per-frame normalization applied as values are loaded: ``x' = scale x + offset - G(y, x)``.

``scale`` and ``offset`` are per frame and channel, shape (n_frames, n_channels).
``G`` is an optional smooth gradient per frame and channel, given on a coarse
grid ``grad`` of shape (n_frames, n_channels, gy, gx) whose node (i, j) sits at
full-resolution pixel (i * step_y, j * step_x); between nodes it is
interpolated bilinearly, beyond the last node it is held constant (clamped).

A block's pixels are numbered in C order over (tile_y, tile_x, channel); the
tile's origin in the full image is (y0, x0). The same helpers serve the stack
kernel (:mod:`.engine`) and :func:`apply_block` (``stackengine.normalize``).
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from .._numba_cache import check_caches

__all__ = ["bilinear", "geometry", "load_group", "apply_block"]


@njit(nogil=True, cache=True)
def bilinear(yy, xx, step_y, step_x, gy, gx):
    """Cell indices and weights of full-res pixel (yy, xx) on the coarse grid."""
    fy = min(max(yy / step_y, 0.0), gy - 1.0)
    fx = min(max(xx / step_x, 0.0), gx - 1.0)
    i0 = min(int(math.floor(fy)), max(gy - 2, 0))
    j0 = min(int(math.floor(fx)), max(gx - 2, 0))
    wy = fy - i0
    wx = fx - j0
    i1 = min(i0 + 1, gy - 1)
    j1 = min(j0 + 1, gx - 1)
    return i0, i1, j0, j1, wy, wx


@njit(nogil=True, cache=True)
def _gradient_at(grid, i0, i1, j0, j1, wy, wx):
    top = grid[i0, j0] * (1.0 - wx) + grid[i0, j1] * wx
    bottom = grid[i1, j0] * (1.0 - wx) + grid[i1, j1] * wx
    return top * (1.0 - wy) + bottom * wy


@njit(nogil=True, cache=True)
def load_group(block, g0, gw, raw, buf, scale, offset, grad, geom):
    """Normalize pixels ``g0 .. g0+gw`` of every frame into ``raw`` (frame order)
    and ``buf`` (the same, non-finite values replaced by +inf, ready to sort).

    ``geom`` = (channels, tile_x, y0, x0, step_y, step_x, use_grad) as float64.
    """
    n = block.shape[0]
    channels = int(geom[0])
    tile_x = int(geom[1])
    use_grad = geom[6] != 0.0
    if channels == 1:
        for k in range(n):
            a = scale[k, 0]
            b = offset[k, 0]
            src = block[k, g0 : g0 + gw]  # row slices: the loop vectorizes
            dst = raw[k]
            for g in range(gw):
                dst[g] = np.float64(src[g]) * a + b
    else:
        for k in range(n):
            for g in range(gw):
                c = (g0 + g) % channels
                raw[k, g] = np.float64(block[k, g0 + g]) * scale[k, c] + offset[k, c]
    if use_grad:
        gy = grad.shape[2]
        gx = grad.shape[3]
        for g in range(gw):
            p = g0 + g
            c = p % channels
            q = p // channels
            yy = geom[2] + q // tile_x
            xx = geom[3] + q % tile_x
            i0, i1, j0, j1, wy, wx = bilinear(yy, xx, geom[4], geom[5], gy, gx)
            for k in range(n):
                raw[k, g] -= _gradient_at(grad[k, c], i0, i1, j0, j1, wy, wx)
    for k in range(n):
        src = raw[k]
        dst = buf[k]
        for g in range(gw):
            v = src[g]
            dst[g] = v if v - v == 0.0 else math.inf


@njit(nogil=True, cache=True)
def apply_block(block, scale, offset, grad, geom):
    """The normalized block (frames x pixels) as float32, for users who stack elsewhere."""
    n = block.shape[0]
    npix = block.shape[1]
    out = np.empty((n, npix), dtype=np.float32)
    group = 256
    raw = np.empty((n, group), dtype=np.float64)
    buf = np.empty((n, group), dtype=np.float64)
    for g0 in range(0, npix, group):
        gw = min(group, npix - g0)
        load_group(block, g0, gw, raw, buf, scale, offset, grad, geom)
        for k in range(n):
            for g in range(gw):
                out[k, g0 + g] = raw[k, g]
    return out


def geometry(
    block_shape: tuple[int, ...], y0: int, x0: int, step: tuple[float, float] | None = None
) -> np.ndarray:
    """The ``geom`` vector of :func:`load_group` for a block of ``block_shape``
    (frames, tile_y, tile_x[, channels]) at tile origin (y0, x0); ``step`` is the
    gradient grid's node spacing, or None without a gradient."""
    channels = block_shape[3] if len(block_shape) > 3 else 1
    sy, sx = step if step is not None else (1.0, 1.0)
    return np.array(
        [channels, block_shape[2], y0, x0, sy, sx, 1.0 if step is not None else 0.0],
        dtype=np.float64,
    )


check_caches(__name__)  # drop caches compiled from other sources (see .._numba_cache)
