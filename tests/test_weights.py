"""Frame weights (weights=...) and the per-frame measure pass (pass 1)."""

from __future__ import annotations

import os

import numpy as np
import pytest
import tifffile
import xarray as xr
import zarr
from astropy.io import fits
from astropy.nddata import CCDData
from astropy.stats import mad_std

import stackengine as se
from stackengine.errors import ParameterError
from stackengine.io.fits import FitsFrame
from stackengine.normalize.measure import clear_cache, measure_frames, sampled_strips
from stackengine.weights import frame_weights

rng = np.random.default_rng(20240611)


def write_fits(tmp_path, data, headers):
    paths = []
    for i, (frame, header) in enumerate(zip(data, headers, strict=True)):
        path = tmp_path / f"w{i:02d}.fits"
        fits.PrimaryHDU(frame, header=fits.Header(header)).writeto(path)
        paths.append(path)
    return paths


@pytest.fixture
def count_reads(monkeypatch):
    """Count pixel reads of FITS frames (optionally failing them); every
    uncompressed read, in place or not, goes through FitsFrame._read_rows."""
    calls: list[str] = []
    calls_fail: list[bool] = []
    original = FitsFrame._read_rows

    def counting(self, raw, y0, fh=None):
        calls.append(self.path)
        if calls_fail:
            raise AssertionError("pixel data was read")
        return original(self, raw, y0, fh)

    monkeypatch.setattr(FitsFrame, "_read_rows", counting)
    return calls, calls_fail


def synthetic_sky(sigma, shape=(256, 256), *, seed=0, n_stars=40):
    """Gaussian noise on a strong gradient with stars and cosmic rays."""
    r = np.random.default_rng(seed)
    h, w = shape
    yy, xx = np.mgrid[:h, :w]
    sky = (
        1000
        + 3000 * xx / w
        + 2000 * yy / h
        + 400 * ((xx - w / 2) ** 2 + (yy - h / 2) ** 2) / (w / 2) ** 2
    )
    for _ in range(n_stars):
        y0, x0 = r.uniform(0, h), r.uniform(0, w)
        s = r.uniform(1.5, 3.0) / 2.355
        sky += r.uniform(100, 5000) * np.exp(-((yy - y0) ** 2 + (xx - x0) ** 2) / (2 * s * s))
    hits = r.random(shape) < 0.005
    sky[hits] += r.uniform(500, 5000, hits.sum())
    return sky + r.normal(0.0, sigma, shape)


# ---------------------------------------------------------------- array weights


def test_array_weights_ccdproc_example():
    import ccdproc

    data = np.stack([np.full((2, 3), v, np.float32) for v in (0.0, -1000.0, 1000.0)])
    w = frame_weights([1, 5, 10], xr.DataArray(data, dims=("frame", "y", "x")))
    assert w.dtype == np.float64 and w.tolist() == [1.0, 5.0, 10.0]
    combiner = ccdproc.Combiner([CCDData(f.astype(np.float64), unit="adu") for f in data])
    combiner.weights = np.array([1.0, 5.0, 10.0])
    expected = combiner.average_combine().data
    np.testing.assert_array_equal(expected, 312.5)
    res = se.stack(data, reject=None, weights=[1, 5, 10]).compute()
    np.testing.assert_allclose(res["image"].values, expected)
    assert frame_weights(None, xr.DataArray(data, dims=("frame", "y", "x"))) is None


@pytest.mark.parametrize(
    "spec,match",
    [
        ([1.0, 2.0], "expected 3 values"),
        ([[1.0, 2.0, 3.0]], "expected 3 values"),
        ([1.0, -2.0, 3.0], "frame 1: weights: weight -2 is negative"),
        ([1.0, np.nan, 3.0], "frame 1: weights: weight is nan"),
        ([1.0, np.inf, 3.0], "frame 1: weights: weight is inf"),
        ([0, 0, 0], "all weights are zero"),
        (["a", "b", "c"], "expected numbers"),
        ("heavy", "unknown weighting"),
        ("keyword:", "expected a header keyword"),
        ("keyword:NWEIGHT", "no headers and no 'NWEIGHT' coordinate"),
    ],
)
def test_weight_errors_in_memory(spec, match):
    frames = xr.DataArray(np.ones((3, 4, 5), np.float32), dims=("frame", "y", "x"))
    with pytest.raises(ParameterError, match=match):
        frame_weights(spec, frames)


# ---------------------------------------------------------------- header weights


