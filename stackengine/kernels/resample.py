"""Resampling a frame onto the output grid, one output region at a time (numba).

Conventions
-----------
* Pixel coordinates are 0-based pixel *centres*, ``x`` the column and ``y`` the
  row. A frame pixel ``(r, c)`` covers ``[r - 0.5, r + 0.5) x [c - 0.5, c + 0.5)``.
* ``matrix`` (3x3, float64) maps an *output* pixel to a *frame* pixel,
  homogeneously: ``(u, v, w) = matrix @ (x, y, 1)``, frame position
  ``(fx, fy) = (u / w, v / w)``. Affine transforms have the last row ``(0, 0, 1)``.
  ``w == 0`` (or a non-finite position) is not covered. The map is taken as an
  ordinary projective one: the sign of ``w`` does not matter.
* Values are surface brightness (as ``reproject`` treats them): a constant sky
  stays constant and no pixel-area factor is applied. With ``area=True`` each
  value is multiplied by ``|det J|``, the local Jacobian determinant of the
  output->frame map, i.e. the frame-pixel area one output pixel covers
  (``scale**2`` for a similarity whose ``matrix`` scales output pixels by
  ``scale`` into the frame; ``|det(matrix)| / |w|**3`` in general): SWarp's flux
  scaling, which conserves the flux of frame pixels that hold fluxes.
* Computation in float64, results stored as float32.

Methods, their taps and the margin
----------------------------------
Along each axis the frame position ``p`` splits into ``i0 = floor(p)`` and
``t = p - i0``. The *support* (the taps, all with non-zero weight) is:

========== ==== =============================== ==========================
method     code taps for 0 < t < 1              weights
========== ==== =============================== ==========================
nearest    0    ``floor(p + 0.5)`` (one tap)    1 (rounds half up, as scipy)
bilinear   1    ``i0 .. i0 + 1``                ``1 - t, t``
bicubic    2    ``i0 - 1 .. i0 + 2``            Keys cubic convolution, a = -0.5
lanczos3   3    ``i0 - 2 .. i0 + 3``            ``sinc(d) sinc(d / 3)``, normalized
========== ==== =============================== ==========================

The code is the *margin* ``m`` (:data:`MARGINS`): the taps run from
``i0 - (m - 1)`` to ``i0 + m``. When ``t == 0`` (the position falls exactly on a
pixel centre along that axis) every kernel has the single tap ``i0`` with
weight 1, so an integer shift reproduces the frame exactly, its NaNs included.
The lanczos3 weights of each axis are divided by their sum (so a constant stays
exactly constant; the truncated kernel alone integrates to 0.997).

Coverage and missing values
---------------------------
An output pixel is *missing* (NaN) for the frame when

* its support is not entirely inside the frame: along an axis of ``n`` pixels a
  position is covered when ``-0.5 <= p < n - 0.5`` (nearest), ``0 <= p <= n - 1``
  (bilinear), ``1 <= p <= n - 2`` (bicubic), ``2 <= p <= n - 3`` (lanczos3), and at
  an integer ``p`` in ``[0, n - 1]`` for every method. So, for a fractional
  shift, a bilinear result loses the last column, a bicubic one the first column
  and the last two, a lanczos3 one the first two and the last three;
* or any value in its support is NaN or +-inf (missing values stay missing;
  for bilinear too).

With ``clamp=True`` (the default) the bicubic and lanczos3 values are clamped
to ``[min, max]`` of the nearest 2x2 input pixels (``i0, i0 + 1`` on each axis;
on a pixel centre, that row or column alone), the clamping of PixInsight and
Siril that keeps bright stars from ringing into dark (negative) halos.

Reading only a region of the frame
----------------------------------
The kernel reads ``src``, a region of the frame whose first pixel is frame
pixel ``(src_y0, src_x0)``. :func:`inverse_box` gives the region that holds
every tap of an output region. A covered pixel whose support lies outside
``src`` is a caller's bug: the kernel leaves it NaN and counts it, and
:func:`resample` raises.

How it runs
-----------
The values are the formula above, pixel by pixel, to the bit (the tests compare
them with a plain-Python transcription); only the order of the work changes. Each
channel of ``src`` is first copied to a flat plane; each output row then gets its
frame positions in one pass, and pixels whose support lies off pixel centres and
inside the frame and ``src`` take the fast path: a *run* of them whose first taps
sit at consecutive columns of one plane row (a whole row for a translation, some
``1 / sin(angle)`` pixels for a rotation) goes through one loop with unsigned
indices, which LLVM vectorizes across pixels (8 doubles a vector with AVX-512),
each lane doing the arithmetic of its one pixel, into a buffer on the stack (which
spares the loop run-time tests of overlap with the arrays it reads); a run's tail
is computed again as its last 8 pixels rather than one at a time. The lanczos3
weights are computed beforehand for the whole row (vectorized too; for a map
without rotation, once per call along x and once per row along y). A row whose
positions run right to left (a rotation near 180 degrees, a meridian flip) is
computed from its last pixel on. The other pixels (on a pixel centre along an
axis, near an edge, outside, or runs of fewer than 8, as for rotations by tens of
degrees) go one at a time.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from llvmlite import ir
from numba import carray, njit, types
from numba.core import cgutils
from numba.extending import intrinsic

from .._numba_cache import check_caches
from .variants import per_choice, variant

__all__ = [
    "BICUBIC",
    "BILINEAR",
    "LANCZOS3",
    "MARGINS",
    "METHODS",
    "NEAREST",
    "inverse_box",
    "method_code",
    "resample",
    "resample_kernel",
]

NEAREST = 0
BILINEAR = 1
BICUBIC = 2
LANCZOS3 = 3

#: interpolation name -> method code
METHODS = {"nearest": NEAREST, "bilinear": BILINEAR, "bicubic": BICUBIC, "lanczos3": LANCZOS3}
#: method code -> margin: the taps run from floor(p) - (margin - 1) to floor(p) + margin
#: (nearest: the one tap floor(p + 0.5))
MARGINS = {NEAREST: 0, BILINEAR: 1, BICUBIC: 2, LANCZOS3: 3}

#: slack (frame pixels) added to the bounds of an inverse image before flooring, so
#: that rounding in the per-pixel positions can never reach past the box
BOX_SLACK = 1e-6

_SQ3_2 = math.sqrt(3.0) / 2.0
_PI_3 = math.pi / 3.0
# Taylor coefficients of sin (odd powers) and cos (even powers)
_S3, _S5, _S7, _S9, _S11, _S13, _S15, _S17 = (
    (-1.0) ** k / math.factorial(2 * k + 1) for k in range(1, 9)
)
_C2, _C4, _C6, _C8, _C10, _C12, _C14, _C16, _C18 = (
    (-1.0) ** k / math.factorial(2 * k) for k in range(1, 10)
)


@njit(inline="always")
def _bilinear_weights(t):  # pragma: no cover - compiled
    """Weights of taps floor(p), floor(p) + 1 at fraction ``t`` (0 < t < 1)."""
    return (1.0 - t, t)


@njit(inline="always")
def _keys_weights(t):  # pragma: no cover - compiled
    """Keys (1981) cubic convolution weights, a = -0.5, of taps floor(p) - 1 ..
    floor(p) + 2 (distances 1 + t, t, 1 - t, 2 - t) at fraction 0 < t < 1."""
    d0 = 1.0 + t
    d3 = 2.0 - t
    u = 1.0 - t
    return (
        ((-0.5 * d0 + 2.5) * d0 - 4.0) * d0 + 2.0,
        (1.5 * t - 2.5) * t * t + 1.0,
        (1.5 * u - 2.5) * u * u + 1.0,
        ((-0.5 * d3 + 2.5) * d3 - 4.0) * d3 + 2.0,
    )


@njit(inline="always")
def _lanczos3_weights(t):  # pragma: no cover - compiled
    """Lanczos-3 weights of taps floor(p) - 2 .. floor(p) + 3 at fraction 0 < t < 1,
    divided by their sum.

    ``L(t - k) = sinc(t - k) sinc((t - k) / 3)`` (k = -2 .. 3) is proportional to
    ``(-1)^k sin(theta - k pi / 3) / (t - k)^2`` with ``theta = pi t / 3``: the common
    factor ``3 sin(pi t) / pi^2`` cancels in the normalization. The sine and cosine
    of theta (in [0, pi / 3]) come from their Taylor series to theta^17 and theta^18
    (error < 3e-16), evaluated by Estrin's scheme; each division by ``(t - k)^2``
    becomes a product of the other five (the common product cancels too), which
    leaves one division, for the sum.
    """
    theta = _PI_3 * t
    z = theta * theta
    z2 = z * z
    z4 = z2 * z2
    s = theta * (
        (1.0 + _S3 * z)
        + z2 * (_S5 + _S7 * z)
        + z4 * ((_S9 + _S11 * z) + z2 * (_S13 + _S15 * z) + z4 * _S17)
    )
    c = (
        (1.0 + _C2 * z)
        + z2 * (_C4 + _C6 * z)
        + z4 * ((_C8 + _C10 * z) + z2 * (_C12 + _C14 * z) + z4 * (_C16 + _C18 * z))
    )
    hs = 0.5 * s
    hc = _SQ3_2 * c
    q0 = (t + 2.0) * (t + 2.0)
    q1 = (t + 1.0) * (t + 1.0)
    q2 = t * t
    q3 = (t - 1.0) * (t - 1.0)
    q4 = (t - 2.0) * (t - 2.0)
    q5 = (t - 3.0) * (t - 3.0)
    p01 = q0 * q1
    p45 = q4 * q5
    p012 = p01 * q2
    p345 = q3 * p45
    w0 = (hc - hs) * (q1 * q2 * p345)  # k = -2: sin(theta + 2 pi / 3)
    w1 = -(hs + hc) * (q0 * q2 * p345)  # k = -1: -sin(theta + pi / 3)
    w2 = s * (p01 * p345)  # k = 0: sin(theta)
    w3 = (hc - hs) * (p012 * p45)  # k = 1: -sin(theta - pi / 3)
    w4 = -(hs + hc) * (p012 * q3 * q5)  # k = 2: sin(theta - 2 pi / 3)
    w5 = s * (p012 * q3 * q4)  # k = 3: -sin(theta - pi)
    inv = 1.0 / (w0 + w1 + w2 + w3 + w4 + w5)
    return (w0 * inv, w1 * inv, w2 * inv, w3 * inv, w4 * inv, w5 * inv)


#: pixels of a run computed into the stack buffer at a time (a multiple of 8)
RUN_CHUNK = 64


@intrinsic
def _stack_buffer(typingctx):
    """A pointer to RUN_CHUNK float64 on the stack of the calling function."""

    def codegen(context, builder, signature, args):
        return cgutils.alloca_once(builder, ir.DoubleType(), size=RUN_CHUNK)

    return types.CPointer(types.float64)(), codegen


@njit(inline="always")
def _axis(method, p, n):  # pragma: no cover - compiled
    """First tap, tap count and weights (a 6-tuple, zero-padded) of position ``p`` on
    an axis of ``n`` pixels (not NEAREST); count 0 where the support is not inside."""
    if not (p >= 0.0 and p <= n - 1.0):  # also false for NaN
        return 0, 0, (0.0, 0.0, 0.0, 0.0, 0.0, 0.0)
    f = math.floor(p)
    i0 = int(f)
    t = p - f
    if t == 0.0:
        return i0, 1, (1.0, 0.0, 0.0, 0.0, 0.0, 0.0)
    first = i0 - method + 1
    if first < 0 or i0 + method > n - 1:
        return 0, 0, (0.0, 0.0, 0.0, 0.0, 0.0, 0.0)
    if method == BILINEAR:
        w2 = _bilinear_weights(t)
        return first, 2, (w2[0], w2[1], 0.0, 0.0, 0.0, 0.0)
    if method == BICUBIC:
        w4 = _keys_weights(t)
        return first, 4, (w4[0], w4[1], w4[2], w4[3], 0.0, 0.0)
    return first, 6, _lanczos3_weights(t)


@njit(inline="always")
def _clamp(acc, q0, q1, q2, q3):  # pragma: no cover - compiled
    """``acc`` clamped to [min, max] of the q (acc finite)."""
    lo = min(min(q0, q1), min(q2, q3))
    hi = max(max(q0, q1), max(q2, q3))
    if acc < lo:
        return lo
    if acc > hi:
        return hi
    return acc


def _make_row(method, weights):
    """The compiled function that computes one output row of one channel for
    ``method`` (not NEAREST), the ``weights`` of its taps a function of the fraction."""
    n = 2 * method  # taps per axis
    inner = method - 1  # the tap floor(p) among them
    lo = np.float64(method - 1)
    wclamp = method >= BICUBIC
    uinner = np.uint64(inner)
    one = np.uint64(1)
    # lanczos3 weights cost more than storing and loading them: computed beforehand in
    # loops of their own (once per tile along x for a map without rotation); the others
    # in the pixel loop
    pre = method == LANCZOS3

    def row(plane, sh, sw, src_y0, src_x0, frame_h, frame_w, clamp, fxs, fys, scl, res, wxs, wys,
            new_x, new_y):  # fmt: skip
        """Values (float64, NaN where missing) at frame positions ``fxs``, ``fys`` of
        ``plane`` (a region ``sh`` x ``sw`` of the frame, flat, at ``src_y0, src_x0``),
        times ``scl``, into ``res``; returns the number of covered pixels whose support
        is not inside the plane.

        Positions off every pixel centre and inside the frame and plane take the fast
        path: runs of them whose taps start at the same row and at a column that
        advances with the pixel go through a loop that the compiler vectorizes (each
        pixel computed alone, with the arithmetic of one); the others (on a pixel
        centre along an axis, near the frame's edges, outside) the general path, with
        the same weights. ``wxs``, ``wys`` (6 x cols) are scratch for the lanczos3
        weights; ``new_x`` false: ``wxs`` holds those of this row already (the x
        positions repeat from row to row), ``new_y`` false: the y fraction is the
        same along the row."""
        do_clamp = clamp and wclamp
        # off pixel centres, the support is inside the frame for m - 1 < p < n - m
        hi_x = np.float64(frame_w - method)
        hi_y = np.float64(frame_h - method)
        cols = res.shape[0]
        usw = np.uint64(sw)
        buf = carray(_stack_buffer(), (RUN_CHUNK,))
        # the weights of every pixel (garbage off the fast path), in loops that vectorize;
        # ``new_x`` false: those of the previous row (the same fractions)
        if pre and new_x:
            for jj in range(cols):
                uj = np.uint64(jj)
                g = fxs[uj]
                w = weights(g - np.floor(g))
                for k in range(n):
                    wxs[np.uint64(k), uj] = w[k]
        if pre and new_y:
            for jj in range(cols):
                uj = np.uint64(jj)
                g = fys[uj]
                w = weights(g - np.floor(g))
                for k in range(n):
                    wys[np.uint64(k), uj] = w[k]
        elif pre and cols > 0:  # the same fraction along the row
            g = fys[0]
            w = weights(g - np.floor(g))
            for k in range(n):
                wys[k, :cols] = w[k]
        short = 0
        j = 0
        while j < cols:
            fx = fxs[j]
            fy = fys[j]
            if fx > lo and fx < hi_x and fy > lo and fy < hi_y:
                flx = math.floor(fx)
                fly = math.floor(fy)
                if fx != flx and fy != fly:  # off pixel centres along both axes
                    lx = flx - inner - src_x0
                    ly = fly - inner - src_y0
                    if lx < 0 or ly < 0 or lx + n > sw or ly + n > sh:
                        short += 1
                        res[j] = np.nan
                        j += 1
                        continue
                    # the run: taps from row ly and column lx + (j1 - j)
                    j1 = j + 1
                    while j1 < cols:
                        gx = fxs[j1]
                        gy = fys[j1]
                        if not (gx > lo and gx < hi_x and gy > lo and gy < hi_y):
                            break
                        glx = math.floor(gx)
                        gly = math.floor(gy)
                        if gx == glx or gy == gly:
                            break
                        if gly - inner - src_y0 != ly or glx - inner - src_x0 != lx + (j1 - j):
                            break
                        j1 += 1
                    # (unsigned indices: no wraparound tests, the loop vectorizes)
                    base = np.uint64(ly) * usw + np.uint64(lx) - np.uint64(j)
                    # chunks of at most RUN_CHUNK pixels into a stack buffer, which
                    # cannot overlap the arrays read (no run-time overlap tests at each
                    # chunk); in a run of 8 or more, chunks of whole vectors (8
                    # doubles), the tail computed again as the last 8 pixels
                    s = j
                    while s < j1:
                        e = min(s + RUN_CHUNK, j1)
                        if j1 - j >= 8:
                            if e - s < 8:
                                s = j1 - 8
                            else:
                                e -= (e - s) % 8
                        us = np.uint64(s)
                        for jj in range(s, e):
                            uj = np.uint64(jj)
                            p = base + uj
                            gx = 0.5 if pre else fxs[uj]
                            gy = 0.5 if pre else fys[uj]
                            wx = weights(gx - np.floor(gx))
                            wy = weights(gy - np.floor(gy))
                            acc = 0.0
                            for a in range(n):
                                pa = p + np.uint64(a) * usw
                                rs = 0.0
                                for b in range(n):
                                    w = wxs[np.uint64(b), uj] if pre else wx[b]
                                    rs += w * np.float64(plane[pa + np.uint64(b)])
                                acc += (wys[np.uint64(a), uj] if pre else wy[a]) * rs
                            finite = math.isfinite(acc)  # else a NaN or inf in the support
                            if do_clamp:  # to the nearest 2x2 pixels
                                q = p + uinner * usw + uinner
                                acc = _clamp(acc, np.float64(plane[q]), np.float64(plane[q + one]),
                                             np.float64(plane[q + usw]),
                                             np.float64(plane[q + usw + one]))  # fmt: skip
                            buf[uj - us] = acc * scl[uj] if finite else np.nan
                        for jj in range(s, e):
                            res[jj] = buf[jj - s]
                        s = e
                    j = j1
                    continue
            # on a pixel centre along an axis, near the frame's edges, or outside
            cx, nx, gx6 = _axis(method, fx, frame_w)
            cy, ny, gy6 = _axis(method, fy, frame_h)
            lx = cx - src_x0
            ly = cy - src_y0
            res[j] = np.nan
            if nx == 0 or ny == 0:
                j += 1
                continue
            if lx < 0 or ly < 0 or lx + nx > sw or ly + ny > sh:
                short += 1
                j += 1
                continue
            acc = 0.0
            for a in range(ny):
                rs = 0.0
                for b in range(nx):
                    rs += gx6[b] * np.float64(plane[(ly + a) * sw + lx + b])
                acc += gy6[a] * rs
            if math.isfinite(acc):
                if do_clamp:  # the nearest 2x2 pixels (one row or column on a centre)
                    ay = ly + (inner if ny > 1 else 0)
                    ax = lx + (inner if nx > 1 else 0)
                    by = ay + (1 if ny > 1 else 0)
                    bx = ax + (1 if nx > 1 else 0)
                    acc = _clamp(acc, np.float64(plane[ay * sw + ax]),
                                 np.float64(plane[ay * sw + bx]), np.float64(plane[by * sw + ax]),
                                 np.float64(plane[by * sw + bx]))  # fmt: skip
                res[j] = acc * scl[j]
            j += 1
        return short

    # a name of its own per method: numba names a compiled function after its module,
    # qualified name and a per-process counter, so two methods' rows compiled in two
    # processes could get one name, and cached kernels that call them, loaded into one
    # process, would both call the row that was loaded first
    name = next(k for k, v in METHODS.items() if v == method)
    row.__qualname__ = row.__name__ = f"_row_{name}"
    return njit(nogil=True, error_model="numpy")(row)


_row_bilinear = _make_row(BILINEAR, _bilinear_weights)
_row_bicubic = _make_row(BICUBIC, _keys_weights)
_row_lanczos3 = _make_row(LANCZOS3, _lanczos3_weights)


@njit(nogil=True, error_model="numpy")
def _row_nearest(plane, sh, sw, src_y0, src_x0, frame_h, frame_w, fxs, fys, scl, res):
    """The NEAREST row (see ``_make_row``)."""
    short = 0
    for j in range(res.shape[0]):
        fx = fxs[j]
        fy = fys[j]
        res[j] = np.nan
        if not (fx >= -0.5 and fx < frame_w - 0.5 and fy >= -0.5 and fy < frame_h - 0.5):
            continue
        lx = math.floor(fx + 0.5) - src_x0
        ly = math.floor(fy + 0.5) - src_y0
        if lx < 0 or ly < 0 or lx >= sw or ly >= sh:
            short += 1
            continue
        v = np.float64(plane[ly * sw + lx])
        if math.isfinite(v):
            res[j] = v * scl[j]
    return short


#: the interpolation a :func:`resample_kernel` variant is compiled for (see .variants)
METHOD = LANCZOS3


@per_choice(nogil=True, error_model="numpy")  # x / 0: inf or NaN, no exception
def _resample_kernel(
    src, src_y0, src_x0, frame_h, frame_w, matrix, out, out_y0, out_x0, clamp, area
):  # pragma: no cover - compiled
    """Fill ``out`` (rows, cols, channels) from ``src`` (rows, cols, channels) by the
    interpolation ``METHOD``; see the module notes. Returns the number of covered
    output pixels whose support is not inside ``src`` (left NaN: a caller's bug).

    Each output pixel is computed from its own position alone (no running sums
    along a row), so the values do not depend on how the output is cut in tiles.
    Each channel is copied to a flat plane first (unit steps for the vectorized
    loops).
    """
    rows, cols, nch = out.shape
    sh = src.shape[0]
    sw = src.shape[1]
    m00 = np.float64(matrix[0, 0])
    m01 = np.float64(matrix[0, 1])
    m02 = np.float64(matrix[0, 2])
    m10 = np.float64(matrix[1, 0])
    m11 = np.float64(matrix[1, 1])
    m12 = np.float64(matrix[1, 2])
    m20 = np.float64(matrix[2, 0])
    m21 = np.float64(matrix[2, 1])
    m22 = np.float64(matrix[2, 2])
    det = (
        m00 * (m11 * m22 - m12 * m21)
        - m01 * (m10 * m22 - m12 * m20)
        + m02 * (m10 * m21 - m11 * m20)
    )
    affine = m20 == 0.0 and m21 == 0.0 and m22 == 1.0  # w = 1: no division (same values)
    fxs = np.empty(cols)
    wxs = np.empty((6, cols))
    wys = np.empty((6, cols))
    # a map without rotation: x positions the same in every row, y along a row
    same_x = affine and m01 == 0.0
    same_y = affine and m10 == 0.0
    fys = np.empty(cols)
    scl = np.empty(cols)
    res = np.empty(cols)
    plane = np.empty(sh * sw, np.float32)
    if affine:
        scl[:] = abs(det) if area else 1.0
    # rows whose frame positions run right to left (a rotation by about 180 degrees) are
    # computed from their last pixel on, so that the fast path's runs advance along the
    # frame's rows: pixel j of a row is output column out_x0 + rev_a + rev_b j
    rev_a = cols - 1 if m00 < 0.0 else 0
    rev_b = -1 if m00 < 0.0 else 1
    short = 0
    for c in range(nch):
        uc = np.uint64(c)
        for y in range(sh):
            uy = np.uint64(y)
            row0 = uy * np.uint64(sw)
            for x in range(sw):
                ux = np.uint64(x)  # (unsigned: no wraparound tests)
                plane[row0 + ux] = src[uy, ux, uc]
        for i in range(rows):
            y = np.float64(out_y0 + i)
            m01y = m01 * y
            m11y = m11 * y
            m21y = m21 * y
            # the frame positions of the row: (m00 x + m01 y) + m02 as ever
            if affine:
                for j in range(cols):
                    x = np.float64(out_x0 + rev_a + rev_b * j)
                    fxs[j] = m00 * x + m01y + m02
                    fys[j] = m10 * x + m11y + m12
            else:
                for j in range(cols):
                    x = np.float64(out_x0 + rev_a + rev_b * j)
                    r = 1.0 / (m20 * x + m21y + m22)  # w == 0: inf, no position covered
                    fxs[j] = (m00 * x + m01y + m02) * r
                    fys[j] = (m10 * x + m11y + m12) * r
                    scl[j] = abs(det * (r * r * r)) if area else 1.0
            new_x = not (same_x and i > 0)
            args = (plane, sh, sw, src_y0, src_x0, frame_h, frame_w)
            if METHOD == NEAREST:  # constants: numba compiles only METHOD's row
                n_short = _row_nearest(*args, fxs, fys, scl, res)
            elif METHOD == BILINEAR:
                n_short = _row_bilinear(
                    *args, clamp, fxs, fys, scl, res, wxs, wys, new_x, not same_y
                )
            elif METHOD == BICUBIC:
                n_short = _row_bicubic(
                    *args, clamp, fxs, fys, scl, res, wxs, wys, new_x, not same_y
                )
            else:
                n_short = _row_lanczos3(
                    *args, clamp, fxs, fys, scl, res, wxs, wys, new_x, not same_y
                )
            if c == 0:
                short += n_short
            ui = np.uint64(i)
            uc = np.uint64(c)
            if rev_b == 1:
                for j in range(cols):
                    uj = np.uint64(j)
                    out[ui, uj, uc] = np.float32(res[uj])
            else:
                for j in range(cols):
                    uj = np.uint64(j)
                    out[ui, np.uint64(cols - 1 - j), uc] = np.float32(res[uj])
    return short


def resample_kernel(method: int) -> Any:
    """The compiled resampling kernel for the method code ``method`` (cached; only
    that method's row is compiled): ``kernel(src, src_y0, src_x0, frame_h, frame_w,
    matrix, out, out_y0, out_x0, clamp, area)``."""
    return variant(_resample_kernel, METHOD=int(method))


def method_code(method: int | str) -> int:
    """The method code of an interpolation name (``"lanczos3"`` ...) or code."""
    if isinstance(method, str):
        try:
            return METHODS[method]
        except KeyError:
            raise ValueError(
                f"interpolation {method!r}: expected one of {', '.join(METHODS)}"
            ) from None
    code = int(method)
    if code not in MARGINS:
        raise ValueError(f"interpolation code {method!r}: expected one of {sorted(MARGINS)}")
    return code


def _as_matrix(matrix) -> np.ndarray:
    m = np.asarray(matrix, dtype=np.float64)
    if m.shape != (3, 3):
        raise ValueError(f"resample: the matrix must be 3x3, not {m.shape}")
    return m


def inverse_box(
    matrix, out_y0: int, out_y1: int, out_x0: int, out_x1: int, margin: int, frame_shape
) -> tuple[int, int, int, int]:
    """The region of the frame that holds every tap of output rows ``out_y0:out_y1``
    and columns ``out_x0:out_x1`` (ends exclusive).

    Parameters
    ----------
    matrix : (3, 3) array
        Output pixel (x, y, 1) -> frame pixel, homogeneous (see the module notes).
    out_y0, out_y1, out_x0, out_x1 : int
        The output region (rows, columns; ends exclusive).
    margin : int
        :data:`MARGINS` of the method (nearest 0, bilinear 1, bicubic 2, lanczos3 3),
        or more.
    frame_shape : tuple
        The frame's (rows, cols, ...).

    Returns
    -------
    (y0, y1, x0, x1) : tuple of int
        Frame rows ``y0:y1`` and columns ``x0:x1``, clipped to the frame;
        ``(0, 0, 0, 0)`` when the output region reads nothing of the frame.

    Notes
    -----
    ``[xmin, xmax] x [ymin, ymax]`` is the bounding box of the frame positions of
    the region's pixel centres, widened by :data:`BOX_SLACK`; the box then runs
    from ``floor(xmin) - (margin - 1)`` to ``floor(xmax) + margin`` inclusive
    (margin 0, nearest: ``floor(xmin + 0.5)`` to ``floor(xmax + 0.5)``), and alike
    in y.

    The positions come from the four corners of the region (its extreme pixel
    centres), which is exact for affine maps and for homographies as long as the
    region does not cross the line mapped to infinity (``w = 0``): ``w`` is affine
    in (x, y), so when it has one strict sign at the four corners it has that sign
    on the whole rectangle, the map is continuous there and sends lines to lines,
    and the image of the rectangle is the convex quadrilateral spanned by the
    images of its corners (no sampling of the edges can add anything). When ``w``
    changes sign (or vanishes) over the region, its image is unbounded and the
    box is the whole frame.
    """
    m = _as_matrix(matrix)
    h, w = int(frame_shape[0]), int(frame_shape[1])
    margin = int(margin)
    if margin < 0:
        raise ValueError(f"inverse_box: margin {margin} < 0")
    empty = (0, 0, 0, 0)
    if out_y1 <= out_y0 or out_x1 <= out_x0 or h <= 0 or w <= 0:
        return empty
    fxs, fys = [], []
    whole = False
    signs = set()
    for y in (float(out_y0), float(out_y1 - 1)):
        for x in (float(out_x0), float(out_x1 - 1)):
            # the kernel's own arithmetic (same order of operations)
            u = m[0, 0] * x + m[0, 1] * y + m[0, 2]
            v = m[1, 0] * x + m[1, 1] * y + m[1, 2]
            ww = m[2, 0] * x + m[2, 1] * y + m[2, 2]
            signs.add(math.copysign(1.0, ww) if ww != 0.0 else 0.0)
            if ww == 0.0:
                whole = True
                continue
            r = 1.0 / ww
            fxs.append(u * r)
            fys.append(v * r)
    if whole or len(signs) > 1 or not all(math.isfinite(p) for p in fxs + fys):
        return (0, h, 0, w)

    def span(lo: float, hi: float, n: int) -> tuple[int, int]:
        lo -= BOX_SLACK
        hi += BOX_SLACK
        # positions far outside cannot read anything: keep the ints small
        lo = min(max(lo, -8.0 - margin), n + 8.0 + margin)
        hi = min(max(hi, -8.0 - margin), n + 8.0 + margin)
        if margin == 0:
            a, b = math.floor(lo + 0.5), math.floor(hi + 0.5) + 1
        else:
            a, b = math.floor(lo) - margin + 1, math.floor(hi) + margin + 1
        return max(a, 0), min(b, n)

    y0, y1 = span(min(fys), max(fys), h)
    x0, x1 = span(min(fxs), max(fxs), w)
    if y1 <= y0 or x1 <= x0:
        return empty
    return (y0, y1, x0, x1)


def resample(
    src,
    src_y0: int,
    src_x0: int,
    matrix,
    out,
    out_y0: int,
    out_x0: int,
    method: int | str = LANCZOS3,
    clamp: bool = True,
    area: bool = False,
    *,
    frame_shape=None,
):
    """Resample frame values onto output pixels ``(out_y0 + i, out_x0 + j)``.

    Parameters
    ----------
    src : float32 array (rows, cols[, channels])
        A region of the frame (calibrated values, NaN where missing) whose first
        pixel is frame pixel ``(src_y0, src_x0)``; :func:`inverse_box` says which.
    src_y0, src_x0 : int
        Where ``src`` sits in the frame.
    matrix : (3, 3) array
        Output pixel (x, y, 1) -> frame pixel, homogeneous.
    out : float32 array (rows, cols[, channels]), written
        The output region; its first pixel is output pixel ``(out_y0, out_x0)``.
    method : int or str
        :data:`NEAREST`, :data:`BILINEAR`, :data:`BICUBIC`, :data:`LANCZOS3` or a
        name of :data:`METHODS`.
    clamp : bool
        Clamp bicubic and lanczos3 values to the range of the nearest 2x2 pixels.
    area : bool
        Multiply by the frame-pixel area per output pixel (SWarp's flux scaling).
    frame_shape : tuple, optional
        The whole frame's (rows, cols, ...): coverage is decided against it. By
        default ``src`` is the whole frame (then ``src_y0 = src_x0 = 0``).

    Returns
    -------
    out

    Raises
    ------
    ValueError
        Bad shapes or types, or ``src`` misses taps of covered output pixels
        (a region smaller than :func:`inverse_box`'s): a caller's bug.
    """
    code = method_code(method)
    m = _as_matrix(matrix)
    if not isinstance(src, np.ndarray) or src.dtype != np.float32:
        raise ValueError("resample: src must be a float32 numpy array")
    if not isinstance(out, np.ndarray) or out.dtype != np.float32:
        raise ValueError("resample: out must be a float32 numpy array")
    if src.ndim != out.ndim or src.ndim not in (2, 3):
        raise ValueError(f"resample: src {src.shape} and out {out.shape}: both 2-D or both 3-D")
    if src.ndim == 3 and src.shape[2] != out.shape[2]:
        raise ValueError(f"resample: src {src.shape} and out {out.shape}: channels differ")
    if frame_shape is None:
        if src_y0 or src_x0:
            raise ValueError("resample: give frame_shape when src is only a region of the frame")
        frame_shape = src.shape
    fh, fw = int(frame_shape[0]), int(frame_shape[1])
    if src.size and (
        src_y0 < 0 or src_x0 < 0 or src_y0 + src.shape[0] > fh or src_x0 + src.shape[1] > fw
    ):
        raise ValueError(
            f"resample: src {src.shape[:2]} at ({src_y0}, {src_x0}) is not inside the frame "
            f"{(fh, fw)}"
        )
    # C-contiguous arrays only: one compiled specialization. (numba numbers a kernel's
    # cache files by its specializations: processes that compile different ones at the
    # same time can overwrite each other's files and load another layout's code.)
    s3 = np.ascontiguousarray(src if src.ndim == 3 else src[:, :, None])
    o3 = out if out.ndim == 3 else out[:, :, None]
    o3c = o3 if o3.flags.c_contiguous else np.empty(o3.shape, dtype=np.float32)
    short = resample_kernel(code)(
        s3, int(src_y0), int(src_x0), fh, fw, np.ascontiguousarray(m), o3c, int(out_y0),
        int(out_x0), bool(clamp), bool(area),
    )  # fmt: skip
    if o3c is not o3:
        o3[...] = o3c
    if short:
        raise ValueError(
            f"resample: src (rows {src_y0}:{src_y0 + src.shape[0]}, columns "
            f"{src_x0}:{src_x0 + src.shape[1]} of the frame) misses taps of {short} covered "
            "output pixels; read the frame's inverse_box"
        )
    return out


check_caches(__name__)  # drop caches compiled from other sources (see .._numba_cache)
