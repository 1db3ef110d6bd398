"""Resampling through a map of positions (numba): for WCS registration (issue 17).

:func:`resample_map` fills output pixels from frame values at frame positions
given per output pixel (``fx``, ``fy``: e.g. :func:`stackengine.register.wcs.pixel_map`
of a tile), where :func:`stackengine.kernels.resample.resample` computes the
positions from one 3 x 3 matrix. The interpolation is the same code (the
per-row functions of :mod:`.resample`: lanczos3 clamped, bicubic, bilinear,
nearest; NaN = missing; coverage against the whole frame), so for positions
that a matrix gives the two agree bit for bit. Values are surface brightness
(no pixel-area factor).
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from .._numba_cache import check_caches
from .resample import (
    BICUBIC,
    BILINEAR,
    LANCZOS3,
    NEAREST,
    _row_bicubic,
    _row_bilinear,
    _row_lanczos3,
    _row_nearest,
    method_code,
)
from .variants import per_choice, variant

__all__ = [
    "flat_plane",
    "map_box",
    "resample_map",
    "resample_row",
    "resample_row_into",
    "row_buffers",
]


#: the interpolation the kernels here are compiled for (see .variants)
METHOD = LANCZOS3


@per_choice(nogil=True, error_model="numpy")
def _map_kernel(src, src_y0, src_x0, frame_h, frame_w, fx, fy, out, clamp):
    """Fill ``out`` (rows, cols, channels) from ``src`` at positions ``fx``, ``fy``
    (rows, cols) by ``METHOD``; returns the covered pixels whose support is not
    inside ``src``."""
    rows, cols, nch = out.shape
    fxs = np.empty(cols)
    fys = np.empty(cols)
    bufs = row_buffers(cols)
    plane = np.empty(src.shape[0] * src.shape[1], np.float32)
    short = 0
    for c in range(nch):
        flat_plane(src, c, plane)
        for i in range(rows):
            for j in range(cols):
                fxs[j] = fx[i, j]
                fys[j] = fy[i, j]
            n_short = resample_row_into(src, plane, src_y0, src_x0, frame_h, frame_w, clamp,
                                        fxs, fys, bufs, out, i, c)  # fmt: skip
            short += n_short if c == 0 else 0
    return short


@njit(nogil=True, cache=True, error_model="numpy")
def row_buffers(cols):
    """Scratch space of :func:`resample_row_into` for rows of ``cols`` pixels: the
    area factors (ones: surface brightness), the values and the x/y tap weights."""
    return np.ones(cols), np.empty(cols), np.empty((6, cols)), np.empty((6, cols))


@per_choice(nogil=True, error_model="numpy")
def resample_row_into(src, plane, src_y0, src_x0, frame_h, frame_w, clamp, fxs, fys, bufs,
                      out, i, c):  # fmt: skip
    """Output row ``i`` of channel ``c`` of ``out`` from ``plane`` (channel ``c`` of
    ``src``, flat) at positions ``fxs``, ``fys`` by :func:`resample_row`; returns its
    covered pixels whose support is not inside ``src``."""
    scl, res, wxs, wys = bufs
    n_short = resample_row(plane, src.shape[0], src.shape[1], src_y0, src_x0, frame_h, frame_w,
                           clamp, fxs, fys, scl, res, wxs, wys)  # fmt: skip
    for j in range(res.shape[0]):
        out[i, j, c] = np.float32(res[j])
    return n_short


@njit(nogil=True, cache=True, error_model="numpy")
def flat_plane(src, c, plane):
    """Channel ``c`` of ``src`` (rows, cols, channels) into the flat ``plane``."""
    sh, sw = src.shape[0], src.shape[1]
    for y in range(sh):
        for x in range(sw):
            plane[y * sw + x] = src[y, x, c]


@per_choice(nogil=True, error_model="numpy")
def resample_row(plane, sh, sw, src_y0, src_x0, frame_h, frame_w, clamp, fxs, fys, scl, res,
                 wxs, wys):  # fmt: skip
    """One output row from the frame ``plane`` at positions ``fxs``, ``fys`` into
    ``res`` by the row function of ``METHOD`` (a kernel compiled per method calls
    it: :func:`.variants.variant`); returns the covered pixels whose support is
    not inside the plane."""
    args = (plane, sh, sw, src_y0, src_x0, frame_h, frame_w)
    if METHOD == NEAREST:  # constants: numba compiles only METHOD's row
        return _row_nearest(*args, fxs, fys, scl, res)
    if METHOD == BILINEAR:
        return _row_bilinear(*args, clamp, fxs, fys, scl, res, wxs, wys, True, True)
    if METHOD == BICUBIC:
        return _row_bicubic(*args, clamp, fxs, fys, scl, res, wxs, wys, True, True)
    return _row_lanczos3(*args, clamp, fxs, fys, scl, res, wxs, wys, True, True)


def map_box(fx, fy, margin: int, frame_shape, extent=None) -> tuple[int, int, int, int]:
    """The frame region (y0, y1, x0, x1) holding every tap of positions ``fx``, ``fy``
    for a kernel of ``margin`` (``stackengine.kernels.resample.MARGINS``), clipped to the frame;
    ``(0, 0, 0, 0)`` when no position falls near the frame. ``extent``: the finite
    positions' (min x, max x, min y, max y) when known
    (:func:`stackengine.kernels.resample_nodes.node_extent`)."""
    h, w = int(frame_shape[0]), int(frame_shape[1])
    if extent is None:
        ok = np.isfinite(fx) & np.isfinite(fy)
        if not ok.any():
            return (0, 0, 0, 0)
        xs, ys = np.asarray(fx)[ok], np.asarray(fy)[ok]
        extent = (float(xs.min()), float(xs.max()), float(ys.min()), float(ys.max()))
    if not math.isfinite(extent[0]):
        return (0, 0, 0, 0)

    def span(lo: float, hi: float, n: int) -> tuple[int, int]:
        if margin == 0:
            a, b = math.floor(lo + 0.5), math.floor(hi + 0.5) + 1
        else:
            a, b = math.floor(lo) - margin + 1, math.floor(hi) + margin + 1
        return max(a, 0), min(b, n)

    y0, y1 = span(extent[2], extent[3], h)
    x0, x1 = span(extent[0], extent[1], w)
    if y1 <= y0 or x1 <= x0:
        return (0, 0, 0, 0)
    return (y0, y1, x0, x1)


def resample_map(
    src, src_y0: int, src_x0: int, fx, fy, out, method="lanczos3", clamp=True, *, frame_shape
):
    """Resample frame values at the positions ``fx``, ``fy`` into ``out``.

    Parameters
    ----------
    src : float32 array (rows, cols[, channels])
        A region of the frame whose first pixel is frame pixel ``(src_y0, src_x0)``
        (:func:`map_box` says which).
    fx, fy : float64 arrays (out rows, out cols)
        Each output pixel's frame column and row (0-based pixel centres; NaN: none).
    out : float32 array (rows, cols[, channels]), written
    method : str or int
        "lanczos3", "bicubic", "bilinear", "nearest" (or the code).
    clamp : bool
        Clamp lanczos3 and bicubic to the nearest 2x2 pixels' range.
    frame_shape : tuple
        The whole frame's (rows, cols): coverage is decided against it.

    Returns
    -------
    out

    Raises
    ------
    ValueError
        Bad shapes or types, or ``src`` misses taps of covered pixels (a caller's bug).
    """
    code = method_code(method)
    if not isinstance(src, np.ndarray) or src.dtype != np.float32:
        raise ValueError("resample_map: src must be a float32 numpy array")
    if not isinstance(out, np.ndarray) or out.dtype != np.float32:
        raise ValueError("resample_map: out must be a float32 numpy array")
    fx = np.ascontiguousarray(fx, dtype=np.float64)
    fy = np.ascontiguousarray(fy, dtype=np.float64)
    if fx.shape != out.shape[:2] or fy.shape != out.shape[:2]:
        raise ValueError(f"resample_map: fx {fx.shape}, fy {fy.shape} and out {out.shape}")
    s3 = np.ascontiguousarray(src if src.ndim == 3 else src[:, :, None])  # one specialization
    o3 = out if out.ndim == 3 else out[:, :, None]
    o3c = o3 if o3.flags.c_contiguous else np.empty(o3.shape, dtype=np.float32)
    short = variant(_map_kernel, METHOD=code)(
        s3, int(src_y0), int(src_x0), int(frame_shape[0]), int(frame_shape[1]), fx, fy, o3c,
        bool(clamp),
    )  # fmt: skip
    if o3c is not o3:
        o3[...] = o3c
    if short:
        raise ValueError(f"resample_map: src misses taps of {short} covered output pixels")
    return out


check_caches(__name__)  # drop caches compiled from other sources (see .._numba_cache)
