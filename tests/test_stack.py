"""stack(): agreement with astropy, invariance to tiles and schedulers, parameter checks."""

from __future__ import annotations

import warnings

import dask
import numpy as np
import pytest
import xarray as xr
from astropy.io import fits
from astropy.stats import sigma_clip
from conftest import noisy_stack, unread_stack

import stackengine as se
from stackengine.errors import ParameterError


def _astropy(stack, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # astropy warns about NaN input
        return sigma_clip(stack.astype(np.float64), axis=0, **kw)


@pytest.mark.parametrize(
    "center,spread",
    [("median", "mad_std"), ("mean", "std"), ("median", "std"), ("mean", "mad_std")],
)
@pytest.mark.parametrize("lower,upper", [(3.0, 3.0), (2.0, 3.5)])
def test_maxiters1_equals_astropy(center, spread, lower, upper):
    data = noisy_stack(25, (41, 23), seed=7)
    res = se.stack(
        data,
        maxiters=1,
        center=center,
        spread=spread,
        sigma_lower=lower,
        sigma_upper=upper,
        memory_limit="64KiB",
    ).compute()
    ref = _astropy(
        data, maxiters=1, cenfunc=center, stdfunc=spread, sigma_lower=lower, sigma_upper=upper
    )
    np.testing.assert_array_equal(res["count"].values, ref.count(axis=0))
    expected = ref.mean(axis=0).filled(np.nan)
    np.testing.assert_allclose(res["image"].values, expected, rtol=2e-7, atol=0)
    assert res["image"].dtype == np.float32


def test_outputs_and_attrs():
    data = noisy_stack(10, (8, 9), seed=1)
    res = se.stack(data, combine="median", maxiters=None)
    assert set(res.data_vars) == {"image", "count", "rejected_low", "rejected_high", "noise"}
    assert res["image"].dims == ("y", "x")
    assert res["count"].dtype == np.int16  # 10 frames: int16 holds any count
    for key in (
        "reject",
        "sigma_lower",
        "sigma_upper",
        "maxiters",
        "center",
        "spread",
        "combine",
        "memory_limit",
        "n_frames",
        "stackengine_version",
    ):
        assert key in res.attrs
    assert res.attrs["maxiters"] is None and res.attrs["n_frames"] == 10
    res = res.compute()
    finite = np.isfinite(data).sum(axis=0)
    np.testing.assert_array_equal(res["count"] + res["rejected_low"] + res["rejected_high"], finite)


def test_all_missing_pixel_is_nan_with_count_zero():
    data = noisy_stack(6, (4, 5), seed=2, nan_frac=0.0)
    data[:, 1, 2] = np.nan
    data[:, 3, 0] = np.inf
    res = se.stack(data).compute()
    for y, x in ((1, 2), (3, 0)):
        assert np.isnan(res["image"].values[y, x])
        assert res["count"].values[y, x] == 0
        assert res["rejected_low"].values[y, x] == 0 and res["rejected_high"].values[y, x] == 0


def test_no_rejection_combines_plainly():
    data = noisy_stack(7, (6, 4), seed=5)
    for combine, func in (
        ("mean", np.nanmean),
        ("median", np.nanmedian),
        ("sum", np.nansum),
        ("min", np.nanmin),
        ("max", np.nanmax),
    ):
        res = se.stack(data, reject=None, combine=combine).compute()
        np.testing.assert_allclose(
            res["image"].values, func(data.astype(np.float64), axis=0), rtol=1e-6
        )


@pytest.mark.parametrize("tile", [(1, 1), (3, 7), (5, 33), (45, 33), (17, 4)])
def test_same_bits_for_any_tile_size(fits_frames, tile):
    paths, _ = fits_frames
    ref = se.stack(se.open_frames(paths, chunks=(45, 33)), maxiters=None).compute(scheduler="sync")
    res = se.stack(se.open_frames(paths, chunks=tile), maxiters=None, memory_limit="1GiB").compute(
        scheduler="sync"
    )
    # tile planning in stack() follows memory_limit; force the tile through chunks too
    arr = se.open_frames(paths, chunks=tile)
    res2 = se.stack(arr.data.rechunk((-1, *tile)), maxiters=None).compute(scheduler="sync")
    for name in ref.data_vars:
        np.testing.assert_array_equal(res[name].values, ref[name].values)
        np.testing.assert_array_equal(res2[name].values, ref[name].values)


@pytest.mark.parametrize("memory_limit", ["2KiB", "37KiB", "1MiB"])
def test_same_bits_for_any_memory_limit(fits_frames, memory_limit):
    paths, data = fits_frames
    ref = se.stack(data, maxiters=5).compute(scheduler="sync")
    res = se.stack(se.open_frames(paths), maxiters=5, memory_limit=memory_limit)
    assert res["image"].data.numblocks[0] >= 1
    res = res.compute(scheduler="threads")
    for name in ref.data_vars:
        np.testing.assert_array_equal(res[name].values, ref[name].values)


@pytest.mark.parametrize("scheduler", ["sync", "threads", "processes"])
def test_same_bits_for_any_scheduler(fits_frames, scheduler):
    paths, _ = fits_frames
    ref = se.stack(se.open_frames(paths), memory_limit="8KiB").compute(scheduler="sync")
    with dask.config.set(num_workers=2):
        res = se.stack(se.open_frames(paths), memory_limit="8KiB").compute(scheduler=scheduler)
    for name in ref.data_vars:
        np.testing.assert_array_equal(res[name].values, ref[name].values)


def test_rgb_channels_stack_independently():
    rng = np.random.default_rng(4)
    data = rng.normal(50, 3, (9, 10, 11, 3)).astype(np.float32)
    data[2, 4, 5, 1] = 1e4
    res = se.stack(xr.DataArray(data, dims=("frame", "y", "x", "channel"))).compute()
    assert res["image"].dims == ("y", "x", "channel")
    for c in range(3):
        single = se.stack(data[..., c]).compute()
        np.testing.assert_array_equal(res["image"].values[..., c], single["image"].values)
    assert res["rejected_high"].values[4, 5, 1] >= 1


def test_weights_array_weighted_mean():
    # ccdproc's documented example: weights 1, 5, 10 on frames 0, -1000, +1000 -> 312.5
    data = np.stack([np.full((2, 3), v, np.float32) for v in (0.0, -1000.0, 1000.0)])
    res = se.stack(data, reject=None, weights=[1, 5, 10]).compute()
    np.testing.assert_allclose(res["image"].values, 312.5)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(reject="bogus"), "unknown rejection"),
        (dict(sigma_lower=-1), "sigma_lower"),
        (dict(sigma_upper=float("nan")), "sigma_upper"),
        (dict(maxiters=0), "maxiters"),
        (dict(center="mode"), "center"),
        (dict(spread="iqr"), "spread"),
        (dict(combine="average"), "combine"),
        (dict(weights=[1, 2]), "weights"),
        (dict(weights=[1.0] * 5 + [-1.0]), "weights"),
        (dict(weights=[1.0] * 6, combine="median"), "combine='mean'"),
        (dict(memory_limit="lots"), "memory_limit"),
        (dict(normalize="sideways"), "normalize"),
    ],
)
def test_bad_parameters_raise_before_reading(kwargs, match):
    lazy, calls = unread_stack()
    with pytest.raises(ParameterError, match=match):
        se.stack(lazy, **kwargs)
    assert not calls