def test_exptime_weights_from_fits(tmp_path, count_reads):
    data = rng.normal(100, 5, (4, 6, 7)).astype(np.float32)
    times = [30.0, 60.0, 120.0, 15.0]
    headers = [{"EXPTIME": t} for t in times[:3]] + [{"EXPOSURE": times[3]}]
    frames = se.open_frames(write_fits(tmp_path, data, headers))
    calls, fail = count_reads
    fail.append(True)
    w = frame_weights("exptime", frames)
    assert w.tolist() == times and not calls
    fail.clear()
    res = se.stack(frames, reject=None, weights="exptime").compute()
    expected = np.average(data.astype(np.float64), axis=0, weights=times)
    np.testing.assert_allclose(res["image"].values, expected, rtol=1e-6)
    np.testing.assert_array_equal(res["weight"].values, times)


@pytest.mark.parametrize(
    "headers,match",
    [
        ([{"EXPTIME": 30.0}, {}, {"EXPTIME": 10.0}], r"w01\.fits: weights='exptime': no numeric"),
        ([{}, {}, {}], r"w00\.fits: weights='exptime': no EXPTIME or EXPOSURE"),
        ([{"EXPTIME": 30.0}, {"EXPTIME": 0.0}, {"EXPTIME": 1.0}], r"w01\.fits: .* 0 is not > 0"),
        ([{"EXPTIME": 3.0}, {"EXPTIME": 1.0}, {"EXPTIME": -1.0}], r"w02\.fits: .* -1 is not > 0"),
    ],
)
def test_exptime_errors_name_the_file(tmp_path, headers, match, count_reads):
    frames = se.open_frames(write_fits(tmp_path, np.ones((3, 4, 4), np.float32), headers))
    calls, fail = count_reads
    fail.append(True)
    with pytest.raises(ParameterError, match=match):
        frame_weights("exptime", frames)
    assert not calls


def test_keyword_weights_from_full_fits_header(tmp_path, count_reads):
    data = rng.normal(1000, 20, (5, 9, 8)).astype(np.float32)
    data[2, 3, 4] = 5000.0  # an outlier the weighted mean keeps (reject=None)
    nweight = [0.5, 1.25, 2.0, 0.75, 1.0]
    # NWEIGHT is not among the keys open_frames copies: it must come from the full header
    headers = [{"NWEIGHT": v, "OBJECT": "M42"} for v in nweight]
    frames = se.open_frames(write_fits(tmp_path, data, headers))
    assert "NWEIGHT" not in frames.coords
    calls, fail = count_reads
    fail.append(True)
    w = frame_weights("keyword:NWEIGHT", frames)
    assert w.tolist() == nweight and not calls
    assert frame_weights("keyword:nweight", frames).tolist() == nweight  # FITS: case-insensitive
    fail.clear()
    expected = np.average(data.astype(np.float64), axis=0, weights=nweight)
    by_array = se.stack(frames, reject=None, weights=w).compute()
    np.testing.assert_allclose(by_array["image"].values, expected, rtol=1e-6)
    by_name = se.stack(frames, reject=None, weights="keyword:NWEIGHT").compute()
    np.testing.assert_allclose(by_name["image"].values, expected, rtol=1e-6)


@pytest.mark.parametrize(
    "values,match",
    [
        ([1.0, None, 2.0], r"w01\.fits: weights='keyword:NWEIGHT': no NWEIGHT keyword"),
        ([1.0, 2.0, "heavy"], r"w02\.fits: .*NWEIGHT = 'heavy' is not a number"),
        ([1.0, True, 2.0], r"w01\.fits: .*NWEIGHT = True is not a number"),
        ([1.0, -0.5, 2.0], r"w01\.fits: weights='keyword:NWEIGHT': weight -0.5 is negative"),
        ([0.0, 0.0, 0.0], r"all weights are zero"),
    ],
)
def test_keyword_errors_name_file_and_keyword(tmp_path, values, match, count_reads):
    headers = [{} if v is None else {"NWEIGHT": v} for v in values]
    frames = se.open_frames(write_fits(tmp_path, np.ones((3, 4, 4), np.float32), headers))
    calls, fail = count_reads
    fail.append(True)
    with pytest.raises(ParameterError, match=match):
        frame_weights("keyword:NWEIGHT", frames)
    assert not calls


def test_keyword_weights_from_zarr_attrs(tmp_path):
    paths = []
    for i, v in enumerate([2.0, 3.0]):
        arr = zarr.create_array(tmp_path / f"z{i}.zarr", shape=(4, 5), dtype="f4", chunks=(2, 5))
        arr[:] = float(i)
        arr.attrs["nweight"] = v
        paths.append(tmp_path / f"z{i}.zarr")
    frames = se.open_frames(paths)
    assert frame_weights("keyword:NWEIGHT", frames).tolist() == [2.0, 3.0]
    with pytest.raises(ParameterError, match=r"z0\.zarr: weights='keyword:GAIN': no GAIN keyword"):
        frame_weights("keyword:GAIN", frames)


