"""se.stack(register="wcs", interpolation="drizzle") against the drizzle package (STScI)."""

from __future__ import annotations

import warnings

import dask
import numpy as np
import pytest
from astropy.io import fits
from astropy.wcs import WCS
from drizzle.resample import Drizzle
from drizzle.utils import calc_pixmap

import stackengine as se
from stackengine.errors import ParameterError

SCALE = 1.0 / 3600
SHAPE = (60, 70)


def _header(ra: float, dec: float, rot: float, scale: float, shape: tuple) -> fits.Header:
    a = np.radians(rot)
    h = fits.Header()
    h.update({
        "NAXIS": 2, "NAXIS1": shape[1], "NAXIS2": shape[0],
        "CTYPE1": "RA---TAN", "CTYPE2": "DEC--TAN", "CRVAL1": ra, "CRVAL2": dec,
        "CRPIX1": shape[1] / 2 + 0.5, "CRPIX2": shape[0] / 2 + 0.5,
        "CD1_1": -scale * np.cos(a), "CD1_2": scale * np.sin(a),
        "CD2_1": scale * np.sin(a), "CD2_2": scale * np.cos(a),
    })  # fmt: skip
    return h


def _wcs(h: fits.Header) -> WCS:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return WCS(h)


@pytest.fixture(scope="module")
def dithered(tmp_path_factory):
    """Four undersampled frames of one star field, dithered by fractions of a pixel
    and turned; and a grid 0.6 times their pixel size covering all of them."""
    tmp = tmp_path_factory.mktemp("drizzle")
    rng = np.random.default_rng(3)
    stars = np.column_stack([150 + rng.uniform(-0.006, 0.006, 25),
                             2 + rng.uniform(-0.006, 0.006, 25)])  # fmt: skip
    paths = []
    for k in range(4):
        h = _header(150 + rng.uniform(-3, 3) * SCALE, 2 + rng.uniform(-3, 3) * SCALE,
                    rng.uniform(-10, 10), SCALE, SHAPE)  # fmt: skip
        yy, xx = np.mgrid[0 : SHAPE[0], 0 : SHAPE[1]].astype(float)
        ra, dec = _wcs(h).all_pix2world(xx, yy, 0)
        data = 50 + rng.normal(0, 1, SHAPE)
        for r, d in stars:
            dx, dy = (ra - r) * np.cos(np.radians(2)) * 3600, (dec - d) * 3600
            data += 800 * np.exp(-(dx**2 + dy**2) / (2 * 0.6**2))  # undersampled stars
        path = tmp / f"d{k}.fits"
        fits.PrimaryHDU(data.astype(np.float32), header=h).writeto(path)
        paths.append(str(path))
    out = _header(150.0, 2.0, 0.0, 0.6 * SCALE, (150, 150))
    return paths, out


def _reference(paths: list[str], out: fits.Header, pixfrac: float, kernel: str) -> tuple:
    """The drizzle package's co-add and each frame's own drizzle (pixel_scale_ratio:
    the output pixel's size in input pixels, used by turbo)."""
    out_wcs = _wcs(out)
    d = Drizzle(kernel=kernel, out_shape=(out["NAXIS2"], out["NAXIS1"]))
    per_frame = []
    for p in paths:
        data = fits.getdata(p).astype(np.float32)
        w = _wcs(fits.getheader(p))
        pixmap = calc_pixmap(w, out_wcs, shape=data.shape)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            d.add_image(data, exptime=1.0, pixmap=pixmap, pixfrac=pixfrac, pixel_scale_ratio=0.6)
        one = Drizzle(kernel=kernel, out_shape=(out["NAXIS2"], out["NAXIS1"]))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            one.add_image(data, exptime=1.0, pixmap=pixmap, pixfrac=pixfrac,
                          pixel_scale_ratio=0.6)  # fmt: skip
        per_frame.append(np.where(one.out_wht > 0, one.out_img, np.nan))
    return d.out_img, d.out_wht, per_frame


@pytest.mark.parametrize(("pixfrac", "kernel"), [(0.7, "square"), (1.0, "square"),
                                                 (0.5, "turbo")])  # fmt: skip
def test_drizzle_equals_the_drizzle_package(dithered, pixfrac, kernel):
    paths, out = dithered
    image_ref, weight_ref, per_frame = _reference(paths, out, pixfrac, kernel)
    ds = se.stack(paths, register="wcs", output_wcs=out, interpolation="drizzle",
                  pixfrac=pixfrac, drizzle_kernel=kernel, reject=None,
                  wcs_accuracy=0)  # fmt: skip
    image = ds["image"].values
    covered = weight_ref > 0
    assert covered.mean() > 0.3
    np.testing.assert_array_equal(np.isfinite(image), covered)
    rel = np.abs(image[covered] - image_ref[covered]) / np.abs(image_ref[covered])
    assert rel.max() < 1e-4
    # the frames are combined by their overlap weights: an unweighted mean of the
    # per-frame drizzles is another (wrong) image where the coverage differs
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        unweighted = np.nanmean(np.stack(per_frame), axis=0)
    wrong = np.abs(unweighted[covered] - image_ref[covered]) / np.abs(image_ref[covered])
    assert wrong.max() > 100 * rel.max() and wrong.max() > 1e-3
    # the default accuracy (1e-3 px) stays close to the exact mapping
    approx = se.stack(paths, register="wcs", output_wcs=out, interpolation="drizzle",
                      pixfrac=pixfrac, drizzle_kernel=kernel, reject=None)  # fmt: skip
    approx = approx["image"].values
    rel = np.abs(approx[covered] - image_ref[covered]) / np.abs(image_ref[covered])
    assert np.mean(rel < 1e-3) >= 0.999


