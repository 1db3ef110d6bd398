"""Debayering one-shot-colour (Bayer mosaic) frames into RGB, one region at a time (numba).

Conventions
-----------
* A mosaic is a 2-D array ``(rows, cols)``; its *pattern* (one of
  :data:`PATTERNS`, FITS ``BAYERPAT``) names the filters of its first 2x2 pixels
  in reading order: ``"GRBG"`` means ``(0, 0)`` green, ``(0, 1)`` red,
  ``(1, 0)`` blue, ``(1, 1)`` green. The pattern repeats with period 2, so a
  region whose first pixel is the frame's ``(y0, x0)`` has the pattern
  :func:`pattern_for` ``(pattern, y0, x0)`` (odd offsets shift it).
* The result is ``(rows, cols, 3)`` float32, channels R, G, B. Computation in
  float64 (the weights are dyadic fractions, so sums of integer-valued pixels,
  e.g. uint16 ADU, are exact), results stored as float32.
* Calibration (bias, dark, flat) belongs to the mosaic, before debayering.

Methods
-------
``"bilinear"``
    Each missing colour is the mean of its nearest same-colour neighbours: the
    3x3 filters ``[[0,1,0],[1,4,1],[0,1,0]] / 4`` (green) and
    ``[[1,2,1],[2,4,2],[1,2,1]] / 4`` (red, blue) applied to the pixels of that
    colour alone (colour-demosaicing's ``demosaicing_CFA_Bayer_bilinear``).
    A pixel's own colour is its value (the filter's centre weight is 1 and its
    other taps fall on other colours), except along the border with
    ``border="reflect"``. Margin 1.
``"mhc"``
    Malvar, He & Cutler (2004), "High-quality linear interpolation for
    demosaicing of Bayer-patterned color images": the bilinear estimate
    corrected by the Laplacian of the pixel's own colour, as their four 5x5
    filters (green at red/blue; red/blue at green in a red/blue row; in a
    blue/red row; red at blue and blue at red), applied to the whole mosaic
    (colour-demosaicing's ``demosaicing_CFA_Bayer_Malvar2004``). A pixel's own
    colour is its value. Margin 2.

Borders
-------
Filters reaching past the frame read padded values. ``border="mirror"`` (the
default) pads by mirroring about the edge pixel without repeating it
(``c b | a b c``, scipy's ``mode="mirror"``, numpy's ``"reflect"``): this keeps
the Bayer parity, so a padded pixel has the colour the pattern gives its
position and every border pixel is interpolated from genuine same-colour
neighbours (a constant mosaic stays constant, borders included).
``border="reflect"`` repeats the edge pixel (``b a | a b c``, scipy's
``mode="reflect"``, the default of ``scipy.ndimage.convolve`` and so what
colour-demosaicing 0.2 actually uses): the padded pixel takes the *source*
pixel's colour, which breaks the parity; e.g. the bilinear red of a constant
RGGB mosaic is 2.25 at the top-left corner and 1.5 along the first row. It is
there to reproduce colour-demosaicing exactly.

Regions and the margin
----------------------
Output pixel ``(r, c)`` depends only on the mosaic within :func:`margin` rows
and columns of it (Chebyshev distance 1 for bilinear, 2 for mhc), padded values
included. A tile task that needs rows ``y0:y1`` and columns ``x0:x1`` of the
debayered frame reads the mosaic region widened by the margin on each side and
clipped to the frame (:func:`read_window`), debayers it with
``pattern_for(pattern, ry0, rx0)`` and the same ``border``, and keeps the
pixels inside ``y0:y1, x0:x1``. Where the widened region reaches past the frame
(the frame's true border) the region's own padding *is* the frame's padding;
at a region's inner border the padding is wrong, but it only reaches the
margin, which is cropped. The kept pixels are then bit for bit those of
debayering the whole frame (same taps, same weights, same order of sums).

Missing values
--------------
NaN or +-inf in the mosaic: an output value is NaN (or inf) exactly when a tap
with non-zero weight in the filter that makes it is (for bilinear, only the
same-colour pixels it averages; a pixel's own colour, only the pixel itself).
colour-demosaicing spreads NaN further (it convolves ``mosaic * mask`` and
``0 * NaN`` is NaN, and scipy multiplies the zero taps too). The sign and payload
bits of a NaN result are not specified.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from .._numba_cache import check_caches

__all__ = ["BORDERS", "METHODS", "PATTERNS", "debayer", "margin", "pattern_for", "read_window"]

#: the Bayer patterns (FITS ``BAYERPAT``), the filters of pixels (0,0), (0,1), (1,0), (1,1)
PATTERNS = ("RGGB", "BGGR", "GRBG", "GBRG")
#: the methods and their margins (rows / columns of context needed on each side)
METHODS = {"bilinear": 1, "mhc": 2}
#: the border paddings (see the module notes)
BORDERS = ("mirror", "reflect")

_CHANNEL = {"R": 0, "G": 1, "B": 2}


def _colours(pattern: str) -> np.ndarray:
    a = np.array([_CHANNEL[ch] for ch in pattern], dtype=np.int64)
    a.flags.writeable = False
    return a


#: the channel of pixels (0,0), (0,1), (1,0), (1,1) of each pattern (read-only)
_COLOURS = {p: _colours(p) for p in PATTERNS}

# Malvar-He-Cutler filters, as colour-demosaicing writes them (all weights dyadic: exact)
_GR_GB = np.array(
    [
        [0.0, 0.0, -1.0, 0.0, 0.0],
        [0.0, 0.0, 2.0, 0.0, 0.0],
        [-1.0, 2.0, 4.0, 2.0, -1.0],
        [0.0, 0.0, 2.0, 0.0, 0.0],
        [0.0, 0.0, -1.0, 0.0, 0.0],
    ]
)
_RG_ROW = np.array(  # red at green in a red row (blue at green in a blue row)
    [
        [0.0, 0.0, 0.5, 0.0, 0.0],
        [0.0, -1.0, 0.0, -1.0, 0.0],
        [-1.0, 4.0, 5.0, 4.0, -1.0],
        [0.0, -1.0, 0.0, -1.0, 0.0],
        [0.0, 0.0, 0.5, 0.0, 0.0],
    ]
)
_RB_BR = np.array(
    [
        [0.0, 0.0, -1.5, 0.0, 0.0],
        [0.0, 2.0, 0.0, 2.0, 0.0],
        [-1.5, 0.0, 6.0, 0.0, -1.5],
        [0.0, 2.0, 0.0, 2.0, 0.0],
        [0.0, 0.0, -1.5, 0.0, 0.0],
    ]
)
#: the 5x5 MHC filters: 0 green at red/blue, 1 red/blue at green in a row of that
#: colour, 2 the same in a column of that colour, 3 red at blue / blue at red
_MHC = np.ascontiguousarray(np.stack([_GR_GB, _RG_ROW, _RG_ROW.T, _RB_BR]) / 8.0)
#: the 3x3 bilinear filters: 0 red/blue, 1 green (applied to that colour's pixels)
_BILINEAR = np.ascontiguousarray(
    np.stack(
        [
            np.array([[1.0, 2.0, 1.0], [2.0, 4.0, 2.0], [1.0, 2.0, 1.0]]),
            np.array([[0.0, 1.0, 0.0], [1.0, 4.0, 1.0], [0.0, 1.0, 0.0]]),
        ]
    )
    / 4.0
)


def pattern_for(pattern: str, y0: int, x0: int) -> str:
    """The 2x2 pattern of a region whose first pixel is the frame's ``(y0, x0)``.

    Parameters
    ----------
    pattern : str
        The frame's pattern, one of :data:`PATTERNS` (case-insensitive).
    y0, x0 : int
        The region's first row and column in the frame (negative allowed).

    Returns
    -------
    str
        The region's pattern: unchanged for even offsets; ``"RGGB"`` shifted by one
        column is ``"GRBG"``, by one row ``"GBRG"``, by both ``"BGGR"``.
    """
    p = _check_pattern(pattern)
    dy, dx = int(y0) % 2, int(x0) % 2
    return "".join(p[((dy + i) % 2) * 2 + (dx + j) % 2] for i in (0, 1) for j in (0, 1))


def margin(method: str) -> int:
    """Rows and columns of context a region needs on each side: bilinear 1, mhc 2."""
    try:
        return METHODS[method]
    except KeyError:
        raise ValueError(f"method {method!r}: must be one of {tuple(METHODS)}") from None


def read_window(
    shape: tuple[int, int], y0: int, y1: int, x0: int, x1: int, method: str
) -> tuple[tuple[slice, slice], tuple[slice, slice]]:
    """The mosaic region to read for output rows ``y0:y1``, columns ``x0:x1``, and
    where those pixels sit in the region's debayer.

    Returns ``(read, keep)``: debayer ``mosaic[read]`` with pattern
    ``pattern_for(pattern, read[0].start, read[1].start)`` and keep ``result[keep]``;
    it equals ``debayer(mosaic, pattern, method)[y0:y1, x0:x1]`` bit for bit.
    """
    m = margin(method)
    rows, cols = shape
    if not (0 <= y0 <= y1 <= rows and 0 <= x0 <= x1 <= cols):
        raise ValueError(f"region [{y0}:{y1}, {x0}:{x1}] outside a frame of shape {shape}")
    ry0, ry1 = max(y0 - m, 0), min(y1 + m, rows)
    rx0, rx1 = max(x0 - m, 0), min(x1 + m, cols)
    read = (slice(ry0, ry1), slice(rx0, rx1))
    keep = (slice(y0 - ry0, y1 - ry0), slice(x0 - rx0, x1 - rx0))
    return read, keep


def _check_pattern(pattern: str) -> str:
    p = str(pattern).strip().upper()
    if p not in PATTERNS:
        raise ValueError(f"Bayer pattern {pattern!r}: must be one of {PATTERNS}")
    return p


# The kernels. Output pixel (r, c), channel ch, is the float32 rounding of a float64
# sum that starts at 0.0 and adds ``weight * float64(tap)`` over the taps of the filter
# that makes it, in reading order (rows, then columns, of the filter), skipping the
# zero weights and, for bilinear, the taps of other colours (MHC's own colour is the
# pixel's value, no sum). The general code below (``_bilinear_pixel``, ``_mhc_pixel``)
# does exactly that, tap by tap; the fast code writes the same sums out, term for
# term in the same order, for each kind of pixel (red or blue; green in a red or a
# blue row), so its results are the same bits. It applies wherever the taps have the
# colours the pattern gives their positions: inside the region, and with
# border="mirror" along the border too (the mirror keeps the parity; the padded rows
# and columns are just other indices), unless an axis is 1 pixel long. The general
# code is left for the border ring of border="reflect" and for 1-pixel axes. The
# rows in use are converted to float64 once (``_row64``), not once per tap; the sums
# keep their order, and no tap is skipped or added, so -0.0, inf and NaN come out as
# before (the 0.0 the sums start from turns a lone -0.0 into +0.0, as before). Only a
# NaN's sign and payload bits may differ (x86 keeps the first operand's NaN, and LLVM
# may swap the operands of an addition: +-inf - inf or two NaNs of different signs).


@njit(nogil=True, cache=True)
def _pad(i, n, mirror):  # pragma: no cover
    """Source index of padded position ``i`` (``-pad <= i < n + pad``) of an axis of ``n``."""
    if n == 1:
        return 0
    period = 2 * n - 2 if mirror else 2 * n
    j = i % period
    if mirror:
        return j if j < n else period - j
    return j if j < n else period - 1 - j


@njit(nogil=True, cache=True)
def _row64(mosaic, rows, held, i):  # pragma: no cover
    """Row ``i`` of ``mosaic`` as float64: slot ``i % len(rows)`` of ``rows``, converted
    unless it holds it already (``held``: the row in each slot, -1 none)."""
    slot = i % rows.shape[0]
    row = rows[slot]
    if held[slot] != i:
        src = mosaic[i]
        for c in range(row.shape[0]):
            row[c] = np.float64(src[c])
        held[slot] = i
    return row


@njit(nogil=True, cache=True)
def _bilinear_pixel(mosaic, colours, mirror, r, c, out):  # pragma: no cover
    """Bilinear output pixel (r, c), tap by tap (any border, any size)."""
    h, w = mosaic.shape
    for ch in range(3):  # own colour too: with border="reflect" it is not the value
        f = 1 if ch == 1 else 0
        acc = 0.0
        for dy in range(3):
            rr = _pad(r + dy - 1, h, mirror)
            for dx in range(3):
                wt = _BILINEAR[f, dy, dx]
                if wt == 0.0:
                    continue
                cc = _pad(c + dx - 1, w, mirror)
                if colours[(rr & 1) * 2 + (cc & 1)] == ch:
                    acc += wt * np.float64(mosaic[rr, cc])
        out[r, c, ch] = np.float32(acc)


@njit(nogil=True, cache=True)
def _bilinear_green(a, b, d, o, cl, c, cr, k, j):  # pragma: no cover
    """Bilinear at a green pixel of a row of colour k (rows a, b, d: above, own, below)."""
    o[c, k] = np.float32(0.0 + 0.5 * np.float64(b[cl]) + 0.5 * np.float64(b[cr]))
    o[c, 1] = np.float32(0.0 + 1.0 * np.float64(b[c]))
    o[c, j] = np.float32(0.0 + 0.5 * np.float64(a[c]) + 0.5 * np.float64(d[c]))


@njit(nogil=True, cache=True)
def _bilinear_colour(a, b, d, o, cl, c, cr, k, j):  # pragma: no cover
    """Bilinear at a pixel of colour k (red or blue); j is the other one."""
    o[c, k] = np.float32(0.0 + 1.0 * np.float64(b[c]))
    o[c, 1] = np.float32(
        0.0
        + 0.25 * np.float64(a[c])
        + 0.25 * np.float64(b[cl])
        + 0.25 * np.float64(b[cr])
        + 0.25 * np.float64(d[c])
    )
    o[c, j] = np.float32(
        0.0
        + 0.25 * np.float64(a[cl])
        + 0.25 * np.float64(a[cr])
        + 0.25 * np.float64(d[cl])
        + 0.25 * np.float64(d[cr])
    )


@njit(nogil=True, cache=True)
def _bilinear(mosaic, colours, mirror, out):  # pragma: no cover
    """Bilinear debayer of ``mosaic`` into ``out`` (rows, cols, 3) float32.

    ``colours`` (4,) int: the channel of pixels (0,0), (0,1), (1,0), (1,1).
    """
    h, w = mosaic.shape
    rows_all = mirror and h > 1  # the fast code for every row / column
    cols_all = mirror and w > 1
    one = np.uint64(1)
    rows = np.empty((3, w), dtype=np.float64)  # the rows in use, as float64
    held = np.full(3, -1, dtype=np.int64)
    for r in range(h):
        if not rows_all and (r == 0 or r == h - 1):
            for c in range(w):
                _bilinear_pixel(mosaic, colours, mirror, r, c, out)
            continue
        a = _row64(mosaic, rows, held, _pad(r - 1, h, mirror))
        b = _row64(mosaic, rows, held, r)
        d = _row64(mosaic, rows, held, _pad(r + 1, h, mirror))
        o = out[r]
        p = (r & 1) * 2
        g = 0 if colours[p] == 1 else 1  # the parity of the row's green columns
        k = np.uint64(colours[p + 1 - g])  # the row's red or blue, and the other one
        j = np.uint64(2) - k
        for c in range(w):  # the first and last columns
            if 1 <= c < w - 1:
                continue
            if not cols_all:
                _bilinear_pixel(mosaic, colours, mirror, r, c, out)
                continue
            uc, ul, ur = (
                np.uint64(c),
                np.uint64(_pad(c - 1, w, mirror)),
                np.uint64(_pad(c + 1, w, mirror)),
            )
            if c & 1 == g:
                _bilinear_green(a, b, d, o, ul, uc, ur, k, j)
            else:
                _bilinear_colour(a, b, d, o, ul, uc, ur, k, j)
        if w < 3:
            continue
        uc = one
        hi = np.uint64(w - 1)
        if g == 0:  # column 1 is red or blue: alone, so that the pairs start with green
            _bilinear_colour(a, b, d, o, uc - one, uc, uc + one, k, j)
            uc += one
        while uc + one < hi:
            _bilinear_green(a, b, d, o, uc - one, uc, uc + one, k, j)
            uc += one
            _bilinear_colour(a, b, d, o, uc - one, uc, uc + one, k, j)
            uc += one
        if uc < hi:
            _bilinear_green(a, b, d, o, uc - one, uc, uc + one, k, j)


@njit(nogil=True, cache=True)
def _mhc_green_at(m0, m1, m2, m3, m4, c0, c1, c2, c3, c4):  # pragma: no cover
    """MHC filter 0, green at red or blue: rows m0..m4, columns c0..c4."""
    return (
        0.0
        + -0.125 * np.float64(m0[c2])
        + 0.25 * np.float64(m1[c2])
        + -0.125 * np.float64(m2[c0])
        + 0.25 * np.float64(m2[c1])
        + 0.5 * np.float64(m2[c2])
        + 0.25 * np.float64(m2[c3])
        + -0.125 * np.float64(m2[c4])
        + 0.25 * np.float64(m3[c2])
        + -0.125 * np.float64(m4[c2])
    )


@njit(nogil=True, cache=True)
def _mhc_row(m0, m1, m2, m3, m4, c0, c1, c2, c3, c4):  # pragma: no cover
    """MHC filter 1, red or blue at green, in a row of that colour: rows m0..m4, columns c0..c4."""
    return (
        0.0
        + 0.0625 * np.float64(m0[c2])
        + -0.125 * np.float64(m1[c1])
        + -0.125 * np.float64(m1[c3])
        + -0.125 * np.float64(m2[c0])
        + 0.5 * np.float64(m2[c1])
        + 0.625 * np.float64(m2[c2])
        + 0.5 * np.float64(m2[c3])
        + -0.125 * np.float64(m2[c4])
        + -0.125 * np.float64(m3[c1])
        + -0.125 * np.float64(m3[c3])
        + 0.0625 * np.float64(m4[c2])
    )


@njit(nogil=True, cache=True)
def _mhc_column(m0, m1, m2, m3, m4, c0, c1, c2, c3, c4):  # pragma: no cover
    """MHC filter 2, red or blue at green, in a column of that colour."""
    return (
        0.0
        + -0.125 * np.float64(m0[c2])
        + -0.125 * np.float64(m1[c1])
        + 0.5 * np.float64(m1[c2])
        + -0.125 * np.float64(m1[c3])
        + 0.0625 * np.float64(m2[c0])
        + 0.625 * np.float64(m2[c2])
        + 0.0625 * np.float64(m2[c4])
        + -0.125 * np.float64(m3[c1])
        + 0.5 * np.float64(m3[c2])
        + -0.125 * np.float64(m3[c3])
        + -0.125 * np.float64(m4[c2])
    )


@njit(nogil=True, cache=True)
def _mhc_cross(m0, m1, m2, m3, m4, c0, c1, c2, c3, c4):  # pragma: no cover
    """MHC filter 3, red at blue, blue at red: rows m0..m4, columns c0..c4."""
    return (
        0.0
        + -0.1875 * np.float64(m0[c2])
        + 0.25 * np.float64(m1[c1])
        + 0.25 * np.float64(m1[c3])
        + -0.1875 * np.float64(m2[c0])
        + 0.75 * np.float64(m2[c2])
        + -0.1875 * np.float64(m2[c4])
        + 0.25 * np.float64(m3[c1])
        + 0.25 * np.float64(m3[c3])
        + -0.1875 * np.float64(m4[c2])
    )


@njit(nogil=True, cache=True)
def _mhc_pixel(mosaic, colours, mirror, r, c, out):  # pragma: no cover
    """Malvar-He-Cutler output pixel (r, c), tap by tap (any border, any size)."""
    h, w = mosaic.shape
    own = colours[(r & 1) * 2 + (c & 1)]
    p = (r & 1) * 2
    row_colour = colours[p] if colours[p] != 1 else colours[p + 1]  # the row's red or blue
    for ch in range(3):
        if ch == own:
            out[r, c, ch] = np.float32(np.float64(mosaic[r, c]))
            continue
        if ch == 1:
            f = 0
        elif own != 1:
            f = 3
        elif row_colour == ch:
            f = 1
        else:
            f = 2
        acc = 0.0
        for dy in range(5):
            rr = _pad(r + dy - 2, h, mirror)
            for dx in range(5):
                wt = _MHC[f, dy, dx]
                if wt != 0.0:
                    acc += wt * np.float64(mosaic[rr, _pad(c + dx - 2, w, mirror)])
        out[r, c, ch] = np.float32(acc)


@njit(nogil=True, cache=True)
def _mhc_green(m0, m1, m2, m3, m4, o, c0, c1, c2, c3, c4, k, j):  # pragma: no cover
    """MHC at a green pixel (column c2) of a row of colour k; j is the other one."""
    o[c2, k] = np.float32(_mhc_row(m0, m1, m2, m3, m4, c0, c1, c2, c3, c4))
    o[c2, 1] = np.float32(np.float64(m2[c2]))
    o[c2, j] = np.float32(_mhc_column(m0, m1, m2, m3, m4, c0, c1, c2, c3, c4))


@njit(nogil=True, cache=True)
def _mhc_colour(m0, m1, m2, m3, m4, o, c0, c1, c2, c3, c4, k, j):  # pragma: no cover
    """MHC at a pixel (column c2) of colour k (red or blue); j is the other one."""
    o[c2, k] = np.float32(np.float64(m2[c2]))
    o[c2, 1] = np.float32(_mhc_green_at(m0, m1, m2, m3, m4, c0, c1, c2, c3, c4))
    o[c2, j] = np.float32(_mhc_cross(m0, m1, m2, m3, m4, c0, c1, c2, c3, c4))


@njit(nogil=True, cache=True)
def _mhc(mosaic, colours, mirror, out):  # pragma: no cover
    """Malvar-He-Cutler debayer of ``mosaic`` into ``out`` (rows, cols, 3) float32."""
    h, w = mosaic.shape
    rows_all = mirror and h > 1  # the fast code for every row / column
    cols_all = mirror and w > 1
    one, two = np.uint64(1), np.uint64(2)
    rows = np.empty((5, w), dtype=np.float64)  # the rows in use, as float64
    held = np.full(5, -1, dtype=np.int64)
    for r in range(h):
        if not rows_all and (r < 2 or r >= h - 2):
            for c in range(w):
                _mhc_pixel(mosaic, colours, mirror, r, c, out)
            continue
        m0 = _row64(mosaic, rows, held, _pad(r - 2, h, mirror))
        m1 = _row64(mosaic, rows, held, _pad(r - 1, h, mirror))
        m2 = _row64(mosaic, rows, held, r)
        m3 = _row64(mosaic, rows, held, _pad(r + 1, h, mirror))
        m4 = _row64(mosaic, rows, held, _pad(r + 2, h, mirror))
        o = out[r]
        p = (r & 1) * 2
        g = 0 if colours[p] == 1 else 1  # the parity of the row's green columns
        k = np.uint64(colours[p + 1 - g])  # the row's red or blue, and the other one
        j = two - k
        for c in range(w):  # the first and last two columns
            if 2 <= c < w - 2:
                continue
            if not cols_all:
                _mhc_pixel(mosaic, colours, mirror, r, c, out)
                continue
            c0 = np.uint64(_pad(c - 2, w, mirror))
            c1 = np.uint64(_pad(c - 1, w, mirror))
            c3 = np.uint64(_pad(c + 1, w, mirror))
            c4 = np.uint64(_pad(c + 2, w, mirror))
            if c & 1 == g:
                _mhc_green(m0, m1, m2, m3, m4, o, c0, c1, np.uint64(c), c3, c4, k, j)
            else:
                _mhc_colour(m0, m1, m2, m3, m4, o, c0, c1, np.uint64(c), c3, c4, k, j)
        if w < 5:
            continue
        uc = two
        hi = np.uint64(w - 2)
        if g == 1:  # column 2 is red or blue: alone, so that the pairs start with green
            _mhc_colour(m0, m1, m2, m3, m4, o, uc - two, uc - one, uc, uc + one, uc + two, k, j)
            uc += one
        while uc + one < hi:
            _mhc_green(m0, m1, m2, m3, m4, o, uc - two, uc - one, uc, uc + one, uc + two, k, j)
            uc += one
            _mhc_colour(m0, m1, m2, m3, m4, o, uc - two, uc - one, uc, uc + one, uc + two, k, j)
            uc += one
        if uc < hi:
            _mhc_green(m0, m1, m2, m3, m4, o, uc - two, uc - one, uc, uc + one, uc + two, k, j)


def debayer(
    mosaic: np.ndarray,
    pattern: str,
    method: str = "bilinear",
    out: np.ndarray | None = None,
    *,
    border: str = "mirror",
) -> np.ndarray:
    """Debayer a Bayer mosaic (or a region of one) into RGB.

    Parameters
    ----------
    mosaic : ndarray (rows, cols)
        The mosaic, integer or float, any byte order (calibrated already).
    pattern : str
        Its 2x2 pattern, one of :data:`PATTERNS`; for a region use :func:`pattern_for`.
    method : {"bilinear", "mhc"}
        Bilinear, or Malvar-He-Cutler (see the module notes).
    out : ndarray (rows, cols, 3) float32, optional
        Where to write the result (C-contiguous or not, but float32).
    border : {"mirror", "reflect"}
        The padding beyond the frame (see the module notes); ``"reflect"``
        reproduces colour-demosaicing 0.2 exactly.

    Returns
    -------
    ndarray (rows, cols, 3) float32
        Channels R, G, B; ``out`` if given.
    """
    m = np.asarray(mosaic)
    if m.ndim != 2 or m.shape[0] < 1 or m.shape[1] < 1:
        raise ValueError(f"mosaic of shape {m.shape}: must be 2-D and not empty")
    if m.dtype.kind not in "uif":
        raise TypeError(f"mosaic dtype {m.dtype}: must be integer or float")
    if not m.dtype.isnative:
        m = m.astype(m.dtype.newbyteorder("="))
    p = _check_pattern(pattern)
    margin(method)
    if border not in BORDERS:
        raise ValueError(f"border {border!r}: must be one of {BORDERS}")
    if out is None:
        out = np.empty((*m.shape, 3), dtype=np.float32)
    elif out.shape != (*m.shape, 3) or out.dtype != np.float32:
        raise ValueError(f"out {out.shape} {out.dtype}: must be {(*m.shape, 3)} float32")
    colours = _COLOURS[p]
    mirror = border == "mirror"
    if method == "bilinear":
        _bilinear(m, colours, mirror, out)
    else:
        _mhc(m, colours, mirror, out)
    return out


check_caches(__name__)  # drop caches compiled from other sources (see .._numba_cache)
