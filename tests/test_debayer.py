"""The debayer kernels against colour-demosaicing, on random and real (Seestar) mosaics."""

from __future__ import annotations

import time

import numpy as np
import pytest

from stackengine.kernels.debayer import (
    PATTERNS,
    debayer,
    margin,
    pattern_for,
    read_window,
)

cd = pytest.importorskip("colour_demosaicing")

METHODS = ("bilinear", "mhc")
REFERENCE = {
    "bilinear": cd.demosaicing_CFA_Bayer_bilinear,
    "mhc": cd.demosaicing_CFA_Bayer_Malvar2004,
}


def _reference(mosaic, pattern, method, border):
    """colour-demosaicing's result (float64); scipy pads with "reflect" itself, and
    "mirror" is had by padding the mosaic first (numpy's "reflect") and cropping."""
    a = np.asarray(mosaic, dtype=np.float64)
    if border == "reflect":
        return REFERENCE[method](a, pattern)
    m = margin(method)
    padded = np.pad(a, m, mode="reflect")
    return REFERENCE[method](padded, pattern_for(pattern, -m, -m))[m:-m, m:-m]


def _assert_float32_rounding(out, ref, scale):
    """``out`` is ``ref`` rounded to float32, up to float64 summation order."""
    assert out.dtype == np.float32 and out.shape == ref.shape
    np.testing.assert_allclose(out, ref, rtol=2.0**-24, atol=2.0**-40 * scale)


@pytest.mark.parametrize("border", ["reflect", "mirror"])
@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("pattern", PATTERNS)
def test_random_mosaics_agree_with_colour_demosaicing(pattern, method, border):
    rng = np.random.default_rng(PATTERNS.index(pattern))
    for shape in [(37, 29), (40, 52), (5, 6)]:
        a = (rng.random(shape) * 1000 - 100).astype(np.float32)
        out = debayer(a, pattern, method, border=border)
        ref = _reference(a, pattern, method, border)
        _assert_float32_rounding(out, ref, np.abs(a).max())
        # in practice the float32 results are the same bits
        assert np.mean(out == ref.astype(np.float32)) > 0.999


def test_real_seestar_frame_agrees_with_colour_demosaicing(real_dir):
    fits = pytest.importorskip("astropy.io.fits")
    path = sorted((real_dir / "seestar_ngc7023").glob("*.fit"))[0]
    with fits.open(path) as hdul:
        header, data = hdul[0].header, hdul[0].data
    assert header["BAYERPAT"].strip() == "GRBG" and data.shape == (1920, 1080)
    for method in METHODS:
        for border in ("reflect", "mirror"):
            out = debayer(data, "GRBG", method, border=border)
            ref = _reference(data, "GRBG", method, border)
            # integer ADU, dyadic weights: exact sums, so the same bits everywhere
            np.testing.assert_array_equal(out, ref.astype(np.float32))
    # the two borders differ along the frame's edge only (for bilinear)
    a = debayer(data, "GRBG", "bilinear", border="reflect")
    b = debayer(data, "GRBG", "bilinear", border="mirror")
    assert not np.array_equal(a, b)
    np.testing.assert_array_equal(a[1:-1, 1:-1], b[1:-1, 1:-1])


@pytest.mark.parametrize("border", ["mirror", "reflect"])
@pytest.mark.parametrize("method", METHODS)
def test_region_with_margin_gives_the_whole_frames_bits(method, border):
    rng = np.random.default_rng(7)
    shape = (61, 47)
    a = (rng.standard_normal(shape) * 50 + 300).astype(np.float32)
    for pattern in PATTERNS:
        whole = debayer(a, pattern, method, border=border)
        regions = [(0, shape[0], 0, shape[1]), (0, 5, 0, 7), (56, 61, 40, 47)]
        for _ in range(30):
            y0, y1 = sorted(rng.integers(0, shape[0] + 1, 2))
            x0, x1 = sorted(rng.integers(0, shape[1] + 1, 2))
            regions.append((y0, y1, x0, x1))
        parities = set()
        for y0, y1, x0, x1 in regions:
            if y1 - y0 < 1 or x1 - x0 < 1:
                continue
            read, keep = read_window(shape, y0, y1, x0, x1, method)
            parities.add((read[0].start % 2, read[1].start % 2))
            sub = debayer(
                a[read], pattern_for(pattern, read[0].start, read[1].start), method, border=border
            )
            np.testing.assert_array_equal(sub[keep], whole[y0:y1, x0:x1])
        assert parities == {(0, 0), (0, 1), (1, 0), (1, 1)}  # odd and even offsets seen
        # the margin is needed: without it an inner region's edge pixels differ
        y0, y1, x0, x1 = 21, 40, 13, 30
        bare = debayer(a[y0:y1, x0:x1], pattern_for(pattern, y0, x0), method, border=border)
        m = margin(method)
        assert not np.array_equal(bare, whole[y0:y1, x0:x1])
        np.testing.assert_array_equal(bare[m:-m, m:-m], whole[y0 + m : y1 - m, x0 + m : x1 - m])