def test_keyword_weights_refuse_tiff(tmp_path):
    paths = [tmp_path / f"t{i}.tif" for i in range(2)]
    for p in paths:
        tifffile.imwrite(p, np.zeros((4, 4), np.uint16))
    frames = se.open_frames(paths)
    with pytest.raises(ParameterError, match=r"t0\.tif: .*TIFF files have no header keywords"):
        frame_weights("keyword:NWEIGHT", frames)


def test_keyword_from_coordinate_of_in_memory_frames():
    frames = xr.DataArray(np.ones((3, 4, 4)), dims=("frame", "y", "x"))
    frames = frames.assign_coords(nweight=("frame", [1.0, 2.0, 4.0]))
    assert frame_weights("keyword:NWEIGHT", frames).tolist() == [1.0, 2.0, 4.0]


# ---------------------------------------------------------------- measure pass


def test_measure_full_frames_equal_numpy_and_astropy():
    data = rng.normal(50.0, 3.0, (5, 40, 30)).astype(np.float32)
    data[rng.random(data.shape) < 0.05] = np.nan
    data[1, 5, 5] = np.inf
    res = measure_frames(xr.DataArray(data, dims=("frame", "y", "x")))
    assert res["location"].dims == ("frame",) and res["location"].dtype == np.float64
    for k, frame in enumerate(data.astype(np.float64)):
        finite = frame[np.isfinite(frame)]
        assert res["location"].values[k] == np.median(finite)
        assert res["scale"].values[k] == mad_std(finite)
        assert res["n_pixels"].values[k] == finite.size


def test_measure_rgb_per_channel():
    data = rng.normal(0.0, 1.0, (3, 32, 48, 3)) * [2.0, 5.0, 11.0] + [10.0, 200.0, 3000.0]
    res = measure_frames(xr.DataArray(data, dims=("frame", "y", "x", "channel")))
    assert res["location"].dims == ("frame", "channel") and res["noise"].shape == (3, 3)
    for k in range(3):
        for c in range(3):
            assert res["location"].values[k, c] == np.median(data[k, ..., c])
            assert res["scale"].values[k, c] == mad_std(data[k, ..., c])
    np.testing.assert_allclose(res["noise"].values, np.tile([2.0, 5.0, 11.0], (3, 1)), rtol=0.06)


def test_sampled_strips_hand_worked():
    # all rows: strips of about 1 Mpixel, full width
    assert sampled_strips(100, 30) == [(0, 100)]
    assert sampled_strips(2048, 2048) == [(0, 512), (512, 1024), (1024, 1536), (1536, 2048)]
    # 30 of 300 rows, single-row storage unit: rows 5, 15, ..., 295
    assert sampled_strips(300, 50, sample_rows=30) == [(y, y + 1) for y in range(5, 300, 10)]
    # default for a 16 Mpixel frame: 4 Mpixel = 1024 rows in 64 strips of 16 rows
    strips = sampled_strips(4096, 4096)
    assert len(strips) == 64 and all(b - a == 16 for a, b in strips)
    assert strips[0] == (32, 48) and strips[1] == (96, 112) and strips[-1] == (4064, 4080)
    # a tiled source: whole tile rows only
    assert sampled_strips(9000, 9000, block_rows=256) == [(2304, 2560), (6912, 7168)]


def test_measure_sampled_rows_from_fits(tmp_path):
    data = rng.normal(500.0, 10.0, (3, 300, 50)).astype(np.float32)
    data[:, 5] += 1000.0  # a bright sampled row shifts the sampled median
    frames = se.open_frames(write_fits(tmp_path, data, [{}] * 3))
    res = measure_frames(frames, sample_rows=30)
    rows = np.arange(5, 300, 10)
    np.testing.assert_array_equal(res["path"].values, frames["path"].values)
    for k in range(3):
        sample = data[k, rows].astype(np.float64)
        assert res["location"].values[k] == np.median(sample)
        assert res["scale"].values[k] == mad_std(sample)
        assert res["n_pixels"].values[k] == sample.size == 30 * 50


