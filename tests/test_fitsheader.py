"""The quick primary-header reader (``stackengine.io.fitsheader``) against astropy.

For every file the quick reader accepts, the frame description it gives must be
the one built from astropy's parse of the same header (``fits._describe``):
shape, dtype, data offset, scaling, BLANK and the selected header values with
their Python types. Files it is not sure of must go to astropy (None).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits

from stackengine.io import fits as sefits
from stackengine.io.fitsheader import read_primary

REAL = Path(__file__).resolve().parents[2] / "shared" / "data" / "real"


def astropy_description(path: Path) -> tuple[dict, int]:
    with sefits._open_hdul(str(path)) as hdul:
        index = sefits._find_hdu(hdul, 0, str(path))
        return sefits._describe(hdul, index, str(path), str(path))


def quick_description(path: Path) -> tuple[dict, int] | None:
    return sefits._describe_primary(str(path))


def same(quick: tuple[dict, int], slow: tuple[dict, int]) -> None:
    (qb, qn), (sb, sn) = quick, slow
    assert qn == sn
    assert set(qb) == set(sb)
    for key in sb:
        assert qb[key] == sb[key], key
        assert type(qb[key]) is type(sb[key]), key
    for key, value in sb["header"].items():
        assert type(qb["header"][key]) is type(value), key


def real_files() -> list[Path]:
    return sorted(p for p in REAL.rglob("*") if p.suffix.lower() in (".fits", ".fit"))


def test_real_files_match_astropy():
    files = real_files()
    assert len(files) >= 10
    accepted = 0
    for path in files:
        quick = quick_description(path)
        if quick is not None:
            accepted += 1
            same(quick, astropy_description(path))
    assert accepted >= 10  # the real frames are plain primary images


@pytest.mark.parametrize(
    "dtype, cards",
    [
        (np.float32, {}),
        (np.float64, {"BUNIT": "adu"}),
        (np.int16, {"BZERO": 32768, "BSCALE": 1}),
        (np.int16, {"BZERO": 100.5, "BSCALE": 2.0}),
        (np.int16, {"BLANK": -3}),
        (np.int32, {"BZERO": 2**31}),
        (np.uint8, {"BZERO": -128}),
        (np.uint8, {}),
        (np.int64, {}),
    ],
)
def test_layouts_match_astropy(tmp_path, dtype, cards):
    data = np.arange(24, dtype=dtype).reshape(4, 6)
    hdu = fits.PrimaryHDU(data)
    for key, value in cards.items():
        hdu.header[key] = value
    path = tmp_path / "f.fits"
    hdu.writeto(path)
    quick = quick_description(path)
    assert quick is not None
    same(quick, astropy_description(path))


def test_cube_and_header_values_match_astropy(tmp_path):
    hdu = fits.PrimaryHDU(np.zeros((3, 4, 5), dtype=np.float32))
    h = hdu.header
    h["EXPTIME"] = 30
    h["EXPOSURE"] = 1.5e-3
    h["GAIN"] = (1.25, "e-/ADU / with a slash")
    h["OBJECT"] = "it's M13 / a 'cluster'"
    h["FILTER"] = "   B  "
    h["IMAGETYP"] = ""
    h["XBINNING"] = True
    h.append(fits.Card.fromstring("AIRMASS =                1.5D0 / a D exponent"))
    h.append(fits.Card.fromstring("CCD-TEMP=                     / undefined"))
    h["HIERARCH ESO DET DIT"] = 0.2
    h["COMMENT"] = "EXPTIME = 99"
    path = tmp_path / "cube.fits"
    hdu.writeto(path)
    quick = quick_description(path)
    assert quick is not None
    same(quick, astropy_description(path))
    assert quick[1] == 3
    header = quick[0]["header"]
    assert header["EXPTIME"] == 30 and type(header["EXPTIME"]) is int
    assert header["OBJECT"] == "it's M13 / a 'cluster'"
    assert header["AIRMASS"] == 1.5
    assert "CCD-TEMP" not in header


def test_unsure_files_go_to_astropy(tmp_path):
    long_object = fits.PrimaryHDU(np.zeros((2, 2), dtype=np.float32))
    long_object.header["OBJECT"] = "x" * 120  # written over CONTINUE cards
    long_object.writeto(tmp_path / "long.fits")
    mef = fits.HDUList([fits.PrimaryHDU(), fits.ImageHDU(np.zeros((2, 2), np.float32))])
    mef.writeto(tmp_path / "mef.fits")
    (tmp_path / "text.fits").write_text("not a FITS file\n" * 300)
    fits.PrimaryHDU(np.zeros((64, 64), dtype=np.float32)).writeto(tmp_path / "cut.fits")
    with open(tmp_path / "cut.fits", "r+b") as fh:
        fh.truncate(2880 + 100)
    for name in ("long.fits", "mef.fits", "text.fits", "cut.fits"):
        assert quick_description(tmp_path / name) is None, name
    # the long string itself: astropy reads it, the frame is still opened
    (frame,) = sefits.open_fits(tmp_path / "long.fits")
    assert frame.header["OBJECT"] == "x" * 120
    with pytest.raises(sefits.FrameError, match="cut.fits: truncated"):
        sefits.open_fits(tmp_path / "cut.fits")


def test_read_primary_stops_at_end(tmp_path):
    hdu = fits.PrimaryHDU(np.zeros((2, 3), dtype=np.float32))
    for k in range(60):  # a header of more than one block
        hdu.header[f"KEY{k}"] = k
    path = tmp_path / "big.fits"
    hdu.writeto(path)
    with open(path, "rb") as fh:
        found = read_primary(fh, ("EXPTIME",))
    assert found is not None
    cards, offset = found
    assert offset == len(hdu.header.tostring()) == 2 * 2880
    assert (cards["NAXIS1"], cards["NAXIS2"], cards["BITPIX"]) == (3, 2, -32)
    assert "KEY3" not in cards  # only the cards asked for