# The kernels before their fast rewrite, tap by tap, in numpy: the reference for the
# bits. Output pixel (r, c), channel ch: float32 of the float64 sum, from 0.0, of
# weight * float64(tap) over the filter's taps in reading order, skipping the zero
# weights and (bilinear) the taps of other colours; MHC's own colour is the value.
_REF_BILINEAR = (
    np.stack(
        [
            np.array([[1.0, 2.0, 1.0], [2.0, 4.0, 2.0], [1.0, 2.0, 1.0]]),  # red, blue
            np.array([[0.0, 1.0, 0.0], [1.0, 4.0, 1.0], [0.0, 1.0, 0.0]]),  # green
        ]
    )
    / 4.0
)
_RG_ROW = np.array(
    [
        [0.0, 0.0, 0.5, 0.0, 0.0],
        [0.0, -1.0, 0.0, -1.0, 0.0],
        [-1.0, 4.0, 5.0, 4.0, -1.0],
        [0.0, -1.0, 0.0, -1.0, 0.0],
        [0.0, 0.0, 0.5, 0.0, 0.0],
    ]
)
_REF_MHC = (
    np.stack(
        [
            np.array(  # green at red / blue
                [
                    [0.0, 0.0, -1.0, 0.0, 0.0],
                    [0.0, 0.0, 2.0, 0.0, 0.0],
                    [-1.0, 2.0, 4.0, 2.0, -1.0],
                    [0.0, 0.0, 2.0, 0.0, 0.0],
                    [0.0, 0.0, -1.0, 0.0, 0.0],
                ]
            ),
            _RG_ROW,  # red (blue) at green in a red (blue) row
            _RG_ROW.T,  # ... in a red (blue) column
            np.array(  # red at blue, blue at red
                [
                    [0.0, 0.0, -1.5, 0.0, 0.0],
                    [0.0, 2.0, 0.0, 2.0, 0.0],
                    [-1.5, 0.0, 6.0, 0.0, -1.5],
                    [0.0, 2.0, 0.0, 2.0, 0.0],
                    [0.0, 0.0, -1.5, 0.0, 0.0],
                ]
            ),
        ]
    )
    / 8.0
)


def _ref_padded_index(n, pad, mirror):
    """Source index of padded positions -pad .. n + pad - 1 (the module's borders)."""
    if n == 1:
        return np.zeros(n + 2 * pad, dtype=np.int64)
    period = 2 * n - 2 if mirror else 2 * n
    j = np.arange(-pad, n + pad) % period
    return np.where(j < n, j, period - j if mirror else period - 1 - j)


def _slow_debayer(mosaic, pattern, method, border):
    """The tap-by-tap reference (every pixel's sum in the same order as the kernel's)."""
    a = np.asarray(mosaic).astype(np.float64)
    h, w = a.shape
    m = margin(method)
    mirror = border == "mirror"
    ri, ci = _ref_padded_index(h, m, mirror), _ref_padded_index(w, m, mirror)
    padded = a[np.ix_(ri, ci)]
    colours = np.array(["RGB".index(ch) for ch in pattern])
    tap_colour = colours[(ri[:, None] & 1) * 2 + (ci[None, :] & 1)]  # of the source pixel
    yy, xx = np.mgrid[:h, :w]
    own = colours[(yy & 1) * 2 + (xx & 1)]
    row_colour = np.where(
        colours[(yy & 1) * 2] != 1, colours[(yy & 1) * 2], colours[(yy & 1) * 2 + 1]
    )
    out = np.empty((h, w, 3), np.float32)
    k = 2 * m + 1
    for ch in range(3):
        acc = np.zeros((h, w))
        if method == "bilinear":
            weights = np.broadcast_to(_REF_BILINEAR[1 if ch == 1 else 0], (h, w, k, k))
        else:
            f = np.where(ch == 1, 0, np.where(own != 1, 3, np.where(row_colour == ch, 1, 2)))
            weights = _REF_MHC[f]
        for dy in range(k):
            for dx in range(k):
                wt = weights[:, :, dy, dx]
                sel = wt != 0.0
                if method == "bilinear":
                    sel &= tap_colour[dy : dy + h, dx : dx + w] == ch
                tap = padded[dy : dy + h, dx : dx + w]
                with np.errstate(invalid="ignore"):  # inf - inf: NaN
                    acc[sel] += wt[sel] * tap[sel]
        out[..., ch] = acc
        if method == "mhc":
            out[..., ch][own == ch] = a[own == ch]
    return out


