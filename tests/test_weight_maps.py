"""Weight maps and masks beside the frames (se.stack(weight_maps=, masks=, weights="map"))."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from astropy.io import fits
from astropy.wcs import WCS

import stackengine as se
from stackengine.errors import FrameMismatchError, ParameterError

SHAPE = (40, 50)


@pytest.fixture
def survey(tmp_path):
    """Five frames with inverse-variance weight maps (a WEIGHT HDU and separate
    files), flag images, and a few zero-weight pixels."""
    rng = np.random.default_rng(7)
    paths, wpaths, mpaths, data, weights, flags = [], [], [], [], [], []
    for k in range(5):
        sigma = rng.uniform(1, 4, SHAPE)
        frame = (100 + rng.normal(0, 1, SHAPE) * sigma).astype(np.float32)
        w = (1 / sigma**2).astype(np.float32)
        w[rng.random(SHAPE) < 0.02] = 0.0
        flag = (rng.random(SHAPE) < 0.03).astype(np.int16) * 4
        path = tmp_path / f"f{k}.fits"
        fits.HDUList([fits.PrimaryHDU(frame),
                      fits.ImageHDU(w, name="WEIGHT")]).writeto(path)  # fmt: skip
        fits.PrimaryHDU(w).writeto(tmp_path / f"f{k}.weight.fits")
        fits.PrimaryHDU(flag).writeto(tmp_path / f"f{k}.flags.fits")
        paths.append(str(path))
        wpaths.append(str(tmp_path / f"f{k}.weight.fits"))
        mpaths.append(str(tmp_path / f"f{k}.flags.fits"))
        data.append(frame)
        weights.append(w)
        flags.append(flag)
    return paths, wpaths, mpaths, np.array(data), np.array(weights), np.array(flags)


def test_inverse_variance_mean_and_noise_follow_the_maps(survey):
    paths, wpaths, _, data, weights, _ = survey
    ds = se.stack(paths, weight_maps=wpaths, weights="map", reject=None)
    w = weights.astype(np.float64)
    expected = (w * data).sum(axis=0) / w.sum(axis=0)
    np.testing.assert_allclose(ds["image"].values, expected, rtol=2e-6)
    np.testing.assert_allclose(ds["noise"].values, 1 / np.sqrt(w.sum(axis=0)), rtol=2e-6)
    np.testing.assert_array_equal(ds["count"].values, (w > 0).sum(axis=0))


@pytest.mark.parametrize("form", ["pattern", "hdu", "hdu_number"])
def test_the_three_ways_to_name_the_maps(survey, form):
    paths, wpaths, _, _, _, _ = survey
    spec = {"pattern": "{stem}.weight.fits", "hdu": "WEIGHT", "hdu_number": 1}[form]
    listed = se.stack(paths, weight_maps=wpaths, weights="map", reject=None)
    named = se.stack(paths, weight_maps=spec, weights="map", reject=None)
    np.testing.assert_array_equal(named["image"].values, listed["image"].values)


def test_masks_and_zero_weights_are_missing(survey):
    paths, wpaths, mpaths, data, weights, flags = survey
    ds = se.stack(paths, masks="{stem}.flags.fits", weight_maps=wpaths, reject=None)
    bad = (flags != 0) | (weights <= 0)
    expected = np.ma.masked_array(data.astype(np.float64), bad).mean(axis=0)
    np.testing.assert_allclose(ds["image"].values, expected.filled(np.nan), rtol=1e-6)
    np.testing.assert_array_equal(ds["count"].values, (~bad).sum(axis=0))


def test_weighted_coadd_equals_reproject_with_input_weights(tmp_path):
    from reproject import reproject_interp
    from reproject.mosaicking import reproject_and_coadd

    rng = np.random.default_rng(2)
    paths, wpaths, inputs, winputs = [], [], [], []
    for k in range(3):
        h = fits.Header()
        a = np.radians(rng.uniform(-10, 10))
        s = 1 / 3600
        h.update({"CTYPE1": "RA---TAN", "CTYPE2": "DEC--TAN", "CRVAL1": 150 + k * 4 * s,
                  "CRVAL2": 2.0, "CRPIX1": 25.5, "CRPIX2": 20.5})  # fmt: skip
        h.update({"CD1_1": -s * np.cos(a), "CD1_2": s * np.sin(a), "CD2_1": s * np.sin(a),
                  "CD2_2": s * np.cos(a)})  # fmt: skip
        yy, xx = np.mgrid[0 : SHAPE[0], 0 : SHAPE[1]]
        frame = (100 + 0.5 * xx + 0.3 * yy + rng.normal(0, 1, SHAPE)).astype(np.float32)
        w = rng.uniform(0.5, 2.0, SHAPE).astype(np.float32)
        fits.PrimaryHDU(frame, header=h).writeto(tmp_path / f"r{k}.fits")
        fits.PrimaryHDU(w, header=h).writeto(tmp_path / f"r{k}.wht.fits")
        paths.append(str(tmp_path / f"r{k}.fits"))
        wpaths.append(str(tmp_path / f"r{k}.wht.fits"))
        inputs.append((frame.astype(np.float64), WCS(h)))
        winputs.append(w.astype(np.float64))
    out = WCS(fits.getheader(paths[0]))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref, footprint = reproject_and_coadd(inputs, out, shape_out=SHAPE, input_weights=winputs,
                                             reproject_function=reproject_interp,
                                             combine_function="mean")  # fmt: skip
    ds = se.stack(paths, register="wcs", weight_maps=wpaths, weights="map", reject=None,
                  interpolation="bilinear", wcs_accuracy=0)  # fmt: skip
    count = ds["count"].values
    full = (count == 3) & (footprint > 0)
    assert full.mean() > 0.3
    image = ds["image"].values
    np.testing.assert_allclose(image[full], ref[full], rtol=1e-4)


def test_drizzle_with_weight_maps_equals_the_drizzle_package(tmp_path):
    from drizzle.resample import Drizzle
    from drizzle.utils import calc_pixmap

    rng = np.random.default_rng(4)
    s = 1 / 3600
    out_h = fits.Header()
    out_h.update({"NAXIS": 2, "NAXIS1": 90, "NAXIS2": 80, "CTYPE1": "RA---TAN",
                  "CTYPE2": "DEC--TAN", "CRVAL1": 150.0, "CRVAL2": 2.0, "CRPIX1": 45.5,
                  "CRPIX2": 40.5, "CDELT1": -0.7 * s, "CDELT2": 0.7 * s})  # fmt: skip
    d = Drizzle(kernel="square", out_shape=(80, 90))
    paths, wpaths = [], []
    for k in range(3):
        h = fits.Header()
        h.update({"CTYPE1": "RA---TAN", "CTYPE2": "DEC--TAN", "CRVAL1": 150 + k * 0.3 * s,
                  "CRVAL2": 2.0 - k * 0.2 * s, "CRPIX1": 25.5, "CRPIX2": 20.5,
                  "CDELT1": -s, "CDELT2": s})  # fmt: skip
        frame = rng.normal(100, 5, SHAPE).astype(np.float32)
        w = rng.uniform(0.2, 3.0, SHAPE).astype(np.float32)
        fits.PrimaryHDU(frame, header=h).writeto(tmp_path / f"z{k}.fits")
        fits.PrimaryHDU(w).writeto(tmp_path / f"z{k}.wht.fits")
        paths.append(str(tmp_path / f"z{k}.fits"))
        wpaths.append(str(tmp_path / f"z{k}.wht.fits"))
        pixmap = calc_pixmap(WCS(h), WCS(out_h), shape=SHAPE)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            d.add_image(frame, exptime=1.0, pixmap=pixmap, weight_map=w, pixfrac=0.8)
    ds = se.stack(paths, register="wcs", output_wcs=out_h, interpolation="drizzle",
                  pixfrac=0.8, weight_maps=wpaths, reject=None, wcs_accuracy=0)  # fmt: skip
    covered = d.out_wht > 0
    np.testing.assert_array_equal(np.isfinite(ds["image"].values), covered)
    np.testing.assert_allclose(ds["image"].values[covered], d.out_img[covered], rtol=1e-4)


def test_bad_companions_are_refused_naming_the_files(survey, tmp_path):
    paths, wpaths, _, _, _, _ = survey
    fits.PrimaryHDU(np.ones((10, 10), np.float32)).writeto(tmp_path / "small.fits")
    with pytest.raises(FrameMismatchError, match=r"small\.fits is \(10, 10\), its frame .*f1"):
        se.stack(paths, weight_maps=[wpaths[0], str(tmp_path / "small.fits"), *wpaths[2:]])
    with pytest.raises(ParameterError, match=r"nothing\.fits does not exist"):
        se.stack(paths, masks="{stem}.nothing.fits")
    with pytest.raises(ParameterError, match="4 files for 5 frames"):
        se.stack(paths, weight_maps=wpaths[:4])
    with pytest.raises(ParameterError, match="weights='map'"):
        se.stack(paths, weights="map")
