"""Byte order conversions for the read and write paths, as compiled loops.

FITS stores big-endian values. numpy's ``byteswap`` and its casts to a
non-native dtype run at 0.3 to 0.7 ns per value on the benchmark machine; these
loops are plain shifts and masks that LLVM turns into byte shuffles (several
values per instruction), about 0.1 ns per value on data in the cache.

* :func:`to_native_inplace`: swap the values of a raw buffer in place (and
  flip their sign bit: FITS signed bytes or unsigned 16/32-bit values stored
  with BZERO), as the readers need after a positional read;
* :func:`store_big_endian`: convert float32/float64 values to a big-endian
  float or integer type into a caller's buffer, as the FITS writer needs.

Both give exactly what numpy gives (the tests compare them on every dtype).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from .._numba_cache import check_caches

__all__ = ["store_big_endian", "to_native_inplace"]

_U16 = np.uint16
_U32 = np.uint32
_U64 = np.uint64


@njit(inline="always")
def _bswap16(x):
    return _U16((x >> _U16(8)) | (x << _U16(8)))


@njit(inline="always")
def _bswap32(x):
    return _U32(
        (x >> _U32(24))
        | ((x >> _U32(8)) & _U32(0x0000FF00))
        | ((x << _U32(8)) & _U32(0x00FF0000))
        | (x << _U32(24))
    )


@njit(inline="always")
def _bswap64(x):
    lo = _U64(_bswap32(_U32(x & _U64(0xFFFFFFFF))))
    hi = _U64(_bswap32(_U32(x >> _U64(32))))
    return (lo << _U64(32)) | hi


@njit(nogil=True, cache=True)
def _swap(a, flip, swap):
    """Swap (when ``swap``) and flip the bits ``flip`` of every value of the 1-D
    unsigned ``a``; the item size is a constant of each compiled version."""
    size = a.itemsize
    for i in range(a.size):
        x = a[i]
        if swap and size == 2:
            x = _bswap16(x)
        elif swap and size == 4:
            x = _bswap32(x)
        elif swap and size == 8:
            x = _bswap64(x)
        a[i] = x ^ flip


def to_native_inplace(raw: np.ndarray, swap: bool, flip: bool = False) -> None:
    """Swap the bytes of every value of the C-contiguous ``raw`` in place when
    ``swap``, then flip each value's sign bit when ``flip``.

    ``raw`` may be of any 1, 2, 4 or 8-byte dtype; its bytes are what changes.
    """
    itemsize = raw.dtype.itemsize
    if not (swap and itemsize > 1) and not flip:
        return
    if not raw.flags.c_contiguous or itemsize not in (1, 2, 4, 8):
        raise ValueError("to_native_inplace: needs a C-contiguous array of 1-8 byte values")
    unsigned = np.dtype(f"u{itemsize}")
    bits = unsigned.type(1 << (8 * itemsize - 1)) if flip else unsigned.type(0)
    _swap(raw.reshape(-1).view(unsigned), bits, swap and itemsize > 1)


@njit(nogil=True, cache=True)
def _f4_be(src, dst):
    bits = src.view(_U32)
    for i in range(src.size):
        dst[i] = _bswap32(bits[i])


@njit(nogil=True, cache=True)
def _f8_be(src, dst):
    bits = src.view(_U64)
    for i in range(src.size):
        dst[i] = _bswap64(bits[i])


@njit(nogil=True, cache=True)
def _i2_be(src, dst):
    for i in range(src.size):
        dst[i] = _bswap16(_U16(np.int16(src[i])))


@njit(nogil=True, cache=True)
def _i4_be(src, dst):
    for i in range(src.size):
        dst[i] = _bswap32(_U32(np.int32(src[i])))


#: (source dtype, big-endian target dtype) -> loop; sources are native floats
_STORE = {
    (np.dtype("f4"), np.dtype(">f4")): _f4_be,
    (np.dtype("f8"), np.dtype(">f8")): _f8_be,
    (np.dtype("f4"), np.dtype(">i2")): _i2_be,
    (np.dtype("f4"), np.dtype(">i4")): _i4_be,
    (np.dtype("f8"), np.dtype(">i2")): _i2_be,
    (np.dtype("f8"), np.dtype(">i4")): _i4_be,
}


def store_big_endian(src: np.ndarray, dst: np.ndarray) -> bool:
    """``dst[...] = src`` for a native float ``src`` and a big-endian ``dst`` of a
    float type or of int16/int32 (values already integral and in range, as the
    count maps are), both C-contiguous and of one size. Returns False, and
    writes nothing, for any other pair of types (use ``np.copyto`` then)."""
    loop = _STORE.get((src.dtype, dst.dtype))
    if (
        loop is None
        or src.size != dst.size
        or not (src.flags.c_contiguous and dst.flags.c_contiguous)
    ):
        return False
    unsigned = np.dtype(f"u{dst.dtype.itemsize}")
    loop(src.reshape(-1), dst.reshape(-1).view(unsigned))
    return True


check_caches(__name__)  # drop caches compiled from other sources (see .._numba_cache)
