"""se.stack(register="wcs"): co-adds on a sky grid against reproject's reproject_and_coadd."""

from __future__ import annotations

import glob
import warnings
from pathlib import Path

import dask
import numpy as np
import pytest
from astropy.io import fits
from astropy.wcs import WCS

import stackengine as se
from stackengine.errors import ParameterError
from stackengine.register.wcs import WCSError

REAL = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "real"
SEESTAR = sorted(glob.glob(str(REAL / "seestar_ngc7023" / "Light_NGC_7023_10.0s_*.fit")))
SCALE = 1.0 / 3600  # 1 arcsec pixels


def _quiet_wcs(header: fits.Header) -> WCS:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the reference reads the cards as astropy does
        return WCS(header).celestial


def _coadd_reference(paths: list[str], wcs: WCS, shape: tuple[int, int]) -> tuple:
    """reproject's bilinear mean co-add (no rejection, no background matching)."""
    from reproject import reproject_interp
    from reproject.mosaicking import reproject_and_coadd

    inputs = [(fits.getdata(p).astype(np.float64), _quiet_wcs(fits.getheader(p))) for p in paths]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return reproject_and_coadd(inputs, wcs, shape_out=shape, combine_function="mean",
                                   reproject_function=reproject_interp)  # fmt: skip


def _sky(ra: np.ndarray, dec: np.ndarray) -> np.ndarray:
    """A smooth sky with Gaussian stars, as a function of the sky position."""
    rng = np.random.default_rng(5)
    stars = np.column_stack([150 + rng.uniform(-0.03, 0.03, 60), 2 + rng.uniform(-0.03, 0.03, 60)])
    flux = rng.uniform(200, 3000, 60)
    value = 100 + 20 * (ra - 150) / 0.03 + 10 * (dec - 2) / 0.03
    for (r, d), f in zip(stars, flux, strict=True):
        dx = (ra - r) * np.cos(np.radians(2.0)) * 3600
        dy = (dec - d) * 3600
        value = value + f * np.exp(-(dx**2 + dy**2) / (2 * 1.8**2))
    return value


def _frame_header(kind: str, ra: float, dec: float, rot: float, shape: tuple) -> fits.Header:
    a = np.radians(rot)
    flip = -1.0 if kind != "mirrored" else 1.0  # mirrored: east to the right
    ctype = {"tan": "TAN", "mirrored": "TAN", "sip": "TAN-SIP", "tpv": "TPV"}[kind]
    h = fits.Header()
    h.update({
        "CTYPE1": f"RA---{ctype}", "CTYPE2": f"DEC--{ctype}", "CRVAL1": ra, "CRVAL2": dec,
        "CRPIX1": shape[1] / 2 + 0.5, "CRPIX2": shape[0] / 2 + 0.5,
        "CD1_1": flip * SCALE * np.cos(a), "CD1_2": SCALE * np.sin(a),
        "CD2_1": -flip * SCALE * np.sin(a), "CD2_2": SCALE * np.cos(a),
        "EXPTIME": 30.0,
    })  # fmt: skip
    if kind == "sip":
        h.update({"A_ORDER": 2, "B_ORDER": 2, "A_2_0": 2e-5, "A_0_2": -1e-5, "B_1_1": 2e-5})
    if kind == "tpv":
        h.update({"PV1_0": 0.0, "PV1_1": 1.0, "PV1_2": 0.0, "PV1_4": 0.01, "PV1_7": 0.4})
        h.update({"PV2_0": 0.0, "PV2_1": 1.0, "PV2_2": 0.0, "PV2_5": -0.01, "PV2_8": 0.3})
    return h


def _frames(tmp_path: Path, kind: str, n: int = 4, shape=(150, 190)) -> list[str]:
    rng = np.random.default_rng(11)
    paths = []
    for k in range(n):
        h = _frame_header(kind, 150 + rng.uniform(-0.004, 0.004), 2 + rng.uniform(-0.004, 0.004),
                          rng.uniform(-8, 8), shape)  # fmt: skip
        yy, xx = np.mgrid[0 : shape[0], 0 : shape[1]].astype(float)
        ra, dec = _quiet_wcs(h).all_pix2world(xx, yy, 0)
        data = (_sky(ra, dec) + rng.normal(0, 2, shape)).astype(np.float32)
        path = tmp_path / f"{kind}_{k}.fits"
        fits.PrimaryHDU(data, header=h).writeto(path)
        paths.append(str(path))
    return paths


def _grid(rot: float = 3.0, shape=(170, 200)) -> tuple[WCS, tuple]:
    h = _frame_header("tan", 150.0, 2.0, rot, shape)
    return _quiet_wcs(h), shape


