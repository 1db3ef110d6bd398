"""Global normalizations: DESIGN.md's formulas, reference choice, per-frame outputs."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr
from astropy.io import fits
from astropy.stats import mad_std

import stackengine as se
from stackengine.errors import ParameterError

MAD = 1.482602218505602


def _frames(n=5, shape=(40, 36), seed=0):
    rng = np.random.default_rng(seed)
    base = rng.normal(100.0, 5.0, shape)
    frames = [base * (1 + 0.15 * i) + 25.0 * i + rng.normal(0, 1, shape) for i in range(n)]
    return np.stack(frames).astype(np.float32)


def _by_formula(mode, x, ref):
    """DESIGN.md's formulas, written out with numpy and astropy's mad_std."""
    x = x.astype(np.float64)
    flat = x.reshape(len(x), -1)
    m = np.median(flat, axis=1)[:, None, None]
    s = mad_std(flat, axis=1)[:, None, None]
    if mode == "additive":
        return x - m + m[ref]
    if mode == "multiplicative":
        return x * m[ref] / m
    if mode == "additive+scale":
        return (x - m) * s[ref] / s + m[ref]
    return (x / m) * (s[ref] / s) * m[ref]


@pytest.mark.parametrize(
    "mode", ["additive", "multiplicative", "additive+scale", "multiplicative+scale"]
)
@pytest.mark.parametrize("ref", [0, 3])
def test_simple_modes_equal_design_formulas(mode, ref):
    data = _frames()
    expected = _by_formula(mode, data, ref)
    res = se.stack(data, normalize=mode, reference=ref, reject=None).compute()
    np.testing.assert_allclose(res["image"].values, expected.mean(axis=0), rtol=1e-6)
    normalized, table = se.normalize(data, mode, reference=ref)
    np.testing.assert_allclose(normalized.values, expected, rtol=1e-6)
    assert table.attrs["reference"] == ref and table["scale"].values[ref] == 1.0
    assert res["scale"].dims == ("frame",) and res.attrs["reference_frame"] == ref


def test_normalization_is_used_for_rejection():
    # frame 2 is brighter by 300: without normalization its values are "outliers"
    rng = np.random.default_rng(2)
    base = rng.normal(100.0, 5.0, (40, 36))
    data = np.stack([base + rng.normal(0, 1, base.shape) for _ in range(8)]).astype(np.float32)
    data[2] += 300.0
    plain = se.stack(data, reject="sigma").compute()
    norm = se.stack(data, reject="sigma", normalize="additive").compute()
    assert plain["rejected_high"].values.mean() > 0.9  # frame 2 clipped nearly everywhere
    assert norm["rejected_high"].values.mean() < 0.4  # ordinary noise clipping only


def test_tile_size_does_not_change_normalized_result(tmp_path):
    data = _frames(6, (50, 30), seed=4)
    paths = []
    for i, frame in enumerate(data):
        paths.append(tmp_path / f"f{i}.fits")
        fits.PrimaryHDU(frame).writeto(paths[-1])
    ref = se.stack(se.open_frames(paths), normalize="additive+scale").compute()
    for limit in ("3KiB", "50KiB"):
        res = se.stack(se.open_frames(paths), normalize="additive+scale", memory_limit=limit)
        res = res.compute()
        np.testing.assert_array_equal(res["image"].values, ref["image"].values)


def test_reference_by_path_and_automatic(tmp_path):
    data = _frames(4, seed=5)[::-1]  # frame 3 now has the darkest background
    paths = []
    for i, frame in enumerate(data):
        paths.append(tmp_path / f"f{i}.fits")
        fits.PrimaryHDU(frame).writeto(paths[-1])
    frames = se.open_frames(paths)
    assert se.stack(frames, normalize="additive").attrs["reference_frame"] == 3
    assert se.stack(frames, normalize="additive", reference="f1.fits").attrs["reference_frame"] == 1
    assert (
        se.stack(frames, normalize="additive", reference=str(paths[2])).attrs["reference_frame"]
        == 2
    )
    with pytest.raises(ParameterError, match="no frame has this path"):
        se.stack(frames, normalize="additive", reference="other.fits")
    with pytest.raises(ParameterError, match="only 4 frames"):
        se.stack(frames, normalize="additive", reference=4)


def test_rgb_normalized_per_channel():
    rng = np.random.default_rng(6)
    base = rng.normal(100, 5, (20, 24, 3))
    gains = np.array([[1.0, 1.0, 1.0], [1.2, 0.8, 1.5], [0.9, 1.3, 0.7]])
    data = np.stack([base * g for g in gains]).astype(np.float32)
    res = se.stack(data, normalize="multiplicative", reference=0, reject=None).compute()
    assert res["scale"].dims == ("frame", "channel")
    np.testing.assert_allclose(res["scale"].values, 1 / gains, rtol=1e-6)
    np.testing.assert_allclose(res["image"].values, base, rtol=1e-5)


def test_photometric_weights_follow_scaled_noise():
    rng = np.random.default_rng(7)
    sky = np.full((64, 64), 100.0)
    # frame i: half the signal (scale 2 needed) or the same signal, equal raw noise 4
    data = np.stack([sky / (1 + i % 2) + rng.normal(0, 4, sky.shape) for i in range(4)])
    res = se.stack(
        data.astype(np.float32),
        normalize="multiplicative",
        reference=0,
        weights="photometric",
        reject=None,
    ).compute()
    # noise after normalization doubles for the odd frames: weight (1/2)^2
    np.testing.assert_allclose(res["weight"].values, [1, 0.25, 1, 0.25], rtol=0.08)


def test_errors_before_reading_and_bad_frames():
    data = _frames(3)
    with pytest.raises(ParameterError, match="unknown normalization"):
        se.stack(data, normalize="sideways")
    with pytest.raises(ParameterError, match="smoothness"):
        se.stack(data, normalize="photometric", smoothness=-1)
    with pytest.raises(ParameterError, match="needs a normalization"):
        se.stack(data, weights="photometric")
    zero = data.copy()
    zero[1] = 0.0
    with pytest.raises(ParameterError, match="frame 1.*median"):
        se.stack(zero, normalize="multiplicative")


# ---------------------------------------------------------------- pass-1 kernels


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.uint16])
@pytest.mark.parametrize("size", [1, 8, 1001, 50_001, 300_001])
def test_median_of_equals_numpy(dtype, size):
    """Exact medians (and absolute deviations) of the finite values, any size; from
    32768 values on a sample brackets the median first."""
    from stackengine.normalize.fast import median_of

    rng = np.random.default_rng(size)
    x = rng.normal(1000.0, 30.0, size).astype(dtype)
    if np.dtype(dtype).kind == "f" and size > 8:
        x[::97] = np.nan
        x[5::101] = np.inf
        x[7::103] = -np.inf
    finite = x[np.isfinite(x)].astype(np.float64)
    med, n = median_of(x)
    assert n == finite.size and med == np.median(finite)
    mad, _ = median_of(x, med)
    assert mad == np.median(np.abs(finite - med))
    assert median_of(x, 990.5)[0] == np.median(np.abs(finite - 990.5))


def test_median_of_with_ties_and_no_data():
    from stackengine.normalize.fast import median_of

    rng = np.random.default_rng(1)
    ties = rng.integers(0, 3, 400_000).astype(np.float32)  # the bracket cannot split ties
    assert median_of(ties)[0] == np.median(ties.astype(np.float64))
    assert median_of(ties, 1.0)[0] == np.median(np.abs(ties - 1.0))
    nothing = np.full(10, np.nan)
    med, n = median_of(nothing)
    assert np.isnan(med) and n == 0


def test_measure_large_sample_equals_numpy_and_astropy():
    """Above 4 x 65536 pixels the medians are bracketed: still exactly numpy's median
    and astropy's mad_std; the noise ignores a strong gradient."""
    from stackengine.normalize.measure import measure_frames

    rng = np.random.default_rng(8)
    yy, xx = np.mgrid[0:700, 0:600]
    frames = np.stack(
        [2000.0 + 3.0 * xx + 0.5 * yy + rng.normal(0, 7.0 + k, (700, 600)) for k in range(2)]
    ).astype(np.float32)
    frames[0, 100:120] = np.nan
    res = measure_frames(xr.DataArray(frames, dims=("frame", "y", "x")))
    for k in range(2):
        finite = frames[k][np.isfinite(frames[k])].astype(np.float64)
        assert res["location"].values[k] == np.median(finite)
        assert res["scale"].values[k] == mad_std(finite)
        assert res["n_pixels"].values[k] == finite.size
    np.testing.assert_allclose(res["noise"].values, [7.0, 8.0], rtol=0.03)


@pytest.mark.parametrize("b", [1, 2, 3])
def test_block_sum_equals_reshape_sum(b):
    from stackengine.normalize.fast import block_sum

    rng = np.random.default_rng(b)
    a = rng.normal(100.0, 10.0, (37, 41, 2)).astype(np.float32)
    h, w = 37 // b * b, 41 // b * b
    want = a[:h, :w].astype(np.float64).reshape(h // b, b, w // b, b, 2).sum(axis=(1, 3))
    got = block_sum(a, b)
    assert got.dtype == np.float32 and got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-6)
    np.testing.assert_array_equal(block_sum(a[..., 0], b)[..., 0], got[..., 0])
