"""astropy CCDData in and out: se.stack(ccds), weights="uncertainty", se.to_ccddata,
se.write(format="ccddata")."""

from __future__ import annotations

import dask.array as da
import numpy as np
import pytest
from astropy.io import fits
from astropy.nddata import CCDData, InverseVariance, StdDevUncertainty, VarianceUncertainty
from astropy.wcs import WCS

import stackengine as se
from stackengine.errors import FrameMismatchError, OutputError, ParameterError

SHAPE = (30, 40)


def _wcs() -> WCS:
    w = WCS(naxis=2)
    w.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    w.wcs.crval = [150.0, 2.0]
    w.wcs.crpix = [20.5, 15.5]
    w.wcs.cdelt = [-1e-4, 1e-4]
    return w


def _ccds(n: int = 6, seed: int = 3, dtype: type = np.float32) -> list[CCDData]:
    """Frames with masks (one pixel masked everywhere), per-pixel uncertainties, an
    outlier, EXPTIME in the meta and a WCS on every frame."""
    rng = np.random.default_rng(seed)
    out = []
    for k in range(n):
        sigma = rng.uniform(1, 4, SHAPE).astype(np.float32)
        data = (100 + rng.normal(0, 1, SHAPE) * sigma).astype(dtype)
        if k == 2:
            data[5, 5] = 5000  # an outlier for the rejection
        mask = rng.random(SHAPE) < 0.05
        mask[0, 0] = True  # no value at all here
        meta = fits.Header({"EXPTIME": 10.0 + k, "OBJECT": "field", "NWEIGHT": 1.0 + k})
        out.append(CCDData(data, unit="electron", mask=mask, meta=meta, wcs=_wcs(),
                           uncertainty=StdDevUncertainty(sigma)))  # fmt: skip
    return out


def _masked(ccds: list[CCDData]) -> np.ndarray:
    return np.array([np.where(c.mask, np.nan, c.data.astype(np.float64)) for c in ccds])


def _ivar(ccds: list[CCDData]) -> np.ndarray:
    return np.array([(1.0 / c.uncertainty.array.astype(np.float64) ** 2).astype(np.float32)
                     for c in ccds])  # fmt: skip


def _equal(a, b, names=("image", "count", "rejected_low", "rejected_high", "noise")) -> None:
    for name in names:
        np.testing.assert_array_equal(a[name].values, b[name].values, err_msg=name)


def test_open_frames_is_lazy_with_masks_missing_and_headers_as_coords():
    ccds = _ccds(4)
    arr = se.open_frames(ccds)
    assert arr.dims == ("frame", "y", "x") and isinstance(arr.data, da.Array)
    assert arr.dtype == np.float32
    np.testing.assert_array_equal(arr.values, _masked(ccds).astype(np.float32))
    np.testing.assert_array_equal(arr.coords["exptime"].values, [10, 11, 12, 13])
    assert arr.attrs["unit"] == "electron"


def test_ccddata_list_stacks_to_the_same_bits_as_the_files(tmp_path):
    ccds = _ccds()
    paths = []
    for k, ccd in enumerate(ccds):
        path = tmp_path / f"f{k}.fits"
        ccd.write(path)
        paths.append(str(path))
    with fits.open(paths[0]) as hdul:  # CCDData.write: the mask as a uint8 MASK HDU
        assert hdul["MASK"].data.dtype == np.uint8
    for options in ({}, {"reject": None}, {"weights": "exptime"}, {"combine": "median"}):
        memory = se.stack(ccds, **options)
        files = se.stack(paths, masks="MASK", **options)
        _equal(memory, files)
    # the uncertainties as inverse variances == weight maps of the same values
    for k, w in enumerate(_ivar(ccds)):
        fits.PrimaryHDU(w).writeto(tmp_path / f"f{k}.ivar.fits")
    memory = se.stack(ccds, weights="uncertainty")
    files = se.stack(paths, masks="MASK", weight_maps="{stem}.ivar.fits", weights="map")
    np.testing.assert_allclose(memory["image"].values, files["image"].values, rtol=1e-6)
    np.testing.assert_allclose(memory["noise"].values, files["noise"].values, rtol=1e-6)
    np.testing.assert_array_equal(memory["count"].values, files["count"].values)


