"""Raw file bytes to values, inside the kernel's load step.

FITS stores big-endian values, and unsigned 16-bit FITS data as signed values
offset by BZERO = 32768 (the sign bit flipped). Readers can hand the kernel
the bytes as they are on disk (see :meth:`stackengine.io.sources.FrameStack.read_tile`)
with one *decode* code per frame: bit 0 = swap the bytes, bit 1 = flip the
sign bit (after swapping). :func:`load_decoded` applies them while loading a
group of pixels into the sort buffer, so the data are not swapped in a
separate pass over memory; :func:`decode_in_place` is the same in numpy, for
the kernels that take values.
"""

from __future__ import annotations

import numpy as np
from numba import njit

__all__ = ["KIND_FLOAT", "KIND_SIGNED", "KIND_UNSIGNED", "decode_in_place", "load_decoded"]

SWAP = 1
FLIP = 2
KIND_FLOAT = 0
KIND_UNSIGNED = 1
KIND_SIGNED = 2


def decode_in_place(block: np.ndarray, decode: np.ndarray) -> np.ndarray:
    """Decode the raw bytes of each frame ``block[k]`` in place; return ``block``."""
    bits = block.view(f"u{block.itemsize}")
    for k, code in enumerate(decode):
        if code & SWAP and block.itemsize > 1:
            bits[k].byteswap(inplace=True)
        if code & FLIP:
            bits[k] ^= bits.dtype.type(1 << (8 * block.itemsize - 1))
    return block


@njit(nogil=True, cache=True)
def _swap(x, size):
    """``x`` (an unsigned integer of ``size`` bytes: 2, 4 or 8) with its bytes reversed,
    as uint64."""
    v = np.uint64(x)
    out = np.uint64(0)
    for i in range(size):
        out = (out << np.uint64(8)) | ((v >> np.uint64(8 * i)) & np.uint64(0xFF))
    return out


@njit(nogil=True, cache=True)
def load_decoded(braw, g0, gw, buf, bufbits, cnt, decode, kind):
    """Load pixels ``g0 .. g0+gw`` of every frame of the raw block ``braw``
    (unsigned integers of the values' size) into ``buf``, decoded; non-finite
    values become +inf; count the finite values of each pixel into ``cnt``.

    ``bufbits`` is ``buf`` viewed as unsigned integers of its own size; float
    data (``kind`` KIND_FLOAT, buffer of the same size) are written as bits.
    """
    n = braw.shape[0]
    size = braw.itemsize
    sign = np.uint64(1) << np.uint64(8 * size - 1)
    for g in range(gw):
        cnt[g] = 0
    for k in range(n):
        src = braw[k]
        code = decode[k]
        if kind == KIND_FLOAT:
            bits = bufbits[k]
            if code & SWAP:
                for g in range(gw):
                    bits[g] = _swap(src[g0 + g], size)
            else:
                for g in range(gw):
                    bits[g] = src[g0 + g]
            row = buf[k]
            for g in range(gw):
                y = row[g]
                fin = y - y == 0
                cnt[g] += np.int32(fin)
                if not fin:
                    row[g] = np.inf
        else:
            row = buf[k]
            flip = sign if code & FLIP else np.uint64(0)
            swap = code & SWAP
            for g in range(gw):
                x = np.uint64(src[g0 + g])
                if swap:
                    x = _swap(x, size)
                x ^= flip
                if kind == KIND_SIGNED and x >= sign:
                    row[g] = np.float64(x) - 2.0 * np.float64(sign)
                else:
                    row[g] = x
                cnt[g] += np.int32(1)
