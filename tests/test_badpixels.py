"""Bad pixels derived from the masters (stackengine.calibrate.badpixels), against
ccdproc's ccdmask on a synthetic flat with known defects, and hot pixels of a dark."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from astropy.io import fits

import stackengine as se
from stackengine.calibrate.badpixels import bad_pixel_mask


def _flat(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[:240, :260]
    flat = (1 - 0.3 * ((x - 130) ** 2 + (y - 120) ** 2) / 130**2) * (
        1 + rng.normal(0, 0.01, y.shape)
    )
    truth = np.zeros(flat.shape, dtype=bool)
    for (r, c), factor in {(100, 50): 0.3, (20, 20): 0.0, (200, 240): 1.6}.items():
        flat[r, c] *= factor
        truth[r, c] = True
    flat[:, 180] *= 0.6  # a low-response column
    truth[:, 180] = True
    return flat, truth


def test_flat_defects_found_as_ccdmask_finds_them():
    ccdproc = pytest.importorskip("ccdproc")
    from astropy.nddata import CCDData

    flat, truth = _flat()
    ours = bad_pixel_mask(flat=flat)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = ccdproc.ccdmask(CCDData(flat, unit="adu"))
    assert ours[truth].all() and theirs[truth].all()
    # the same pixels, up to a few borderline noise pixels
    assert (ours ^ theirs).sum() <= 0.1 * truth.sum()


def test_hot_pixels_of_a_dark():
    rng = np.random.default_rng(3)
    dark = rng.normal(100.0, 2.0, (64, 64))
    dark[5, 7] = 400.0
    dark[30, 31] = 140.0
    mask = bad_pixel_mask(dark=dark)
    assert mask[5, 7] and mask[30, 31]
    assert mask.sum() <= 3  # a 5-sigma tail of 4096 normal values holds ~0 pixels


def test_auto_bad_pixels_are_missing_in_the_stack(tmp_path):
    flat, truth = _flat(1)
    rng = np.random.default_rng(4)
    paths = []
    for k in range(4):
        light = (1000.0 * flat + rng.normal(0, 3, flat.shape)).astype(np.float32)
        paths.append(str(tmp_path / f"l{k}.fits"))
        fits.PrimaryHDU(light).writeto(paths[-1])
    with pytest.warns(UserWarning, match="flat pixels below min_value"):
        ds = se.stack(
            se.open_frames(paths),
            calibration={"flat": flat.astype(np.float32), "bad_pixels": "auto"},
        ).compute()
    count = ds["count"].values
    assert (count[truth] == 0).all() and np.isnan(ds["image"].values[truth]).all()
    assert (count[~bad_pixel_mask(flat=flat)] > 0).all()
