"""Real frames from ../shared/data/real stacked through the CLI agree with astropy."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import tifffile
import xarray as xr
from astropy.io import fits
from astropy.stats import sigma_clip

from stackengine.cli import main


def _m13(real_dir):
    return sorted((real_dir / "astropy_data_M13_blue").glob("M13_blue_*.fits"))


def _naco(real_dir):
    return [real_dir / "vip_naco_betapic_cube" / "naco_betapic_cube.fits"]


def _astropy_reference(stack, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        clipped = sigma_clip(stack.astype(np.float64), axis=0, maxiters=1, **kw)
    return clipped.mean(axis=0).filled(np.nan), clipped.count(axis=0)


@pytest.mark.parametrize("dataset", ["m13", "naco"])
@pytest.mark.parametrize("suffix", [".fits", ".zarr", ".tif"])
@pytest.mark.parametrize("center,spread", [("median", "mad_std"), ("mean", "std")])
def test_real_frames_through_cli_agree_with_astropy(
    real_dir, tmp_path, dataset, suffix, center, spread
):
    paths = _m13(real_dir) if dataset == "m13" else _naco(real_dir)
    if dataset == "m13":
        assert len(paths) == 5
        stack = np.stack([fits.getdata(p) for p in paths])
    else:
        stack = fits.getdata(paths[0])
        assert stack.shape[0] == 61
    out = tmp_path / f"result{suffix}"
    code = main(
        [
            "stack",
            *map(str, paths),
            "-o",
            str(out),
            "--maxiters",
            "1",
            "--center",
            center,
            "--spread",
            spread,
            "--memory-limit",
            "4MiB",
        ]
    )
    assert code == 0
    image, count = _astropy_reference(stack, cenfunc=center, stdfunc=spread)
    if suffix == ".fits":
        with fits.open(out) as hdul:
            got_image = hdul[0].data
            got_count = hdul["COUNT"].data
            assert hdul[0].header["NCOMBINE"] == stack.shape[0]
    elif suffix == ".zarr":
        with xr.open_zarr(out) as ds:
            got_image = ds["image"].values
            got_count = ds["count"].values
    else:
        got_image = tifffile.imread(out)
        got_count = count
    assert got_image.dtype.kind == "f" and got_image.dtype.itemsize == 4
    np.testing.assert_array_equal(got_count, count)
    np.testing.assert_allclose(got_image, image, rtol=2e-7, atol=0)
    if dataset == "naco" and spread == "mad_std":
        # the rotating companion and noise really get clipped in the 61-frame cube
        assert (count < 61).mean() > 0.05


def test_m13_header_and_wcs_carried_to_fits(real_dir, tmp_path):
    paths = _m13(real_dir)
    out = tmp_path / "m13.fits"
    assert main(["stack", *map(str, paths), "-o", str(out)]) == 0
    first = fits.getheader(paths[0])
    with fits.open(out) as hdul:
        hdr = hdul[0].header
        assert hdr["BITPIX"] == -32
        for key in ("EXPTIME", "IMAGETYP", "DATE-OBS"):
            if key in first:
                assert hdr[key] == first[key]
        assert "BZERO" not in hdr
