"""The resampling kernel against scipy, reproject and plain-numpy references.

References are independent of the kernel: ``scipy.ndimage.map_coordinates``
(nearest, bilinear), ``reproject.reproject_interp`` (bilinear between two TAN
WCS), and numpy implementations written here from the definitions (Keys cubic
convolution with a = -0.5; Lanczos-3 ``sinc(d) sinc(d / 3)`` normalized), with
the coverage rule derived from the kernels' supports (taps of non-zero weight
inside the frame).
"""

from __future__ import annotations

import math
import time
import warnings

import numpy as np
import pytest
from scipy import ndimage

from stackengine.kernels import resample as rs_module
from stackengine.kernels.resample import (
    BICUBIC,
    BILINEAR,
    LANCZOS3,
    MARGINS,
    METHODS,
    NEAREST,
    inverse_box,
    resample,
)

ALL = list(METHODS)
MARGIN = {"nearest": 0, "bilinear": 1, "bicubic": 2, "lanczos3": 3}


# --------------------------------------------------------------------------- helpers


def similarity(angle_deg, scale=1.0, tx=0.0, ty=0.0, centre=(0.0, 0.0)):
    """Output (x, y, 1) -> frame: rotate by ``angle`` and scale about ``centre`` (x, y)
    of the output, then shift by (tx, ty)."""
    a = math.radians(angle_deg)
    c, s = scale * math.cos(a), scale * math.sin(a)
    cx, cy = centre
    return np.array(
        [[c, -s, cx - c * cx + s * cy + tx], [s, c, cy - s * cx - c * cy + ty], [0.0, 0.0, 1.0]]
    )


def random_affine(rng, frame_shape, out_shape):
    """A random affine map (rotation, anisotropic scale, shear) that keeps most of the
    output over the frame."""
    a = rng.uniform(0, 2 * math.pi)
    rot = np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
    lin = rot @ np.array(
        [[rng.uniform(0.7, 1.4), rng.uniform(-0.2, 0.2)], [0, rng.uniform(0.7, 1.4)]]
    )
    out_c = np.array([out_shape[1] - 1, out_shape[0] - 1]) / 2
    frame_c = np.array([frame_shape[1] - 1, frame_shape[0] - 1]) / 2 + rng.uniform(-5, 5, 2)
    m = np.eye(3)
    m[:2, :2] = lin
    m[:2, 2] = frame_c - lin @ out_c
    return m


def positions(m, rows, cols, y0=0, x0=0):
    """Frame positions (fy, fx) of output pixels (y0 + i, x0 + j), computed here."""
    y, x = np.meshgrid(
        np.arange(y0, y0 + rows, dtype=np.float64),
        np.arange(x0, x0 + cols, dtype=np.float64),
        indexing="ij",
    )
    u = m[0, 0] * x + m[0, 1] * y + m[0, 2]
    v = m[1, 0] * x + m[1, 1] * y + m[1, 2]
    w = m[2, 0] * x + m[2, 1] * y + m[2, 2]
    return v / w, u / w


def run(frame, m, out_shape, method, *, clamp=True, area=False, y0=0, x0=0):
    out = np.full(out_shape, -12345.0, np.float32)
    resample(frame, 0, 0, m, out, y0, x0, method, clamp, area)
    assert not np.any(out == -12345.0), "every output pixel is written"
    return out


def keys(d):
    """Keys (1981) cubic convolution kernel, a = -0.5, of distance d."""
    a = -0.5
    d = np.abs(d)
    return np.where(
        d <= 1,
        (a + 2) * d**3 - (a + 3) * d**2 + 1,
        np.where(d < 2, a * d**3 - 5 * a * d**2 + 8 * a * d - 4 * a, 0.0),
    )


def lanczos3(d):
    d = np.asarray(d, dtype=np.float64)
    return np.where(np.abs(d) < 3, np.sinc(d) * np.sinc(d / 3), 0.0)


def axis_taps(p, n, half, kernel, normalize):
    """(taps, weights, covered) of position p on an axis of n pixels for a separable
    kernel of half-width ``half``: taps floor(p) - half + 1 .. floor(p) + half, their
    weights kernel(p - tap) (exactly 1 and 0s on a pixel centre), and whether every
    tap of non-zero weight lies in the axis."""
    if not np.isfinite(p):
        return None, None, False
    i0 = math.floor(p)
    taps = np.arange(i0 - half + 1, i0 + half + 1)
    if p == i0:
        w = (taps == i0).astype(np.float64)
    else:
        w = kernel(p - taps)
        if normalize:
            w = w / w.sum()
    used = taps[w != 0]
    return taps, w, bool(used.min() >= 0 and used.max() <= n - 1)


