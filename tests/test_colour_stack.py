"""Colour (Bayer) stacks: debayered inside the tile tasks, calibrated in the mosaic first.

References: colour-demosaicing's debayer of each whole frame (mirror-padded, as
the engine pads at the frame's border), numpy's calibration arithmetic, numpy's
mean, and sep's FWHM on the real Seestar frames.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from astropy.io import fits
from reference import star_fwhm

import stackengine as se
from stackengine.errors import ParameterError
from stackengine.kernels.debayer import margin, pattern_for

cd = pytest.importorskip("colour_demosaicing")
REFERENCE = {
    "bilinear": cd.demosaicing_CFA_Bayer_bilinear,
    "mhc": cd.demosaicing_CFA_Bayer_Malvar2004,
}


def _debayer_ref(mosaic: np.ndarray, pattern: str, method: str) -> np.ndarray:
    """colour-demosaicing on the whole frame, mirror padded (the frame's border rule)."""
    m = margin(method)
    padded = np.pad(np.asarray(mosaic, dtype=np.float64), m, mode="reflect")
    return REFERENCE[method](padded, pattern_for(pattern, -m, -m))[m:-m, m:-m]


def _write(path, data, pattern="RGGB", **cards):
    header = fits.Header()
    if pattern:
        header["BAYERPAT"] = pattern
    for k, v in cards.items():
        header[k] = v
    fits.writeto(path, data, header)
    return str(path)


@pytest.fixture
def mosaics(tmp_path):
    rng = np.random.default_rng(5)
    frames = rng.poisson(500, (5, 150, 170)).astype(np.uint16)
    frames[2, 30:33, 40:44] = 60000  # an outlier block, rejected
    paths = [_write(tmp_path / f"m{k}.fits", f, "GBRG") for k, f in enumerate(frames)]
    return paths, frames


@pytest.mark.parametrize("method", ["bilinear", "mhc"])
def test_plain_colour_stack_is_the_mean_of_the_debayered_frames(mosaics, method):
    paths, frames = mosaics
    ds = se.stack(se.open_frames(paths), reject=None, debayer=method)
    assert ds["image"].dims == ("y", "x", "channel")
    assert list(ds["channel"].values) == ["R", "G", "B"]
    ref = np.mean([_debayer_ref(f, "GBRG", method) for f in frames], axis=0)
    np.testing.assert_allclose(ds["image"].values, ref, rtol=3e-7)
    assert ds.attrs["bayer"] == "GBRG" and ds.attrs["debayer"] == method


def test_colour_stack_same_bits_for_any_tile_size(mosaics, monkeypatch):
    paths, _ = mosaics
    a = se.stack(se.open_frames(paths))
    # odd tile sides: tiles start at odd rows and columns, where the pattern shifts
    monkeypatch.setattr("stackengine.build.square_tiles", lambda shape, limit: (37, 53))
    b = se.stack(se.open_frames(paths))
    assert a["image"].chunks != b["image"].chunks
    for name in ("image", "count", "noise"):
        np.testing.assert_array_equal(a[name].values, b[name].values)
    assert (a["count"].values[31, 41] <= 4).all()  # the outlier block rejected
    assert (a["rejected_high"].values[31, 41] >= 1).all()


def test_registered_colour_stack_with_identity_matrices_is_the_plain_one(mosaics):
    paths, _ = mosaics
    plain = se.stack(se.open_frames(paths), memory_limit="300KiB")
    eye = np.repeat(np.eye(3)[None], len(paths), axis=0)
    for method in ("lanczos3", "bilinear"):
        reg = se.stack(se.open_frames(paths), register=eye, interpolation=method)
        np.testing.assert_array_equal(reg["image"].values, plain["image"].values)


def test_a_shift_by_two_pixels_moves_the_colours_with_it(tmp_path):
    """A mosaic shifted by an even number of pixels keeps its pattern: registered onto
    the reference, it gives the reference's colours back (a shift of one pixel would
    swap them if the mosaic were resampled before debayering)."""
    rng = np.random.default_rng(1)
    big = rng.uniform(100, 4000, (64, 80)).astype(np.float32)
    ref, moved = big[4:60, 4:76], big[2:58, 6:78]  # moved(y, x) = ref(y + 2, x - 2)
    paths = [_write(tmp_path / "a.fits", ref, "RGGB"), _write(tmp_path / "b.fits", moved, "RGGB")]
    shift = np.array([[1.0, 0, 2], [0, 1, -2], [0, 0, 1]])  # output (x, y) -> frame b
    mats = np.stack([np.eye(3), np.linalg.inv(shift)])
    ds = se.stack(se.open_frames(paths), register=mats, reject=None, interpolation="nearest")
    rgb_ref = _debayer_ref(ref, "RGGB", "bilinear")
    out = ds["image"].values
    # where both frames cover and the debayer saw the same mosaic neighbours
    np.testing.assert_allclose(out[4:50, 4:66], rgb_ref[4:50, 4:66], rtol=1e-6)


def test_calibration_is_applied_in_the_mosaic_before_debayering(tmp_path):
    rng = np.random.default_rng(2)
    bias = rng.normal(300, 3, (40, 50)).astype(np.float32)
    flat = rng.uniform(0.8, 1.2, (40, 50)).astype(np.float32)
    frames = rng.uniform(1000, 3000, (4, 40, 50)).astype(np.float32)
    paths = [_write(tmp_path / f"l{k}.fits", f, "BGGR") for k, f in enumerate(frames)]
    bpath = _write(tmp_path / "bias.fits", bias, None)
    fpath = _write(tmp_path / "flat.fits", flat, None)
    ds = se.stack(se.open_frames(paths), reject=None,
                  calibration={"bias": bpath, "flat": fpath})  # fmt: skip
    scaled = flat.astype(np.float64) / np.mean(flat, dtype=np.float64)
    calibrated = [((f.astype(np.float64) - bias) / scaled).astype(np.float32) for f in frames]
    ref = np.mean([_debayer_ref(c, "BGGR", "bilinear") for c in calibrated], axis=0)
    np.testing.assert_allclose(ds["image"].values, ref, rtol=2e-6)


def test_bayer_override_and_off(tmp_path, mosaics):
    paths, frames = mosaics
    plain = [_write(tmp_path / f"p{k}.fits", f, None) for k, f in enumerate(frames)]
    mono = se.stack(se.open_frames(plain))
    assert mono["image"].dims == ("y", "x")
    rgb = se.stack(se.open_frames(plain), bayer="GBRG")
    from_header = se.stack(se.open_frames(paths))["image"].values
    np.testing.assert_array_equal(rgb["image"].values, from_header)
    raw = se.stack(se.open_frames(paths), bayer=False)
    assert raw["image"].shape == frames.shape[1:]
    with pytest.raises(ParameterError, match="bayer='XYZW'"):
        se.stack(se.open_frames(paths), bayer="XYZW")
    with pytest.raises(ParameterError, match="debayer='ahd'"):
        se.stack(se.open_frames(paths), debayer="ahd")


def test_frames_with_different_patterns_are_refused(tmp_path, mosaics):
    paths, frames = mosaics
    other = _write(tmp_path / "other.fits", frames[0], "RGGB")
    with pytest.raises(ParameterError, match="other.fits: Bayer pattern RGGB but .*m0.fits has"):
        se.stack(se.open_frames([*paths, other]))
    mono = _write(tmp_path / "mono.fits", frames[0], None)
    with pytest.raises(ParameterError, match="m0.fits: a Bayer mosaic"):
        se.stack(se.open_frames([mono, *paths]))


def test_xbayroff_shifts_the_pattern(tmp_path, mosaics):
    _, frames = mosaics
    a = [_write(tmp_path / f"a{k}.fits", f, "RGGB", XBAYROFF=1) for k, f in enumerate(frames)]
    b = [_write(tmp_path / f"b{k}.fits", f, "GRBG") for k, f in enumerate(frames)]
    np.testing.assert_array_equal(se.stack(se.open_frames(a))["image"].values,
                                  se.stack(se.open_frames(b))["image"].values)  # fmt: skip


def test_a_colour_master_stays_a_mosaic(mosaics):
    paths, frames = mosaics
    ds = se.master(paths, "bias")
    assert ds["image"].shape == frames.shape[1:]


def test_fits_output_of_a_colour_stack_has_no_bayer_card(mosaics, tmp_path):
    paths, _ = mosaics
    out = tmp_path / "rgb.fits"
    se.write(se.stack(se.open_frames(paths)), str(out))
    with fits.open(out) as hdul:
        assert hdul[0].data.shape == (3, 150, 170)
        assert "BAYERPAT" not in hdul[0].header


@pytest.mark.filterwarnings("ignore::astropy.utils.exceptions.AstropyWarning")
def test_real_seestar_frames_register_and_stack_in_colour(real_dir):
    """All six Seestar frames (two turned by 121.5 deg): an RGB stack whose stars are
    no wider than 1.15x the single frames' (green channel of each frame's debayer)."""
    paths = sorted(str(p) for p in (real_dir / "seestar_ngc7023").glob("*.fit"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        singles = [star_fwhm(_debayer_ref(fits.getdata(p), "GRBG", "bilinear")[..., 1])
                   for p in paths]  # fmt: skip
    ds = se.stack(se.open_frames(paths), register="stars")
    image = ds["image"].values
    assert image.shape == (1920, 1080, 3)
    assert star_fwhm(image[..., 1]) <= 1.15 * float(np.median(singles))
    count = ds["count"].values[..., 1]
    assert count.max() == 6 and count.min() >= 1  # the rotated frames cover a part


def test_colour_frames_are_normalized_per_channel(tmp_path):
    """Two frames of another sky colour (as the Seestar's 2024 and 2025 nights): a
    normalization measured per channel on the superpixels brings each channel to the
    reference's; one scale for all three would leave a colour cast."""
    rng = np.random.default_rng(7)
    sky = {"R": 700.0, "G": 800.0, "B": 650.0}
    other = {"R": 120.0, "G": 110.0, "B": 90.0}
    paths = []
    for k, level in enumerate([sky, sky, sky, other, other]):
        mosaic = np.empty((80, 100))
        for colour, (dy, dx) in (("R", (0, 0)), ("G", (0, 1)), ("G", (1, 0)), ("B", (1, 1))):
            mosaic[dy::2, dx::2] = level[colour]
        mosaic = rng.normal(mosaic, 5.0)
        paths.append(_write(tmp_path / f"s{k}.fits", mosaic.astype(np.float32), "RGGB"))
    ds = se.stack(se.open_frames(paths), normalize="additive", reference=0)
    assert ds["offset"].dims == ("frame", "channel")
    offsets = ds["offset"].values[3]
    np.testing.assert_allclose(offsets, [580, 690, 560], atol=2.0)  # reference - frame
    image = np.median(ds["image"].values.reshape(-1, 3), axis=0)
    np.testing.assert_allclose(image, [700, 800, 650], atol=2.0)


def test_a_mosaic_is_not_resampled_raw(mosaics):
    paths, _ = mosaics
    eye = np.repeat(np.eye(3)[None], len(paths), axis=0)
    with pytest.raises(ParameterError, match="m0.fits is a Bayer mosaic, and resampling"):
        se.stack(se.open_frames(paths), register=eye, bayer=False)


def test_registered_colour_stack_same_bits_on_a_local_cluster(mosaics):
    """The job (debayer, registration, memory maps opened in the worker) travels to
    worker processes and gives the same bits as the threads."""
    from stackengine.tasks.cluster import scheduler_context

    paths, _ = mosaics
    a = np.radians(3.0)
    mats = np.repeat(np.eye(3)[None], len(paths), axis=0)
    mats[1:, :2, :2] = [[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]]
    mats[1:, 0, 2] = 1.3
    local = se.stack(se.open_frames(paths), register=mats, normalize="additive").compute()
    with scheduler_context(workers=2, memory_limit="300MiB"):
        remote = se.stack(se.open_frames(paths), register=mats, normalize="additive").compute()
    for name in ("image", "count", "rejected_low", "rejected_high", "noise"):
        np.testing.assert_array_equal(remote[name].values, local[name].values)