def _assert_same_bits(out, ref):
    """Same bits, NaN for NaN (a NaN's sign and payload bits are left unspecified)."""
    assert out.dtype == ref.dtype == np.float32 and out.shape == ref.shape
    nan = np.isnan(ref)
    np.testing.assert_array_equal(np.isnan(out), nan)
    np.testing.assert_array_equal(out.view(np.uint32)[~nan], ref.view(np.uint32)[~nan])


def _random_mosaic(rng, shape, dtype):
    if np.dtype(dtype).kind == "u":
        return rng.integers(0, 65536, shape).astype(dtype)
    a = rng.standard_normal(shape) * 1000 + 100  # not integers
    # and spikes of +-2**60 that cancel each other: terms added next to one are lost
    # (float64 sums of float32 values are exact otherwise, or round below float32's
    # precision), so that the order of the sums shows in the bits
    spikes = rng.random(shape) < 0.3
    a[spikes] = rng.choice([-(2.0**60), 2.0**60], spikes.sum())
    a = a.astype(dtype)
    if rng.random() < 0.7:  # a NaN patch, and scattered non-finite values and zeros
        y, x = rng.integers(0, shape[0]), rng.integers(0, shape[1])
        a[y : y + rng.integers(1, 4), x : x + rng.integers(1, 4)] = np.nan
        spots = rng.random(shape) < 0.05
        a[spots] = rng.choice([np.nan, np.inf, -np.inf, 0.0, -0.0], spots.sum())
    return a


@pytest.mark.parametrize("border", ["mirror", "reflect"])
@pytest.mark.parametrize("method", METHODS)
def test_same_bits_as_the_tap_by_tap_kernel(method, border):
    """The fast kernels (direct formulas per 2x2 cell position, the general code along
    the border) give the bits of the tap-by-tap sums: every size, pattern and dtype."""
    rng = np.random.default_rng(11 + 2 * METHODS.index(method) + (border == "reflect"))
    shapes = [(1, 1), (1, 6), (7, 1), (2, 2), (2, 5), (3, 3), (4, 4), (4, 7), (5, 5)]
    shapes += [(6, 9), (9, 6), (11, 12), (37, 29), (40, 52)]
    for shape in shapes:
        for dtype in (np.float32, np.uint16, np.float64):
            for pattern in PATTERNS:
                a = _random_mosaic(rng, shape, dtype)
                _assert_same_bits(
                    debayer(a, pattern, method, border=border),
                    _slow_debayer(a, pattern, method, border),
                )
    # regions (views) of a frame, a non-contiguous out
    a = _random_mosaic(rng, (64, 70), np.float32)
    for y0, y1, x0, x1 in [(3, 40, 5, 61), (0, 64, 1, 70), (10, 13, 20, 22)]:
        region = a[y0:y1, x0:x1]
        pattern = pattern_for("RGGB", y0, x0)
        out = np.full((y1 - y0, 2 * (x1 - x0), 3), np.nan, np.float32)[:, ::2]
        assert debayer(region, pattern, method, out, border=border) is out
        _assert_same_bits(out, _slow_debayer(region, pattern, method, border))


def test_slow_reference_agrees_with_colour_demosaicing():
    """The reference itself: colour-demosaicing's results, rounded to float32."""
    rng = np.random.default_rng(5)
    for method in METHODS:
        for border in ("mirror", "reflect"):
            for pattern in PATTERNS:
                a = rng.integers(0, 4096, (13, 18)).astype(np.uint16)  # exact sums
                ref = _reference(a, pattern, method, border).astype(np.float32)
                np.testing.assert_array_equal(_slow_debayer(a, pattern, method, border), ref)