def reference_separable(frame, fy, fx, half, kernel, normalize=False, clamp=False):
    """Plain-numpy interpolation at positions (fy, fx): NaN where a tap of non-zero
    weight is outside the frame or not finite; optionally clamped to the nearest
    2x2 pixels (one row/column on a pixel centre)."""
    h, w = frame.shape
    out = np.full(fy.shape, np.nan)
    for idx in np.ndindex(fy.shape):
        ty, wy, oky = axis_taps(fy[idx], h, half, kernel, normalize)
        tx, wx, okx = axis_taps(fx[idx], w, half, kernel, normalize)
        if not (oky and okx):
            continue
        ky, kx = wy != 0, wx != 0
        ty, wy, tx, wx = ty[ky], wy[ky], tx[kx], wx[kx]
        vals = frame[np.ix_(ty, tx)].astype(np.float64)
        if not np.all(np.isfinite(vals)):
            continue
        value = wy @ vals @ wx
        if clamp:
            ny = [math.floor(fy[idx])] + ([math.floor(fy[idx]) + 1] if len(ty) > 1 else [])
            nx = [math.floor(fx[idx])] + ([math.floor(fx[idx]) + 1] if len(tx) > 1 else [])
            near = frame[np.ix_(ny, nx)].astype(np.float64)
            value = min(max(value, near.min()), near.max())
        out[idx] = value
    return out


def assert_close_f32(got, ref64, what):
    """NaN in the same places; elsewhere within one float32 rounding of the float64
    reference (plus float64 noise). Returns (max abs, max rel) differences."""
    np.testing.assert_array_equal(np.isnan(got), np.isnan(ref64), err_msg=f"{what}: NaN mask")
    ok = ~np.isnan(ref64)
    diff = np.abs(got[ok].astype(np.float64) - ref64[ok])
    bound = np.spacing(np.abs(ref64[ok]).astype(np.float32)).astype(np.float64) * 0.5 + 1e-12
    assert np.all(diff <= bound * 1.0001), f"{what}: max diff {diff.max()}"
    rel = diff / np.maximum(np.abs(ref64[ok]), 1e-30)
    return float(diff.max(initial=0)), float(rel.max(initial=0))


def bits(a):
    return np.ascontiguousarray(a).view(np.uint32)


# --------------------------------------------------------------------------- scipy


@pytest.mark.parametrize("method,order", [("nearest", 0), ("bilinear", 1)])
def test_nearest_and_bilinear_equal_scipy_map_coordinates(method, order):
    rng = np.random.default_rng(1 + order)
    worst = 0.0
    for _ in range(6):
        frame = rng.normal(100, 20, (61, 53)).astype(np.float32)
        m = random_affine(rng, frame.shape, (48, 44))
        got = run(frame, m, (48, 44), method)
        fy, fx = positions(m, 48, 44)
        ref = ndimage.map_coordinates(
            frame.astype(np.float64), [fy, fx], order=order, mode="constant", cval=np.nan
        )
        both = ~np.isnan(ref) & ~np.isnan(got)
        assert both.sum() > 500
        diff = np.abs(got[both] - ref[both])
        assert np.all(diff <= np.spacing(np.abs(ref[both]).astype(np.float32)))
        worst = max(worst, float(diff.max()))
        h, w = frame.shape
        if method == "bilinear":  # scipy's constant mode covers [0, n - 1] as we do
            np.testing.assert_array_equal(np.isnan(got), np.isnan(ref))
        else:  # nearest: a frame pixel's whole footprint [-0.5, n - 0.5), scipy [0, n - 1]
            mine = (fy >= -0.5) & (fy < h - 0.5) & (fx >= -0.5) & (fx < w - 0.5)
            np.testing.assert_array_equal(~np.isnan(got), mine)
            band = mine & np.isnan(ref)
            assert band.sum() > 0
            iy, ix = np.floor(fy[band] + 0.5).astype(int), np.floor(fx[band] + 0.5).astype(int)
            np.testing.assert_array_equal(got[band], frame[iy, ix])
    print(f"\n{method} vs scipy map_coordinates(order={order}): max abs diff {worst:.3g}")


def test_bilinear_nan_neighbours_make_nan_as_scipy():
    rng = np.random.default_rng(7)
    frame = rng.normal(0, 1, (40, 40)).astype(np.float32)
    frame[rng.random(frame.shape) < 0.05] = np.nan
    m = random_affine(rng, frame.shape, (36, 36))
    got = run(frame, m, (36, 36), "bilinear")
    fy, fx = positions(m, 36, 36)
    ref = ndimage.map_coordinates(
        frame.astype(np.float64), [fy, fx], order=1, mode="constant", cval=np.nan
    )
    np.testing.assert_array_equal(np.isnan(got), np.isnan(ref))
    assert np.isnan(got).sum() > 100


# --------------------------------------------------------------------------- numpy references


