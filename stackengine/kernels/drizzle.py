"""Drizzle (Fruchter & Hook 2002) into one tile of an output grid (numba).

:func:`drizzle_into` drops the pixels of a region of an input frame onto an
output tile through a pixel map (each input pixel centre's output position) and
adds their weighted values to two accumulators: ``num`` (sum of weight x value)
and ``den`` (sum of weight). A frame's drizzled image is ``num / den``, its
weight map ``den``; frames combine as ``sum(num) / sum(den)``.

Why by hand: the ``drizzle`` package (STScI) works on whole in-memory output
images (its running weighted mean is kept in the output image itself, in
float32), not on tiles of an out-of-core grid, and it is C behind one Python
call per frame, not a per-tile numba kernel that dask can run without the GIL.
This module is the same algorithm, written to agree with ``drizzle`` 3.0
(``src/cdrizzlebox.c``, ``src/cdrizzlemap.c``): the same pixel-corner
interpolation, the same overlap routine (``boxer``/``sgarea``), the same
normalisation and the same loop order. Its sums are float64 where ``drizzle``
keeps float32 running means, so the two agree to float32 rounding, not bit for
bit.

The three kernels, as in ``drizzle``:

- ``"square"``: the input pixel shrunk by ``pixfrac`` about its centre, its four
  corners mapped to the output grid (below), gives a quadrilateral; an output
  pixel receives weight ``overlap area / quadrilateral area`` (both in output
  pixels) times the input weight. An input pixel's weights therefore add up to
  its input weight (where its whole quadrilateral lands on the output), whatever
  ``pixfrac`` and the scale.
- ``"point"``: the whole input weight goes to the output pixel nearest to the
  mapped centre (rounded half away from zero, C's ``round``).
- ``"turbo"``: an axis-aligned square of side ``pixfrac / pixel_scale_ratio``
  output pixels about the mapped centre; weight ``overlap / side**2`` times the
  input weight.

Corners (square kernel) are the bilinear interpolation of the pixel map at
``(x +- pixfrac/2, y +- pixfrac/2)`` in input pixels, from the map values at
the four surrounding pixel centres, and linear extrapolation of the outermost
2 x 2 cell of map values beyond the outermost pixel centres: exactly what
``drizzle`` does at its input image's edges (``interpolate_point``) and inside
(``interpolate_four_points``, the same interpolation from the 3 x 3
neighbourhood). Here the edges are those of the region given.

Deterministic and independent of the output partition: input pixels are visited
row by row, each contribution is computed from global output coordinates only,
so an output pixel receives the same float64 terms in the same order whichever
tile it is in.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from .._numba_cache import check_caches

__all__ = ["KERNELS", "drizzle_into"]

SQUARE, POINT, TURBO = 0, 1, 2
KERNELS = {"square": SQUARE, "point": POINT, "turbo": TURBO}


@njit(nogil=True, cache=True, error_model="numpy")
def _nint(x):
    """C's ``round`` (halves away from zero) as an integer; ``x`` finite and small."""
    t = math.trunc(x)
    if abs(x - t) >= 0.5:
        t += 1.0 if x > 0.0 else -1.0
    return int(t)


@njit(nogil=True, cache=True, error_model="numpy")
def _sgarea(x1, y1, x2, y2):
    """Signed area under the segment (x1, y1)-(x2, y2) within the unit square at
    the origin (``drizzle``'s ``sgarea``, operation for operation)."""
    dx = x2 - x1
    dy = y2 - y1
    if dx == 0.0:
        return 0.0
    if dx < 0.0:
        sgn_dx = -1.0
        xlo = x2
        xhi = x1
    else:
        sgn_dx = 1.0
        xlo = x1
        xhi = x2
    if xlo >= 1.0 or xhi <= 0.0:
        return 0.0
    xlo = max(xlo, 0.0)
    xhi = min(xhi, 1.0)
    slope = dy / dx
    ylo = y1 + slope * (xlo - x1)
    yhi = y1 + slope * (xhi - x1)
    if ylo <= 0.0 and yhi <= 0.0:
        return 0.0
    if ylo >= 1.0 and yhi >= 1.0:
        return sgn_dx * (xhi - xlo)
    det = x1 * y2 - y1 * x2
    if ylo < 0.0:
        ylo = 0.0
        xlo = det / dy
    if yhi < 0.0:
        yhi = 0.0
        xhi = det / dy
    if ylo <= 1.0:
        if yhi <= 1.0:
            return sgn_dx * 0.5 * (xhi - xlo) * (yhi + ylo)
        xtop = (dx + det) / dy
        return sgn_dx * (0.5 * (xtop - xlo) * (1.0 + ylo) + xhi - xtop)
    xtop = (dx + det) / dy
    return sgn_dx * (0.5 * (xhi - xtop) * (1.0 + yhi) + xtop - xlo)