@pytest.mark.parametrize("kind", ["tan", "mirrored", "sip", "tpv"])
def test_exact_mapping_equals_reproject_and_coadd(tmp_path, kind):
    paths = _frames(tmp_path, kind)
    wcs, shape = _grid()
    ref, footprint = _coadd_reference(paths, wcs, shape)
    for accuracy, bound, share in ((0, 1e-4, 1.0), (1e-3, 1e-3, 0.999)):
        ds = se.stack(paths, register="wcs", output_wcs=wcs, shape_out=shape, reject=None,
                      interpolation="bilinear", wcs_accuracy=accuracy)  # fmt: skip
        image, count = ds["image"].values, ds["count"].values
        full = (count == len(paths)) & (footprint == len(paths))
        assert full.sum() > 0.3 * full.size
        rel = np.abs(image[full] - ref[full]) / np.abs(ref[full])
        assert np.mean(rel < bound) >= share, (accuracy, rel.max())
        # stackengine covers no pixel reproject does not; reproject also takes positions
        # up to half a pixel beyond the outer pixel centres (bilinear: our support
        # must lie inside the frame, see stackengine.kernels.resample)
        assert not np.any((count > 0) & (footprint == 0))


def test_real_seestar_frames_equal_reproject_and_coadd():
    """The plate-solved Seestar frames (mosaics co-added as mono, as reproject does),
    on a 300 x 260 window of the first frame's grid."""
    header = fits.getheader(SEESTAR[0])
    wcs = _quiet_wcs(header)[800:1100, 400:660]
    shape = (300, 260)
    ref, footprint = _coadd_reference(SEESTAR, wcs, shape)
    for accuracy, bound, share in ((0, 1e-4, 1.0), (1e-3, 1e-3, 0.999)):
        ds = se.stack(SEESTAR, register="wcs", output_wcs=wcs, shape_out=shape, reject=None,
                      interpolation="bilinear", wcs_accuracy=accuracy, bayer=False)  # fmt: skip
        image, count = ds["image"].values, ds["count"].values
        full = (count == len(SEESTAR)) & (footprint == len(SEESTAR))
        assert full.mean() > 0.9
        rel = np.abs(image[full] - ref[full]) / np.abs(ref[full])
        assert np.mean(rel < bound) >= share, (accuracy, rel.max())


def test_same_bits_for_any_tile_size_and_scheduler(tmp_path):
    paths = _frames(tmp_path, "sip", n=5)
    wcs, shape = _grid(rot=20.0, shape=(230, 250))
    results = []
    for memory, scheduler in (("1GiB", "threads"), ("3MiB", "threads"), ("2MiB", "sync")):
        ds = se.stack(paths, register="wcs", output_wcs=wcs, shape_out=shape,
                      memory_limit=memory)  # fmt: skip
        with dask.config.set(scheduler=scheduler):
            results.append((ds["image"].values, ds["count"].values, ds.attrs["job_token"]))
    tiles = {r[2] for r in results}
    assert len(tiles) == 3  # three different tile plans (the tile is part of the job)
    for image, count, _ in results[1:]:
        np.testing.assert_array_equal(image, results[0][0])
        np.testing.assert_array_equal(count, results[0][1])


def test_a_tile_reads_only_the_frames_that_reach_it(tmp_path, monkeypatch):
    """A mosaic of four frames side by side: each tile reads the one or two frames over it."""
    from stackengine.tasks import tile as tile_module

    paths, shape = [], (100, 100)
    for k in range(4):
        h = _frame_header("tan", 150 + k * 90 * SCALE / np.cos(np.radians(2)), 2.0, 0.0, shape)
        fits.PrimaryHDU(np.full(shape, 10.0 * (k + 1), np.float32), header=h).writeto(
            tmp_path / f"m{k}.fits"
        )
        paths.append(str(tmp_path / f"m{k}.fits"))
    reads = []
    real = tile_module._frame_region

    def counting(job, k, box, handles):
        reads.append(k)
        return real(job, k, box, handles)

    monkeypatch.setattr(tile_module, "_frame_region", counting)
    ds = se.stack(paths, register="wcs", output_wcs="optimal", reject=None, memory_limit="4MiB")
    with dask.config.set(scheduler="sync"):
        count = ds["count"].values
    tiles = np.prod(ds["image"].data.numblocks)
    assert tiles >= 8
    assert len(reads) < 2 * tiles  # not tiles x frames
    assert count.max() == 2 and ds.sizes["x"] > 3 * 100


