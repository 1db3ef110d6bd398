"""Gradient models for photometric normalization (stackengine.normalize.gradient).

References are independent: hand-worked values, brute-force numpy (np.median per
bin, distances per pixel), and the injected truth of synthetic skies.
"""

from __future__ import annotations

import time

import numpy as np
import pytest
from astropy.io import fits
from astropy.stats import mad_std
from scipy import ndimage

from stackengine.errors import ParameterError
from stackengine.normalize.gradient import (
    BinSamples,
    GradientModel,
    background_bins,
    fit_gradient,
    star_mask,
)

SHAPE = (384, 448)  # not square: catches swapped axes
SKY = 1000.0


def _moffat(shape, x, y, flux, fwhm, beta):
    yy, xx = np.mgrid[0 : shape[0], 0 : shape[1]].astype(float)
    a = fwhm / (2.0 * np.sqrt(2.0 ** (1.0 / beta) - 1.0))
    r2 = (yy - y) ** 2 + (xx - x) ** 2
    return flux * (beta - 1.0) / (np.pi * a * a) * (1.0 + r2 / (a * a)) ** -beta


def _gradient(shape, amplitude, seed):
    """Plane + quadratic, minimum 0, maximum ``amplitude``."""
    c = np.random.default_rng(seed).normal(size=5)
    v = np.linspace(-1, 1, shape[0])[:, None]
    u = np.linspace(-1, 1, shape[1])[None, :]
    g = c[0] * u + c[1] * v + c[2] * u * u + c[3] * u * v + c[4] * v * v
    g = g - g.min()
    return g * (amplitude / g.max())


def _scene(fwhm, stars):
    img = np.full(SHAPE, SKY)
    for x, y, f in stars:
        img += _moffat(SHAPE, x, y, f, fwhm, 3.0)
        if f > 1e6:  # a wide scattered-light halo (fixed: optics, not seeing)
            img += _moffat(SHAPE, x, y, 0.05 * f, 60.0, 1.5)
    return img


def _observe(truth, k, grad, seed):
    """truth / k + gradient + Poisson-like noise + cosmic rays, float32."""
    rng = np.random.default_rng(seed)
    f = truth / k + grad
    f = f + rng.normal(size=f.shape) * np.sqrt(f)
    idx = rng.integers(0, f.size, 300)
    f.ravel()[idx] += rng.uniform(500.0, 20000.0, idx.size)
    return f.astype(np.float32)


@pytest.fixture(scope="module")
def sky():
    """Reference and target (seeing 3.0 vs 3.6 px, k = 1.25), each with its own gradient."""
    rng = np.random.default_rng(7)
    ny, nx = SHAPE
    faint = [(rng.uniform(0, nx), rng.uniform(0, ny), 10 ** rng.uniform(3, 5)) for _ in range(40)]
    bright = [(0.3 * nx, 0.35 * ny, 3e7), (0.72 * nx, 0.6 * ny, 1e7)]
    stars = np.array(faint + bright)
    k = 1.25
    g_ref = _gradient(SHAPE, 0.1 * SKY, 1)
    g_tgt = _gradient(SHAPE, 0.2 * SKY, 2)
    scene_ref = _scene(3.0, stars)
    ref = _observe(scene_ref, 1.0, g_ref, 10)
    tgt = _observe(_scene(3.6, stars), k, g_tgt, 11)
    mask = star_mask(SHAPE, stars[:, 0], stars[:, 1], stars[:, 2], 3.6)
    truth = k * g_tgt - g_ref
    return dict(
        stars=stars, k=k, ref=ref, tgt=tgt, mask=mask, truth=truth, ref_clean=scene_ref + g_ref
    )


def _rms_error(model: GradientModel, truth: np.ndarray) -> tuple[float, float]:
    """RMS and max |model - truth| over every pixel, as fractions of truth's range."""
    yy, xx = np.mgrid[0 : truth.shape[0], 0 : truth.shape[1]]
    r = model.evaluate(yy, xx) - truth
    span = np.ptp(truth)
    return float(np.sqrt(np.mean(r**2)) / span), float(np.abs(r).max() / span)