@pytest.mark.parametrize("sigma", [3.0, 10.0])
@pytest.mark.parametrize("integer", [False, True])
def test_noise_estimate_ignores_gradient_stars_and_cosmics(sigma, integer):
    frames = np.stack([synthetic_sky(sigma, seed=s) for s in range(3)])
    true = sigma
    if integer:  # uint16 data: the noise includes quantization (1/12 ADU^2)
        frames = np.round(frames).astype(np.uint16)
        true = np.sqrt(sigma**2 + 1 / 12)
    res = measure_frames(xr.DataArray(frames, dims=("frame", "y", "x")))
    np.testing.assert_allclose(res["noise"].values, true, rtol=0.04)
    # the plain spread of the pixels is dominated by the gradient, not the noise
    assert np.all(res["scale"].values > 50 * sigma)


def test_measure_cache_no_second_read(tmp_path, count_reads):
    data = rng.normal(100.0, 4.0, (4, 20, 30)).astype(np.float32)
    paths = write_fits(tmp_path, data, [{}] * 4)
    frames = se.open_frames(paths)
    clear_cache()
    calls, _ = count_reads
    first = measure_frames(frames)
    assert sorted(set(calls)) == sorted(str(p) for p in paths)
    n_first = len(calls)
    again = measure_frames(se.open_frames(paths))
    assert len(calls) == n_first  # nothing read again
    xr.testing.assert_identical(first, again)
    # rewrite one file: only that frame is read again, and its values change
    fits.PrimaryHDU(data[2] + 50.0).writeto(paths[2], overwrite=True)
    st = os.stat(paths[2])
    os.utime(paths[2], ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    third = measure_frames(se.open_frames(paths))
    assert set(calls[n_first:]) == {str(paths[2])}
    assert third["location"].values[2] == np.median(data[2].astype(np.float64) + 50.0)
    np.testing.assert_array_equal(third["location"].values[[0, 1, 3]], first["location"][[0, 1, 3]])


# ---------------------------------------------------------------- noise weights


def alternating_noise_frames(n=20, shape=(64, 64), seed=11):
    r = np.random.default_rng(seed)
    sigmas = np.where(np.arange(n) % 2 == 0, 4.0, 24.0)
    data = 100.0 + r.normal(0.0, 1.0, (n, *shape)) * sigmas[:, None, None]
    return data.astype(np.float32), sigmas


def test_noise_weights_are_inverse_variance():
    data, sigmas = alternating_noise_frames()
    w = frame_weights("noise", xr.DataArray(data, dims=("frame", "y", "x")))
    np.testing.assert_allclose(w, 1.0 / sigmas**2, rtol=0.08)
    # normalization by a factor k scales the noise: weights 1 / (k noise)^2
    k = np.linspace(0.5, 2.0, len(sigmas))
    ws = frame_weights("noise", xr.DataArray(data, dims=("frame", "y", "x")), scale=k)
    np.testing.assert_allclose(ws, w / k**2, rtol=1e-12)
    rgb = np.stack([data, 2 * data, 3 * data], axis=-1)
    w_rgb = frame_weights("noise", xr.DataArray(rgb, dims=("frame", "y", "x", "channel")))
    np.testing.assert_allclose(w_rgb, w / np.mean([1.0, 4.0, 9.0]), rtol=1e-5)


def test_noise_weights_reject_constant_frames():
    data = np.ones((3, 8, 8), np.float32)
    data[1] += rng.normal(0, 1, (8, 8))
    with pytest.raises(ParameterError, match="frame 0: weights='noise': measured noise is 0"):
        frame_weights("noise", xr.DataArray(data, dims=("frame", "y", "x")))


def rms_error(result, truth=100.0):
    return float(np.sqrt(np.mean((result["image"].values.astype(np.float64) - truth) ** 2)))


@pytest.mark.parametrize("reject", [None, "sigma"])
def test_noise_weighting_beats_plain_mean(reject):
    """Issue 3: frames alternating noise 4 and 24, weighted by 'noise', have a clearly
    smaller error than the unweighted mean, close to the inverse-variance optimum."""
    data, sigmas = alternating_noise_frames()
    ideal = 1.0 / np.sqrt(np.sum(1.0 / sigmas**2))  # 1.25
    plain_mean = rms_error(se.stack(data, reject=None))  # about sqrt(mean(sigma^2) / n) = 3.85
    assert plain_mean == pytest.approx(np.sqrt(np.mean(sigmas**2) / len(sigmas)), rel=0.05)
    plain = rms_error(se.stack(data, reject=reject))
    weighted = se.stack(data, reject=reject, weights="noise").compute()
    rms = rms_error(weighted)
    assert rms < 0.5 * plain_mean
    # sigma clipping alone already trims the noisy frames' tails (3.85 -> 2.4 here)
    assert rms < (0.5 if reject is None else 0.6) * plain
    assert rms == pytest.approx(ideal, rel=0.1)
    np.testing.assert_allclose(weighted["weight"].values, 1.0 / sigmas**2, rtol=0.08)