def test_optimal_grid_covers_every_frame_at_the_finest_scale(tmp_path):
    from reproject.mosaicking import find_optimal_celestial_wcs

    paths = _frames(tmp_path, "tan", n=3)
    ds = se.stack(paths, register="wcs", output_wcs="optimal", reject=None)
    wcs = WCS(ds.attrs["wcs"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref_wcs, ref_shape = find_optimal_celestial_wcs(
            [(fits.getdata(p), _quiet_wcs(fits.getheader(p))) for p in paths]
        )
    assert abs(ds.sizes["y"] - ref_shape[0]) <= 2 and abs(ds.sizes["x"] - ref_shape[1]) <= 2
    np.testing.assert_allclose(np.abs(wcs.wcs.cdelt), SCALE, rtol=1e-9)
    count = ds["count"].values
    assert count.max() == 3
    # every frame's every pixel lands on the grid
    for p in paths:
        h = fits.getheader(p)
        yy, xx = np.mgrid[0 : h["NAXIS2"], 0 : h["NAXIS1"]]
        ra, dec = _quiet_wcs(h).all_pix2world(xx.ravel(), yy.ravel(), 0)
        x, y = wcs.all_world2pix(ra, dec, 0)
        assert x.min() > -0.5 and y.min() > -0.5
        assert x.max() < ds.sizes["x"] - 0.5 and y.max() < ds.sizes["y"] - 0.5


def test_output_wcs_from_a_header_and_written_with_the_output(tmp_path):
    paths = _frames(tmp_path, "sip", n=3)
    wcs, shape = _grid()
    header = wcs.to_header()
    header["NAXIS1"], header["NAXIS2"] = shape[1], shape[0]
    ds = se.stack(paths, register="wcs", output_wcs=header, reject=None)
    assert (ds.sizes["y"], ds.sizes["x"]) == shape
    se.write(ds, tmp_path / "coadd.fits")
    written = fits.getheader(tmp_path / "coadd.fits")
    back = WCS(written)
    xy = np.array([[0.0, 0.0], [199.0, 169.0], [57.3, 101.2]])
    np.testing.assert_allclose(back.all_pix2world(xy, 0), wcs.all_pix2world(xy, 0), rtol=0,
                               atol=1e-10)  # fmt: skip
    assert "A_ORDER" not in written  # the frames' distortion is not the output's
    se.write(ds, tmp_path / "coadd.zarr")
    import zarr

    attrs = zarr.open_group(str(tmp_path / "coadd.zarr"), mode="r").attrs.asdict()
    np.testing.assert_allclose(WCS(attrs["wcs"]).all_pix2world(xy, 0), wcs.all_pix2world(xy, 0),
                               rtol=0, atol=1e-10)  # fmt: skip


def test_a_quoted_wcs_number_is_refused_naming_the_frame_and_card(tmp_path):
    paths = _frames(tmp_path, "tan", n=2)
    with fits.open(paths[1], mode="update") as hdul:
        hdul[0].header["CRVAL2"] = "2.0"  # astropy would read 0 with a warning
    with pytest.raises(WCSError, match=r"tan_1\.fits: .*CRVAL2"):
        se.stack(paths, register="wcs", reject=None)


def test_a_frame_without_wcs_is_refused(tmp_path):
    paths = _frames(tmp_path, "tan", n=2)
    fits.PrimaryHDU(np.zeros((20, 20), np.float32)).writeto(tmp_path / "plain.fits")
    with pytest.raises(WCSError, match=r"plain\.fits: no celestial WCS"):
        se.stack([*paths, str(tmp_path / "plain.fits")], register="wcs")


def test_wcs_options_without_register_wcs_are_refused(tmp_path):
    paths = _frames(tmp_path, "tan", n=2, shape=(40, 40))
    with pytest.raises(ParameterError, match="register='wcs' only"):
        se.stack(paths, output_wcs="optimal")
    with pytest.raises(ParameterError, match="wcs_accuracy"):
        se.stack(paths, register="wcs", wcs_accuracy=-1)
    with pytest.raises(ParameterError, match="shape_out"):
        se.stack(paths, register="wcs", output_wcs=_grid()[0])
    with pytest.raises(ParameterError, match="match_background: it matches"):
        se.stack(paths, match_background=True)
    with pytest.raises(ParameterError, match="match_background: it is the normalization"):
        se.stack(paths, register="wcs", match_background=True, normalize="additive")


def test_match_background_removes_the_seams_of_a_mosaic(tmp_path):
    """Three frames in a row, overlapping by a third, each with its own sky level: the
    matched co-add follows the first frame's level everywhere."""
    shape, offsets = (90, 150), [0.0, 30.0, -20.0]
    paths = []
    rng = np.random.default_rng(8)
    for k, offset in enumerate(offsets):
        h = _frame_header("tan", 150 + k * 100 * SCALE / np.cos(np.radians(2)), 2.0, 0.0, shape)
        yy, xx = np.mgrid[0 : shape[0], 0 : shape[1]].astype(float)
        ra, dec = _quiet_wcs(h).all_pix2world(xx, yy, 0)
        data = 100 + 2000 * (ra - 150) + offset + rng.normal(0, 1, shape)
        fits.PrimaryHDU(data.astype(np.float32), header=h).writeto(tmp_path / f"s{k}.fits")
        paths.append(str(tmp_path / f"s{k}.fits"))
    plain = se.stack(paths, register="wcs", output_wcs="optimal", reject=None)
    matched = se.stack(paths, register="wcs", output_wcs="optimal", reject=None,
                       match_background=True, reference=0)  # fmt: skip
    wcs = WCS(matched.attrs["wcs"])
    yy, xx = np.mgrid[0 : matched.sizes["y"], 0 : matched.sizes["x"]].astype(float)
    ra, _ = wcs.all_pix2world(xx, yy, 0)
    truth = 100 + 2000 * (ra - 150)
    covered = matched["count"].values > 0
    error = np.abs(matched["image"].values - truth)[covered]
    assert np.median(error) < 0.5 and np.quantile(error, 0.99) < 3
    assert np.quantile(np.abs(plain["image"].values - truth)[covered], 0.9) > 15
    np.testing.assert_allclose(matched["offset"].values, [0, -30, 20], atol=0.5)
    assert matched.attrs["match_background"] is True


def test_exposure_map_sums_the_exposure_of_the_frames_present(tmp_path):
    paths = _frames(tmp_path, "tan", n=3)
    with fits.open(paths[2], mode="update") as hdul:
        hdul[0].header["EXPTIME"] = 120.0
    ds = se.stack(paths, register="wcs", output_wcs="optimal", reject=None)
    exposure, count = ds["exposure"].values, ds["count"].values
    assert exposure.max() == 180.0
    assert set(np.unique(exposure)) <= {0.0, 30.0, 60.0, 120.0, 150.0, 180.0}
    np.testing.assert_array_equal(exposure > 0, count > 0)
    se.write(ds, tmp_path / "m.fits")
    with fits.open(tmp_path / "m.fits") as hdul:
        names = [h.name for h in hdul]
        assert "EXPOSURE" in names
        np.testing.assert_array_equal(hdul["EXPOSURE"].data, exposure)
    # frames without an exposure time: no exposure map
    with fits.open(paths[0], mode="update") as hdul:
        del hdul[0].header["EXPTIME"]
    assert "exposure" not in se.stack(paths, register="wcs", reject=None).data_vars


def test_command_line_coadd_drizzle_and_a_bad_wcs(tmp_path, capsys):
    from stackengine.cli import main

    paths = _frames(tmp_path, "sip", n=3)
    out = tmp_path / "coadd.fits"
    assert main(["stack", *paths, "--register", "wcs", "--output-wcs", "optimal",
                 "--output-scale", "0.7", "--interpolation", "drizzle", "--pixfrac", "0.8",
                 "--quiet", "-o", str(out)]) == 0  # fmt: skip
    api = se.stack(paths, register="wcs", output_wcs="optimal", output_scale=0.7,
                   interpolation="drizzle", pixfrac=0.8)  # fmt: skip
    with fits.open(out) as hdul:
        np.testing.assert_array_equal(hdul[0].data, api["image"].values)
        assert WCS(hdul[0].header).wcs.ctype[0] == "RA---TAN"
    grid = tmp_path / "grid.hdr"
    header = _grid()[0].to_header()
    header["NAXIS1"], header["NAXIS2"] = 200, 170
    header.totextfile(grid)
    assert main(["stack", *paths, "--register", "wcs", "--output-wcs", str(grid), "--quiet",
                 "-o", str(tmp_path / "g.fits")]) == 0  # fmt: skip
    assert fits.getdata(tmp_path / "g.fits").shape == (170, 200)
    with fits.open(paths[1], mode="update") as hdul:
        hdul[0].header["CRVAL1"] = "150.0"
    bad = tmp_path / "bad.fits"
    assert main(["stack", *paths, "--register", "wcs", "--quiet", "-o", str(bad)]) != 0
    assert "sip_1.fits" in capsys.readouterr().err
    assert not bad.exists() and not list(tmp_path.glob("bad*"))