def test_keyword_weights_read_the_meta():
    ccds = _ccds(4)
    ds = se.stack(ccds, weights="keyword:NWEIGHT", reject=None)
    np.testing.assert_array_equal(ds["weight"].values, [1, 2, 3, 4])


@pytest.mark.parametrize("kind", ["std", "var", "ivar"])
def test_uncertainty_weights_are_an_inverse_variance_mean(kind):
    ccds = _ccds()
    w = _ivar(ccds).astype(np.float64)
    if kind != "std":  # the same weights given as variances / inverse variances
        for c, wk in zip(ccds, w, strict=True):
            c.uncertainty = (VarianceUncertainty(1 / wk) if kind == "var"
                             else InverseVariance(wk))  # fmt: skip
    x = _masked(ccds)
    ds = se.stack(ccds, weights="uncertainty", reject=None)
    kept = np.isfinite(x)
    wk = np.where(kept, w, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        expected = np.nansum(wk * x, axis=0) / wk.sum(axis=0)
        noise = np.where(wk.sum(axis=0) > 0, 1 / np.sqrt(wk.sum(axis=0)), np.nan)
    np.testing.assert_allclose(ds["image"].values, expected, rtol=2e-6)
    np.testing.assert_allclose(ds["noise"].values, noise, rtol=2e-6)
    np.testing.assert_array_equal(ds["count"].values, kept.sum(axis=0))
    assert np.isnan(ds["image"].values[0, 0]) and ds["count"].values[0, 0] == 0
    assert ds.attrs["weights"] == "uncertainty"
    assert ds.attrs["job_token"] != se.stack(ccds, reject=None).attrs["job_token"]


def test_uncertainty_weights_with_rejection_use_the_kept_values_weights():
    ccds = _ccds()
    w = _ivar(ccds).astype(np.float64)
    x = _masked(ccds)
    ds = se.stack(ccds, weights="uncertainty", reject="minmax", min_value=94, max_value=106)
    kept = np.isfinite(x) & (x >= 94) & (x <= 106)
    wk = np.where(kept, w, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        expected = np.where(kept, wk * x, 0).sum(axis=0) / wk.sum(axis=0)
        noise = np.where(wk.sum(axis=0) > 0, 1 / np.sqrt(wk.sum(axis=0)), np.nan)
    np.testing.assert_allclose(ds["image"].values, expected, rtol=2e-6)
    np.testing.assert_allclose(ds["noise"].values, noise, rtol=2e-6)
    np.testing.assert_array_equal(ds["count"].values, kept.sum(axis=0))
    assert ds["rejected_high"].values[5, 5] >= 1


def test_zero_uncertainty_weight_is_a_missing_value():
    ccds = _ccds(3)
    sigma = ccds[1].uncertainty.array.copy()
    sigma[3, 4] = np.inf  # weight 0
    ccds[1].uncertainty = StdDevUncertainty(sigma)
    ccds[1].mask[3, 4] = False
    ds = se.stack(ccds, weights="uncertainty", reject=None)
    expected = sum(not c.mask[3, 4] for k, c in enumerate(ccds) if k != 1)
    assert ds["count"].values[3, 4] == expected


def _check_ccd(ccd: CCDData, ds, wcs: WCS) -> None:
    np.testing.assert_array_equal(ccd.data, ds["image"].values)
    np.testing.assert_array_equal(ccd.mask, ds["count"].values == 0)
    assert ccd.mask[0, 0]
    assert isinstance(ccd.uncertainty, StdDevUncertainty)
    np.testing.assert_array_equal(ccd.uncertainty.array, ds["noise"].values)
    assert ccd.unit == "electron"
    np.testing.assert_allclose(ccd.wcs.wcs.crval, wcs.wcs.crval)
    np.testing.assert_allclose(ccd.wcs.wcs.crpix, wcs.wcs.crpix)
    np.testing.assert_allclose(ccd.wcs.pixel_scale_matrix, wcs.pixel_scale_matrix)
    assert list(ccd.wcs.wcs.ctype) == list(wcs.wcs.ctype)


def test_to_ccddata_and_the_ccddata_file_read_back(tmp_path):
    ccds = _ccds()
    ds = se.stack(ccds, weights="uncertainty")
    ccd = se.to_ccddata(ds)
    _check_ccd(ccd, ds, _wcs())
    assert ccd.meta["NCOMBINE"] == 6 and ccd.meta["OBJECT"] == "field"
    assert ccd.meta["HIERARCH STACKENGINE WEIGHTS"] == "uncertainty"
    out = se.write(ds, tmp_path / "out.fits", format="ccddata")
    with fits.open(out) as hdul:
        assert [h.name for h in hdul][:3] == ["PRIMARY", "MASK", "UNCERT"]
        assert hdul["MASK"].data.dtype == np.uint8 and hdul["UNCERT"].header["UTYPE"] == (
            "StdDevUncertainty"
        )
        assert hdul[0].header["BUNIT"] == "electron"
    read = CCDData.read(out)
    _check_ccd(read, ds, _wcs())
    with pytest.raises(OutputError):
        se.write(ds, tmp_path / "out.fits", format="ccddata")
    se.write(ds.compute(), tmp_path / "out.fits", format="ccddata", overwrite=True)
    _check_ccd(CCDData.read(tmp_path / "out.fits"), ds, _wcs())
    # a ccdproc pipeline reading a stack of files gets the same
    paths = []
    for k, c in enumerate(ccds):
        c.write(tmp_path / f"f{k}.fits")
        paths.append(str(tmp_path / f"f{k}.fits"))
    files = se.stack(paths, masks="MASK")
    se.write(files, tmp_path / "files.fits", format="ccddata")
    from_files = CCDData.read(tmp_path / "files.fits")
    _check_ccd(from_files, files, _wcs())


def test_same_as_ccdproc_combine_average():
    ccdproc = pytest.importorskip("ccdproc")
    ccds = _ccds()
    ccds[3].mask[:, 7] = True
    for c in ccds:
        c.mask[2, 3] = True  # masked in every frame
    theirs = ccdproc.combine(ccds, method="average")
    ours = se.to_ccddata(se.stack(ccds, reject=None))
    np.testing.assert_array_equal(ours.mask, theirs.mask)
    good = ~theirs.mask
    np.testing.assert_allclose(ours.data[good], theirs.data[good], rtol=1e-6)
    assert np.isnan(ours.data[~good]).all()


def test_errors():
    ccds = _ccds(3)
    ccds[2] = CCDData(ccds[2].data, unit="adu")
    with pytest.raises(ParameterError, match=r"CCDData 2: unit adu .* electron"):
        se.stack(ccds)
    ccds = _ccds(3)
    ccds[1] = CCDData(np.zeros((10, 10), np.float32), unit="electron")
    with pytest.raises(FrameMismatchError, match=r"CCDData 1: shape mismatch"):
        se.open_frames(ccds)
    ccds = _ccds(3)
    ccds[1].uncertainty = None
    se.stack(ccds, reject=None)  # fine without uncertainty weights
    with pytest.raises(ParameterError, match=r"CCDData 1: weights='uncertainty'"):
        se.stack(ccds, weights="uncertainty")
    with pytest.raises(ParameterError, match="uncertainties"):
        se.stack(np.zeros((3, 5, 5), np.float32), weights="uncertainty")
    with pytest.raises(ParameterError, match="format='ccddata'"):
        se.write(se.stack(_ccds(3)), "out.zarr", format="ccddata")
    with pytest.raises(ParameterError, match="format="):
        se.write(se.stack(_ccds(3)), "out.fits", format="hdf5")