def test_drizzle_same_bits_for_any_tile_and_scheduler(dithered, monkeypatch):
    import stackengine.build

    paths, out = dithered
    results = []
    for tile, scheduler in (((150, 150), "threads"), ((64, 64), "threads"), ((37, 53), "sync")):
        monkeypatch.setattr(stackengine.build, "square_tiles", lambda *a, t=tile: t)
        ds = se.stack(paths, register="wcs", output_wcs=out, interpolation="drizzle",
                      pixfrac=0.8)  # fmt: skip
        with dask.config.set(scheduler=scheduler):
            results.append((ds["image"].values, ds["noise"].values, ds["image"].data.numblocks))
    assert len({r[2] for r in results}) == 3
    for image, noise, _ in results[1:]:
        np.testing.assert_array_equal(image, results[0][0])
        np.testing.assert_array_equal(noise, results[0][1])


def test_drizzle_flux_of_a_constant_frame_is_kept(tmp_path):
    """Surface brightness: a constant frame drizzles to the same constant."""
    h = _header(150.0, 2.0, 17.0, SCALE, SHAPE)
    fits.PrimaryHDU(np.full(SHAPE, 42.0, np.float32), header=h).writeto(tmp_path / "c.fits")
    ds = se.stack([str(tmp_path / "c.fits")], register="wcs", output_wcs="optimal",
                  output_scale=0.5, interpolation="drizzle", pixfrac=0.6, reject=None)  # fmt: skip
    image = ds["image"].values
    assert np.isfinite(image).mean() > 0.4
    np.testing.assert_allclose(image[np.isfinite(image)], 42.0, rtol=1e-6)
    assert ds.sizes["x"] > 1.9 * SHAPE[1]  # twice as fine a grid


def test_drizzle_options_are_checked(dithered):
    paths, out = dithered
    with pytest.raises(ParameterError, match="pixfrac"):
        se.stack(paths, register="wcs", interpolation="drizzle", pixfrac=0)
    with pytest.raises(ParameterError, match="drizzle_kernel"):
        se.stack(paths, register="wcs", interpolation="drizzle", drizzle_kernel="gaussian")
    with pytest.raises(ParameterError, match="output_scale"):
        se.stack(paths, register="wcs", output_wcs=out, output_scale=0.5)


def test_bayer_drizzle_equals_the_drizzle_package_per_colour(tmp_path):
    """Bayer mosaics drizzled: each pixel dropped into its own colour channel only (no
    demosaicing), equal to the drizzle package given each colour's pixels alone."""
    rng = np.random.default_rng(9)
    paths, planes, maps = [], [], []
    out = _header(150.0, 2.0, 0.0, 0.7 * SCALE, (120, 120))
    out_wcs = _wcs(out)
    for k in range(4):
        h = _header(150 + rng.uniform(-2, 2) * SCALE, 2 + rng.uniform(-2, 2) * SCALE,
                    rng.uniform(-5, 5), SCALE, SHAPE)  # fmt: skip
        h["BAYERPAT"] = "GRBG"
        data = rng.uniform(100, 200, SHAPE).astype(np.float32)
        fits.PrimaryHDU(data, header=h).writeto(tmp_path / f"b{k}.fits")
        paths.append(str(tmp_path / f"b{k}.fits"))
        maps.append(calc_pixmap(_wcs(h), out_wcs, shape=SHAPE))
        planes.append(data)
    ds = se.stack(paths, register="wcs", output_wcs=out, interpolation="drizzle", pixfrac=0.7,
                  reject=None, wcs_accuracy=0)  # fmt: skip
    assert ds["image"].dims == ("y", "x", "channel")
    colour = np.empty(SHAPE, dtype="<U1")
    for k, c in enumerate("GRBG"):
        colour[k // 2 :: 2, k % 2 :: 2] = c
    for ch, name in enumerate("RGB"):
        d = Drizzle(kernel="square", out_shape=(120, 120))
        for data, pixmap in zip(planes, maps, strict=True):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                d.add_image(data, exptime=1.0, pixmap=pixmap, pixfrac=0.7,
                            weight_map=(colour == name).astype(np.float32))  # fmt: skip
        covered = d.out_wht > 0
        image = ds["image"].values[..., ch]
        np.testing.assert_array_equal(np.isfinite(image), covered)
        np.testing.assert_allclose(image[covered], d.out_img[covered], rtol=1e-4)
    assert ds.attrs["debayer"] == "bayer drizzle"


def test_sky_coadd_and_drizzle_same_bits_on_a_local_cluster(dithered, tmp_path):
    """The job (frame WCS cards, footprints, node spacings) travels to worker processes,
    which compute the nodes themselves: the same bits as the threads, weight maps and
    background matching included."""
    from stackengine.tasks.cluster import scheduler_context

    paths, out = dithered
    wpaths = []
    for k in range(len(paths)):
        w = np.random.default_rng(k).uniform(0.5, 2, SHAPE).astype(np.float32)
        fits.PrimaryHDU(w).writeto(tmp_path / f"w{k}.fits")
        wpaths.append(str(tmp_path / f"w{k}.fits"))
    runs = [
        {"interpolation": "lanczos3", "match_background": True},
        {"interpolation": "drizzle", "pixfrac": 0.7, "weight_maps": wpaths, "weights": "map"},
    ]
    local = [se.stack(paths, register="wcs", output_wcs=out, **kw).compute() for kw in runs]
    with scheduler_context(workers=2, memory_limit="300MiB"):
        remote = [se.stack(paths, register="wcs", output_wcs=out, **kw).compute() for kw in runs]
    for a, b in zip(local, remote, strict=True):
        for name in ("image", "count", "noise", "exposure"):
            if name in a:
                np.testing.assert_array_equal(b[name].values, a[name].values)
