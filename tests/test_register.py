"""Registration by stars (issue 16, item 1 and the API of item 3): se.register.

References are independent of the code under test: the plate-solved TAN WCS of
the Seestar frames (astropy.wcs), transforms applied to a real star field with
scipy.ndimage (known exactly), and astroalign.find_transform run on the images.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import xarray as xr
from astropy.io import fits
from astropy.wcs import WCS
from scipy import ndimage

import stackengine as se
from stackengine.errors import ParameterError, StackEngineError
from stackengine.register import TRANSFORMS, RegistrationError, register
from stackengine.register import pass1 as pass1_module
from stackengine.register import stars as stars_module

SEESTAR_10S = "seestar_ngc7023/Light_NGC_7023_10.0s_*.fit"
SEESTAR_ALL = "seestar_ngc7023/Light_NGC_7023_*.fit"
UAM_B = "uam_ngc2420/science_NGC2420_B_*.fits"


def _map(matrix: np.ndarray, xy: np.ndarray) -> np.ndarray:
    """Apply a 3 x 3 matrix to (n, 2) points (homogeneous, divided out)."""
    p = np.column_stack([xy, np.ones(len(xy))]) @ np.asarray(matrix).T
    return p[:, :2] / p[:, 2:]


def _grid(height: int, width: int, step: int) -> np.ndarray:
    yy, xx = np.mgrid[0:height:step, 0:width:step]
    return np.column_stack([xx.ravel(), yy.ravel()]).astype(np.float64)


def _rotation_deg(m: np.ndarray) -> float:
    return math.degrees(math.atan2(m[1, 0], m[0, 0]))


def _scale(m: np.ndarray) -> float:
    return math.sqrt(abs(np.linalg.det(m[:2, :2])))


# --- real frames --------------------------------------------------------------------


@pytest.fixture(scope="module")
def seestar(real_dir):
    frames = se.open_frames(str(real_dir / SEESTAR_ALL))
    return frames, register(frames, reference=0)


def test_seestar_matrices_agree_with_the_plate_solutions(seestar):
    """(a) Reference pixel -> sky (reference WCS) -> frame pixel (frame WCS) vs our matrix."""
    frames, ds = seestar
    paths = [str(p) for p in ds.path.values]
    assert "10.0s" in paths[0] and ds.attrs["reference"] == 0
    ref_wcs = WCS(fits.getheader(paths[0]))
    grid = _grid(1920, 1080, 40)  # the whole field (x < 1080, y < 1920)
    sky = ref_wcs.pixel_to_world(grid[:, 0], grid[:, 1])
    worst = []
    for k in range(1, 4):  # the other three 10 s frames carry a TAN solution
        assert "10.0s" in paths[k]
        fx, fy = WCS(fits.getheader(paths[k])).world_to_pixel(sky)
        d = np.hypot(*(_map(ds.matrix.values[k], grid) - np.column_stack([fx, fy])).T)
        worst.append(d.max())
        assert d.max() < 0.3, (paths[k], d.max())
        assert ds.n_matched.values[k] >= 60 and ds.rms_px.values[k] < 0.7
    # the frames drift: the check is not trivially met by the identity
    assert max(np.hypot(*ds.matrix.values[k][:2, 2]) for k in range(1, 4)) > 1.0
    np.testing.assert_allclose(ds.matrix.values[0], np.eye(3))


def test_seestar_bayer_frames_are_measured_on_the_binned_luminance(seestar):
    frames, ds = seestar
    assert ds.sizes == {"frame": 6, "i": 3, "j": 3}
    assert ds.matrix.dtype == np.float64 and ds.n_stars.dtype == np.int64
    # full-resolution seeing: ~3 px (2 x 2 binned stars are ~1.5 px across)
    assert np.all((ds.fwhm.values > 2.2) & (ds.fwhm.values < 4.5))
    assert np.all((ds.roundness.values > 0.8) & (ds.roundness.values <= 1.0))
    # background per pixel, in ADU, like the raw frames' median
    raw = fits.getdata(str(ds.path.values[0]))
    assert abs(ds.background.values[0] / np.median(raw) - 1) < 0.05
    assert list(ds.frame.values) == list(range(6))
    assert ds.attrs["transform"] == "similarity" and "column" in ds.attrs["convention"]


def test_seestar_rotated_20s_frames_register(seestar):
    """(b) The 2025 frames are rotated by ~121.5 deg (no WCS in their headers)."""
    frames, ds = seestar
    for k in (4, 5):
        path = str(ds.path.values[k])
        assert "20.0s" in path and "CTYPE1" not in fits.getheader(path)
        m = ds.matrix.values[k]
        assert abs(_rotation_deg(m) - 121.47) < 0.1, _rotation_deg(m)
        assert abs(_scale(m) - 1.0) < 0.003
        assert np.linalg.det(m[:2, :2]) > 0  # not mirrored
        assert ds.n_matched.values[k] >= 20 and ds.rms_px.values[k] < 0.7


def test_seestar_agrees_with_astroalign_on_the_images(seestar):
    """(g) astroalign.find_transform on the 2 x 2 binned images gives the same transforms."""
    astroalign = pytest.importorskip("astroalign")
    frames, ds = seestar
    paths = [str(p) for p in ds.path.values]

    def luminance(path):
        return fits.getdata(path).astype(np.float32).reshape(960, 2, 540, 2).sum(axis=(1, 3))

    binned_to_full = np.array([[2.0, 0, 0.5], [0, 2.0, 0.5], [0, 0, 1]])
    ref = luminance(paths[0])
    grid = _grid(1920, 1080, 40)
    for k in range(1, 6):
        t, (src, dst) = astroalign.find_transform(ref, luminance(paths[k]))
        full = binned_to_full @ t.params @ np.linalg.inv(binned_to_full)
        ours = _map(ds.matrix.values[k], grid)
        inside = (ours[:, 0] >= 0) & (ours[:, 0] < 1080) & (ours[:, 1] >= 0) & (ours[:, 1] < 1920)
        d = np.hypot(*(_map(full, grid) - ours).T)[inside]
        assert d.max() < 0.5, (paths[k], d.max())
        # astroalign's star pairs are pairs under our matrix too
        pair = np.hypot(*(_map(ds.matrix.values[k], src * 2 + 0.5) - (dst * 2 + 0.5)).T)
        assert np.mean(pair < 1.5) > 0.9


def test_seestar_in_memory_with_a_bayer_pattern_matches_the_files(seestar, real_dir):
    frames, ds = seestar
    data = np.asarray(frames.isel(frame=[0, 4]).values)
    mem = register(data, transform="similarity", bayer="GRBG", reference=0)
    np.testing.assert_allclose(mem.matrix.values[1], ds.matrix.values[4], atol=1e-6)
    assert mem.n_stars.values.tolist() == ds.n_stars.values[[0, 4]].tolist()
    # the same mosaic taken as a grey frame finds the CFA's stars at full resolution
    grey = register(data, reference=0, bayer=False)
    assert grey.fwhm.values[0] < ds.fwhm.values[0]


def test_uam_b_lights_register_with_small_shifts(real_dir):
    """(c) CAFOS lights: drifts of up to ~5 px, rotation ~0.01 deg, scale 1."""
    frames = se.open_frames(str(real_dir / UAM_B))
    ds = register(frames, reference=3)
    assert ds.sizes["frame"] == 6 and ds.attrs["reference"] == 3
    shifts = np.hypot(ds.matrix.values[:, 0, 2], ds.matrix.values[:, 1, 2])
    assert shifts.max() < 6.0 and shifts.max() > 3.0
    for k in range(6):
        m = ds.matrix.values[k]
        assert abs(_rotation_deg(m)) < 0.05 and abs(_scale(m) - 1) < 0.002
        assert ds.n_matched.values[k] >= 0.8 * min(ds.n_stars.values[k], ds.n_stars.values[3])
        assert ds.rms_px.values[k] < 0.5


def test_uam_agrees_with_astroalign_on_the_images(real_dir):
    """(g) On the 60 s frames (~190 stars) the two agree to 0.3 px over the field."""
    astroalign = pytest.importorskip("astroalign")
    frames = se.open_frames(str(real_dir / UAM_B))
    ds = register(frames, reference=3)
    paths = [str(p) for p in ds.path.values]
    ref = fits.getdata(paths[3]).astype(np.float32)
    grid = _grid(1024, 1024, 32)
    for k in (0, 1, 2, 4, 5):
        t, (src, dst) = astroalign.find_transform(ref, fits.getdata(paths[k]).astype(np.float32))
        d = np.hypot(*(_map(t.params, grid) - _map(ds.matrix.values[k], grid)).T)
        long_exposure = ds.exptime.values[k] >= 60
        assert d.max() < (0.3 if long_exposure else 1.5), (paths[k], d.max())
        pair = np.hypot(*(_map(ds.matrix.values[k], src) - dst).T)
        assert np.mean(pair < 1.0) > 0.9


def test_m13_fails_with_a_clear_error(real_dir):
    """(d) Faint, trailed stars: the error names the frame and the counts."""
    frames = se.open_frames(str(real_dir / "astropy_data_M13_blue/*.fits"))
    with pytest.raises(RegistrationError) as info:
        register(frames)
    text = str(info.value)
    assert "M13_blue_000" in text
    assert "cannot register: " in text and "stars found (4 needed)" in text
    assert isinstance(info.value, StackEngineError) and isinstance(info.value, ValueError)


def _mixed_frames(real_dir) -> xr.DataArray:
    """Three CAFOS 60 s lights and an M13 frame cropped to their shape, in memory."""
    paths = [real_dir / f"uam_ngc2420/science_NGC2420_B_uamA_00{n}.fits" for n in (26, 27, 28)]
    m13 = real_dir / "astropy_data_M13_blue/M13_blue_0003.fits"
    data = [fits.getdata(p).astype(np.float32) for p in paths]
    data.insert(2, fits.getdata(m13).astype(np.float32)[:1024, :1024])
    paths.insert(2, m13)
    return xr.DataArray(np.stack(data), dims=("frame", "y", "x"),
                        coords={"path": ("frame", [str(p) for p in paths])})  # fmt: skip


def test_a_failing_frame_is_named_or_dropped_with_a_warning(real_dir):
    frames = _mixed_frames(real_dir)
    with pytest.raises(RegistrationError, match=r"M13_blue_0003\.fits: cannot register: ") as info:
        register(frames, reference=0)
    assert "stars found (4 needed), 0 matched to the reference " in str(info.value)
    assert str(info.value).endswith("science_NGC2420_B_uamA_0026.fits")
    with pytest.warns(UserWarning, match=r"M13_blue_0003\.fits: cannot register: .*dropped"):
        ds = register(frames, reference=0, drop_failed=True)
    assert ds.frame.values.tolist() == [0, 1, 3]
    assert not any("M13" in str(p) for p in ds.path.values)
    assert ds.attrs["dropped"] == [str(frames.path.values[2])]
    assert np.all(ds.n_matched.values >= 100)


# --- synthetic frames from a real star field -----------------------------------------


@pytest.fixture(scope="module")
def star_field(real_dir):
    """A 60 s CAFOS frame (~190 stars) with its background flattened, and its noise."""
    import sep

    data = fits.getdata(real_dir / "uam_ngc2420/science_NGC2420_B_uamA_0026.fits")
    data = data.astype(np.float32)
    bkg = sep.Background(data)
    return (data - bkg.back() + 1000.0).astype(np.float64), float(bkg.globalrms)


def _affine(theta_deg=0.0, scale=1.0, shift=(0.0, 0.0), centre=(511.5, 511.5), flip=False):
    """3 x 3 matrix mapping a synthetic frame's pixel (x, y) to the truth's pixel."""
    t = math.radians(theta_deg)
    r = scale * np.array([[math.cos(t), -math.sin(t)], [math.sin(t), math.cos(t)]])
    if flip:
        r = r @ np.diag([-1.0, 1.0])
    m = np.eye(3)
    m[:2, :2] = r
    m[:2, 2] = np.asarray(centre) - r @ np.asarray(centre) + np.asarray(shift)
    return m


def _warp(truth, noise, frame_to_truth, rng):
    """The frame whose pixel p shows truth(frame_to_truth(p)) (cubic spline), new noise."""
    swap = np.array([[0, 1, 0], [1, 0, 0], [0, 0, 1.0]])  # (x, y) <-> (row, col)
    m = swap @ frame_to_truth @ swap
    out = ndimage.affine_transform(truth, m[:2, :2], offset=m[:2, 2], order=3, cval=1000.0)
    return out + rng.normal(0.0, noise, out.shape)


def _field_error(matrix, truth_matrix, shape=(1024, 1024)) -> np.ndarray:
    grid = _grid(*shape, 32)
    return np.hypot(*(_map(matrix, grid) - _map(truth_matrix, grid)).T)


CASES = {
    "rotation 30 deg, scale 1.005": _affine(30.0, 1.005, (-5.37, 8.13)),
    "meridian flip 180 deg, scale 1.005": _affine(180.0, 1.005, (-2.31, 1.77)),
    "rotation 121.5 deg, scale 0.995": _affine(121.5, 0.995, (3.29, 2.21)),
    "sub-pixel shift, rotation 0.5 deg": _affine(0.5, 1.0, (0.43, -0.71)),
}


@pytest.mark.parametrize("transform", ["similarity", "affine"])
def test_synthetic_rotations_scales_and_shifts_are_recovered(star_field, transform):
    """(e) Within 0.05 px RMS over the field, 180 degrees included."""
    truth, noise = star_field
    rng = np.random.default_rng(7)
    frames = [truth + rng.normal(0.0, noise, truth.shape)]
    frames += [_warp(truth, noise, m, rng) for m in CASES.values()]
    ds = register(np.stack(frames).astype(np.float32), reference=0, transform=transform)
    for k, (name, m) in enumerate(CASES.items(), start=1):
        err = _field_error(ds.matrix.values[k], np.linalg.inv(m))
        assert np.sqrt(np.mean(err**2)) < 0.05, (name, np.sqrt(np.mean(err**2)))
        assert ds.n_matched.values[k] >= 100, name


def test_synthetic_mirrored_frame_is_a_similarity_with_a_flip(star_field):
    truth, noise = star_field
    rng = np.random.default_rng(8)
    m = _affine(40.0, 1.0, (1.3, -0.6), flip=True)
    data = np.stack([truth + rng.normal(0, noise, truth.shape), _warp(truth, noise, m, rng)])
    ds = register(data.astype(np.float32), reference=0)
    got = ds.matrix.values[1]
    assert np.linalg.det(got[:2, :2]) < 0
    err = _field_error(got, np.linalg.inv(m))
    assert np.sqrt(np.mean(err**2)) < 0.05


def test_synthetic_pure_shift_with_the_shift_model(star_field):
    """(f) "shift" recovers a sub-pixel translation, and is nothing but a translation."""
    truth, noise = star_field
    rng = np.random.default_rng(9)
    m = _affine(shift=(7.37, -12.81))
    data = np.stack([truth + rng.normal(0, noise, truth.shape), _warp(truth, noise, m, rng)])
    ds = register(data.astype(np.float32), reference=0, transform="shift")
    got = ds.matrix.values[1]
    np.testing.assert_array_equal(got[:2, :2], np.eye(2))
    np.testing.assert_array_equal(got[2], [0, 0, 1])
    np.testing.assert_allclose(got[:2, 2], [-7.37, 12.81], atol=0.02)


def test_synthetic_perspective_needs_the_homography(star_field):
    """(f) A small perspective: "homography" fits it to 0.05 px; a similarity cannot."""
    truth, noise = star_field
    rng = np.random.default_rng(10)
    h = np.array([[1.002, 0.003, 4.3], [-0.002, 0.998, -2.7], [1.5e-5, -1.0e-5, 1.0]])
    yy, xx = np.mgrid[0:1024, 0:1024].astype(np.float64)
    w = h[2, 0] * xx + h[2, 1] * yy + h[2, 2]
    tx = (h[0, 0] * xx + h[0, 1] * yy + h[0, 2]) / w
    ty = (h[1, 0] * xx + h[1, 1] * yy + h[1, 2]) / w
    frame = ndimage.map_coordinates(truth, [ty, tx], order=3, cval=1000.0)
    frame += rng.normal(0, noise, frame.shape)
    data = np.stack([truth + rng.normal(0, noise, truth.shape), frame]).astype(np.float32)
    homography = register(data, reference=0, transform="homography")
    err = _field_error(homography.matrix.values[1], np.linalg.inv(h))
    assert np.sqrt(np.mean(err**2)) < 0.05 and err.max() < 0.15
    similarity = register(data, reference=0, transform="similarity")
    assert similarity.rms_px.values[1] > 5 * homography.rms_px.values[1]
    assert _field_error(similarity.matrix.values[1], np.linalg.inv(h)).max() > 2.0


# --- pass 1, parameters ---------------------------------------------------------------


def test_pass1_is_one_task_per_frame_and_cached(real_dir, monkeypatch):
    frames = se.open_frames(str(real_dir / UAM_B))
    pass1_module.clear_cache()
    calls: list[int] = []
    real_compute = pass1_module.compute

    def counting(*tasks, **kwargs):
        calls.append(len(tasks))
        return real_compute(*tasks, **kwargs)

    monkeypatch.setattr(pass1_module, "compute", counting)
    first = register(frames, reference=3, max_stars=150)
    assert calls == [6]

    def no_read(*args, **kwargs):
        raise AssertionError("a cached frame was read")

    monkeypatch.setattr("stackengine.io.sources.FrameView.read", no_read)
    again = register(frames, reference=3, max_stars=150)
    assert calls == [6, 0]
    np.testing.assert_allclose(again.matrix.values, first.matrix.values, atol=1e-9)


@pytest.mark.parametrize(
    ("kwargs", "text"),
    [
        ({"transform": "rigid"}, "transform='rigid'"),
        ({"min_matches": 1}, "min_matches=1"),
        ({"transform": "homography", "min_matches": 4}, "min_matches=4"),
        ({"max_stars": 2}, "max_stars=2"),
        ({"bayer": "XYZ"}, "bayer='XYZ'"),
        ({"reference": 9}, "reference=9"),
        ({"reference": "nope.fits"}, "reference='nope.fits'"),
    ],
)
def test_bad_parameters_are_named(kwargs, text):
    data = np.zeros((3, 64, 64), np.float32)
    with pytest.raises(ParameterError, match=text.replace("(", r"\(")):
        register(data, **kwargs)


def test_transform_names():
    assert TRANSFORMS == ("shift", "similarity", "affine", "homography")


# --- detection binned beyond the base luminance (large frames) --------------------------


def _grid_difference(a: np.ndarray, b: np.ndarray, shape: tuple[int, int]) -> float:
    grid = _grid(*shape, 32)
    return float(np.hypot(*(_map(a, grid) - _map(b, grid)).T).max())


@pytest.mark.parametrize(("pattern", "reference", "shape"), [
    (UAM_B, 3, (1024, 1024)), (SEESTAR_10S, 0, (1920, 1080)),
])  # fmt: skip
def test_binned_detection_measures_stars_at_full_resolution(
    real_dir, monkeypatch, pattern, reference, shape
):
    """Frames over MAX_DETECT_PIXELS are searched on a binned image and their stars
    measured on full-resolution cutouts: transforms, seeing and roundness as unbinned."""
    frames = se.open_frames(str(real_dir / pattern))
    pass1_module.clear_cache()
    plain = register(frames, reference=reference)
    monkeypatch.setattr(stars_module, "MAX_DETECT_PIXELS", 300_000)
    pass1_module.clear_cache()
    stars = pass1_module.detect_frames(frames)
    base = 2 if "seestar" in pattern else 1  # Bayer frames: 2 x 2 cells
    assert all(s.binning == 2 * base for s in stars)
    binned = register(frames, reference=reference)
    for k in range(frames.sizes["frame"]):
        assert _grid_difference(binned.matrix.values[k], plain.matrix.values[k], shape) < 0.2
        assert binned.n_matched.values[k] >= 0.6 * plain.n_matched.values[k]
    np.testing.assert_allclose(binned.fwhm.values, plain.fwhm.values, rtol=0.04)
    np.testing.assert_allclose(binned.roundness.values, plain.roundness.values, atol=0.05)
    np.testing.assert_allclose(binned.background.values, plain.background.values, rtol=0.01)
    # in memory (cutouts by indexing) as from the files (cutouts through a memory map)
    data = np.asarray(frames.values)
    bayer = "GRBG" if base == 2 else False
    mem = register(data, reference=reference, bayer=bayer)
    np.testing.assert_allclose(mem.matrix.values, binned.matrix.values, atol=1e-6)
    np.testing.assert_allclose(mem.fwhm.values, binned.fwhm.values, rtol=1e-6)


def test_binned_detection_ignores_single_pixel_spikes(star_field, monkeypatch):
    """Cosmic rays are bright bins of the binned image; at full resolution they are single
    pixels and are not taken for stars."""
    truth, noise = star_field
    rng = np.random.default_rng(11)
    frame = truth + rng.normal(0.0, noise, truth.shape)
    ys, xs = rng.integers(8, 1016, 400), rng.integers(8, 1016, 400)
    frame[ys, xs] += rng.uniform(2000, 20000, 400)
    monkeypatch.setattr(stars_module, "MAX_DETECT_PIXELS", 100_000)
    found = pass1_module.detect_frames(frame[None].astype(np.float32))[0]
    assert found.binning == 4 and len(found) > 100
    d = np.hypot(found.x[:, None] - xs[None, :], found.y[:, None] - ys[None, :]).min(axis=1)
    assert np.mean(d < 1.0) < 0.02


def test_a_rotating_dithered_sequence_is_matched_from_its_neighbours(monkeypatch):
    """A field turning 1 deg a frame with random dithers of up to 8 px: every frame
    but the first of each chain is matched from its neighbour's transform (rotation
    kept, the dither voted) without the asterisms, to the true transform."""
    from stackengine.register import api, match
    from stackengine.register.stars import FrameStars

    rng = np.random.default_rng(3)
    ref_xy = rng.uniform(20, 980, (150, 2))
    flux = np.sort(rng.uniform(1e3, 1e5, 150))[::-1]

    def stars(m):
        p = m @ np.vstack([ref_xy.T, np.ones(150)])
        xy = (p[:2] / p[2]).T + rng.normal(0, 0.02, (150, 2))
        return FrameStars(xy[:, 0], xy[:, 1], flux, 3.0, 0.9, 100.0, 5.0, (1000, 1000), 1)

    truths, frames = [], []
    for k in range(1, 41):
        a = np.radians(1.0 * k)
        m = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1.0]])
        m[:2, 2] = rng.uniform(-8, 8, 2) + [500 - 500 * m[0, 0] + 500 * m[0, 1],
                                            500 - 500 * m[1, 0] - 500 * m[1, 1]]  # fmt: skip
        truths.append(m)
        frames.append(stars(m))
    calls = []
    real = match.asterism_transform
    monkeypatch.setattr(match, "asterism_transform", lambda *a: calls.append(1) or real(*a))
    ref = stars(np.eye(3))
    for f in frames:  # alone, the turned frames need the asterisms
        match.match_stars(ref.xy, f.xy, "similarity", fwhm=3.0)
    assert len(calls) >= 5
    calls.clear()
    found = api._match_chain(ref, frames, "similarity", 4)
    assert len(calls) <= 1  # from its neighbour's transform
    grid = np.array([[0, 0, 1], [999, 0, 1], [0, 999, 1], [999, 999, 1.0]]).T
    for m, f in zip(truths, found, strict=True):
        a, b = f.matrix @ grid, m @ grid
        assert np.abs(a[:2] / a[2] - b[:2] / b[2]).max() < 0.02  # px, at the corners
