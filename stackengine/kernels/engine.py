"""The block kernel: reject and combine every pixel of a (frames x pixels) block.

One call produces all per-pixel outputs in a single pass over the block:
``out[0]`` the combined value, ``out[1]`` the number of kept frames,
``out[2]``/``out[3]`` the values rejected low/high, ``out[4]`` the noise
(standard error of the combined value). Rejection stages run in order, each
seeing only what the previous ones kept.

Pixels are processed in groups (:func:`.window.group_buffer`): the group's values are
sorted all at once by a comparator network (branch-free, vectorized across
pixels), so the first stage of every pixel starts from its sorted values.
"""

from __future__ import annotations

import functools
import math
from typing import Any

import numpy as np

from .._numba_cache import announce_compiling, check_caches
from .combine import combine_pixel, store_pixel
from .esd import esd_stage
from .extrema import extrema_stage
from .linear_fit import linear_fit_stage
from .minmax import minmax_stage
from .normalize import geometry, load_group
from .percentile import percentile_stage
from .ranked import reduce_block_linear_fit
from .select import KEPT, batcher_pairs, cache_blocked, load_pixel, network_sort
from .sigma import sigma_stage
from .variants import per_choice, variant
from .window import PAD, group_buffer, median_run, reduce_block_window

__all__ = [
    "N_OUT",
    "N_STAGE_PARAMS",
    "STAGE_CODES",
    "STAGE_SIGMA",
    "network",
    "sort_network",
    "out_rows",
    "reduce_block",
    "reduce_block_sorted",
]

N_OUT = 5
N_STAGE_PARAMS = 8
#: input dtypes whose values float32 holds exactly (sorted in float32 when not normalized)
EXACT_IN_FLOAT32 = frozenset(np.dtype(t) for t in ("float32", "uint16", "int16", "uint8", "int8"))

STAGE_SIGMA = 1
STAGE_LINEAR_FIT = 2
STAGE_PERCENTILE = 3
STAGE_MINMAX = 4
STAGE_EXTREMA = 5
STAGE_ESD = 6

#: algorithm name -> stage code ("winsorized" is sigma with the winsorized spread)
STAGE_CODES = {
    "sigma": STAGE_SIGMA,
    "winsorized": STAGE_SIGMA,
    "linear_fit": STAGE_LINEAR_FIT,
    "percentile": STAGE_PERCENTILE,
    "minmax": STAGE_MINMAX,
    "extrema": STAGE_EXTREMA,
    "esd": STAGE_ESD,
}


#: the stage codes a :func:`reduce_block_sorted` variant is compiled for (see .variants)
KINDS = tuple(sorted(set(STAGE_CODES.values())))


@per_choice(nogil=True)
def _run_stage(code, prm, table, vals, flags, n, srt, dec, m, presorted, work):
    """Run one stage; ``prm`` holds its parameters, ``table`` its lookup table,
    ``work`` is (3, n) float64 scratch space. Compiled per set of stage codes
    ``KINDS``: the tests of KINDS are constants, so only those stages compile."""
    if STAGE_SIGMA in KINDS and code == STAGE_SIGMA:
        sigma_stage(
            vals,
            flags,
            n,
            srt,
            m,
            presorted,
            prm[0],
            prm[1],
            np.int64(prm[2]),
            np.int64(prm[3]),
            np.int64(prm[4]),
        )
    elif STAGE_LINEAR_FIT in KINDS and code == STAGE_LINEAR_FIT:
        linear_fit_stage(
            vals, flags, n, srt, dec, m, presorted, prm[0], prm[1], np.int64(prm[2]), work
        )
    elif STAGE_PERCENTILE in KINDS and code == STAGE_PERCENTILE:
        percentile_stage(vals, flags, n, srt, m, presorted, prm[0], prm[1])
    elif STAGE_MINMAX in KINDS and code == STAGE_MINMAX:
        minmax_stage(vals, flags, n, prm[0], prm[1])
    elif STAGE_EXTREMA in KINDS and code == STAGE_EXTREMA:
        extrema_stage(vals, flags, n, srt, dec, m, presorted, np.int64(prm[0]), np.int64(prm[1]))
    elif STAGE_ESD in KINDS and code == STAGE_ESD:
        esd_stage(vals, flags, n, srt, dec, m, presorted, prm[0], table)


#: a group's rows are sorted in blocks that fit this much of the L1 cache (see
#: :func:`~.select.cache_blocked`)
SORT_BLOCK_BYTES = 32 * 1024


@functools.lru_cache(maxsize=64)
def network(n: int, block: int = 0) -> np.ndarray:
    """The (cached) sorting network for ``n`` frames; with ``block`` >= 2, scheduled to
    work on blocks of that many rows at a time (the same sort)."""
    pairs = batcher_pairs(n)
    if block >= 2 and block < n:
        pairs = cache_blocked(pairs, n, block)
    return pairs