@pytest.mark.parametrize("with_nan", [False, True])
def test_bicubic_equals_keys_reference(with_nan):
    rng = np.random.default_rng(11)
    worst = (0.0, 0.0)
    for _ in range(3):
        frame = rng.normal(100, 30, (30, 27)).astype(np.float32)
        if with_nan:
            frame[rng.random(frame.shape) < 0.02] = np.nan
        m = random_affine(rng, frame.shape, (26, 25))
        fy, fx = positions(m, 26, 25)
        ref = reference_separable(frame, fy, fx, 2, keys)
        got = run(frame, m, (26, 25), "bicubic", clamp=False)
        worst = max(worst, assert_close_f32(got, ref, "bicubic"))
    print(f"\nbicubic vs Keys reference: max abs {worst[0]:.3g}, max rel {worst[1]:.3g}")


@pytest.mark.parametrize("with_nan", [False, True])
def test_lanczos3_equals_reference_and_clamps_to_the_2x2_range(with_nan):
    rng = np.random.default_rng(12)
    worst = (0.0, 0.0)
    for _ in range(3):
        frame = rng.normal(100, 30, (30, 27)).astype(np.float32)
        if with_nan:
            frame[rng.random(frame.shape) < 0.02] = np.nan
        m = random_affine(rng, frame.shape, (26, 25))
        fy, fx = positions(m, 26, 25)
        ref = reference_separable(frame, fy, fx, 3, lanczos3, normalize=True)
        got = run(frame, m, (26, 25), "lanczos3", clamp=False)
        worst = max(worst, assert_close_f32(got, ref, "lanczos3"))
        # clamped: the reference's value clipped to the nearest 2x2 pixels
        refc = reference_separable(frame, fy, fx, 3, lanczos3, normalize=True, clamp=True)
        gotc = run(frame, m, (26, 25), "lanczos3", clamp=True)
        assert_close_f32(gotc, refc, "lanczos3 clamped")
        ok = ~np.isnan(gotc)
        iy, ix = np.floor(fy[ok]).astype(int), np.floor(fx[ok]).astype(int)
        iy1, ix1 = np.minimum(iy + 1, frame.shape[0] - 1), np.minimum(ix + 1, frame.shape[1] - 1)
        quad = np.stack([frame[iy, ix], frame[iy, ix1], frame[iy1, ix], frame[iy1, ix1]])
        assert np.all(gotc[ok] >= quad.min(0)) and np.all(gotc[ok] <= quad.max(0))
        assert np.any(got[ok] != gotc[ok])  # the clamp does something on noise
    print(f"\nlanczos3 vs reference: max abs {worst[0]:.3g}, max rel {worst[1]:.3g}")


@pytest.mark.parametrize("method", ["bicubic", "lanczos3"])
def test_bicubic_also_clamps(method):
    rng = np.random.default_rng(13)
    frame = rng.normal(100, 30, (30, 27)).astype(np.float32)
    m = random_affine(rng, frame.shape, (26, 25))
    fy, fx = positions(m, 26, 25)
    kernel, half = (keys, 2) if method == "bicubic" else (lanczos3, 3)
    refc = reference_separable(frame, fy, fx, half, kernel, normalize=half == 3, clamp=True)
    assert_close_f32(run(frame, m, (26, 25), method, clamp=True), refc, f"{method} clamped")


@pytest.mark.parametrize("method", ["bicubic", "lanczos3"])
def test_clamping_removes_the_dark_ring_around_a_star(method):
    frame = np.full((40, 40), 100.0, np.float32)
    yy, xx = np.mgrid[:40, :40]
    frame += (5000 * np.exp(-((yy - 20.2) ** 2 + (xx - 19.7) ** 2) / (2 * 0.6**2))).astype(
        np.float32
    )
    m = similarity(33.0, 1.0, centre=(19.5, 19.5))
    ringing = run(frame, m, (40, 40), method, clamp=False)
    clamped = run(frame, m, (40, 40), method, clamp=True)
    assert np.nanmin(ringing) < 99.0  # an undershoot below the sky
    assert np.nanmin(clamped) >= 100.0  # never below the sky


# --------------------------------------------------------------------------- reproject


