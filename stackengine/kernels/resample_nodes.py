"""Resampling through a mapping given on a grid of nodes (numba): WCS co-adds.

A WCS mapping (output pixel -> frame pixel) is evaluated exactly on nodes
``step`` output pixels apart (:mod:`stackengine.register.wcs`) and bilinearly
interpolated in between. Here the positions are computed row by row inside the
resampling kernel (:func:`resample_nodes`), never stored as two float64 images
of the tile, and the frame region a tile needs comes from the exact extent of
those positions (:func:`node_extent`: a bilinear function over a rectangle takes
its extremes at the rectangle's corners, so the extremes over a region are
among its border pixels and the nodes inside it, all pixel centres).

One formula gives every position, in every function here: the node rows
``iy``, ``iy + 1`` are first interpolated at the column,
``a_r = n[iy + r, ix] (1 - tx) + n[iy + r, ix + 1] tx``, then
``a_0 (1 - ty) + a_1 ty - origin``. A pixel's position depends only on its
own cell's nodes and its coordinates, so it is the same bits in any region
(any tiling), and :func:`grid_positions` (the positions as arrays) gives
exactly what :func:`resample_nodes` uses. Outside the frame's footprint
(``fp``: output rows and columns) a position is NaN: no extrapolation.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from .._numba_cache import check_caches
from .resample import method_code
from .resample_map import flat_plane, resample_row_into, row_buffers
from .variants import per_choice, variant

__all__ = ["grid_positions", "node_extent", "resample_nodes"]


@njit(nogil=True, cache=True, error_model="numpy")
def _row_state(nx0, step, gx, x0, cols):
    """What :func:`_positions_row` works with along a row of ``cols`` output pixels
    from column ``x0``: each column's node cell and fraction, and the two node rows
    interpolated at the columns (filled row by row)."""
    ixs = np.empty(cols, np.int64)
    txs = np.empty(cols)
    _columns(nx0, step, gx, x0, ixs, txs)
    return ixs, txs, np.empty((2, cols)), np.empty((2, cols))


@njit(nogil=True, cache=True, error_model="numpy")
def _columns(nx0, step, gx, x0, ixs, txs):
    """Each column's node cell and fraction."""
    for j in range(ixs.shape[0]):
        x = float(x0 + j)
        ix = min(max(int((x - nx0) // step), 0), gx - 2)
        ixs[j] = ix
        txs[j] = (x - (nx0 + ix * step)) / step


@njit(nogil=True, cache=True, error_model="numpy")
def _cell_row(ny0, step, gy, y):
    iy = min(max(int((y - ny0) // step), 0), gy - 2)
    return iy, (y - (ny0 + iy * step)) / step


@njit(nogil=True, cache=True, error_model="numpy")
def _node_rows(nfx, nfy, iy, ixs, txs, ax, ay):
    """Node rows ``iy`` and ``iy + 1`` interpolated at each column."""
    for r in range(2):
        for j in range(ixs.shape[0]):
            ix = ixs[j]
            tx = txs[j]
            ax[r, j] = nfx[iy + r, ix] * (1 - tx) + nfx[iy + r, ix + 1] * tx
            ay[r, j] = nfy[iy + r, ix] * (1 - tx) + nfy[iy + r, ix + 1] * tx


@njit(nogil=True, cache=True, error_model="numpy")
def _row_positions(ax, ay, ty, inside, fp, x0, oy, ox, fxs, fys):
    """One output row's positions from its interpolated node rows."""
    for j in range(fxs.shape[0]):
        xj = x0 + j
        if not inside or xj < fp[2] or xj >= fp[3]:
            fxs[j] = np.nan
            fys[j] = np.nan
        else:
            fxs[j] = ax[0, j] * (1 - ty) + ax[1, j] * ty - ox
            fys[j] = ay[0, j] * (1 - ty) + ay[1, j] * ty - oy


@njit(nogil=True, cache=True, error_model="numpy")
def _positions_row(nfx, nfy, ny0, step, y, row_of, ixs, txs, ax, ay, fp, x0, oy, ox, fxs, fys):
    """Output row ``y``'s positions into ``fxs``, ``fys``; the x-interpolated node rows
    ``ax``, ``ay`` are recomputed only when the row enters another cell row
    (``row_of``: the cell row they hold). Returns the cell row they now hold."""
    iy, ty = _cell_row(ny0, step, nfx.shape[0], float(y))
    if iy != row_of:
        _node_rows(nfx, nfy, iy, ixs, txs, ax, ay)
    _row_positions(ax, ay, ty, fp[0] <= y < fp[1], fp, x0, oy, ox, fxs, fys)
    return iy


@njit(nogil=True, cache=True, error_model="numpy")
def _positions_kernel(nfx, nfy, ny0, nx0, step, y0, x0, fp, oy, ox, fx, fy):
    rows, cols = fx.shape
    ixs, txs, ax, ay = _row_state(nx0, step, nfx.shape[1], x0, cols)
    row_of = -1
    for i in range(rows):
        row_of = _positions_row(nfx, nfy, ny0, step, y0 + i, row_of, ixs, txs, ax, ay, fp, x0,
                                oy, ox, fx[i], fy[i])  # fmt: skip


@njit(nogil=True, cache=True, error_model="numpy")
def _point(nfx, nfy, ny0, nx0, step, y, x, oy, ox):
    """The position of one pixel, by the module's formula."""
    gy, gx = nfx.shape
    iy, ty = _cell_row(ny0, step, gy, float(y))
    ix = min(max(int((float(x) - nx0) // step), 0), gx - 2)
    tx = (float(x) - (nx0 + ix * step)) / step
    a0 = nfx[iy, ix] * (1 - tx) + nfx[iy, ix + 1] * tx
    a1 = nfx[iy + 1, ix] * (1 - tx) + nfx[iy + 1, ix + 1] * tx
    b0 = nfy[iy, ix] * (1 - tx) + nfy[iy, ix + 1] * tx
    b1 = nfy[iy + 1, ix] * (1 - tx) + nfy[iy + 1, ix + 1] * tx
    return a0 * (1 - ty) + a1 * ty - ox, b0 * (1 - ty) + b1 * ty - oy


@njit(nogil=True, cache=True, error_model="numpy")
def _take(nfx, nfy, ny0, nx0, step, y, x, oy, ox, ext):
    """Widen ``ext`` by the position of pixel (y, x); 1 if it is finite, else 0."""
    px, py = _point(nfx, nfy, ny0, nx0, step, y, x, oy, ox)
    if not (px == px and py == py):
        return 0
    ext[0] = min(ext[0], px)
    ext[1] = max(ext[1], px)
    ext[2] = min(ext[2], py)
    ext[3] = max(ext[3], py)
    return 1


@njit(nogil=True, cache=True, error_model="numpy")
def _extent_kernel(nfx, nfy, ny0, nx0, step, ry0, ry1, rx0, rx1, oy, ox, ext):
    """(min x, max x, min y, max y) of the finite positions of output rows ry0:ry1,
    columns rx0:rx1, into ``ext``: over the region's border pixels and the nodes
    strictly inside it. Returns how many of those were finite."""
    ext[0] = math.inf
    ext[1] = -math.inf
    ext[2] = math.inf
    ext[3] = -math.inf
    n = 0
    for x in range(rx0, rx1):
        n += _take(nfx, nfy, ny0, nx0, step, ry0, x, oy, ox, ext)
        n += _take(nfx, nfy, ny0, nx0, step, ry1 - 1, x, oy, ox, ext)
    for y in range(ry0, ry1):
        n += _take(nfx, nfy, ny0, nx0, step, y, rx0, oy, ox, ext)
        n += _take(nfx, nfy, ny0, nx0, step, y, rx1 - 1, oy, ox, ext)
    a = int(math.floor((ry0 - ny0) / step)) + 1
    while ny0 + a * step < ry1 - 1:
        y = ny0 + a * step
        b = int(math.floor((rx0 - nx0) / step)) + 1
        while nx0 + b * step < rx1 - 1:
            n += _take(nfx, nfy, ny0, nx0, step, y, nx0 + b * step, oy, ox, ext)
            b += 1
        a += 1
    return n


def _region(y0, y1, x0, x1, footprint):
    return (max(y0, int(footprint[0])), min(y1, int(footprint[1])),
            max(x0, int(footprint[2])), min(x1, int(footprint[3])))  # fmt: skip


def node_extent(nodes_x, nodes_y, ny0, nx0, step, y0, y1, x0, x1, footprint, origin=(0, 0)):
    """The exact (min x, max x, min y, max y) of the frame positions of output rows
    ``y0:y1``, columns ``x0:x1`` inside ``footprint``; None when there is none."""
    ry0, ry1, rx0, rx1 = _region(y0, y1, x0, x1, footprint)
    if ry1 <= ry0 or rx1 <= rx0:
        return None
    ext = np.empty(4, dtype=np.float64)
    n = _extent_kernel(nodes_x, nodes_y, float(ny0), float(nx0), float(step), ry0, ry1, rx0,
                       rx1, float(origin[0]), float(origin[1]), ext)  # fmt: skip
    return None if n == 0 else tuple(float(v) for v in ext)


def grid_positions(nodes_x, nodes_y, ny0, nx0, step, y0, y1, x0, x1, footprint, origin=(0, 0)):
    """Frame positions of output rows ``y0:y1``, columns ``x0:x1`` interpolated between
    nodes ``step`` output pixels apart (first node at output pixel (ny0, nx0)), NaN
    outside ``footprint`` (y0, y1, x0, x1); returns ``fx, fy`` and their extent
    (:func:`node_extent`)."""
    fx = np.empty((y1 - y0, x1 - x0), dtype=np.float64)
    fy = np.empty_like(fx)
    nfx = np.ascontiguousarray(nodes_x, dtype=np.float64)
    nfy = np.ascontiguousarray(nodes_y, dtype=np.float64)
    fp = np.asarray(footprint, dtype=np.int64)
    _positions_kernel(nfx, nfy, float(ny0), float(nx0), float(step), int(y0), int(x0), fp,
                      float(origin[0]), float(origin[1]), fx, fy)  # fmt: skip
    extent = node_extent(nfx, nfy, ny0, nx0, step, y0, y1, x0, x1, footprint, origin)
    return fx, fy, extent


@per_choice(nogil=True, error_model="numpy")
def _nodes_kernel(src, src_y0, src_x0, frame_h, frame_w, nfx, nfy, ny0, nx0, step, y0, x0,
                  fp, oy, ox, out, clamp):  # fmt: skip
    """Fill ``out`` (rows, cols, channels), output pixel (y0 + i, x0 + j), from
    ``src`` at the node-interpolated positions (compiled per method: its
    ``resample_row`` is that method's, :func:`.variants.variant`); returns the
    covered pixels whose support is not inside ``src``."""
    rows, cols, nch = out.shape
    ixs, txs, ax, ay = _row_state(nx0, step, nfx.shape[1], x0, cols)
    fxs = np.empty(cols)
    fys = np.empty(cols)
    bufs = row_buffers(cols)
    plane = np.empty(src.shape[0] * src.shape[1], np.float32)
    short = 0
    for c in range(nch):
        flat_plane(src, c, plane)
        row_of = -1
        for i in range(rows):
            row_of = _positions_row(nfx, nfy, ny0, step, y0 + i, row_of, ixs, txs, ax, ay, fp,
                                    x0, oy, ox, fxs, fys)  # fmt: skip
            n_short = resample_row_into(src, plane, src_y0, src_x0, frame_h, frame_w, clamp,
                                        fxs, fys, bufs, out, i, c)  # fmt: skip
            short += n_short if c == 0 else 0
    return short


def resample_nodes(src, src_y0, src_x0, nodes, out, out_y0, out_x0, method="lanczos3",
                   clamp=True, *, frame_shape, footprint, origin=(0, 0)):  # fmt: skip
    """Resample frame values into ``out`` (output pixels from (out_y0, out_x0)) at the
    positions interpolated from ``nodes`` = (nodes_x, nodes_y, ny0, nx0, step).

    ``src`` (float32 (rows, cols[, channels])) is the frame region from frame pixel
    (src_y0, src_x0) that :func:`node_extent` and
    :func:`~stackengine.kernels.resample_map.map_box` give; ``frame_shape`` decides
    coverage; ``footprint`` and ``origin`` as in :func:`grid_positions`. The same
    values as :func:`~stackengine.kernels.resample_map.resample_map` at
    :func:`grid_positions`' positions, bit for bit.
    """
    code = method_code(method)
    if not isinstance(src, np.ndarray) or src.dtype != np.float32:
        raise ValueError("resample_nodes: src must be a float32 numpy array")
    if not isinstance(out, np.ndarray) or out.dtype != np.float32:
        raise ValueError("resample_nodes: out must be a float32 numpy array")
    nfx, nfy, ny0, nx0, step = nodes
    s3 = np.ascontiguousarray(src if src.ndim == 3 else src[:, :, None])
    o3 = out if out.ndim == 3 else out[:, :, None]
    o3c = o3 if o3.flags.c_contiguous else np.empty(o3.shape, dtype=np.float32)
    short = variant(_nodes_kernel, METHOD=code)(
        s3, int(src_y0), int(src_x0), int(frame_shape[0]), int(frame_shape[1]),
        np.ascontiguousarray(nfx, dtype=np.float64), np.ascontiguousarray(nfy, dtype=np.float64),
        float(ny0), float(nx0), float(step), int(out_y0), int(out_x0),
        np.asarray(footprint, dtype=np.int64), float(origin[0]), float(origin[1]), o3c,
        bool(clamp),
    )  # fmt: skip
    if o3c is not o3:
        o3[...] = o3c
    if short:
        raise ValueError(f"resample_nodes: src misses taps of {short} covered output pixels")
    return out


check_caches(__name__)  # drop caches compiled from other sources (see .._numba_cache)