def sort_network(buf: np.ndarray) -> np.ndarray:
    """The network for the group buffer ``buf`` (:func:`.window.group_buffer`): blocks of
    the largest power of two of rows whose row-width fits :data:`SORT_BLOCK_BYTES`."""
    block = 1
    while 2 * block * buf.shape[1] * buf.itemsize <= SORT_BLOCK_BYTES:
        block *= 2
    return network(buf.shape[0], block)


def out_rows(out: np.ndarray) -> tuple[tuple[np.ndarray, ...], np.ndarray]:
    """The N_OUT rows of ``out`` (N_OUT, n_pixels) as the kernels take them: a tuple
    of contiguous 1-D arrays, so that numba vectorizes the writes (a row of a 2-D
    array of any strides would be written element by element). Returns the rows
    and the array they belong to: ``out`` itself, or a contiguous copy when a row
    of ``out`` is strided (copy it back after the kernel)."""
    if out.strides[1] != out.itemsize:
        out = np.empty(out.shape, dtype=out.dtype)
    return tuple(out[k] for k in range(N_OUT)), out


def reduce_block(
    block,
    stages,
    stage_params,
    combine,
    weights,
    use_weights,
    *,
    tables=None,
    fallback=False,
    scale=None,
    offset=None,
    grad=None,
    geom=None,
    out=None,
    pixel_weights=None,
    inverse_variance=False,
):
    """Reject and combine each pixel of ``block`` (see :func:`reduce_block_sorted`).

    Without ``scale``/``offset``/``grad``/``geom`` the values are used as they
    are; ``geom`` comes from :func:`stackengine.kernels.normalize.geometry`.
    ``pixel_weights`` (frames x pixels, float32): a weight per value (inverse
    variance maps, drizzle's overlap weights), multiplied by the frame's weight
    in the weighted mean and its standard error; with ``inverse_variance`` they are
    inverse variances and the noise is ``1 / sqrt(sum of the kept weights)``.
    ``out``: the (N_OUT, n_pixels) array to fill, float32 or float64 (rows may
    be strided, e.g. a strip of a tile's output); default a new float64 one.
    Every value is computed in float64 and rounded once when stored.
    """
    n = block.shape[0]
    if out is None:
        out = np.empty((N_OUT, block.shape[1]), dtype=np.float64)
    rows, filled = out_rows(out)
    if pixel_weights is None:
        pixel_weights = np.ones((1, 1), dtype=np.float32)
        use_pixel = 0
    else:
        pixel_weights = np.ascontiguousarray(pixel_weights, dtype=np.float32)
        if pixel_weights.shape != block.shape:
            raise ValueError(f"pixel_weights {pixel_weights.shape} != block {block.shape}")
        use_pixel = 2 if inverse_variance else 1
    _kernel(block, stages, stage_params, combine, weights, use_weights, tables, fallback,
            scale, offset, grad, geom, n, rows, pixel_weights, use_pixel)  # fmt: skip
    if filled is not out:
        out[...] = filled
    return out


def _kernel(block, stages, stage_params, combine, weights, use_weights, tables, fallback,
            scale, offset, grad, geom, n, out, pixel_weights, use_pixel):  # fmt: skip
    """Pick the kernel for the stages and run it (``out``: :func:`out_rows`)."""
    use_weights = use_weights or use_pixel > 0
    plain = scale is None and offset is None and grad is None
    if scale is None:
        scale = np.ones((n, 1), dtype=np.float64)
    if offset is None:
        offset = np.zeros_like(scale)
    if grad is None:
        grad = np.zeros(scale.shape + (1, 1), dtype=np.float64)
    if geom is None:
        geom = geometry((n, 1, block.shape[1]), 0, 0)
    stage_params = np.asarray(stage_params, dtype=np.float64)
    # values a float32 buffer holds exactly are sorted in float32 (8 per SIMD lane)
    exact = plain and block.dtype in EXACT_IN_FLOAT32
    buf = group_buffer(n, np.float32 if exact else np.float64)
    # the sorted kernels take no normalization as None (their plain variant then
    # never compiles it)
    norm = (None, None, None, None) if plain else (scale, offset, grad, geom)
    if not use_weights and len(stages) == 1 and stages[0] == STAGE_LINEAR_FIT:
        # decided by rank, combined without weights: no mapping back to frames
        announce_compiling(reduce_block_linear_fit)
        return reduce_block_linear_fit(
            block, sort_network(buf), stage_params[0], combine, fallback, buf, *norm, out
        )
    if not use_weights and np.all(np.asarray(stages) == STAGE_SIGMA):
        # every stage keeps a window of the sorted values: the fast kernel
        announce_compiling(reduce_block_window)
        return reduce_block_window(
            block, sort_network(buf), stage_params, combine, fallback, buf, *norm, out
        )
    if tables is None:
        tables = np.zeros((len(stages), n + 1), dtype=np.float64)
    kernel = reduce_block_sorted(stages)
    announce_compiling(kernel)
    return kernel(
        block,
        sort_network(buf),
        buf,
        stages,
        stage_params,
        tables,
        combine,
        weights,
        use_weights,
        fallback,
        scale,
        offset,
        grad,
        geom,
        out,
        pixel_weights,
        use_pixel,
    )