def test_bilinear_agrees_with_reproject_interp():
    reproject = pytest.importorskip("reproject")
    from astropy.wcs import WCS

    def tan(crpix, angle_deg):
        w = WCS(naxis=2)
        w.wcs.ctype = ["RA---TAN", "DEC--TAN"]
        w.wcs.crval = [150.0, 2.0]
        w.wcs.crpix = crpix
        w.wcs.cdelt = [-1.0 / 3600, 1.0 / 3600]
        a = math.radians(angle_deg)
        w.wcs.pc = [[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]]
        return w

    rng = np.random.default_rng(21)
    h, w = 90, 110
    yy, xx = np.mgrid[:h, :w]
    frame = (100 + 20 * np.sin(xx / 7.0) * np.cos(yy / 5.0) + rng.normal(0, 3, (h, w))).astype(
        np.float32
    )
    wcs_in = tan([55.5, 45.5], 0.0)
    wcs_out = tan([48.3, 51.7], 27.0)  # a shift and a rotation of the same tangent plane
    shape_out = (96, 100)
    # the output -> frame pixel map: affine (both are gnomonic about one point), from 3 points
    src = np.array([[0.0, 0.0], [80.0, 0.0], [0.0, 80.0]])
    world = wcs_out.pixel_to_world(src[:, 0], src[:, 1])
    dst = np.column_stack(wcs_in.world_to_pixel(world))
    a = np.linalg.solve(np.column_stack([src, np.ones(3)]), dst)
    m = np.vstack([a.T, [0, 0, 1]])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref, footprint = reproject.reproject_interp(
            (frame, wcs_in), wcs_out, shape_out=shape_out, order="bilinear"
        )
    got = run(frame, m, shape_out, "bilinear")
    both = ~np.isnan(got) & ~np.isnan(ref)
    assert both.sum() > 0.5 * got.size
    diff = np.abs(got[both] - ref[both])
    rel = diff / np.abs(ref[both])
    print(f"\nbilinear vs reproject_interp: max abs {diff.max():.3g}, max rel {rel.max():.3g}")
    assert diff.max() < 1e-4  # values ~100: float32 rounding and reproject's WCS round trip
    # reproject covers frame positions in [-0.5, n - 0.5] (edge pixels held), we [0, n - 1]:
    # where only reproject has values, the position is within half a pixel of the edge
    fy, fx = positions(m, *shape_out)
    only_ref = np.isnan(got) & ~np.isnan(ref)
    near_edge = (fy < 0) | (fy > h - 1) | (fx < 0) | (fx > w - 1)
    assert np.all(near_edge[only_ref])
    assert not np.any(~np.isnan(got) & np.isnan(ref))


# --------------------------------------------------------------------------- exactness


@pytest.mark.parametrize("method", ALL)
@pytest.mark.parametrize("clamp", [False, True])
def test_a_constant_stays_constant(method, clamp):
    rng = np.random.default_rng(31)
    value = np.float32(1234.5678)
    frame = np.full((50, 45), value, np.float32)
    maps = [random_affine(rng, frame.shape, (40, 40)) for _ in range(3)]
    homography = similarity(17.0, 1.05, 3.3, -2.1, centre=(20, 20))
    homography[2, :2] = [4e-4, -3e-4]
    for m in [*maps, homography]:
        got = run(frame, m, (40, 40), method, clamp=clamp)
        ok = ~np.isnan(got)
        assert ok.sum() > 400
        assert np.all(got[ok] == value), np.abs(got[ok] - value).max()


@pytest.mark.parametrize("method", ALL)
def test_integer_shifts_and_quarter_turns_reproduce_the_frame_exactly(method):
    rng = np.random.default_rng(41)
    frame = rng.normal(100, 30, (33, 29)).astype(np.float32)
    frame[rng.random(frame.shape) < 0.05] = np.nan
    h, w = frame.shape
    for dy, dx in [(0, 0), (3, -5), (-7, 2)]:
        m = np.array([[1.0, 0, dx], [0, 1, dy], [0, 0, 1]])
        got = run(frame, m, (h, w), method)
        want = np.full((h, w), np.nan, np.float32)
        ys, xs = slice(max(-dy, 0), min(h - dy, h)), slice(max(-dx, 0), min(w - dx, w))
        want[ys, xs] = frame[ys.start + dy : ys.stop + dy, xs.start + dx : xs.stop + dx]
        np.testing.assert_array_equal(bits(got), bits(want))
    # output (x, y) -> frame (w - 1 - y, x): np.rot90 (counter-clockwise) of the frame
    m = np.array([[0.0, -1, w - 1], [1, 0, 0], [0, 0, 1]])
    np.testing.assert_array_equal(bits(run(frame, m, (w, h), method)), bits(np.rot90(frame)))
    m = np.array([[-1.0, 0, w - 1], [0, -1, h - 1], [0, 0, 1]])
    np.testing.assert_array_equal(bits(run(frame, m, (h, w), method)), bits(frame[::-1, ::-1]))