def _difference(sky, bin_size=16):
    br = background_bins(sky["ref"], bin_size=bin_size, mask=sky["mask"])
    bt = background_bins(sky["tgt"], bin_size=bin_size, mask=sky["mask"])
    y, x = br.mesh()
    return y, x, sky["k"] * bt.value - br.value


# ----------------------------------------------------------------- star_mask


def test_star_mask_matches_brute_force_discs():
    x, y, flux = [30.7, 80.2, np.nan, 5.0], [20.3, 44.9, 10.0, 60.0], [1.0, 16.0, 5.0, np.nan]
    m = star_mask((70, 100), x, y, flux, 2.0, base_radius=5.0, growth=0.25)
    yy, xx = np.mgrid[0:70, 0:100]
    # radii by hand: faintest 5; 16x brighter 5 * 16**0.25 = 10; NaN flux: base 5
    want = np.zeros((70, 100), bool)
    for cx, cy, r in [(30.7, 20.3, 5.0), (80.2, 44.9, 10.0), (5.0, 60.0, 5.0)]:
        want |= (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r
    np.testing.assert_array_equal(m, want)


def test_star_mask_default_radius_cap_and_step():
    # default base 2.5 fwhm = 5; 1e8 x brighter -> 500, capped at 0.1 * 100 * 2 = 20 (frame px)
    m = star_mask((50, 100), [101.0, 10.0], [51.0, 10.0], [1e8, 1.0], 2.0, step=2)
    yy, xx = np.mgrid[0:50, 0:100]
    cy, cx = 2 * yy + 0.5, 2 * xx + 0.5  # centres of the 2x2 blocks in frame pixels
    want = ((cy - 51.0) ** 2 + (cx - 101.0) ** 2 <= 20.0**2) | (
        (cy - 10.0) ** 2 + (cx - 10.0) ** 2 <= 5.0**2
    )
    np.testing.assert_array_equal(m, want)
    assert not star_mask((10, 10), [], [], [], 3.0).any()


def test_star_mask_grows_with_brightness(sky):
    stars = sky["stars"]
    m = sky["mask"]
    for x, y, _ in stars[-2:]:  # the bright stars mask a wide disc
        yy, xx = np.mgrid[0 : SHAPE[0], 0 : SHAPE[1]]
        assert m[(yy - y) ** 2 + (xx - x) ** 2 <= 30.0**2].all()
    assert 0.05 < m.mean() < 0.5


# ----------------------------------------------------------- background_bins


def test_background_bins_equal_numpy_median_per_bin():
    rng = np.random.default_rng(3)
    img = rng.normal(100, 10, (37, 29)).astype(np.float32)
    img[3, 4] = np.nan
    img[20, 20] = np.inf
    mask = rng.random(img.shape) < 0.3
    b = background_bins(img, bin_size=8, mask=mask, min_fraction=0.25)
    assert b.value.shape == b.count.shape == (5, 4)
    for p in range(5):
        for q in range(4):
            blk = img[8 * p : 8 * p + 8, 8 * q : 8 * q + 8].astype(np.float64)
            use = ~mask[8 * p : 8 * p + 8, 8 * q : 8 * q + 8] & np.isfinite(blk)
            assert b.count[p, q] == use.sum()
            if use.sum() < 0.25 * 64:
                assert np.isnan(b.value[p, q])
            else:
                assert b.value[p, q] == pytest.approx(np.median(blk[use]), abs=1e-4)
    # last row of bins holds 5 rows (32..36) -> centre 34; last column 24..28 -> 26
    np.testing.assert_array_equal(b.yc, [3.5, 11.5, 19.5, 27.5, 34.0])
    np.testing.assert_array_equal(b.xc, [3.5, 11.5, 19.5, 26.0])
    # the corner bin holds 5 x 5 = 25 pixels: below 0.5 x 64 even before masking
    strict = background_bins(img, bin_size=8, mask=None)
    assert np.isnan(strict.value[4, 3]) and strict.count[4, 3] == 25
    assert np.isfinite(strict.value[4, 2])  # 5 x 8 = 40 >= 32


def test_background_bins_linear_ramp_on_binned_image():
    """A plane's 2x2 block average measured with step=2 gives the plane at the centres."""
    ny, nx = 96, 160
    yy, xx = np.mgrid[0:ny, 0:nx].astype(float)
    frame = 500.0 + 0.7 * yy - 0.3 * xx
    binned = frame.reshape(ny // 2, 2, nx // 2, 2).mean(axis=(1, 3))
    b = background_bins(binned, bin_size=8, mask=None, step=2)
    y, x = b.mesh()
    np.testing.assert_allclose(b.value, 500.0 + 0.7 * y - 0.3 * x, atol=1e-9)
    assert b.yc[0] == 7.5 and b.xc[1] == 23.5  # rows 0..15 of the frame; cols 16..31


def test_background_bins_rgb_and_integer_input():
    rng = np.random.default_rng(4)
    rgb = rng.integers(0, 4000, (40, 50, 3)).astype(np.uint16)
    mask = rng.random((40, 50)) < 0.2
    b = background_bins(rgb, bin_size=10, mask=mask)
    assert b.value.shape == (4, 5, 3)
    for c in range(3):
        one = background_bins(rgb[..., c].astype(np.float64), bin_size=10, mask=mask)
        np.testing.assert_array_equal(b.value[..., c], one.value)
        np.testing.assert_array_equal(b.count[..., c], one.count)


def test_background_bins_exclude_star_bins(sky):
    b = background_bins(sky["ref"], bin_size=16, mask=sky["mask"])
    b0 = background_bins(sky["ref"], bin_size=16, mask=None)
    cover = sky["mask"].reshape(24, 16, 28, 16).mean(axis=(1, 3))
    np.testing.assert_array_equal(np.isnan(b.value), cover > 0.5)
    # each kept bin is within 6 sigma of the noise-free median of its usable pixels
    clean = (sky["ref_clean"]).reshape(24, 16, 28, 16).transpose(0, 2, 1, 3)
    use = ~sky["mask"].reshape(24, 16, 28, 16).transpose(0, 2, 1, 3)
    want = np.array([[np.median(clean[p, q][use[p, q]]) if use[p, q].any() else np.nan
                      for q in range(28)] for p in range(24)])  # fmt: skip
    sigma = 1.2533 * np.sqrt(SKY) / np.sqrt(np.maximum(b.count, 1))
    assert np.nanmax(np.abs(b.value - want) / sigma) < 6.0
    # star light: unmasked bins sit far above sky + gradient near stars, masked ones do not
    y, x = b.mesh()
    sky_level = SKY + _gradient(SHAPE, 0.1 * SKY, 1)[y.astype(int), x.astype(int)]
    with_mask = np.nanmax(b.value - sky_level)
    without = np.nanmax(b0.value - sky_level)
    assert without > 5 * with_mask, (without, with_mask)


def test_background_bins_speed():
    rng = np.random.default_rng(5)
    img = rng.normal(SKY, 30, (2048, 2048)).astype(np.float32)
    mask = rng.random(img.shape) < 0.1
    background_bins(img[:256], bin_size=32, mask=mask[:256])  # warm up
    t = time.perf_counter()
    b = background_bins(img, bin_size=32, mask=mask)
    elapsed = time.perf_counter() - t
    assert b.value.shape == (64, 64)
    assert elapsed < 1.0, f"{elapsed:.3f} s for 2048^2 (about 0.04 s expected)"


# -------------------------------------------------------------- fit_gradient


@pytest.mark.parametrize("method", ["spline", "poly"])
def test_fit_recovers_injected_gradient(sky, method):
    y, x, d = _difference(sky)
    model = fit_gradient(y, x, d, shape=SHAPE, method=method)
    rms, worst = _rms_error(model, sky["truth"])
    assert rms < 0.01, (rms, worst)
    assert worst < 0.04
    assert model.n_samples + model.n_rejected == np.isfinite(d).sum()
    assert model.rms > 0


def test_fit_without_star_mask_is_worse(sky):
    """Without the mask (and no outlier rejection) star residuals of the seeing change leak in."""
    br = background_bins(sky["ref"], bin_size=16, mask=None)
    bt = background_bins(sky["tgt"], bin_size=16, mask=None)
    y, x = br.mesh()
    d = sky["k"] * bt.value - br.value
    masked = _rms_error(fit_gradient(*_difference(sky), shape=SHAPE), sky["truth"])[0]
    unmasked = _rms_error(fit_gradient(y, x, d, shape=SHAPE, clip=1e9), sky["truth"])[0]
    assert unmasked > 2 * masked


def _roughness(grid):
    """RMS of the grid about its own least-squares quadratic (numpy lstsq)."""
    gy, gx = grid.shape
    v, u = np.meshgrid(np.linspace(-1, 1, gy), np.linspace(-1, 1, gx), indexing="ij")
    a = np.column_stack([np.ones(u.size), u.ravel(), v.ravel(), u.ravel() ** 2,
                         (u * v).ravel(), v.ravel() ** 2])  # fmt: skip
    r = grid.ravel() - a @ np.linalg.lstsq(a, grid.ravel(), rcond=None)[0]
    return float(np.sqrt(np.mean(r**2)))


def test_larger_smoothness_is_smoother(sky):
    y, x, d = _difference(sky)
    rough = [
        _roughness(fit_gradient(y, x, d, shape=SHAPE, smoothness=s).grid)
        for s in (0.0, 0.1, 0.5, 2.0, 8.0, 32.0, 1e6)
    ]
    assert all(a > b for a, b in zip(rough, rough[1:], strict=False)), rough
    assert rough[-1] < 1e-3 * rough[0]  # huge smoothness: the least-squares quadratic


def test_smoothness_zero_interpolates():
    rng = np.random.default_rng(8)
    y, x = np.meshgrid(np.arange(0, 65, 8.0), np.arange(0, 41, 8.0), indexing="ij")
    vals = rng.normal(size=y.shape)
    model = fit_gradient(y, x, vals, shape=(65, 41), smoothness=0.0, grid_step=8, clip=1e9)
    assert model.grid.shape == (9, 6) and model.step_y == 8.0 and model.step_x == 8.0
    np.testing.assert_allclose(model.grid, vals, atol=1e-8)
    assert model.rms < 1e-8


def test_poly_is_exact_on_a_quadratic_and_lowers_its_degree():
    ny, nx = 300, 200
    y, x = np.meshgrid(np.linspace(5, 295, 12), np.linspace(5, 195, 9), indexing="ij")

    def q(y, x):
        return 3.0 + 0.01 * x - 0.02 * y + 1e-4 * x * x + 2e-5 * x * y - 3e-5 * y * y

    model = fit_gradient(y, x, q(y, x), shape=(ny, nx), method="poly", degree=2)
    yy, xx = np.mgrid[0:ny:7, 0:nx:7]
    # the grid is exact at the nodes; in between, bilinear error is tiny for a quadratic
    ny_, nx_ = model.node_coords()
    np.testing.assert_allclose(model.grid, q(ny_[:, None], nx_[None, :]), atol=1e-9)
    np.testing.assert_allclose(model.evaluate(yy, xx), q(yy, xx), atol=2e-3)
    plane = fit_gradient([0, 100, 0], [0, 0, 100], [1.0, 2.0, 3.0], shape=(101, 101))
    assert plane.degree == 1 and plane.grid[-1, -1] == pytest.approx(4.0)
    const = fit_gradient([50], [50], [7.0], shape=(101, 101), method="poly")
    assert const.degree == 0 and np.allclose(const.grid, 7.0)


def test_outliers_are_rejected():
    rng = np.random.default_rng(9)
    y, x = np.meshgrid(np.arange(8, 400, 16.0), np.arange(8, 600, 16.0), indexing="ij")
    truth = 0.2 * x - 0.1 * y + 2e-4 * x * x
    vals = truth + rng.normal(0, 1.0, truth.shape)
    bad = rng.choice(vals.size, 20, replace=False)
    vals.ravel()[bad] += 200.0
    for method in ("spline", "poly"):
        model = fit_gradient(y, x, vals, shape=(400, 600), method=method)
        assert model.n_rejected >= 20
        yy, xx = np.mgrid[0:400:5, 0:600:5]
        err = model.evaluate(yy, xx) - (0.2 * xx - 0.1 * yy + 2e-4 * xx * xx)
        assert np.sqrt(np.mean(err**2)) < 0.01 * np.ptp(truth)


def test_many_samples_are_merged_quickly():
    ny = nx = 2048
    yc = np.arange(8, ny, 16.0)
    y, x = np.meshgrid(yc, yc, indexing="ij")  # 16384 samples
    vals = 1e-5 * (x - 1000) ** 2 + 0.01 * y + np.random.default_rng(1).normal(0, 0.5, x.shape)
    t = time.perf_counter()
    model = fit_gradient(y, x, vals, shape=(ny, nx))
    assert time.perf_counter() - t < 5.0
    assert model.n_samples <= 1024
    assert model.grid.shape == (64, 64)
    yy, xx = np.mgrid[0:ny:16, 0:nx:16]
    err = model.evaluate(yy, xx) - (1e-5 * (xx - 1000) ** 2 + 0.01 * yy)
    assert np.sqrt(np.mean(err**2)) < 0.005 * np.ptp(vals)


def test_grid_spans_the_frame():
    m = fit_gradient([0, 500, 0, 900], [0, 0, 1300, 700], [1, 2, 3, 4.0], shape=(1000, 1301))
    gy, gx = m.grid.shape
    # long side: 64 nodes, spacing 1300 / 63; short side: ceil(999 / (1300 / 63)) = 49 gaps
    assert (gy, gx) == (50, 64)
    assert m.step_x == pytest.approx(1300 / 63) and m.step_y == pytest.approx(999 / 49)
    assert m.node_coords()[0][-1] == pytest.approx(999) and m.node_coords()[1][-1] == 1300
    m2 = fit_gradient([0, 5, 9], [0, 9, 3], [1, 2, 3.0], shape=(10, 10), grid_step=100)
    assert m2.grid.shape == (2, 2) and m2.step_y == 9.0


# ------------------------------------------------------- GradientModel reads


def test_evaluate_bilinear_by_hand():
    g = np.array([[0.0, 1.0, 2.0], [10.0, 11.0, 14.0]])
    m = GradientModel(grid=g, step_y=4.0, step_x=2.0)
    # nodes
    np.testing.assert_allclose(m.evaluate([[0], [4]], [0, 2, 4]), g)
    # midpoints along x, along y, and a cell centre
    assert m.evaluate(0.0, 1.0) == 0.5
    assert m.evaluate(2.0, 0.0) == 5.0
    assert m.evaluate(2.0, 3.0) == pytest.approx((1 + 2 + 11 + 14) / 4)
    # (y=1, x=3.5): fy=0.25, fx=0.75 in cell (0, 1): by hand
    top = 0.25 * 1 + 0.75 * 2
    bottom = 0.25 * 11 + 0.75 * 14
    assert m.evaluate(1.0, 3.5) == pytest.approx(0.75 * top + 0.25 * bottom)
    # clamped beyond the edges
    assert m.evaluate(-3.0, -1.0) == 0.0
    assert m.evaluate(9.0, 7.0) == 14.0
    assert m.evaluate(9.0, 1.0) == 10.5
    assert m.evaluate(np.zeros((2, 3)), np.zeros(3)).shape == (2, 3)
    # profile along x: trapezoid mean over y of 2 nodes = plain mean
    xs, prof = m.profile(1)
    np.testing.assert_allclose(xs, [0, 2, 4])
    np.testing.assert_allclose(prof, [5.0, 6.0, 8.0])
    ys, prof0 = m.profile(0)
    np.testing.assert_allclose(ys, [0, 4])
    np.testing.assert_allclose(prof0, [(0.5 * 0 + 1 + 0.5 * 2) / 2, (5 + 11 + 7) / 2])


# --------------------------------------------------------------- real frame


def test_real_frame_with_injected_gradient(real_dir):
    path = real_dir / "ccdproc_saao_single_frame" / "a8280271.fits"
    frame = fits.getdata(path).astype(np.float64)
    ny, nx = frame.shape
    med, sd = np.median(frame), mad_std(frame)
    smooth = ndimage.gaussian_filter(frame, 1.5)
    labels, n = ndimage.label(smooth > med + 3 * sd)
    idx = np.arange(1, n + 1)
    cy, cx = np.array(ndimage.center_of_mass(frame - med, labels, idx)).T
    flux = ndimage.sum(frame - med, labels, idx)
    mask = star_mask(frame.shape, cx, cy, flux, 4.0)
    assert 0.02 < mask.mean() < 0.4

    yy, xx = np.mgrid[0:ny, 0:nx]
    u, v = 2 * xx / (nx - 1) - 1, 2 * yy / (ny - 1) - 1
    grad = 0.2 * med * (0.4 * u - 0.3 * v + 0.5 * u * u - 0.2 * u * v + 0.3 * v * v) / 1.2
    grad -= grad.min()
    ref = background_bins(frame, bin_size=16, mask=mask)
    y, x = ref.mesh()
    # exact: (frame + G) - frame
    d = background_bins(frame + grad, bin_size=16, mask=mask).value - ref.value
    for method in ("spline", "poly"):
        rms, worst = _rms_error(fit_gradient(y, x, d, shape=frame.shape, method=method), grad)
        assert rms < 0.003 and worst < 0.01, (method, rms, worst)
    # scaled and noisier: target = frame / k + G + noise, D = k B_t - B_r -> k G
    k = 0.8
    tgt = frame / k + grad + np.random.default_rng(3).normal(0, sd, frame.shape)
    d = k * background_bins(tgt, bin_size=16, mask=mask).value - ref.value
    for method in ("spline", "poly"):
        rms, worst = _rms_error(fit_gradient(y, x, d, shape=frame.shape, method=method), k * grad)
        assert rms < 0.006 and worst < 0.02, (method, rms, worst)


# ------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    "call",
    [
        lambda: star_mask((5, 5), [1], [1], [1], 0.0),
        lambda: star_mask((5, 5), [1, 2], [1], [1], 2.0),
        lambda: star_mask((5, 5), [1], [1], [1], 2.0, step=0),
        lambda: background_bins(np.zeros(5), bin_size=2, mask=None),
        lambda: background_bins(np.zeros((4, 4)), bin_size=0, mask=None),
        lambda: background_bins(np.zeros((4, 4)), bin_size=2, mask=np.zeros((3, 4), bool)),
        lambda: background_bins(np.zeros((4, 4)), bin_size=2, mask=None, min_fraction=0),
        lambda: fit_gradient([1.0], [1.0], [np.nan], shape=(4, 4)),
        lambda: fit_gradient([1.0], [1.0], [1.0], shape=(4, 4), method="rbf"),
        lambda: fit_gradient([1.0], [1.0], [1.0], shape=(4, 4), smoothness=-1),
        lambda: fit_gradient([1.0], [1.0], [1.0], shape=(4, 4), method="poly", degree=9),
        lambda: fit_gradient([1.0, 2.0], [1.0], [1.0], shape=(4, 4)),
        lambda: GradientModel(grid=np.zeros((2, 2)), step_y=1.0, step_x=1.0).profile(2),
    ],
)
def test_bad_input_raises_parameter_error(call):
    with pytest.raises(ParameterError):
        call()


def test_bin_samples_mesh():
    b = BinSamples(np.array([1.0, 2.0]), np.array([5.0, 6.0, 7.0]), np.zeros((2, 3)),
                   np.zeros((2, 3), int), 4, 1)  # fmt: skip
    y, x = b.mesh()
    assert y.shape == x.shape == (2, 3) and y[1, 0] == 2.0 and x[0, 2] == 7.0


# ------------------------------------------------------- spline, background map


@pytest.mark.parametrize("smoothing", [0.0, 1e-4, 1e-2, 10.0])
def test_thin_plate_spline_equals_scipy_rbf(smoothing):
    """Same system as scipy's RBFInterpolator (thin_plate_spline, degree 2)."""
    from scipy.interpolate import RBFInterpolator

    from stackengine.normalize.spline import ThinPlateSpline

    rng = np.random.default_rng(12)
    pts = rng.random((200, 2)) * [0.6, 1.0]
    vals = rng.normal(size=200) + 4.0 * pts[:, 0] ** 2
    ref = RBFInterpolator(pts, vals, smoothing=smoothing, kernel="thin_plate_spline", degree=2)
    mine = ThinPlateSpline(pts, vals, smoothing)
    at = np.column_stack([rng.random(3000) * 0.7, rng.random(3000) * 1.1 - 0.05])
    np.testing.assert_allclose(mine(at), ref(at), rtol=0, atol=1e-8 * np.abs(ref(at)).max())


def _sep_background(img, mask=None):
    import sep

    return sep.Background(np.ascontiguousarray(img, dtype=np.float32), mask=mask, bw=64, bh=64,
                          fw=3, fh=3)  # fmt: skip


def test_background_map_follows_a_curved_sky_like_sep():
    """SExtractor's method (sep is the independent reference) on a curved sky with stars."""
    from stackengine.normalize.background import background_map

    rng = np.random.default_rng(21)
    shape, sigma = (700, 900), 10.0
    yy, xx = np.mgrid[0 : shape[0], 0 : shape[1]] / 900.0
    truth = 1000.0 + 200 * xx + 300 * yy**2 - 150 * xx * yy
    stars = sum(
        _moffat(shape, rng.uniform(0, 900), rng.uniform(0, 700), 10 ** rng.uniform(3, 5), 3.0, 3.0)
        for _ in range(120)
    )
    img = (truth + stars + rng.normal(0, sigma, shape)).astype(np.float32)
    back, rms = background_map(img)
    ref = _sep_background(img)
    assert back.shape == shape and back.dtype == np.float32
    assert rms == pytest.approx(ref.globalrms, rel=0.05)
    inner = (slice(64, -64), slice(64, -64))
    assert np.abs(back - ref.back())[inner].max() < 0.4 * sigma
    assert np.abs(back - truth)[inner].max() < 0.5 * sigma
    assert np.abs(back - truth).max() < 1.2 * sigma  # edges: continued, not bent
    # a linear sky (whole meshes) passes unchanged: the 3 x 3 median filter is continued
    # beyond the edges by point reflection, and the spline is linear beyond the centres
    yy, xx = np.mgrid[0:640, 0:896] / 900.0
    plane = 500.0 + 40 * xx - 25 * yy
    flat, rms0 = background_map(plane)
    np.testing.assert_allclose(flat, plane, atol=1e-3)
    assert rms0 == pytest.approx(np.std(plane[:64, :64]), rel=0.2)


def test_background_map_masks_nan_and_empty_images():
    from stackengine.normalize.background import background_map

    rng = np.random.default_rng(22)
    img = (800.0 + rng.normal(0, 5.0, (300, 400))).astype(np.float32)
    img[:, :90] = np.nan  # a registration border: meshes without data are filled
    mask = np.zeros(img.shape, bool)
    mask[100:160, 200:260] = True
    img[100:160, 200:260] = 1e6  # masked: must not matter
    back, rms = background_map(img, mask)
    assert np.isfinite(back).all()
    assert np.abs(back[:, 90:] - 800.0).max() < 2.0 and rms == pytest.approx(5.0, rel=0.1)
    empty, rms_empty = background_map(np.full((50, 60), np.nan))
    assert (empty == 0).all() and rms_empty == 0.0


def test_background_bins_exact_with_ties():
    rng = np.random.default_rng(23)
    img = rng.integers(0, 3, (96, 80)).astype(np.uint16)  # many equal values per bin
    mask = rng.random(img.shape) < 0.4
    b = background_bins(img, bin_size=16, mask=mask, min_fraction=0.1)
    for p in range(6):
        for q in range(5):
            blk = img[16 * p : 16 * p + 16, 16 * q : 16 * q + 16]
            use = ~mask[16 * p : 16 * p + 16, 16 * q : 16 * q + 16]
            assert b.value[p, q] == np.median(blk[use].astype(np.float64))