@njit(nogil=True, cache=True, error_model="numpy")
def _boxer(i, j, xs, ys):
    """Signed area common to the quadrilateral ``xs``, ``ys`` and output pixel
    ``(j, i)`` (the unit square centred there; ``drizzle``'s ``boxer``)."""
    ox = i - 0.5
    oy = j - 0.5
    p0x = xs[0] - ox
    p1x = xs[1] - ox
    p2x = xs[2] - ox
    p3x = xs[3] - ox
    p0y = ys[0] - oy
    p1y = ys[1] - oy
    p2y = ys[2] - oy
    p3y = ys[3] - oy
    s = _sgarea(p0x, p0y, p1x, p1y)
    s += _sgarea(p1x, p1y, p2x, p2y)
    s += _sgarea(p2x, p2y, p3x, p3y)
    s += _sgarea(p3x, p3y, p0x, p0y)
    return s


@njit(nogil=True, cache=True, error_model="numpy")
def _interp(px, py, i, j, dx, dy):
    """Bilinear interpolation of the map at input position (i + dx, j + dy), linear
    extrapolation of the outermost cell beyond the map (``interpolate_point``)."""
    h, w = px.shape
    i0 = int(i + dx)  # C's (int): towards zero
    j0 = int(j + dy)
    if i0 < 0:
        i0 = 0
    elif i0 > w - 2:
        i0 = w - 2
    if j0 < 0:
        j0 = 0
    elif j0 > h - 2:
        j0 = h - 2
    # drizzle has (i + dx) - i0: the same up to rounding; this rounds alike in any
    # region holding the cell (i - i0 is an exact small integer)
    x = (i - i0) + dx
    y = (j - j0) + dy
    x1 = 1.0 - x
    y1 = 1.0 - y
    f00 = px[j0, i0]
    f10 = px[j0, i0 + 1]
    f01 = px[j0 + 1, i0]
    f11 = px[j0 + 1, i0 + 1]
    g00 = py[j0, i0]
    g10 = py[j0, i0 + 1]
    g01 = py[j0 + 1, i0]
    g11 = py[j0 + 1, i0 + 1]
    xo = f00 * x1 * y1 + f10 * x * y1 + f01 * x1 * y + f11 * x * y
    yo = g00 * x1 * y1 + g10 * x * y1 + g01 * x1 * y + g11 * x * y
    return xo, yo


@njit(nogil=True, cache=True, error_model="numpy")
def _corners(px, py, i, j, dh, xs, ys):
    """The four corners (clockwise in the input grid: (-,+), (+,+), (+,-), (-,-)
    in (x, y)) of input pixel (j, i) shrunk to half-side ``dh``, in output pixels."""
    h, w = px.shape
    if i > 0 and i < w - 1 and j > 0 and j < h - 1:
        # interpolate_four_points: the 3 x 3 neighbourhood, weights pre-multiplied
        a = (1.0 - dh) * (1.0 - dh)
        b = (1.0 - dh) * dh
        c = dh * dh
        f00 = px[j - 1, i - 1] * c
        f10 = px[j - 1, i] * b
        f20 = px[j - 1, i + 1] * c
        f01 = px[j, i - 1] * b
        f11 = px[j, i] * a
        f21 = px[j, i + 1] * b
        f02 = px[j + 1, i - 1] * c
        f12 = px[j + 1, i] * b
        f22 = px[j + 1, i + 1] * c
        g00 = py[j - 1, i - 1] * c
        g10 = py[j - 1, i] * b
        g20 = py[j - 1, i + 1] * c
        g01 = py[j, i - 1] * b
        g11 = py[j, i] * a
        g21 = py[j, i + 1] * b
        g02 = py[j + 1, i - 1] * c
        g12 = py[j + 1, i] * b
        g22 = py[j + 1, i + 1] * c
        xs[0] = f01 + f11 + f02 + f12
        ys[0] = g01 + g11 + g02 + g12
        xs[1] = f11 + f21 + f12 + f22
        ys[1] = g11 + g21 + g12 + g22
        xs[2] = f10 + f20 + f11 + f21
        ys[2] = g10 + g20 + g11 + g21
        xs[3] = f00 + f10 + f01 + f11
        ys[3] = g00 + g10 + g01 + g11
    else:
        xs[0], ys[0] = _interp(px, py, i, j, -dh, dh)
        xs[1], ys[1] = _interp(px, py, i, j, dh, dh)
        xs[2], ys[2] = _interp(px, py, i, j, dh, -dh)
        xs[3], ys[3] = _interp(px, py, i, j, -dh, -dh)