@pytest.mark.parametrize("method", ALL)
def test_the_nan_border_is_the_stated_margin(method):
    frame = np.random.default_rng(51).normal(100, 5, (30, 40)).astype(np.float32)
    h, w = frame.shape
    m = MARGIN[method]
    for s in (0.3, 0.7):
        # a fractional shift along x only (rows stay on pixel centres)
        got = run(frame, np.array([[1.0, 0, s], [0, 1, 0], [0, 0, 1]]), (h, w), method)
        bad = np.isnan(got).all(axis=0)
        assert not np.isnan(got[:, ~bad]).any()
        if method == "nearest":  # covered while x + s < w - 0.5
            left, right = 0, (1 if s > 0.5 else 0)
        else:  # taps floor(p) - m + 1 .. floor(p) + m inside the frame
            left, right = m - 1, m
        want = np.zeros(w, bool)
        want[:left] = True
        want[w - right :] = True
        np.testing.assert_array_equal(bad, want, err_msg=f"shift {s}")
        # and the same along both axes at once
        got = run(frame, np.array([[1.0, 0, s], [0, 1, s], [0, 0, 1]]), (h, w), method)
        want2 = np.zeros((h, w), bool)
        want2[:, want] = True
        rows = np.zeros(h, bool)
        rows[:left] = True
        rows[h - right :] = True
        want2[rows] = True
        np.testing.assert_array_equal(np.isnan(got), want2)
    # wholly outside, and a region hanging over the frame's edge
    assert np.isnan(
        run(frame, np.array([[1.0, 0, w + 5], [0, 1, 0], [0, 0, 1]]), (h, w), method)
    ).all()
    got = run(frame, np.eye(3), (10, 20), method, y0=-4, x0=w - 8)
    np.testing.assert_array_equal(bits(got[4:, :8]), bits(frame[:6, w - 8 :]))
    assert np.isnan(got[:4]).all() and np.isnan(got[:, 8:]).all()


def test_uncovered_homography_points_are_nan():
    frame = np.ones((20, 20), np.float32)
    m = np.eye(3)
    m[2] = [-0.1, 0.0, 1.0]  # w = 0 at x = 10
    got = run(frame, m, (20, 20), "bilinear")
    assert np.isnan(got[:, 10]).all()  # the line sent to infinity


# --------------------------------------------------------------------------- area


@pytest.mark.parametrize("method", ALL)
def test_area_scales_by_the_frame_pixels_per_output_pixel(method):
    rng = np.random.default_rng(61)
    frame = rng.normal(100, 5, (60, 60)).astype(np.float32)
    for k, factor in [(2.0, 4.0), (0.5, 0.25)]:
        m = np.diag([k, k, 1.0])  # one output pixel spans k x k frame pixels
        plain = run(frame, m, (25, 25), method)
        flux = run(frame, m, (25, 25), method, area=True)
        ok = ~np.isnan(plain)
        assert ok.sum() > 100
        np.testing.assert_array_equal(flux[ok], plain[ok] * np.float32(factor))


def test_area_of_a_homography_is_its_local_jacobian():
    frame = np.full((80, 80), 10.0, np.float32)
    m = similarity(20.0, 1.3, 5.0, 2.0, centre=(30, 30))
    m[2, :2] = [2e-3, -1e-3]
    flux = run(frame, m, (50, 50), "bilinear", area=True)
    # a centred finite difference of the map at each output pixel
    e = 1e-4
    fy, fx = positions(m, 50, 50)
    y, x = np.mgrid[:50, :50].astype(np.float64)

    def at(dx, dy):
        u = m[0, 0] * (x + dx) + m[0, 1] * (y + dy) + m[0, 2]
        v = m[1, 0] * (x + dx) + m[1, 1] * (y + dy) + m[1, 2]
        ww = m[2, 0] * (x + dx) + m[2, 1] * (y + dy) + m[2, 2]
        return u / ww, v / ww

    (xp, yp), (xm, ym) = at(e, 0), at(-e, 0)
    (xq, yq), (xn, yn) = at(0, e), at(0, -e)
    det = ((xp - xm) * (yq - yn) - (xq - xn) * (yp - ym)) / (4 * e * e)
    ok = ~np.isnan(flux)
    assert ok.sum() > 1000
    np.testing.assert_allclose(flux[ok], 10.0 * np.abs(det[ok]), rtol=1e-6)


# --------------------------------------------------------------------------- inverse_box


def _check_box(frame, m, region, method, *, whole=False):
    y0, y1, x0, x1 = region
    box = inverse_box(m, y0, y1, x0, x1, MARGINS[METHODS[method]], frame.shape)
    full = np.empty((y1 - y0, x1 - x0), np.float32)
    resample(frame, 0, 0, m, full, y0, x0, method)
    by0, by1, bx0, bx1 = box
    part = np.empty_like(full)
    resample(frame[by0:by1, bx0:bx1], by0, bx0, m, part, y0, x0, method, frame_shape=frame.shape)
    np.testing.assert_array_equal(bits(part), bits(full), err_msg=f"{method} {box}")
    if whole:
        assert box == (0, frame.shape[0], 0, frame.shape[1])
    elif by1 > by0:  # no larger than the region's image and the taps
        fy, fx = positions(m, y1 - y0, x1 - x0, y0, x0)
        mg = MARGINS[METHODS[method]] + 1
        assert by0 >= max(math.floor(fy.min()) - mg, 0) and by1 <= math.floor(fy.max()) + mg + 1
        assert bx0 >= max(math.floor(fx.min()) - mg, 0) and bx1 <= math.floor(fx.max()) + mg + 1
    return box, full


