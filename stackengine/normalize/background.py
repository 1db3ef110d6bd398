"""Smooth background maps for star detection and photometry (SExtractor's method).

:func:`background_map` follows Source Extractor's background estimator (Bertin &
Arnouts 1996), as sep implements it, in numba kernels that release the GIL (sep
holds it, so threads measuring different frames waited for each other):

1. The image is cut into meshes of ``mesh x mesh`` pixels (the last row and
   column of meshes may be partial; their values are placed on the regular
   grid of mesh centres, as in SExtractor). A mesh with fewer than half of its
   pixels finite and unmasked is *bad*.
2. Per mesh: the mean and standard deviation of its pixels, then again within
   2 sigma of that mean; a histogram of the pixels within 5 sigma, bins of
   sigma / 16; on it, iterative 3 sigma clipping about the median (interpolated
   within its bin) until the limits stop changing. The mesh's background is
   the mode estimate ``2.5 median - 1.5 mean`` of the clipped pixels, or the
   median when they are skewed (``|mean - median| >= 0.3 sigma``, a crowded
   mesh); its noise is their standard deviation.
3. Bad meshes take the mean of their nearest good neighbours (grown outwards);
   both maps are median filtered over 3 x 3 meshes (continued beyond the
   edges by point reflection, so that a gradient is not bent there).
4. The map is a bicubic (natural cubic spline) interpolation between the mesh
   centres, separable in y then x, continued linearly beyond the outer centres.
   Unlike bilinear interpolation it follows a curved background, so that an
   aperture and its annulus see the same residual level.

:func:`background_map` returns the map (float32) and the global noise, the
median of the mesh noise map (sep's ``globalrms``).
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from .._numba_cache import check_caches

__all__ = ["background_map"]

_NBINS = 160  # histogram bins over +-5 sigma: sigma / 16 each
_MAX_ITERS = 100


@njit(cache=True, nogil=True)
def _moments(buf, m, lo, hi):  # pragma: no cover - compiled
    n = 0
    s1 = 0.0
    s2 = 0.0
    for i in range(m):
        v = np.float64(buf[i])
        inside = (v >= lo) & (v <= hi)
        n += inside
        s1 += v * inside
        s2 += v * v * inside
    if n == 0:
        return 0, 0.0, 0.0
    mean = s1 / n
    return n, mean, math.sqrt(max(s2 / n - mean * mean, 0.0))


@njit(cache=True, nogil=True)
def _mesh_stats(buf, m, mean, sig):  # pragma: no cover - compiled
    """(background, noise) of the ``m`` values in ``buf`` of this mean and std (step 2)."""
    n, mean, sig = _moments(buf, m, mean - 2.0 * sig, mean + 2.0 * sig)
    if n == 0 or not sig > 0.0:
        return mean, 0.0
    step = sig / 16.0
    lo0 = mean - 5.0 * sig
    inv = 1.0 / step
    hist = np.zeros(_NBINS + 1, np.float64)  # the last bin collects what is beyond
    for i in range(m):
        t = (np.float64(buf[i]) - lo0) * inv
        if t >= 0.0:
            hist[min(int(t), _NBINS)] += 1.0
    lcut, hcut = 0, _NBINS  # bin range [lcut, hcut)
    med = mean
    for _ in range(_MAX_ITERS):
        tot = 0.0
        s1 = 0.0
        s2 = 0.0
        for k in range(lcut, hcut):
            c = lo0 + (k + 0.5) * step
            tot += hist[k]
            s1 += hist[k] * c
            s2 += hist[k] * c * c
        if tot <= 0.0:
            break
        mean = s1 / tot
        sig = math.sqrt(max(s2 / tot - mean * mean, 0.0))
        half = 0.5 * tot
        cum = 0.0
        med = mean
        for k in range(lcut, hcut):
            if cum + hist[k] >= half and hist[k] > 0.0:
                med = lo0 + (k + (half - cum) / hist[k]) * step
                break
            cum += hist[k]
        new_l = max(0, int(math.floor((med - 3.0 * sig - lo0) / step)))
        new_h = min(_NBINS, int(math.ceil((med + 3.0 * sig - lo0) / step)))
        if new_l == lcut and new_h == hcut:
            break
        lcut, hcut = new_l, new_h
        if hcut <= lcut:
            break
    if sig > 0.0 and abs(mean - med) < 0.3 * sig:
        return 2.5 * med - 1.5 * mean, sig
    return med, sig


@njit(cache=True, nogil=True)
def _meshes(data, mask, use_mask, yb, xb, back, noise, good):  # pragma: no cover - compiled
    gy, gx = back.shape
    size = 0
    for p in range(gy):
        size = max(size, yb[p + 1] - yb[p])
    width = 0
    for q in range(gx):
        width = max(width, xb[q + 1] - xb[q])
    buf = np.empty(size * width, data.dtype)
    for p in range(gy):
        for q in range(gx):
            m = 0
            s1 = 0.0
            s2 = 0.0
            y0, y1, x0, x1 = yb[p], yb[p + 1], xb[q], xb[q + 1]
            for y in range(y0, y1):
                for x in range(x0, x1):
                    v = data[y, x]
                    if np.isfinite(v) and not (use_mask and mask[y, x]):
                        buf[m] = v
                        m += 1
                        s1 += np.float64(v)
                        s2 += np.float64(v) * np.float64(v)
            area = (y1 - y0) * (x1 - x0)
            good[p, q] = m > 0 and 2 * m >= area
            if good[p, q]:
                mean = s1 / m
                sig = math.sqrt(max(s2 / m - mean * mean, 0.0))
                back[p, q], noise[p, q] = _mesh_stats(buf, m, mean, sig)


@njit(cache=True, nogil=True)
def _fill_bad(values, good):  # pragma: no cover - compiled
    """Bad meshes take the mean of their good 8-neighbours, growing outwards."""
    gy, gx = values.shape
    ok = good.copy()
    while not ok.all():
        new_ok = ok.copy()
        out = values.copy()
        for p in range(gy):
            for q in range(gx):
                if ok[p, q]:
                    continue
                s = 0.0
                n = 0
                for dp in (-1, 0, 1):
                    for dq in (-1, 0, 1):
                        i, j = p + dp, q + dq
                        if 0 <= i < gy and 0 <= j < gx and ok[i, j]:
                            s += values[i, j]
                            n += 1
                if n:
                    out[p, q] = s / n
                    new_ok[p, q] = True
        values[:, :] = out
        ok = new_ok


@njit(cache=True, nogil=True)
def _median3x3(values):  # pragma: no cover - compiled
    """3 x 3 median filter; beyond the edges the map is continued by point reflection
    (``v[-1] = 2 v[0] - v[1]``), so a plane passes unchanged."""
    gy, gx = values.shape
    pad = np.empty((gy + 2, gx + 2))
    pad[1:-1, 1:-1] = values
    for q in range(1, gx + 1):
        pad[0, q] = 2.0 * pad[1, q] - pad[2, q] if gy > 1 else pad[1, q]
        pad[gy + 1, q] = 2.0 * pad[gy, q] - pad[gy - 1, q] if gy > 1 else pad[gy, q]
    for p in range(gy + 2):
        pad[p, 0] = 2.0 * pad[p, 1] - pad[p, 2] if gx > 1 else pad[p, 1]
        pad[p, gx + 1] = 2.0 * pad[p, gx] - pad[p, gx - 1] if gx > 1 else pad[p, gx]
    out = np.empty_like(values)
    buf = np.empty(9)
    for p in range(gy):
        for q in range(gx):
            m = 0
            for i in range(p, p + 3):
                for j in range(q, q + 3):
                    buf[m] = pad[i, j]
                    m += 1
            out[p, q] = np.median(buf)
    return out


@njit(cache=True, nogil=True)
def _second_derivatives(xs, ys, out):  # pragma: no cover - compiled
    """Natural cubic spline: second derivatives at the knots (tridiagonal solve)."""
    n = xs.size
    out[:] = 0.0
    if n < 3:
        return
    u = np.zeros(n)
    for i in range(1, n - 1):
        sig = (xs[i] - xs[i - 1]) / (xs[i + 1] - xs[i - 1])
        p = sig * out[i - 1] + 2.0
        out[i] = (sig - 1.0) / p
        d = (ys[i + 1] - ys[i]) / (xs[i + 1] - xs[i]) - (ys[i] - ys[i - 1]) / (xs[i] - xs[i - 1])
        u[i] = (6.0 * d / (xs[i + 1] - xs[i - 1]) - sig * u[i - 1]) / p
    out[n - 1] = 0.0
    for k in range(n - 2, -1, -1):
        out[k] = out[k] * out[k + 1] + u[k]


@njit(cache=True, nogil=True)
def _weights(xs, n):  # pragma: no cover - compiled
    """Per coordinate 0..n-1: interval k and weights of (y[k], y[k+1], d2[k], d2[k+1]).

    The natural spline through knots ``xs`` is ``wa y[k] + wb y[k+1] + wc d2[k] +
    wd d2[k+1]``, continued linearly beyond the end knots (``d2`` the second
    derivatives at the knots); one knot gives a constant.
    """
    g = xs.size
    k_of = np.zeros(n, np.int64)
    w = np.zeros((n, 4))
    k = 0
    for c in range(n):
        x = float(c)
        if g == 1:
            w[c, 0] = 1.0
            continue
        while k < g - 2 and x > xs[k + 1]:
            k += 1
        k_of[c] = k
        h = xs[k + 1] - xs[k]
        if x < xs[0]:  # y0 + (x - x0) * (slope at x0)
            d = x - xs[0]
            w[c, 0], w[c, 1] = 1.0 - d / h, d / h
            w[c, 2], w[c, 3] = -d * h / 3.0, -d * h / 6.0
        elif x > xs[g - 1]:  # y_n + (x - x_n) * (slope at x_n)
            d = x - xs[g - 1]
            w[c, 0], w[c, 1] = -d / h, 1.0 + d / h
            w[c, 2], w[c, 3] = d * h / 6.0, d * h / 3.0
        else:
            a = (xs[k + 1] - x) / h
            b = 1.0 - a
            w[c, 0], w[c, 1] = a, b
            w[c, 2], w[c, 3] = (a * a * a - a) * h * h / 6.0, (b * b * b - b) * h * h / 6.0
    return k_of, w


@njit(cache=True, nogil=True)
def _bicubic(grid, cy, cx, out):  # pragma: no cover - compiled
    gy, gx = grid.shape
    h, w = out.shape
    ky, wy = _weights(cy, h)
    kx, wx = _weights(cx, w)
    cols = np.zeros((gx, gy + 1))  # one mesh column per row, padded for k + 1
    d2y = np.zeros((gx, gy + 1))
    for q in range(gx):
        cols[q, :gy] = grid[:, q]
        _second_derivatives(cy, cols[q, :gy], d2y[q, :gy])
    row = np.zeros(gx + 1)
    d2x = np.zeros(gx + 1)
    for y in range(h):
        k = ky[y]
        for q in range(gx):
            row[q] = (wy[y, 0] * cols[q, k] + wy[y, 1] * cols[q, k + 1]
                      + wy[y, 2] * d2y[q, k] + wy[y, 3] * d2y[q, k + 1])  # fmt: skip
        _second_derivatives(cx, row[:gx], d2x[:gx])
        for x in range(w):
            k = kx[x]
            out[y, x] = (wx[x, 0] * row[k] + wx[x, 1] * row[k + 1]
                         + wx[x, 2] * d2x[k] + wx[x, 3] * d2x[k + 1])  # fmt: skip


def _bounds(n: int, mesh: int) -> np.ndarray:
    """Mesh boundaries along an axis of n pixels: every ``mesh`` pixels, the last mesh
    possibly partial (as sep and SExtractor)."""
    return np.minimum(np.arange(-(-n // mesh) + 1) * mesh, n)


def background_map(
    data: np.ndarray, mask: np.ndarray | None = None, *, mesh: int = 64
) -> tuple[np.ndarray, float]:
    """The smooth background of a 2-D image and its global noise (module notes).

    Parameters
    ----------
    data : ndarray
        2-D image (non-finite pixels are ignored).
    mask : ndarray of bool or None
        True for pixels to ignore.
    mesh : int
        Mesh side in pixels.

    Returns
    -------
    background : ndarray
        float32, the shape of ``data``.
    rms : float
        The median of the mesh noise map (0 for an image without usable mesh).
    """
    data = np.ascontiguousarray(data)
    if data.dtype != np.float32 and data.dtype != np.float64:
        data = data.astype(np.float64)
    h, w = data.shape
    yb, xb = _bounds(h, mesh), _bounds(w, mesh)
    gy, gx = yb.size - 1, xb.size - 1
    back, noise = np.zeros((gy, gx)), np.zeros((gy, gx))
    good = np.zeros((gy, gx), dtype=np.bool_)
    use = mask is not None
    m = np.ascontiguousarray(mask, dtype=np.bool_) if use else np.zeros((1, 1), np.bool_)
    _meshes(data, m, use, yb, xb, back, noise, good)
    out = np.empty((h, w), dtype=np.float32)
    if not good.any():
        out[:] = 0.0
        return out, 0.0
    _fill_bad(back, good)
    _fill_bad(noise, good)
    back, noise = _median3x3(back), _median3x3(noise)
    centres_y = (np.arange(gy) + 0.5) * mesh - 0.5  # a regular grid, as SExtractor's
    centres_x = (np.arange(gx) + 0.5) * mesh - 0.5
    _bicubic(back, centres_y, centres_x, out)
    return out, float(np.median(noise))


check_caches(__name__)  # drop caches compiled from other sources (see .._numba_cache)