@njit(nogil=True, cache=True, error_model="numpy")
def _span(lo, hi, t0, t1):
    """Output indices ``nint(lo)..nint(hi)`` clipped to the tile ``t0..t1``
    (inclusive); empty (a > b) when none. ``lo``, ``hi`` finite."""
    lo = min(max(lo, t0 - 1.0), t1 + 1.0)  # keep the rounding in int range
    hi = min(max(hi, t0 - 1.0), t1 + 1.0)
    return max(_nint(lo), t0), min(_nint(hi), t1)


@njit(nogil=True, cache=True, error_model="numpy")
def _drizzle_kernel(src, px, py, wts, use_w, oy0, ox0, num, den, kernel, pixfrac, pscale_ratio):
    h, w = src.shape
    th, tw = num.shape
    ty1 = oy0 + th - 1
    tx1 = ox0 + tw - 1
    dh = 0.5 * pixfrac
    xs = np.empty(4)
    ys = np.empty(4)
    # turbo: a square of half-side pfo output pixels, overlaps scaled to sum to 1
    pfo = pixfrac / pscale_ratio / 2.0
    dover_scale = (1.0 / (pixfrac * pixfrac)) * pscale_ratio * pscale_ratio
    n_used = 0
    for j in range(h):
        for i in range(w):
            d = src[j, i]
            if not math.isfinite(d):
                continue
            wt = 1.0
            if use_w:
                wt = wts[j, i]
                if not wt > 0.0:
                    continue
            dd = np.float64(d)
            hit = False
            if kernel == SQUARE:
                _corners(px, py, i, j, dh, xs, ys)
                xmin = min(min(xs[0], xs[1]), min(xs[2], xs[3]))
                xmax = max(max(xs[0], xs[1]), max(xs[2], xs[3]))
                ymin = min(min(ys[0], ys[1]), min(ys[2], ys[3]))
                ymax = max(max(ys[0], ys[1]), max(ys[2], ys[3]))
                if not (
                    math.isfinite(xs[0] + xs[1] + xs[2] + xs[3] + ys[0] + ys[1] + ys[2] + ys[3])
                    and xmax >= ox0 - 0.5
                    and xmin <= tx1 + 0.5
                    and ymax >= oy0 - 0.5
                    and ymin <= ty1 + 0.5
                ):
                    continue  # NaN in the 3 x 3 map neighbourhood, or off the tile
                jaco = 0.5 * ((xs[1] - xs[3]) * (ys[0] - ys[2]) - (xs[0] - xs[2]) * (ys[1] - ys[3]))
                if jaco == 0.0:
                    continue
                ww = wt / jaco  # overlaps and jaco share their sign
                jj0, jj1 = _span(ymin, ymax, oy0, ty1)
                ii0, ii1 = _span(xmin, xmax, ox0, tx1)
                for jj in range(jj0, jj1 + 1):
                    for ii in range(ii0, ii1 + 1):
                        dover = _boxer(np.float64(ii), np.float64(jj), xs, ys)
                        if dover != 0.0:
                            dow = dover * ww
                            num[jj - oy0, ii - ox0] += dow * dd
                            den[jj - oy0, ii - ox0] += dow
                            hit = True
            elif kernel == POINT:
                ox = px[j, i]
                oy = py[j, i]
                if not (math.isfinite(ox) and math.isfinite(oy)):
                    continue
                if ox < ox0 - 0.5 or ox > tx1 + 0.5 or oy < oy0 - 0.5 or oy > ty1 + 0.5:
                    continue
                ii = _nint(ox)
                jj = _nint(oy)
                if ox0 <= ii <= tx1 and oy0 <= jj <= ty1:
                    num[jj - oy0, ii - ox0] += wt * dd
                    den[jj - oy0, ii - ox0] += wt
                    hit = True
            else:  # TURBO
                ox = px[j, i]
                oy = py[j, i]
                if not (math.isfinite(ox) and math.isfinite(oy)):
                    continue
                xxi = ox - pfo
                xxa = ox + pfo
                yyi = oy - pfo
                yya = oy + pfo
                if xxa < ox0 - 0.5 or xxi > tx1 + 0.5 or yya < oy0 - 0.5 or yyi > ty1 + 0.5:
                    continue
                jj0, jj1 = _span(yyi, yya, oy0, ty1)
                ii0, ii1 = _span(xxi, xxa, ox0, tx1)
                for jj in range(jj0, jj1 + 1):
                    for ii in range(ii0, ii1 + 1):
                        # drizzle's "over": the aligned box's overlap with the pixel
                        fi = np.float64(ii)
                        fj = np.float64(jj)
                        dx = min(xxa, fi + 0.5) - max(xxi, fi - 0.5)
                        dy = min(yya, fj + 0.5) - max(yyi, fj - 0.5)
                        if dx > 0.0 and dy > 0.0:
                            dow = dx * dy * dover_scale * wt
                            num[jj - oy0, ii - ox0] += dow * dd
                            den[jj - oy0, ii - ox0] += dow
                            hit = True
            if hit:
                n_used += 1
    return n_used