@pytest.mark.parametrize("method", ALL)
def test_inverse_box_holds_every_tap(method):
    rng = np.random.default_rng(71)
    frame = rng.normal(100, 10, (97, 83)).astype(np.float32)
    angles = [0.0, 90.0, 121.5, 180.0, -90.0, *rng.uniform(0, 360, 6)]
    nonempty = 0
    for angle in angles:
        for _ in range(3):
            m = similarity(
                angle, rng.uniform(0.6, 1.5), *rng.uniform(-30, 30, 2), centre=(40.0, 45.0)
            )
            y0, x0 = rng.integers(-20, 80, 2)
            region = (y0, y0 + rng.integers(1, 40), x0, x0 + rng.integers(1, 40))
            box, full = _check_box(frame, m, region, method)
            nonempty += box[1] > box[0]
            if box == (0, 0, 0, 0):
                assert np.isnan(full).all()
    assert nonempty > 15
    # a homography (near identity, with perspective terms)
    for _ in range(5):
        m = similarity(rng.uniform(0, 360), 1.1, *rng.uniform(-10, 10, 2), centre=(40.0, 45.0))
        m[2, :2] = rng.uniform(-2e-3, 2e-3, 2)
        y0, x0 = rng.integers(-10, 60, 2)
        _check_box(frame, m, (y0, y0 + 35, x0, x0 + 30), method)
    # a region crossed by the line sent to infinity: the whole frame
    m = np.eye(3)
    m[2] = [-0.02, 0.0, 1.0]  # w = 0 at x = 50
    _check_box(frame, m, (0, 40, 30, 70), method, whole=True)


def test_a_src_that_misses_taps_is_a_callers_bug():
    frame = np.random.default_rng(81).normal(100, 10, (60, 60)).astype(np.float32)
    m = similarity(30.0, 1.0, 2.0, 3.0, centre=(30, 30))
    y0, y1, x0, x1 = inverse_box(m, 10, 30, 10, 30, 3, frame.shape)
    out = np.empty((20, 20), np.float32)
    resample(frame[y0:y1, x0:x1], y0, x0, m, out, 10, 10, "lanczos3", frame_shape=frame.shape)
    with pytest.raises(ValueError, match="misses taps"):
        resample(
            frame[y0 + 1 : y1, x0:x1], y0 + 1, x0, m, out, 10, 10, LANCZOS3,
            frame_shape=frame.shape,
        )  # fmt: skip
    with pytest.raises(ValueError, match="frame_shape"):
        resample(frame[y0:y1, x0:x1], y0, x0, m, out, 10, 10, LANCZOS3)
    with pytest.raises(ValueError, match="interpolation"):
        resample(frame, 0, 0, m, out, 0, 0, "lanczos4")


def test_channels_resample_each_plane_alike():
    rng = np.random.default_rng(91)
    rgb = rng.normal(100, 10, (40, 44, 3)).astype(np.float32)
    rgb[rng.random(rgb.shape) < 0.02] = np.nan
    m = random_affine(rng, rgb.shape, (36, 38))
    for code in (NEAREST, BILINEAR, BICUBIC, LANCZOS3):
        out = np.empty((36, 38, 3), np.float32)
        resample(rgb, 0, 0, m, out, 0, 0, code)
        for c in range(3):
            plane = run(np.ascontiguousarray(rgb[..., c]), m, (36, 38), code)
            np.testing.assert_array_equal(bits(out[..., c]), bits(plane))


@pytest.mark.parametrize("method", ALL)
def test_tiles_give_the_same_bits_as_one_region(method):
    """Each output pixel depends on its own position only: any tiling, same values."""
    rng = np.random.default_rng(101)
    frame = rng.normal(100, 10, (70, 64)).astype(np.float32)
    m = similarity(121.5, 0.93, 4.2, -3.1, centre=(30.0, 33.0))
    m[2, :2] = [5e-4, -7e-4]
    whole = run(frame, m, (66, 60), method)
    tiled = np.empty_like(whole)
    for ys, xs in [
        ((0, 23), (0, 17)),
        ((0, 23), (17, 60)),
        ((23, 66), (0, 41)),
        ((23, 66), (41, 60)),
    ]:
        box = inverse_box(m, *ys, *xs, MARGINS[METHODS[method]], frame.shape)
        part = np.ascontiguousarray(frame[box[0] : box[1], box[2] : box[3]])
        out = np.empty((ys[1] - ys[0], xs[1] - xs[0]), np.float32)
        resample(part, box[0], box[2], m, out, ys[0], xs[0], method, frame_shape=frame.shape)
        tiled[ys[0] : ys[1], xs[0] : xs[1]] = out
    np.testing.assert_array_equal(bits(tiled), bits(whole))