def test_pattern_for_and_margin():
    assert pattern_for("RGGB", 0, 0) == "RGGB"
    assert pattern_for("RGGB", 0, 1) == "GRBG"
    assert pattern_for("RGGB", 1, 0) == "GBRG"
    assert pattern_for("RGGB", 1, 1) == "BGGR"
    assert pattern_for("grbg", 3, -1) == "GBRG"
    for p in PATTERNS:
        assert pattern_for(p, 2, 4) == p and pattern_for(pattern_for(p, 1, 1), 1, 1) == p
    assert margin("bilinear") == 1 and margin("mhc") == 2
    with pytest.raises(ValueError):
        margin("vng")
    with pytest.raises(ValueError):
        pattern_for("RGBG", 0, 0)


@pytest.mark.parametrize("method", METHODS)
def test_constant_mosaic_stays_constant(method):
    for pattern in PATTERNS:
        for shape in [(2, 2), (3, 5), (16, 9)]:
            out = debayer(np.full(shape, 1234.5, np.float32), pattern, method)
            assert np.all(out == np.float32(1234.5))
    # colour-demosaicing's padding (scipy's "reflect") does not keep it along the edge
    out = debayer(np.ones((6, 8)), "RGGB", method, border="reflect")
    if method == "bilinear":
        assert out[0, 0, 0] == 2.25 and out[0, 3, 0] == 1.5 and out[2, 3, 0] == 1.0
    else:
        assert np.all(out == 1.0)


@pytest.mark.parametrize("method", METHODS)
def test_nan_spreads_to_the_filters_support(method):
    pattern = "GRBG"
    impulse = np.zeros((21, 21), np.float32)
    for y, x in [(10, 10), (10, 11), (11, 10), (11, 11)]:  # every colour of the pattern
        impulse[:] = 0
        impulse[y, x] = 1
        support = debayer(impulse, pattern, method) != 0  # dyadic weights: no cancellation
        a = np.full((21, 21), 7.0, np.float32)
        a[y, x] = np.nan
        out = debayer(a, pattern, method)
        np.testing.assert_array_equal(np.isnan(out), support)
        # the pixel itself: its own colour; for mhc every channel (all filters use the centre)
        assert support[y, x].sum() == (3 if method == "mhc" else 1)
        m = margin(method)
        assert not support[: y - m].any() and not support[y + m + 1 :].any()
        np.testing.assert_array_equal(out[~support], 7.0)


def test_inputs_and_out():
    rng = np.random.default_rng(3)
    a = rng.integers(0, 65535, (12, 10)).astype(np.uint16)
    ref = debayer(a, "RGGB", "mhc")
    np.testing.assert_array_equal(debayer(a.astype(">u2"), "RGGB", "mhc"), ref)
    np.testing.assert_array_equal(debayer(a.astype(">f8"), "RGGB", "mhc"), ref)
    out = np.empty((12, 10, 3), np.float32)
    assert debayer(a, "RGGB", "mhc", out) is out
    np.testing.assert_array_equal(out, ref)
    with pytest.raises(ValueError):
        debayer(a, "RGGB", "mhc", np.empty((12, 10, 3), np.float64))
    with pytest.raises(ValueError):
        debayer(a, "RGGB", "mhc", border="wrap")
    with pytest.raises(ValueError):
        debayer(a[None], "RGGB")


def test_timing_ns_per_pixel(real_dir):
    """Timing note: ns per mosaic pixel on the 1920x1080 Seestar frame (one thread)."""
    fits = pytest.importorskip("astropy.io.fits")
    path = sorted((real_dir / "seestar_ngc7023").glob("*.fit"))[0]
    data = np.ascontiguousarray(fits.getdata(path))
    out = np.empty((*data.shape, 3), np.float32)
    for method in METHODS:
        debayer(data[:8, :8], "GRBG", method)  # compiled
        best = np.inf
        for _ in range(3):
            t = time.perf_counter()
            debayer(data, "GRBG", method, out)
            best = min(best, time.perf_counter() - t)
        ns = best / data.size * 1e9
        print(f"debayer {method}: {ns:.1f} ns/pixel")
        assert ns < 1000  # ~25 ns/pixel on the dev machine; a regression to Python speed fails
