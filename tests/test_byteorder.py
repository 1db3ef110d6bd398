"""The compiled byte-order loops give exactly numpy's bytes."""

from __future__ import annotations

import numpy as np
import pytest

from stackengine.io.rawbytes import to_native
from stackengine.kernels.byteorder import store_big_endian, to_native_inplace


def _values(dtype: str, size: int = 10_007) -> np.ndarray:
    rng = np.random.default_rng(7)
    dt = np.dtype(dtype)
    if dt.kind == "f":
        x = rng.normal(0.0, 1e3, size).astype(dt)
        x[:6] = [np.nan, np.inf, -np.inf, -0.0, np.finfo(dt).tiny / 2, np.finfo(dt).max]
        return x
    info = np.iinfo(dt)
    return rng.integers(info.min, info.max, size, dtype=dt, endpoint=True)


@pytest.mark.parametrize("dtype", ["f4", "f8", "i2", "u2", "i4", "u4", "i8"])
def test_swap_in_place_equals_numpy(dtype):
    values = _values(dtype)
    raw = values.astype(np.dtype(dtype).newbyteorder(">"))
    native = to_native(raw.copy())
    assert native.dtype.isnative
    np.testing.assert_array_equal(native.view(np.uint8), values.view(np.uint8))
    # a strided view is refused, not converted wrongly
    with pytest.raises(ValueError, match="C-contiguous"):
        to_native(raw.copy()[::2])


@pytest.mark.parametrize("dtype", ["u1", "u2", "u4"])
def test_swap_and_flip_equals_numpy(dtype):
    # FITS: signed bytes (BZERO -128) or unsigned 16/32-bit values (BZERO 2**15, 2**31),
    # read as unsigned stored values whose sign bit is flipped
    stored = _values(dtype).astype(np.dtype(dtype).newbyteorder(">"))
    want = stored.byteswap().view(stored.dtype.newbyteorder("=")) if stored.itemsize > 1 else stored
    want = want ^ want.dtype.type(1 << (8 * want.itemsize - 1))
    got = to_native(stored.copy(), flip=True)
    np.testing.assert_array_equal(got.view(np.uint8), want.view(np.uint8))


def test_in_place_needs_contiguous_values():
    with pytest.raises(ValueError, match="C-contiguous"):
        to_native_inplace(np.zeros(10, ">f4")[::2], True)
    values = np.arange(5, dtype="f4")
    to_native_inplace(values, False)  # nothing to do
    np.testing.assert_array_equal(values, np.arange(5))


@pytest.mark.parametrize(
    "src, dst", [("f4", ">f4"), ("f8", ">f8"), ("f4", ">i2"), ("f4", ">i4"), ("f8", ">i2")]
)
def test_store_big_endian_equals_numpy(src, dst):
    values = _values(src)
    if np.dtype(dst).kind == "i":  # the count maps: integral values in range
        info = np.iinfo(np.dtype(dst))
        values = np.random.default_rng(1).integers(info.min, info.max, values.size).astype(src)
    out = np.empty(values.size, dtype=dst)
    assert store_big_endian(values, out)
    np.testing.assert_array_equal(out.view(np.uint8), values.astype(dst).view(np.uint8))


def test_store_big_endian_declines_other_types():
    out = np.empty(4, dtype=">u2")
    assert not store_big_endian(np.ones(4, dtype="f4"), out)  # not one of the map types
    assert not store_big_endian(np.ones(4, dtype="f4"), np.empty(3, dtype=">f4"))  # sizes
    assert not store_big_endian(np.ones(8, dtype="f4")[::2], np.empty(4, dtype=">f4"))