# --------------------------------------------------------------------------- speed


def test_speed_note():
    """ns per output pixel of a 2048 x 2048 output from a similarity (printed)."""
    rng = np.random.default_rng(0)
    frame = rng.normal(100, 5, (2200, 2200)).astype(np.float32)
    m = similarity(12.3, 1.02, 40.3, -180.7, centre=(0, 0))
    out = np.empty((2048, 2048), np.float32)
    notes = []
    for name in ALL:
        resample(frame, 0, 0, m, out[:8, :8], 0, 0, name)  # compiled
        best = math.inf
        for _ in range(2):
            t = time.thread_time()
            resample(frame, 0, 0, m, out, 0, 0, name)
            best = min(best, time.thread_time() - t)
        notes.append(f"{name} {best / out.size * 1e9:.1f} ns/px")
        assert best / out.size < 2e-6  # generous: shared machines
    print("\nresample 2048x2048 similarity:", ", ".join(notes))


# ------------------------------------------------------------------- the formula, bit for bit


def formula(frame, m, out_shape, method, *, clamp=True, area=False, y0=0, x0=0):
    """The kernel's formula written out pixel by pixel in plain Python: float64
    arithmetic in the order of the module notes (positions ``(m00 x + m01 y) + m02``,
    ``1 / w``; the weights of ``t = p - floor(p)``, row sums ``sum_b wx[b] v`` then
    ``sum_a wy[a] rs`` from 0; clamp; times the area factor; rounded to float32). The
    kernel's fast paths (vectorized runs, reversed rows, the region copy) must give
    these bits exactly."""
    code = METHODS[method]
    weights = {
        BILINEAR: rs_module._bilinear_weights.py_func,
        BICUBIC: rs_module._keys_weights.py_func,
        LANCZOS3: rs_module._lanczos3_weights.py_func,
    }.get(code)
    h, w = frame.shape
    (m00, m01, m02), (m10, m11, m12), (m20, m21, m22) = np.asarray(m, np.float64).tolist()
    det = (
        m00 * (m11 * m22 - m12 * m21)
        - m01 * (m10 * m22 - m12 * m20)
        + m02 * (m10 * m21 - m11 * m20)
    )
    affine = m20 == 0.0 and m21 == 0.0 and m22 == 1.0

    def axis(p, n):  # (first tap, weights) or None where not covered
        if not (p >= 0.0 and p <= n - 1.0):
            return None
        f = math.floor(p)
        t = p - f
        if t == 0.0:
            return f, [1.0]
        if f - code + 1 < 0 or f + code > n - 1:
            return None
        return f - code + 1, list(weights(t))

    out = np.full(out_shape, np.nan, np.float32)
    for i in range(out_shape[0]):
        y = float(y0 + i)
        for j in range(out_shape[1]):
            x = float(x0 + j)
            u = m00 * x + m01 * y + m02
            v = m10 * x + m11 * y + m12
            r = 1.0
            if not affine:
                ww = m20 * x + m21 * y + m22
                r = 1.0 / ww if ww != 0.0 else math.copysign(math.inf, ww)
            fx, fy = u * r, v * r
            scale = abs(det * (r * r * r)) if area else 1.0
            if code == NEAREST:
                if fx >= -0.5 and fx < w - 0.5 and fy >= -0.5 and fy < h - 0.5:
                    value = float(frame[math.floor(fy + 0.5), math.floor(fx + 0.5)])
                    if math.isfinite(value):
                        out[i, j] = np.float32(value * scale)
                continue
            ax, ay = axis(fx, w), axis(fy, h)
            if ax is None or ay is None:
                continue
            (cx, wx), (cy, wy) = ax, ay
            acc = 0.0
            for a in range(len(wy)):
                rs = 0.0
                for b in range(len(wx)):
                    rs += wx[b] * float(frame[cy + a, cx + b])
                acc += wy[a] * rs
            if not math.isfinite(acc):
                continue
            if clamp and code >= BICUBIC:
                qy = cy + (code - 1 if len(wy) > 1 else 0)
                qx = cx + (code - 1 if len(wx) > 1 else 0)
                qy1, qx1 = qy + (len(wy) > 1), qx + (len(wx) > 1)
                q0, q1 = float(frame[qy, qx]), float(frame[qy, qx1])
                q2, q3 = float(frame[qy1, qx]), float(frame[qy1, qx1])
                lo = min(min(q0, q1), min(q2, q3))
                hi = max(max(q0, q1), max(q2, q3))
                acc = lo if acc < lo else (hi if acc > hi else acc)
            out[i, j] = np.float32(acc * scale)
    return out


