"""numba kernels of pass 1: exact medians by selection, noise sums, bin medians, spikes.

Every kernel is compiled with ``cache=True, nogil=True``: the machine code is kept
on disk between processes, and threads measuring different frames run in
parallel.

Exact medians of many values (:func:`median_of`)
    A strided sample of about 65 000 of the values (a quarter of fewer ones)
    brackets the median between two of its order statistics (the 49 % and 51 %
    points for 65 000: some 5 standard errors of a sample quantile either
    side); one pass then counts the values below the bracket and copies the few
    per cent inside it, and only those are partitioned. When the bracket misses
    (it is checked, e.g. for data with many tied values) the whole array is
    partitioned instead, so the result is always exactly :func:`numpy.median`
    of the finite values, ``(a + b) / 2`` of the two middle ones in float64.
Exact medians of many small groups (:func:`bin_medians`)
    Quickselect with branch-free three-way partitions: the comparisons that
    find a median are unpredictable, so moving every value costs less than
    branching on it.
Spikes (:func:`spike_candidates`)
    Single pixels far brighter than all their neighbours (cosmic-ray hits, hot
    pixels), found in one pass over the image and a second look around them.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from .._numba_cache import check_caches

__all__ = [
    "as_float",
    "native",
    "bin_medians",
    "block_sum",
    "masked_moments",
    "max_count",
    "median_of",
    "spike_candidates",
]

_SAMPLE = 1 << 16  # values in the strided sample that brackets the median
_MARGIN = 0.01  # bracket: the sample's (0.5 +- _MARGIN) quantiles (for _SAMPLE values)
_MIN_BRACKET = 1 << 15  # fewer values: partition them all


def native(a: np.ndarray) -> np.ndarray:
    """``a`` as a C-contiguous array in native byte order (numba needs both)."""
    a = np.asarray(a)
    if not a.dtype.isnative:
        a = a.astype(a.dtype.newbyteorder("="))
    return np.ascontiguousarray(a)


def as_float(a: np.ndarray) -> np.ndarray:
    """``a`` as float32 (integers of up to 16 bits, float32) or float64, no copy if already."""
    a = np.asarray(a)
    if a.dtype.kind == "f" and a.dtype.itemsize in (4, 8):
        return a.astype(a.dtype.newbyteorder("="), copy=False)  # numba needs native order
    return a.astype(np.float32 if a.dtype.itemsize <= 2 else np.float64)


@njit(cache=True, nogil=True)
def _strided(x, center, use_center, stride):  # pragma: no cover - compiled
    out = np.empty((x.size + stride - 1) // stride, np.float64)
    m = 0
    for i in range(0, x.size, stride):
        v = np.float64(x[i])
        if np.isfinite(v):
            out[m] = abs(v - center) if use_center else v
            m += 1
    return out[:m]


@njit(cache=True, nogil=True)
def _window(x, center, use_center, lo, hi, out):  # pragma: no cover - compiled
    # branch-free: (finite count, count below lo, count in [lo, hi]); those copied to out
    n = 0
    below = 0
    m = 0
    last = out.size - 1
    for i in range(x.size):
        v = np.float64(x[i])
        fin = np.isfinite(v)
        if use_center:
            v = abs(v - center)
        n += fin
        below += fin & (v < lo)
        out[min(m, last)] = v
        m += fin & (v >= lo) & (v <= hi)
    return n, below, m


def _middle(values: np.ndarray, k1: int, k2: int) -> float:
    part = np.partition(values, [k1, k2] if k1 != k2 else k1)
    return float(part[k1]) if k1 == k2 else float((part[k1] + part[k2]) / 2)


def median_of(x: np.ndarray, center: float | None = None) -> tuple[float, int]:
    """Exact median of the finite values of ``x``, or of ``|x - center|``.

    Parameters
    ----------
    x : ndarray
        Any shape, float32 or float64 (see :func:`as_float`); contiguous is fastest.
    center : float or None
        With a center, the median absolute deviation from it (in float64).

    Returns
    -------
    median : float
        Equal to ``numpy.median`` of the finite values as float64 (NaN if none).
    n : int
        The number of finite values.
    """
    x = np.ravel(x)
    use, c = center is not None, 0.0 if center is None else float(center)
    if x.size >= _MIN_BRACKET:
        s = _strided(x, c, use, max(4, x.size // _SAMPLE))
        if s.size >= 1000:
            margin = _MARGIN * math.sqrt(_SAMPLE / s.size)  # ~5 standard errors
            i_lo = int((0.5 - margin) * (s.size - 1))
            i_hi = min(s.size - 1, math.ceil((0.5 + margin) * (s.size - 1)))
            part = np.partition(s, [i_lo, i_hi])
            out = np.empty(int(x.size * 4 * margin) + 1024)  # the last slot is scratch
            n, below, m = _window(x, c, use, part[i_lo], part[i_hi], out)
            k1, k2 = (n - 1) // 2, n // 2
            if n and m < out.size and below <= k1 and k2 < below + m:
                return _middle(out[:m], k1 - below, k2 - below), n
    values = _strided(x, c, use, 1)  # every finite value
    if not values.size:
        return math.nan, 0
    return _middle(values, (values.size - 1) // 2, values.size // 2), values.size


@njit(cache=True, nogil=True)
def masked_moments(d, center, thresh, grow):  # pragma: no cover - compiled
    """``(count, sum, sum of squares)`` of ``d - center`` over the kept values of 2-D ``d``.

    A value is flagged when ``|d - center| > thresh`` (never for NaN); kept are the
    finite values with no flagged value within ``grow`` along their row.
    """
    rows, n = d.shape
    bad = np.empty(n, np.bool_)
    nxt = np.empty(n, np.int64)
    count = 0
    s1 = 0.0
    s2 = 0.0
    for r in range(rows):
        for i in range(n):
            bad[i] = abs(np.float64(d[r, i]) - center) > thresh
        following = n + grow + 1
        for i in range(n - 1, -1, -1):
            if bad[i]:
                following = i
            nxt[i] = following
        prev = -grow - 1
        for i in range(n):
            if bad[i]:
                prev = i
            if i - prev <= grow or nxt[i] - i <= grow:
                continue
            v = np.float64(d[r, i])
            if np.isfinite(v):
                dv = v - center
                count += 1
                s1 += dv
                s2 += dv * dv
    return count, s1, s2


@njit(cache=True, nogil=True)
def _select(a, n, k):  # pragma: no cover - compiled
    """Reorder ``a[:n]`` so that ``a[k]`` is its k-th smallest, smaller ones before it.

    Quickselect with a median-of-three pivot and branch-free three-way partitions
    (less than, equal to the pivot): the comparisons of a median are unpredictable,
    so branches would cost more than the moves; ties never slow it down.
    """
    lo, hi = 0, n
    while hi - lo > 1:
        x, y, z = a[lo], a[(lo + hi) >> 1], a[hi - 1]
        pivot = max(min(x, y), min(max(x, y), z))
        s = lo
        for i in range(lo, hi):
            v = a[i]
            a[i] = a[s]
            a[s] = v
            s += v < pivot
        if k < s:
            hi = s
            continue
        e = s
        for i in range(s, hi):
            v = a[i]
            a[i] = a[e]
            a[e] = v
            e += v <= pivot
        if k < e:
            return pivot
        lo = e
    return a[k]


@njit(cache=True, nogil=True)
def _median_inplace(a, n):  # pragma: no cover - compiled
    """Median of ``a[:n]`` (n >= 1, finite), ``(a + b) / 2`` of the middle two; reorders a."""
    k = n // 2
    upper = np.float64(_select(a, n, k))
    if n % 2:
        return upper
    lower = a[0]
    for i in range(1, k):  # a[:k] holds the k smallest: the lower middle is their maximum
        if a[i] > lower:
            lower = a[i]
    return (np.float64(lower) + upper) / 2


@njit(cache=True, nogil=True)
def _bin_medians(plane, mask, use_mask, n, val, cnt):  # pragma: no cover - compiled
    ny, nx = plane.shape
    gy, gx = val.shape
    buf = np.empty(n * n, plane.dtype)  # float32 or float64: the values as they are
    for p in range(gy):
        for q in range(gx):
            m = 0
            for y in range(p * n, min(ny, p * n + n)):
                for x in range(q * n, min(nx, q * n + n)):
                    v = plane[y, x]
                    if np.isfinite(v) and not (use_mask and mask[y, x]):
                        buf[m] = v
                        m += 1
            cnt[p, q] = m
            val[p, q] = _median_inplace(buf, m) if m > 0 else np.nan


def bin_medians(
    plane: np.ndarray, mask: np.ndarray | None, n: int
) -> tuple[np.ndarray, np.ndarray]:
    """Exact median and count of the finite, unmasked pixels of each ``n x n`` bin.

    Bins start at pixel (0, 0); the last row and column of bins may be partial.
    Medians are float64 (NaN for an empty bin), counts int64.
    """
    plane = np.ascontiguousarray(as_float(plane))
    gy, gx = -(-plane.shape[0] // n), -(-plane.shape[1] // n)
    val = np.empty((gy, gx))
    cnt = np.empty((gy, gx), dtype=np.int64)
    use = mask is not None
    m = np.ascontiguousarray(mask, dtype=np.bool_) if use else np.zeros((1, 1), np.bool_)
    _bin_medians(plane, m, use, int(n), val, cnt)
    return val, cnt


def max_count(image: np.ndarray) -> tuple[float, int]:
    """The largest finite value of ``image`` and how many pixels hold it ((-inf, 0) if none)."""
    a = np.ravel(image)
    if not a.size:
        return -math.inf, 0
    top = np.fmax.reduce(a)  # NaN skipped
    if a.dtype.kind == "f" and not np.isfinite(top):  # +inf present (or no number)
        a = a[np.isfinite(a)]
        if not a.size:
            return -math.inf, 0
        top = a.max()
    return float(top), int(np.count_nonzero(a == top))


def block_sum(strip: np.ndarray, b: int) -> np.ndarray:
    """float32 sums over ``b x b`` blocks of a (rows, cols[, channels]) array.

    Rows and columns beyond the last whole block are dropped; the result is
    (rows // b, cols // b, channels).
    """
    a = np.asarray(strip, dtype=np.float32)
    a = a.reshape(a.shape[0], a.shape[1], -1)
    a = a[: a.shape[0] // b * b, : a.shape[1] // b * b]
    out = np.array(a[0::b, 0::b], dtype=np.float32, order="C")
    for dy in range(b):
        for dx in range(b):
            if dy or dx:
                out += a[dy::b, dx::b]
    return out


@njit(cache=True, nogil=True)
def _is_spike(data, y, x, level, margin, ratio):  # pragma: no cover - compiled
    h, w = data.shape
    v = data[y, x]
    if not v >= level:
        return False
    total = 0.0
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            if dy == 0 and dx == 0:
                continue
            u = data[min(max(y + dy, 0), h - 1), min(max(x + dx, 0), w - 1)]
            if u > v:
                return False
            total += u
    return total / 8.0 + margin < ratio * v


@njit(cache=True, nogil=True)
def spike_candidates(data, level, margin, ratio):  # pragma: no cover - compiled
    """Isolated bright pixels: ``(y, x, value)`` of the spikes of a 2-D image.

    A spike is a pixel of value ``v >= level``, no less than any of its 8
    neighbours (indices clamped at the edges), whose neighbours average less than
    ``ratio v - margin``. Found in two rounds: the second looks again around the
    first round's spikes as if they were removed (a two-pixel cosmic-ray track
    gives one spike per round). ``data`` is left unchanged.
    """
    h, w = data.shape
    ys = []
    xs = []
    for y in range(h):
        for x in range(w):
            if data[y, x] >= level and _is_spike(data, y, x, level, margin, ratio):
                ys.append(y)
                xs.append(x)
    n1 = len(ys)
    saved = np.empty(n1, data.dtype)
    for k in range(n1):
        saved[k] = data[ys[k], xs[k]]
        data[ys[k], xs[k]] = 0
    for k in range(n1):
        for dy in (-1, 0, 1):
            for dx in (-1, 0, 1):
                y, x = ys[k] + dy, xs[k] + dx
                if 0 <= y < h and 0 <= x < w and data[y, x] != 0:
                    if _is_spike(data, y, x, level, margin, ratio):
                        ys.append(y)
                        xs.append(x)
    n = len(ys)
    out_y = np.empty(n, np.int64)
    out_x = np.empty(n, np.int64)
    out_v = np.empty(n, np.float64)
    for k in range(n1, n):
        out_v[k] = data[ys[k], xs[k]]
    for k in range(n1):
        data[ys[k], xs[k]] = saved[k]
        out_v[k] = saved[k]
    for k in range(n):
        out_y[k] = ys[k]
        out_x[k] = xs[k]
    return out_y, out_x, out_v


check_caches(__name__)  # drop caches compiled from other sources (see .._numba_cache)