def drizzle_into(
    src,
    pixmap_x,
    pixmap_y,
    out_y0: int,
    out_x0: int,
    num,
    den,
    *,
    pixfrac: float = 1.0,
    kernel: str = "square",
    in_weight=None,
    pixel_scale_ratio: float = 1.0,
) -> int:
    """Drizzle a region of an input frame into the accumulators of an output tile.

    For each input pixel with a finite value ``d`` and input weight ``w`` and each
    output pixel of the tile that its drop overlaps with weight fraction ``a``
    (the kernel's, as in ``drizzle``: see the module docstring):
    ``num += a * w * d`` and ``den += a * w``. Contributions outside the tile
    are dropped.

    Parameters
    ----------
    src : float32 array (h, w)
        The region of the input frame. NaN or inf: missing, contributes nothing
        (its pixel map is still used for its neighbours' corners).
    pixmap_x, pixmap_y : float64 arrays (h, w)
        Output-grid column and row (0-based pixel centres) of each input pixel's
        centre: ``drizzle``'s ``pixmap[..., 0]`` and ``pixmap[..., 1]``. NaN: no
        mapping. The square kernel skips a pixel when any of its 3 x 3 map
        neighbourhood is NaN (its corners are interpolated from it, as in
        ``drizzle``); point and turbo need only the pixel's own entry.
    out_y0, out_x0 : int
        Output-grid row and column of the tile's first pixel (any integers).
    num, den : float64 arrays (th, tw), C-contiguous, updated in place
        The tile's accumulators.
    pixfrac : float
        Linear size of the drop in input pixels (square, turbo), 0.001 < pixfrac <= 2.
    kernel : {"square", "point", "turbo"}
    in_weight : float32 array (h, w) or None
        Input weights (``drizzle``'s ``weight_map``); None: all 1. A weight that is
        0, negative or NaN: the pixel contributes nothing.
    pixel_scale_ratio : float
        Turbo only: ``drizzle``'s ``pixel_scale_ratio``, the output pixel's size in
        input pixels (the drop is ``pixfrac / pixel_scale_ratio`` output pixels
        wide). No estimate from the map: it would depend on the region.

    Returns
    -------
    int
        How many input pixels added to the tile (at least one non-zero weight).

    Notes
    -----
    *Regions.* The square kernel's corners come from the map of the region
    given; beyond its outermost pixel centres the map is extrapolated linearly,
    as ``drizzle`` does at its input image's edges. To drizzle part of a frame
    exactly as drizzling the whole frame does, pass the part with a one-pixel
    margin of the frame's neighbouring pixels (where the frame has them) marked
    missing (NaN in ``src`` or 0 in ``in_weight``): the margin's map then serves
    only its neighbours' corners, and a pixel's corners are the same bits in
    any region holding its 3 x 3 neighbourhood (or, at the frame's edge, the
    same edge cells). Parts split by rows and drizzled in row order give the
    whole frame's sums bit for bit. (``drizzle`` evaluates the same bilinear
    interpolation with its 2 x 2 formula also in the second-to-last row and
    column, from absolute positions; the corners differ from its by rounding
    only.)

    *What of* ``drizzle.resample.Drizzle.add_image`` *this reproduces.* For a
    frame whose drops all land inside ``drizzle``'s output image,
    ``num / den`` (where ``den > 0``) is its ``out_img`` and ``den`` its
    ``out_wht`` after ``add_image(src, exptime, pixmap, weight_map=in_weight,
    pixfrac=pixfrac, iscale=1, wht_scale=1, in_units="cps")`` (any ``exptime``:
    with ``in_units="cps"`` it is only bookkept); ``pixel_scale_ratio`` matters to
    turbo only, and is passed through. Several frames added one after another
    give ``sum(num) / sum(den)`` and ``sum(den)``: ``drizzle``'s running
    weighted mean is that ratio. Values are surface brightness: nothing is
    multiplied by a pixel-area ratio. ``iscale=s`` is ``src * np.float32(s)``
    (``drizzle`` multiplies in float32), ``in_units="counts"`` is
    ``iscale=1/exptime``, ``wht_scale=k`` is ``in_weight * np.float32(k)``: the
    caller scales its arrays. ``fillval`` concerns only output pixels with no
    weight: ``num / den`` is NaN there, ``drizzle``'s default (``fillval=None``).
    Differences: ``drizzle`` keeps float32 running means (agreement to float32
    rounding, ~1e-6 relative); it lets NaN values poison its output where this
    skips them; near the edges of its output image it leaves out input pixels
    (its scanner keeps those inside the image's outline mapped back onto the
    input, less a margin that grows with the outline's slant: even some whose
    centres land on the image), where this clips every drop to the tile; and
    it switches to the point kernel for ``pixfrac <= 0.001`` where this raises.
    """
    if kernel not in KERNELS:
        raise ValueError(f"drizzle_into: unknown kernel {kernel!r} (square, point, turbo)")
    code = KERNELS[kernel]
    pixfrac = float(pixfrac)
    if not 0.001 < pixfrac <= 2.0:
        raise ValueError(f"drizzle_into: pixfrac must be in (0.001, 2], not {pixfrac}")
    # drizzle holds pixel_scale_ratio as a C float
    psr = float(np.float32(pixel_scale_ratio))
    if not (math.isfinite(psr) and psr > 0.0):
        raise ValueError(f"drizzle_into: pixel_scale_ratio must be > 0, not {pixel_scale_ratio}")
    if not isinstance(src, np.ndarray) or src.dtype != np.float32 or src.ndim != 2:
        raise ValueError("drizzle_into: src must be a 2-d float32 numpy array")
    for name, acc in (("num", num), ("den", den)):
        if not isinstance(acc, np.ndarray) or acc.dtype != np.float64 or acc.ndim != 2:
            raise ValueError(f"drizzle_into: {name} must be a 2-d float64 numpy array")
        if not acc.flags.c_contiguous or not acc.flags.writeable:
            raise ValueError(f"drizzle_into: {name} must be C-contiguous and writeable")
    if num.shape != den.shape:
        raise ValueError(f"drizzle_into: num {num.shape} and den {den.shape}")
    px = np.ascontiguousarray(pixmap_x, dtype=np.float64)
    py = np.ascontiguousarray(pixmap_y, dtype=np.float64)
    if px.shape != src.shape or py.shape != src.shape:
        raise ValueError(f"drizzle_into: pixmap_x {px.shape}, pixmap_y {py.shape}, src {src.shape}")
    if in_weight is None:
        wts = np.ones((1, 1), np.float32)
    else:
        wts = np.ascontiguousarray(in_weight, dtype=np.float32)
        if wts.shape != src.shape:
            raise ValueError(f"drizzle_into: in_weight {wts.shape} and src {src.shape}")
    if src.size == 0 or num.size == 0:
        return 0
    if code == SQUARE and (src.shape[0] < 2 or src.shape[1] < 2):
        raise ValueError(
            "drizzle_into: the square kernel needs a region of at least 2 x 2 pixels "
            f"(corners are interpolated between pixel centres), not {src.shape}"
        )
    src = np.ascontiguousarray(src)
    use_w = in_weight is not None
    args = (src, px, py, wts, use_w, int(out_y0), int(out_x0), num, den, code, pixfrac, psr)
    return int(_drizzle_kernel(*args))


check_caches(__name__)  # drop caches compiled from other sources (see .._numba_cache)