def _frame_with_holes(rng, shape):
    frame = rng.normal(100, 30, shape).astype(np.float32)
    frame[rng.random(shape) < 0.01] = np.nan  # scattered
    y, x = rng.integers(5, shape[0] - 12), rng.integers(5, shape[1] - 12)
    frame[y : y + 6, x : x + 9] = np.nan  # a patch
    frame[rng.integers(shape[0]), rng.integers(shape[1])] = np.inf
    return frame


def _maps(rng, frame_shape, out_shape):
    """Matrices that take each of the kernel's paths: small rotations (vectorized runs
    with a scalar or repeated tail), about 180 degrees (rows computed from the right),
    other angles, scales, pure shifts, homographies."""
    h, w = frame_shape
    centre = ((w - 1) / 2, (h - 1) / 2)
    maps = [
        similarity(2.0, 1.0, 0.37, -0.61, centre=centre),
        similarity(-0.3, 1.0, 3.21, 1.6, centre=centre),
        similarity(178.5, 1.0, -0.4, 0.27, centre=centre),
        similarity(180.0, 1.0, 0.5, 0.25, centre=centre),
        similarity(90.7, 1.0, 0.13, 0.3, centre=centre),
        similarity(33.0, 0.8, 1.1, -2.3, centre=centre),
        similarity(0.0, 0.5, 0.3, 0.2, centre=centre),
        similarity(1.0, 1.7, -0.2, 0.1, centre=centre),
        np.array([[1.0, 0, 5.3], [0, 1, -4.75], [0, 0, 1]]),
        np.array([[1.0, 0, 2.0], [0, 1, -0.125], [0, 0, 1]]),  # on centres along x
        random_affine(rng, frame_shape, out_shape),
    ]
    for angle in (1.5, 179.0):
        hom = similarity(angle, 1.02, 0.7, -0.3, centre=centre)
        hom[2, :2] = rng.uniform(-1.5e-3, 1.5e-3, 2)
        maps.append(hom)
    return maps


@pytest.mark.parametrize("method", ALL)
def test_the_kernel_gives_the_bits_of_the_formula(method):
    """Random affine maps and homographies, NaN holes and an inf, output regions over the
    frame's edges: the same float32 bits as the plain formula, clamped or not, with the
    area factor or not, from the whole frame or its inverse_box region."""
    rng = np.random.default_rng(201)
    frame = _frame_with_holes(rng, (47, 83))
    out_shape = (33, 70)
    clamps = [True, False] if METHODS[method] >= BICUBIC else [True]
    cases = 0
    for k, m in enumerate(_maps(rng, frame.shape, out_shape)):
        y0, x0 = [(0, 0), (-9, 21), (14, -30)][k % 3]  # over the edges too
        for clamp in clamps:
            area = k % 2 == 1
            want = formula(frame, m, out_shape, method, clamp=clamp, area=area, y0=y0, x0=x0)
            got = run(frame, m, out_shape, method, clamp=clamp, area=area, y0=y0, x0=x0)
            np.testing.assert_array_equal(bits(got), bits(want), err_msg=f"{method} map {k}")
            box = inverse_box(m, y0, y0 + out_shape[0], x0, x0 + out_shape[1],
                              MARGINS[METHODS[method]], frame.shape)  # fmt: skip
            part = frame[box[0] : box[1], box[2] : box[3]]  # a strided view
            got = np.empty(out_shape, np.float32)
            resample(part, box[0], box[2], m, got, y0, x0, method, clamp, area,
                     frame_shape=frame.shape)  # fmt: skip
            np.testing.assert_array_equal(bits(got), bits(want), err_msg=f"{method} box {k}")
            cases += np.isfinite(want).sum() > 100
    assert cases >= 8


@pytest.mark.parametrize("method", ALL)
def test_a_pure_shift_gives_the_bits_of_the_formula(method):
    """Translations (the same weights at every pixel of a row), fractional and not, at
    offsets where the positions cross powers of two (their fractions change by ulps),
    with channels."""
    rng = np.random.default_rng(202)
    frame = _frame_with_holes(rng, (60, 140))
    rgb = np.stack([frame, frame[::-1] * 0.5, frame[:, ::-1] + 3], axis=-1)
    for dx, dy in [(0.37, -0.61), (-3.9, 2.25), (0.5, 0.5), (1e-9, 7.0), (12.0, -3.0)]:
        m = np.array([[1.0, 0, dx], [0, 1, dy], [0, 0, 1]])
        want = formula(frame, m, (52, 131), method, y0=1, x0=2)
        got = run(frame, m, (52, 131), method, y0=1, x0=2)
        np.testing.assert_array_equal(bits(got), bits(want), err_msg=f"shift {dx}, {dy}")
        out = np.empty((52, 131, 3), np.float32)
        resample(rgb, 0, 0, m, out, 1, 2, method)
        for c in range(3):
            plane = formula(np.ascontiguousarray(rgb[..., c]), m, (52, 131), method, y0=1, x0=2)
            np.testing.assert_array_equal(bits(out[..., c]), bits(plane))