def reduce_block_sorted(stages) -> Any:
    """The compiled general kernel (:func:`_reduce_block_sorted`) for the stage codes
    in ``stages``: a run of one kind of stage (or none) compiles only that stage; lists
    of several kinds share one variant with every stage (at most eight variants)."""
    kinds = {int(c) for c in stages}
    if len(kinds) > 1:
        kinds = set(KINDS)
    return variant(_reduce_block_sorted, KINDS=tuple(sorted(kinds)))


@per_choice(nogil=True)
def _reduce_block_sorted(
    block,
    pairs,
    buf,
    stages,
    stage_params,
    stage_tables,
    combine,
    weights,
    use_weights,
    fallback,
    scale,
    offset,
    grad,
    geom,
    out,
    pixel_weights,
    use_pixel,
):
    """Reject and combine each pixel of ``block`` into ``out``.

    Parameters
    ----------
    block : ndarray, shape (n_frames, n_pixels)
        Any real dtype; NaN and inf are missing values.
    pairs : int64 ndarray, shape (K, 2)
        The sorting network for ``n_frames`` values (:func:`select.batcher_pairs`).
    buf : float32 or float64 ndarray
        Scratch space for a group of pixels (:func:`.window.group_buffer`);
        float32 only when the values are exact in float32 (no normalization).
    stages : int64 ndarray, shape (n_stages,)
        Stage codes (:data:`STAGE_CODES`), applied in order.
    stage_params : float64 ndarray, shape (n_stages, N_STAGE_PARAMS)
        The parameters of each stage (see ``stackengine.rejection``).
    stage_tables : float64 ndarray, shape (n_stages, n_frames + 1)
        Per-stage lookup tables indexed by a count of values (ESD's lambda).
    combine : int
        A code from :data:`stackengine.kernels.combine.COMBINE_CODES`.
    weights : float64 ndarray, shape (n_frames,)
        Frame weights (used when ``use_weights``).
    fallback : bool
        Where every value was rejected, use the median of the non-missing
        values (count stays 0) instead of NaN.
    scale, offset, grad, geom
        Per-frame normalization applied as values are loaded (see
        :mod:`stackengine.kernels.normalize`).

    out : tuple of N_OUT float32 or float64 arrays of n_pixels (:func:`out_rows`)
        Filled and returned: the value, kept count, low and high rejection
        counts and noise of each pixel.
    pixel_weights : float32 ndarray, shape (n_frames, n_pixels)
        With ``use_pixel`` > 0, each value's weight, times its frame's weight;
        ``use_pixel`` 2: inverse variances, noise ``1 / sqrt(sum of kept weights)``.

    Returns
    -------
    tuple
        ``out``.
    """
    n = block.shape[0]
    npix = block.shape[1]
    vals = np.empty(n, dtype=np.float64)
    # strided type, as the window kernel's (float64) columns: the estimators compile once
    srt = np.empty((n, 1), dtype=np.float64)[:, 0]
    flags = np.empty(n, dtype=np.int8)
    dec = np.empty(n, dtype=np.int8)
    work = np.empty((3, n), dtype=np.float64)
    group = buf.shape[1] - PAD
    raw = np.empty_like(buf)
    wv = np.empty(n, dtype=np.float64)
    for g0 in range(0, npix, group):
        gw = min(group, npix - g0)
        load_group(block, g0, gw, raw, buf, scale, offset, grad, geom)
        network_sort(buf, gw, pairs)
        for g in range(gw):
            p = g0 + g
            m = load_pixel(raw, g, vals, flags)
            for k in range(m):
                srt[k] = buf[k, g]
            presorted = True
            for s in range(stages.shape[0]):
                _run_stage(
                    stages[s],
                    stage_params[s],
                    stage_tables[s],
                    vals,
                    flags,
                    n,
                    srt,
                    dec,
                    m,
                    presorted,
                    work,
                )
                presorted = False
            if use_pixel > 0:
                for k in range(n):
                    wv[k] = weights[k] * pixel_weights[k, p]
                value, count, noise = combine_pixel(vals, flags, n, srt, combine, wv, True)
                if use_pixel == 2 and count > 0:
                    wsum = 0.0
                    for k in range(n):
                        if flags[k] == KEPT:
                            wsum += wv[k]
                    noise = 1.0 / math.sqrt(wsum) if wsum > 0 else math.nan
            else:
                value, count, noise = combine_pixel(
                    vals, flags, n, srt, combine, weights, use_weights
                )
            if count == 0 and fallback and m > 0:
                value = median_run(buf, g, np.int64(0), m)
            store_pixel(out, p, value, count, flags, n, noise)
    return out


check_caches(__name__)  # drop caches compiled from other sources (see .._numba_cache)
