"""The block kernel: reject and combine every pixel of a (frames x pixels) block.

One call produces all per-pixel outputs in a single pass over the block:
``out[0]`` the combined value, ``out[1]`` the number of kept frames,
``out[2]``/``out[3]`` the values rejected low/high, ``out[4]`` the noise
(standard error of the combined value). Rejection stages run in order, each
seeing only what the previous ones kept.
"""

from __future__ import annotations

import functools

import numpy as np
from numba import njit

from .combine import combine_pixel
from .select import HIGH, LOW, batcher_pairs, load_group, load_pixel, network_sort
from .sigma import sigma_stage

__all__ = [
    "N_OUT",
    "STAGE_SIGMA",
    "N_STAGE_PARAMS",
    "network",
    "reduce_block",
    "reduce_block_sorted",
]

N_OUT = 5
N_STAGE_PARAMS = 8
#: pixels sorted together by the comparator network (one SIMD-friendly row per frame)
GROUP = 64

STAGE_SIGMA = 1


@njit(nogil=True, cache=True)
def _run_stage(code, prm, vals, flags, n, srt, m, presorted):
    if code == STAGE_SIGMA:
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


@functools.lru_cache(maxsize=64)
def network(n: int) -> np.ndarray:
    """The (cached) sorting network for ``n`` frames."""
    return batcher_pairs(n)


def reduce_block(block, stages, stage_params, combine, weights, use_weights):
    """Reject and combine each pixel of ``block`` (see :func:`reduce_block_sorted`)."""
    return reduce_block_sorted(
        block, network(block.shape[0]), stages, stage_params, combine, weights, use_weights
    )


@njit(nogil=True, cache=True)
def reduce_block_sorted(block, pairs, stages, stage_params, combine, weights, use_weights):
    """Reject and combine each pixel of ``block``.

    Parameters
    ----------
    block : ndarray, shape (n_frames, n_pixels)
        Any real dtype; NaN and inf are missing values.
    pairs : int64 ndarray, shape (K, 2)
        The sorting network for ``n_frames`` values (:func:`select.batcher_pairs`).
    stages : int64 ndarray, shape (n_stages,)
        Stage codes (``STAGE_SIGMA`` ...), applied in order.
    stage_params : float64 ndarray, shape (n_stages, N_STAGE_PARAMS)
        The parameters of each stage (sigma: lower, upper, maxiters or -1,
        center code, spread code).
    combine : int
        A code from :data:`stackengine.kernels.combine.COMBINE_CODES`.
    weights : float64 ndarray, shape (n_frames,)
        Frame weights (used when ``use_weights``).

    Returns
    -------
    ndarray, shape (N_OUT, n_pixels), float64
    """
    n = block.shape[0]
    npix = block.shape[1]
    out = np.empty((N_OUT, npix), dtype=np.float64)
    vals = np.empty(n, dtype=np.float64)
    srt = np.empty(n, dtype=np.float64)
    flags = np.empty(n, dtype=np.int8)
    buf = np.empty((n, GROUP), dtype=np.float64)
    for g0 in range(0, npix, GROUP):
        gw = min(GROUP, npix - g0)
        load_group(block, g0, gw, buf)
        network_sort(buf, gw, pairs)
        for g in range(gw):
            p = g0 + g
            m = load_pixel(block, p, vals, flags)
            for k in range(m):
                srt[k] = buf[k, g]
            presorted = True
            for s in range(stages.shape[0]):
                _run_stage(stages[s], stage_params[s], vals, flags, n, srt, m, presorted)
                presorted = False
            value, count, noise = combine_pixel(vals, flags, n, srt, combine, weights, use_weights)
            low = 0
            high = 0
            for k in range(n):
                if flags[k] == LOW:
                    low += 1
                elif flags[k] == HIGH:
                    high += 1
            out[0, p] = value
            out[1, p] = count
            out[2, p] = low
            out[3, p] = high
            out[4, p] = noise
    return out
