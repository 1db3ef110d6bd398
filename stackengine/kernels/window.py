"""The fast block kernel for rejections that keep a window of the sorted values.

Sigma clipping (and winsorized sigma clipping) bounds the kept values from
below and above, so what a pixel keeps is always a contiguous run
``sorted[a:b]`` of its sorted values. When every stage is of that kind and the
combination is unweighted, nothing needs to be tracked per frame: the
rejected-low count is ``a``, the rejected-high count is ``m - b`` and the
combination only needs the run. This kernel therefore

1. loads a group of pixels (:func:`group_buffer`), frame by frame, into a
   (frames x group) buffer (float32 when the input is float32 or a small
   integer type and no normalization applies, which keeps every value exact;
   float64 otherwise), non-finite values as +inf, counting the finite ones per
   pixel;
2. sorts all columns at once with the comparator network (branch-free across
   the group: it vectorizes);
3. runs the first iteration of the leading median/mad_std sigma stages for the
   whole group at once (:func:`stackengine.kernels.sigma.sigma_first_columns`,
   row operations across the group): most pixels reject nothing there, which
   ends their iteration;
4. finds the window of every other pixel with the same sigma iteration as the
   general kernel (:func:`stackengine.kernels.sigma.sigma_window`), in float64
   (on a contiguous copy of the column up to :data:`COPY_MAX` frames and for
   winsorized stages, else on the sorted column where it is), going on from
   the first iteration where it ran;
5. sums the windows' values and their squares (as deviations from a value of
   the window, in one pass) for the whole group at once, and writes the
   outputs (vectorized across pixels).

The sums run in float64 over the values in sorted order (the general kernel
sums in frame order), so the two paths can differ in the last bit of a float64
mean; the float32 image they produce is the same to rounding.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from .._numba_cache import check_caches
from .combine import COMBINE_MAX, COMBINE_MEAN, COMBINE_MEDIAN, COMBINE_MIN, COMBINE_SUM
from .normalize import load_group
from .select import network_sort
from .sigma import (
    CENTER_MEDIAN,
    SPREAD_MAD_STD,
    SPREAD_WINSORIZED,
    clip_window,
    sigma_first_columns,
    sigma_window,
)

__all__ = [
    "PAD",
    "count_finite",
    "group_buffer",
    "load_plain",
    "load_sorted",
    "median_run",
    "reduce_block_window",
]

#: unused lanes at the end of every buffer row: rows a power of two apart in
#: memory would all fall into the same cache sets when a column is read
PAD = 16
#: up to this many frames a pixel iterated on its own gets a contiguous float64 copy of
#: its sorted column (cheap, and faster to search); beyond it the searches read the
#: column where it is (a copy of hundreds of values cost more than the iterations)
COPY_MAX = 16
#: the group's buffer should stay well inside the L2 cache
GROUP_BYTES = 256 * 1024
#: up to this many frames (odd / even counts), the first iteration of median/mad_std
#: sigma stages runs across the group (:func:`.sigma.sigma_first_columns`): it costs
#: O(n) per pixel (twice that for even n), the per-pixel path O(log n) plus a
#: copy and mispredicted branches; measured crossovers are ~400 and ~330 frames
VECTOR_MAX_ODD = 401
VECTOR_MAX_EVEN = 300


def group_buffer(n: int, dtype: np.dtype | type) -> np.ndarray:
    """A (n, width + PAD) scratch buffer: ``width`` pixels (a multiple of 64, 64 to
    512) are loaded and sorted together, as many as fit in :data:`GROUP_BYTES`."""
    itemsize = np.dtype(dtype).itemsize
    width = int(np.clip(GROUP_BYTES // (max(n, 1) * itemsize) // 64 * 64, 64, 512))
    return np.empty((n, width + PAD), dtype=dtype)


_SQRT_HALF_PI = math.sqrt(math.pi / 2.0)


@njit(nogil=True, cache=True)
def load_plain(block, g0, gw, buf, cnt):
    """Copy pixels ``g0 .. g0+gw`` of every frame into ``buf`` (non-finite as +inf)
    and count the finite values of each pixel into ``cnt``."""
    n = block.shape[0]
    for g in range(gw):
        cnt[g] = 0
    for k in range(n):
        row = buf[k]
        src = block[k, g0 : g0 + gw]
        for g in range(gw):
            x = src[g]
            fin = x - x == 0
            cnt[g] += np.int32(fin)
            row[g] = x if fin else np.inf


@njit(nogil=True, cache=True)
def count_finite(buf, gw, cnt):
    for g in range(gw):
        cnt[g] = 0
    for k in range(buf.shape[0]):
        row = buf[k]
        for g in range(gw):
            cnt[g] += np.int32(row[g] != np.inf)


@njit(nogil=True, cache=True)
def load_sorted(block, g0, gw, raw, buf, cnt, scale, offset, grad, geom, pairs):
    """Load pixels ``g0 .. g0+gw`` of every frame into ``buf`` (as they are when
    ``scale`` is None, else normalized through ``raw``; non-finite values as +inf),
    count each pixel's finite values into ``cnt`` and sort every column (``pairs``:
    the comparator network).

    ``scale`` None is a compile-time choice (numba prunes the branch it does not
    take before typing): a plain stack never compiles the normalization."""
    if scale is None:
        load_plain(block, g0, gw, buf, cnt)
    else:
        load_group(block, g0, gw, raw, buf, scale, offset, grad, geom)
        count_finite(buf, gw, cnt)
    network_sort(buf, gw, pairs)


@njit(nogil=True, cache=True)
def _window_sums(buf, gw, lo, hi, total, center, spread):
    """Per pixel g: the sum of ``buf[lo[g]:hi[g], g]``, its mean and the sum of
    squared deviations from the mean, in one pass vectorized across the group.

    The values are summed as deviations from one of the run's own values
    (``x0``: the middle row's): ``s1 = sum(x - x0)``, ``s2 = sum((x - x0)**2)``, so the
    mean is ``x0 + s1/m`` and the squared deviations ``s2 - s1**2/m``. With
    ``x0`` inside the run, ``|s1/m|`` is at most the run's spread, so nothing of
    the second sum cancels beyond a few float64 ulps (a second pass over the
    data, as before, cost half again as much)."""
    n = buf.shape[0]
    q = n // 2
    middle = buf[q]
    for g in range(gw):  # the middle row, where the run holds it (almost always)
        inside = (lo[g] <= q) & (q < hi[g])
        center[g] = np.float64(middle[g]) if inside else math.nan
        total[g] = 0.0
        spread[g] = 0.0
    for g in range(gw):  # else the run's first value (none: 0)
        if center[g] != center[g]:
            center[g] = np.float64(buf[lo[g], g]) if hi[g] > lo[g] else 0.0
    for k in range(n):
        row = buf[k]
        for g in range(gw):
            inside = (k >= lo[g]) & (k < hi[g])
            d = np.float64(row[g]) - center[g]
            total[g] += d if inside else 0.0
            spread[g] += d * d if inside else 0.0
    for g in range(gw):
        m = max(hi[g] - lo[g], 1)
        s1 = total[g]
        x0 = center[g]
        total[g] = x0 * (hi[g] - lo[g]) + s1
        center[g] = x0 + s1 / m
        spread[g] = max(spread[g] - s1 * (s1 / m), 0.0)


@njit(nogil=True, cache=True)
def median_run(buf, g, a, b):
    """Median of the sorted run ``buf[a:b, g]`` (numpy's convention), in float64."""
    h = a + (b - a) // 2
    if (b - a) % 2 == 1:
        return np.float64(buf[h, g])
    return (np.float64(buf[h - 1, g]) + np.float64(buf[h, g])) / 2.0


@njit(nogil=True, cache=True)
def _pick(buf, gw, lo, hi, cnt, combine, fallback, pick):
    """The values that come from the run itself: median, min or max of the kept
    values; the fallback median where nothing was kept; NaN otherwise."""
    for g in range(gw):
        a = lo[g]
        b = hi[g]
        value = math.nan
        if b > a:
            if combine == COMBINE_MEDIAN:
                value = median_run(buf, g, a, b)
            elif combine == COMBINE_MIN:
                value = np.float64(buf[a, g])
            elif combine == COMBINE_MAX:
                value = np.float64(buf[b - 1, g])
        elif fallback and cnt[g] > 0:
            value = median_run(buf, g, np.int64(0), np.int64(cnt[g]))
        pick[g] = value


@njit(nogil=True, cache=True)
def _write_out(out, g0, gw, lo, hi, cnt, combine, pick, total, center, spread):
    """The five outputs of pixels ``g0 .. g0+gw`` from their windows and sums
    (branch-free across the group: it vectorizes)."""
    value = out[0][g0 : g0 + gw]
    count = out[1][g0 : g0 + gw]
    low = out[2][g0 : g0 + gw]
    high = out[3][g0 : g0 + gw]
    noise = out[4][g0 : g0 + gw]
    for g in range(gw):
        count[g] = hi[g] - lo[g]
        low[g] = lo[g]
        high[g] = cnt[g] - hi[g]
    # the combine's value and noise as selects (the same operations as a branch each)
    mean = combine == COMBINE_MEAN
    median = combine == COMBINE_MEDIAN
    add = combine == COMBINE_SUM
    scaled = mean or median
    factor = _SQRT_HALF_PI if median else 1.0
    for g in range(gw):
        m = hi[g] - lo[g]
        kept = m > 0
        root = math.sqrt(max(m, 1))
        std = math.sqrt(spread[g] / max(m, 1))
        e = (factor * std) / root if scaled else std
        e = std * root if add else e
        v = center[g] if mean else pick[g]
        v = total[g] if add else v
        value[g] = v if kept else pick[g]
        noise[g] = e if kept else math.nan


@njit(nogil=True, cache=True)
def _pixel_window(srt, m, n, s0, tried, first_lo, first_hi, stage_params):
    """The final window of one pixel's sorted values ``srt[0:m]`` (a copy, or the
    sorted column itself: every estimator reads them in float64), going on from
    stage ``s0``; ``first_lo``/``first_hi`` are the bounds of the group-wide
    first iteration of stage ``s0`` when it ran (``s0 < tried``) for a full column."""
    n_stages = stage_params.shape[0]
    a = np.int64(0)
    b = m
    if s0 < tried and m == n:
        # the first iteration of stage s0 rejected something: go on from there
        a, b = clip_window(srt, a, m, first_lo, first_hi)
        prm = stage_params[s0]
        maxiters = np.int64(prm[2])
        # literal median/MAD: numba compiles this call with the choice folded in (5 % faster
        # at 10 frames than np.int64 values, for 0.1 s more compiling)
        a, b = sigma_window(
            srt, a, b, prm[0], prm[1], maxiters - 1 if maxiters > 0 else maxiters,
            CENTER_MEDIAN, SPREAD_MAD_STD,
        )  # fmt: skip
        s0 += 1
    for s in range(s0, n_stages):
        prm = stage_params[s]
        a, b = sigma_window(
            srt, a, b, prm[0], prm[1], np.int64(prm[2]), np.int64(prm[3]), np.int64(prm[4]),
        )  # fmt: skip
    return a, b


@njit(nogil=True, cache=True)
def reduce_block_window(
    block,
    pairs,
    stage_params,
    combine,
    fallback,
    buf,
    scale,
    offset,
    grad,
    geom,
    out,
    vector_max=-1,
):
    """Sigma-clip (every stage is sigma or winsorized) and combine, unweighted.

    Parameters are those of :func:`stackengine.kernels.engine.reduce_block_sorted`
    (``stage_params`` of the sigma stages only; ``scale``, ``offset``, ``grad`` and
    ``geom`` all None: no normalization, the values are copied as they are), plus
    ``buf``, a (frames x width + PAD) scratch buffer from :func:`group_buffer`,
    whose dtype the values are sorted in, and ``out``, the N_OUT rows to fill
    (:func:`~.engine.out_rows`). ``vector_max``: the largest frame count for which the
    first iteration runs across the group (0: never; -1: :data:`VECTOR_MAX_ODD` /
    :data:`VECTOR_MAX_EVEN`); the results are the same bits either way.

    Returns
    -------
    ndarray
        ``out``.
    """
    n = block.shape[0]
    npix = block.shape[1]
    n_stages = stage_params.shape[0]
    group = buf.shape[1] - PAD
    raw = np.empty((n, group), dtype=np.float64)
    # a pixel's copy is contiguous float64: its estimators compile apart from the column's
    # (a copy typed as a column, to compile them once, made the kernel 7-11 % slower at
    # 10-16 frames)
    srt = np.empty(n, dtype=np.float64)
    cnt = np.empty(group, dtype=np.int32)
    lo = np.empty(group, dtype=np.int64)
    hi = np.empty(group, dtype=np.int64)
    total = np.empty(group, dtype=np.float64)
    spread = np.empty(group, dtype=np.float64)
    center = np.empty(group, dtype=np.float64)
    pick = np.empty(group, dtype=np.float64)
    start = np.zeros(group, dtype=np.int32)
    work = np.empty((4, group), dtype=np.float64)
    if vector_max < 0:
        vector_max = VECTOR_MAX_ODD if n % 2 == 1 else VECTOR_MAX_EVEN
    vector = n <= vector_max
    copy = n <= COPY_MAX
    for s in range(n_stages):
        copy = copy or np.int64(stage_params[s, 4]) == SPREAD_WINSORIZED
    for g0 in range(0, npix, group):
        gw = min(group, npix - g0)
        load_sorted(block, g0, gw, raw, buf, cnt, scale, offset, grad, geom, pairs)
        tried = 0
        if vector:
            tried = sigma_first_columns(buf, gw, cnt, stage_params, start, work)
        for g in range(gw):
            s0 = np.int64(start[g])
            m = np.int64(cnt[g])
            if s0 == n_stages:
                # every stage kept everything
                lo[g] = 0
                hi[g] = m
                continue
            if copy:  # winsorized stages read their runs many times: contiguous
                for k in range(m):
                    srt[k] = buf[k, g]
                a, b = _pixel_window(srt, m, n, s0, tried, work[2, g], work[3, g], stage_params)
            else:  # median/MAD and mean/std stages read O(log n) or one pass of values
                col = buf[:, g]
                a, b = _pixel_window(col, m, n, s0, tried, work[2, g], work[3, g], stage_params)
            lo[g] = a
            hi[g] = b
        if fallback or combine in (COMBINE_MEDIAN, COMBINE_MIN, COMBINE_MAX):
            _pick(buf, gw, lo, hi, cnt, combine, fallback, pick)
        else:
            pick[:gw] = math.nan
        _window_sums(buf, gw, lo, hi, total, center, spread)
        _write_out(out, g0, gw, lo, hi, cnt, combine, pick, total, center, spread)
    return out


check_caches(__name__)  # drop caches compiled from other sources (see .._numba_cache)
