"""Frames' WCS read strictly, and the interpolated pixel mapping against astropy's exact one."""

from __future__ import annotations

import glob
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from astropy.wcs import WCS
from astropy.wcs.utils import pixel_to_pixel

from stackengine.register.wcs import WCSError, frame_wcs, pixel_map

REAL = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "real"
SEESTAR = sorted(glob.glob(str(REAL / "seestar_ngc7023" / "Light_NGC_7023_10.0s_*.fit")))


def _header(path: str) -> fits.Header:
    return fits.getheader(path)


def test_a_quoted_number_is_an_error_naming_the_frame_and_the_card():
    header = _header(SEESTAR[0])
    header["CRVAL1"] = str(header["CRVAL1"])  # astropy would read it as 0, with a warning
    with pytest.raises(WCSError, match=r"frame_a\.fits: .*CRVAL1 = '315"):
        frame_wcs(header, "frame_a.fits")


def test_no_celestial_wcs_is_an_error():
    with pytest.raises(WCSError, match="frame_b.fits: no celestial WCS"):
        frame_wcs(fits.Header({"NAXIS": 2, "NAXIS1": 10, "NAXIS2": 10}), "frame_b.fits")


def test_the_real_frames_wcs_reads_as_astropy_reads_it():
    w = frame_wcs(_header(SEESTAR[0]), SEESTAR[0])
    ref = WCS(_header(SEESTAR[0])).celestial
    np.testing.assert_array_equal(w.wcs.crval, ref.wcs.crval)
    np.testing.assert_array_equal(w.pixel_to_world_values(10.0, 20.0),
                                  ref.pixel_to_world_values(10.0, 20.0))  # fmt: skip


@pytest.mark.parametrize("accuracy", [1e-3, 1e-2])
def test_interpolated_mapping_within_the_accuracy_on_real_frames(accuracy):
    out = frame_wcs(_header(SEESTAR[0]), "ref")
    frame = frame_wcs(_header(SEESTAR[3]), "frame")
    fx, fy = pixel_map(out, frame, 100, 400, 50, 700, accuracy=accuracy)
    yy, xx = np.mgrid[100:400, 50:700].astype(float)
    ex, ey = pixel_to_pixel(out, frame, xx, yy)  # astropy's exact mapping
    error = np.hypot(fx - ex, fy - ey)
    assert error.max() <= accuracy
    ax, ay = pixel_map(out, frame, 100, 400, 50, 700, accuracy=0)
    np.testing.assert_allclose(ax, ex, rtol=0, atol=1e-9)
    np.testing.assert_allclose(ay, ey, rtol=0, atol=1e-9)


def _sip_header(rot_deg: float, a20: float) -> fits.Header:
    a = np.radians(rot_deg)
    scale = 1.0 / 3600
    h = fits.Header()
    h.update({
        "NAXIS": 2, "NAXIS1": 2048, "NAXIS2": 2048,
        "CTYPE1": "RA---TAN-SIP", "CTYPE2": "DEC--TAN-SIP",
        "CRVAL1": 150.0, "CRVAL2": 2.0, "CRPIX1": 1024.5, "CRPIX2": 1024.5,
        "CD1_1": -scale * np.cos(a), "CD1_2": scale * np.sin(a),
        "CD2_1": scale * np.sin(a), "CD2_2": scale * np.cos(a),
        "A_ORDER": 2, "B_ORDER": 2, "A_2_0": a20, "A_0_2": -a20 / 2, "B_1_1": a20,
    })  # fmt: skip
    return h


def test_sip_distortion_mapping_within_the_bound_and_refined_where_needed():
    out = frame_wcs(_sip_header(0.0, 0.0), "out")
    frame = frame_wcs(_sip_header(7.0, 4e-5), "sip")  # up to ~40 px of distortion
    fx, fy = pixel_map(out, frame, 0, 512, 0, 512, accuracy=1e-3)
    yy, xx = np.mgrid[0:512, 0:512].astype(float)
    ex, ey = pixel_to_pixel(out, frame, xx, yy)
    assert np.hypot(fx - ex, fy - ey).max() <= 1e-3
    # a coarse first step alone would not hold the bound: the grid was refined
    coarse_x, coarse_y = pixel_map(out, frame, 0, 512, 0, 512, accuracy=1e3, step=256)
    assert np.hypot(coarse_x - ex, coarse_y - ey).max() > 1e-3


def test_accuracy_must_be_a_number_of_pixels():
    w = frame_wcs(_header(SEESTAR[0]), "ref")
    with pytest.raises(ValueError, match="accuracy"):
        pixel_map(w, w, 0, 4, 0, 4, accuracy=-1)


@pytest.mark.parametrize("card", ["CRVAL2", "CRPIX1", "CD"])
def test_a_card_astropy_would_default_silently_is_an_error(card):
    header = _sip_header(0.0, 0.0)
    for key in list(header):
        if key == card or (card == "CD" and key.startswith("CD")):
            del header[key]
    expected = {"CD": "CDELT1, CDELT2 missing", "CRPIX1": "SIP keywords without CRPIX"}.get(
        card, f"{card} missing"
    )
    with pytest.raises(WCSError, match=f"frame_c.fits: WCS .*{expected}"):
        frame_wcs(header, "frame_c.fits")


@pytest.mark.parametrize(
    ("cards", "expected"),
    [
        ({"CD1_1": 0.0, "CD1_2": 0.0, "CD2_1": 0.0, "CD2_2": 0.0}, "replace them by a default"),
        ({"CTYPE1": "RA---XYZ", "CTYPE2": "DEC--XYZ"}, "Unrecognized projection"),
        ({"CDELT1": 0.0}, "singular"),
    ],
)
def test_a_wcs_astropy_would_default_or_refuse_is_an_error(cards, expected):
    header = fits.Header({"NAXIS": 2, "NAXIS1": 100, "NAXIS2": 100, "CTYPE1": "RA---TAN",
                          "CTYPE2": "DEC--TAN", "CRVAL1": 10.0, "CRVAL2": 20.0, "CRPIX1": 50.0,
                          "CRPIX2": 50.0, "CDELT1": -1e-4, "CDELT2": 1e-4})  # fmt: skip
    header.update(cards)
    with pytest.raises(WCSError, match=f"frame_d.fits: .*{expected}"):
        frame_wcs(header, "frame_d.fits")