def test_rejection_needs_two_frames():
    with pytest.raises(ParameterError, match="at least 2 frames"):
        se.stack(np.ones((1, 4, 4), np.float32))
    res = se.stack(np.ones((1, 4, 4), np.float32), reject=None).compute()
    assert np.all(res["image"].values == 1)


@pytest.mark.parametrize("strip_bytes", [1, 5000, 2**30])
def test_read_in_tile_tasks_equals_in_memory_blocks(tmp_path, monkeypatch, strip_bytes):
    """Files are read strip by strip inside each tile task; the same frames given in
    memory go block by block. Strips of one row, ragged strips, one strip per tile:
    the same bits, also with a normalization and for RGB."""
    import tifffile

    from stackengine.tasks import tile as tiles

    monkeypatch.setattr(tiles, "STRIP_BYTES", strip_bytes)
    monkeypatch.setattr(tiles, "MIN_READ_BYTES", 1)  # allow strips of one row
    rng = np.random.default_rng(11)
    grey = rng.normal(500.0, 20.0, (7, 37, 29)).astype(np.float32)
    grey[rng.random(grey.shape) < 0.02] = 5000.0
    grey *= rng.uniform(0.8, 1.2, (7, 1, 1)).astype(np.float32)
    paths = []
    for i, frame in enumerate(grey):
        paths.append(tmp_path / f"g{i}.fits")
        fits.PrimaryHDU(frame).writeto(paths[-1])
    rgb = rng.integers(0, 60000, (5, 21, 17, 3), dtype=np.uint16)
    rgb_paths = []
    for i, frame in enumerate(rgb):
        rgb_paths.append(tmp_path / f"c{i}.tif")
        tifffile.imwrite(rgb_paths[-1], frame, photometric="rgb", rowsperstrip=4)
    cases = [
        (paths, dict(reject="sigma", memory_limit="60KiB")),
        (paths, dict(reject="linear_fit", normalize="additive+scale", memory_limit="60KiB")),
        (rgb_paths, dict(reject="winsorized", combine="median", memory_limit="20KiB")),
    ]
    for files, kw in cases:
        lazy = se.open_frames(files)
        from_files = se.stack(lazy, **kw).compute()
        in_memory = se.stack(lazy.compute(), **kw).compute()
        assert from_files["image"].data.shape == in_memory["image"].data.shape
        for name in ("image", "count", "rejected_low", "rejected_high", "noise"):
            np.testing.assert_array_equal(from_files[name].values, in_memory[name].values)
        assert int(from_files["count"].min()) >= 1


def test_count_maps_are_int16_up_to_32767_frames():
    from stackengine.stack import count_dtype

    assert count_dtype(2) == np.int16 and count_dtype(32767) == np.int16
    assert count_dtype(32768) == np.int32  # a count of 32768 would wrap in int16
    assert np.iinfo(np.int16).max == 32767
    res = se.stack(noisy_stack(5, (4, 4), seed=3)).compute()
    for name in ("count", "rejected_low", "rejected_high"):
        assert res[name].dtype == np.int16
    assert int(res["count"].max()) <= 5


def test_a_normalized_stack_keeps_its_noise_map_beside_the_frames_noise(tmp_path):
    """The per-frame measured noise is "frame_noise": it used to replace the stack's
    per-pixel "noise" output, which then went missing from the written file."""
    from astropy.io import fits

    data = np.random.default_rng(3).normal(100, 5, (5, 20, 20)).astype(np.float32)
    ds = se.stack(data, normalize="additive+scale")
    assert ds["noise"].dims == ("y", "x") and ds["frame_noise"].dims == ("frame",)
    se.write(ds, tmp_path / "n.fits")
    with fits.open(tmp_path / "n.fits") as hdul:
        assert "NOISE" in [h.name for h in hdul]
        np.testing.assert_array_equal(hdul["NOISE"].data, ds["noise"].values)
