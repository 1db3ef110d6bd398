"""A whole night from the command line with its defaults, against ccdproc.

A synthetic night from another observatory's conventions: raw frames with an
overscan strip (BIASSEC) and a data section (TRIMSEC), the filter only in
FILTNAME, IMAGETYP 'zero' / 'SKYFLAT' / 'object', sky flats of different
levels. The user runs ``stackengine master bias``, ``master flat --bias`` and
``stack --bias --flat`` with no other option; the reference is ccdproc's
``ccd_process`` (overscan per-row median, trim, bias, flat) and ``combine``,
and astropy's ``sigma_clip`` for the lights' stack.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from astropy.io import fits
from astropy.stats import mad_std, sigma_clip

from stackengine.cli import main

ROWS, COLS, DATA_COLS = 48, 70, 60  # columns 61..70 are the overscan


def _raw(level: float, signal: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A raw frame: per-row bias level in data and overscan, signal in the data columns."""
    row_level = level + 3.0 * np.sin(np.arange(ROWS) / 7.0)
    raw = row_level[:, None] + rng.normal(0, 2.0, (ROWS, COLS))
    raw[:, :DATA_COLS] += signal
    return np.round(raw).astype(np.uint16)


def _write(path, data, kind, exptime):
    header = fits.Header(
        {"IMAGETYP": kind, "EXPTIME": exptime, "FILTNAME": "R",
         "BIASSEC": f"[{DATA_COLS + 1}:{COLS},1:{ROWS}]", "TRIMSEC": f"[1:{DATA_COLS},1:{ROWS}]"}
    )  # fmt: skip
    fits.PrimaryHDU(data, header=header).writeto(path)


@pytest.fixture(scope="module")
def night(tmp_path_factory):
    folder = tmp_path_factory.mktemp("night")
    rng = np.random.default_rng(8)
    y, x = np.mgrid[:ROWS, :DATA_COLS]
    response = 1 - 0.2 * ((x - 30) ** 2 + (y - 24) ** 2) / 30**2
    bias_pattern = 4.0 * np.cos(x / 9.0)
    sky = 300.0 + 0.5 * x
    files = {"bias": [], "flat": [], "light": []}
    for k in range(5):
        files["bias"].append(folder / f"zero_{k}.fits")
        _write(files["bias"][-1], _raw(1000, bias_pattern, rng), "zero", 0.0)
    for k, level in enumerate((9000.0, 12000.0, 15000.0)):
        files["flat"].append(folder / f"skyflat_{k}.fits")
        _write(files["flat"][-1], _raw(1000, bias_pattern + level * response, rng), "SKYFLAT", 5.0)
    for k in range(5):
        files["light"].append(folder / f"obj_{k}.fits")
        signal = bias_pattern + response * sky
        if k == 2:
            signal = signal.copy()
            signal[10, 10] += 5000  # a cosmic ray
        _write(files["light"][-1], _raw(1000, signal, rng), "object", 60.0)
    return folder, {k: [str(p) for p in v] for k, v in files.items()}


def _ccdproc_night(files):
    ccdproc = pytest.importorskip("ccdproc")
    from astropy.nddata import CCDData

    oscan = f"[{DATA_COLS + 1}:{COLS},1:{ROWS}]"
    trim = f"[1:{DATA_COLS},1:{ROWS}]"
    clip = dict(method="average", sigma_clip=True, sigma_clip_low_thresh=3,
                sigma_clip_high_thresh=3, sigma_clip_func=np.ma.median,
                sigma_clip_dev_func=mad_std)  # fmt: skip

    def process(path, **kw):
        ccd = CCDData.read(path, unit="adu")
        return ccdproc.ccd_process(ccd, oscan=oscan, oscan_median=True, oscan_model=None,
                                   trim=trim, **kw)  # fmt: skip

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        bias = ccdproc.combine([process(p) for p in files["bias"]], **clip)
        flats = [process(p, master_bias=bias) for p in files["flat"]]
        flats = [f.divide(np.median(f.data)) for f in flats]  # each by its own median
        flat = ccdproc.combine(flats, **clip)
        flat = flat.divide(flat.data.mean())
        lights = [process(p, master_bias=bias, master_flat=flat).data for p in files["light"]]
    return bias.data, flat.data, np.array(lights)


def test_a_night_with_the_defaults_equals_ccdproc(night, capsys):
    folder, files = night
    bias_out, flat_out, stack_out = (str(folder / n) for n in ("b.fits", "f.fits", "s.fits"))
    assert main(["master", "bias", *files["bias"], "-o", bias_out, "--maxiters", "1"]) == 0
    assert main(["master", "flat", *files["flat"], "--bias", bias_out, "-o", flat_out,
                 "--maxiters", "1"]) == 0  # fmt: skip
    assert main(["stack", *files["light"], "--bias", bias_out, "--flat", flat_out,
                 "-o", stack_out]) == 0  # fmt: skip
    capsys.readouterr()
    bias, flat, lights = _ccdproc_night(files)
    got_bias = fits.getdata(bias_out)
    assert got_bias.shape == (ROWS, DATA_COLS)  # overscan subtracted, trimmed
    np.testing.assert_allclose(got_bias, bias, rtol=0, atol=2e-3)
    np.testing.assert_allclose(fits.getdata(flat_out), flat, rtol=2e-6)
    header = fits.getheader(flat_out)
    assert header["IMAGETYP"] == "flat" and header["FILTER"] == "R" and header["NCOMBINE"] == 3
    assert "BIASSEC" not in header and "TRIMSEC" not in header  # the raw frames' sections
    # the lights: ccdproc-calibrated, sigma clipped as stackengine's defaults say, mean
    clipped = sigma_clip(lights, sigma=3, maxiters=5, cenfunc="median", stdfunc="mad_std", axis=0)
    want = clipped.mean(axis=0).filled(np.nan)
    got = fits.getdata(stack_out)
    assert got.shape == (ROWS, DATA_COLS)
    same = fits.getdata(stack_out, "COUNT") == (~clipped.mask).sum(axis=0)
    assert same.mean() > 0.999  # a clip decision at the bound may flip (float32 vs float64)
    np.testing.assert_allclose(got[same], want[same], rtol=2e-6)
    assert fits.getdata(stack_out, "REJECTED_HIGH")[10, 10] >= 1  # the cosmic ray
