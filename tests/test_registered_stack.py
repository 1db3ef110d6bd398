"""Registered stacks (issue 16 item 2): frames resampled onto the output grid inside the
tile tasks. References: frames made by exact integer shifts of a known image (the
stack must give the image back bit for bit where covered, and count the coverage),
scipy's affine_transform for rotations, and sep star widths on the real uam lights."""

from __future__ import annotations

import glob
import warnings
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from reference import star_fwhm

import stackengine as se

REAL = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "real"
SHIFTS = [(0, 0), (3, -2), (-5, 4), (7, 1)]


@pytest.fixture(scope="module")
def shifted(tmp_path_factory):
    folder = tmp_path_factory.mktemp("shifted")
    rng = np.random.default_rng(2)
    truth = rng.normal(100, 10, (120, 150)).astype(np.float32)
    paths, mats = [], []
    h, w = truth.shape
    for k, (dx, dy) in enumerate(SHIFTS):
        frame = np.full_like(truth, np.nan)  # frame pixel (x + dx, y + dy) = truth (x, y)
        frame[max(dy, 0) : h + min(dy, 0), max(dx, 0) : w + min(dx, 0)] = truth[
            max(-dy, 0) : h - max(dy, 0), max(-dx, 0) : w - max(dx, 0)
        ]
        paths.append(str(folder / f"f{k}.fits"))
        fits.PrimaryHDU(frame).writeto(paths[-1])
        mats.append(np.array([[1, 0, dx], [0, 1, dy], [0, 0, 1.0]]))
    return paths, np.array(mats), truth


def _coverage(shape: tuple[int, int], mats: np.ndarray) -> np.ndarray:
    h, w = shape
    y, x = np.mgrid[:h, :w]
    count = np.zeros(shape, dtype=int)
    for m in mats:
        fx, fy = x + m[0, 2], y + m[1, 2]
        count += (fx >= 0) & (fx < w) & (fy >= 0) & (fy < h)
    return count


@pytest.mark.parametrize("method", ["lanczos3", "bicubic", "bilinear", "nearest"])
def test_integer_shifts_give_the_image_back(shifted, method):
    paths, mats, truth = shifted
    ds = se.stack(se.open_frames(paths), register=mats, reject=None, interpolation=method)
    count = ds["count"].values
    np.testing.assert_array_equal(count, _coverage(truth.shape, mats))
    covered = count > 0
    np.testing.assert_array_equal(ds["image"].values[covered], truth[covered])
    assert np.isnan(ds["image"].values[~covered]).all()


def test_same_bits_for_any_tile_size_and_scheduler(shifted):
    import dask

    paths, mats, _ = shifted
    rot = mats.copy()
    angle = np.radians(20.0)
    rot[3, :2, :2] = [[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]]
    results = []
    for memory, scheduler in (("64KiB", "threads"), ("1GiB", "sync"), ("256KiB", "threads")):
        with dask.config.set(scheduler=scheduler):
            ds = se.stack(se.open_frames(paths), register=rot, memory_limit=memory).compute()
        results.append(ds)
    for other in results[1:]:
        for name in ("image", "count", "rejected_low", "rejected_high", "noise"):
            np.testing.assert_array_equal(other[name].values, results[0][name].values)


def test_union_and_intersection_framing(shifted):
    paths, mats, truth = shifted
    frames = se.open_frames(paths)
    union = se.stack(frames, register=mats, reject=None, framing="union")
    dx = [s[0] for s in SHIFTS]
    dy = [s[1] for s in SHIFTS]
    assert union["image"].shape == (
        truth.shape[0] + max(dy) - min(dy),
        truth.shape[1] + max(dx) - min(dx),
    )
    count = union["count"].values
    assert count.max() == len(SHIFTS) and (count > 0).sum() >= truth.size  # nothing cut off
    inter = se.stack(frames, register=mats, reject=None, framing="intersection")
    assert (inter["count"].values == len(SHIFTS)).mean() > 0.9


def test_rotated_frame_against_scipy(tmp_path):
    from scipy.ndimage import affine_transform

    y, x = np.mgrid[:160, :160].astype(float)
    truth = 100 + 50 * np.exp(-((x - 70) ** 2 + (y - 90) ** 2) / 800.0)  # smooth: all agree
    angle, dx, dy = np.radians(121.5), 150.0, 20.0
    c, s = np.cos(angle), np.sin(angle)
    m = np.array([[c, -s, dx], [s, c, dy], [0, 0, 1.0]])  # output -> frame
    inv = np.linalg.inv(m)
    frame = affine_transform(truth, [[inv[1, 1], inv[1, 0]], [inv[0, 1], inv[0, 0]]],
                             offset=[inv[1, 2], inv[0, 2]], order=3, cval=np.nan)  # fmt: skip
    path = tmp_path / "rot.fits"
    fits.PrimaryHDU(frame.astype(np.float32)).writeto(path)
    from scipy.ndimage import binary_erosion

    # lanczos3 does not reproduce a slope exactly (its weights' first moment is up to
    # 0.018 px: 0.027 on this Gaussian's steepest slope of 1.5 per pixel); bicubic does
    for method, atol in (("bicubic", 0.02), ("lanczos3", 0.05)):
        ds = se.stack(se.open_frames([str(path)]), register=m[None], reject=None,
                      interpolation=method)  # fmt: skip
        got = ds["image"].values
        covered = np.isfinite(got)
        assert covered.mean() > 0.3
        # away from the frame's edge, where scipy's spline sees its constant border
        ok = binary_erosion(covered, iterations=6)
        np.testing.assert_allclose(got[ok], truth[ok], atol=atol, err_msg=method)


@pytest.mark.filterwarnings("ignore::astropy.utils.exceptions.AstropyWarning")
def test_real_lights_register_and_stars_stay_sharp():
    files = sorted(glob.glob(str(REAL / "uam_ngc2420" / "science_NGC2420_B*")))

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        singles = [star_fwhm(fits.getdata(f)) for f in files]
    ds = se.stack(se.open_frames(files), register="stars")
    assert star_fwhm(ds["image"].values) <= 1.15 * float(np.median(singles))
    assert ds.attrs["register"] == "stars" and ds.attrs["interpolation"] == "lanczos3"


def _table(paths, mats, fwhm):
    import xarray as xr

    n = len(paths)
    return xr.Dataset(
        {
            "matrix": (("frame", "i", "j"), mats),
            "fwhm": (("frame",), np.asarray(fwhm, dtype=float)),
            "n_stars": (("frame",), np.full(n, 50)),
        },
        coords={"frame": np.arange(n), "path": ("frame", np.array(paths))},
        attrs={"reference": 0},
    )


def test_selection_keeps_the_frames_that_pass(shifted):
    paths, mats, truth = shifted
    table = _table(paths, mats, [3.0, 5.0, 3.5, 4.0])
    ds = se.stack(se.open_frames(paths), register=table, select=["fwhm<4.5", "best:75%"],
                  reject=None)  # fmt: skip
    # fwhm<4.5 drops frame 1; best 75 % (3 of 4) by fwhm drops frame 1 as well
    assert ds.attrs["n_frames"] == 3
    lines = ds.attrs["selection"]
    assert lines[1].endswith("dropped (fwhm 5 fails fwhm<4.5; fwhm 5 not in the best 75%)")
    assert lines[0].endswith("kept (the reference frame)")
    keep = [0, 2, 3]
    count = ds["count"].values
    np.testing.assert_array_equal(count, _coverage(truth.shape, mats[keep]))
    covered = count > 0
    np.testing.assert_array_equal(ds["image"].values[covered], truth[covered])
    with pytest.raises(se.ParameterError, match="select: unknown measurement 'sharpness'"):
        se.stack(se.open_frames(paths), register=table, select=["sharpness<3"])
    with pytest.raises(se.ParameterError, match="needs a registration"):
        se.stack(se.open_frames(paths), select=["fwhm<3"])


def test_a_table_without_a_failed_frame_stacks_the_others(shifted):
    paths, mats, truth = shifted
    table = _table(paths, mats, [3.0, 3.0, 3.0, 3.0]).isel(frame=[0, 1, 3])  # frame 2 failed
    ds = se.stack(se.open_frames(paths), register=table, reject=None)
    assert ds.attrs["n_frames"] == 3
    np.testing.assert_array_equal(ds["count"].values, _coverage(truth.shape, mats[[0, 1, 3]]))


def _cropped(tmp_path, paths, mats, crops):
    """The frames cut to ``crops`` (y0, y1, x0, x1) and their matrices moved with them."""
    out_paths, out_mats = [], []
    for k, (p, m) in enumerate(zip(paths, mats, strict=True)):
        y0, y1, x0, x1 = crops[k]
        q = str(tmp_path / f"crop{k}.fits")
        fits.PrimaryHDU(fits.getdata(p)[y0:y1, x0:x1]).writeto(q)
        out_paths.append(q)
        out_mats.append(np.array([[1, 0, -x0], [0, 1, -y0], [0, 0, 1.0]]) @ m)
    return out_paths, np.array(out_mats)


@pytest.mark.parametrize("method", ["lanczos3", "bilinear"])
def test_frames_of_different_shapes_stack_where_they_cover(shifted, tmp_path, method):
    """Cropped frames (another size, another origin) with their moved matrices: the
    stack equals the full frames' stack wherever the crops keep every tap, the
    coverage shrinks by the crops, and the output grid is the reference frame's."""
    paths, mats, truth = shifted
    crops = [(0, 120, 0, 150), (10, 100, 0, 140), (0, 120, 25, 150), (5, 111, 3, 150)]
    cpaths, cmats = _cropped(tmp_path, paths, mats, crops)
    full = se.stack(se.open_frames(paths), register=mats, reject=None, interpolation=method)
    mixed = se.stack(cpaths, register=cmats, reject=None, interpolation=method)
    assert mixed["image"].shape == truth.shape
    # the crops' coverage: output pixel -> frame pixel inside the crop
    h, w = truth.shape
    y, x = np.mgrid[:h, :w]
    count = np.zeros(truth.shape, dtype=int)
    inner = np.ones(truth.shape, dtype=bool)  # every frame's taps inside its crop
    for m, (y0, y1, x0, x1) in zip(mats, crops, strict=True):
        fx, fy = x + m[0, 2], y + m[1, 2]
        count += (fx >= x0) & (fx < x1) & (fy >= y0) & (fy < y1) & (fx >= 0) & (fx < w) \
            & (fy >= 0) & (fy < h)  # fmt: skip
        inner &= (fx >= x0 + 3) & (fx < x1 - 3) & (fy >= y0 + 3) & (fy < y1 - 3)
    np.testing.assert_array_equal(mixed["count"].values, count)
    np.testing.assert_array_equal(mixed["image"].values[inner], full["image"].values[inner])
    # a list of DataArrays from open_frames, or a glob, gives the same job
    arrays = [se.open_frames([p]) for p in cpaths]
    again = se.stack(arrays, register=cmats, reject=None, interpolation=method)
    assert again.attrs["job_token"] == mixed.attrs["job_token"]
    globbed = se.stack(str(tmp_path / "crop*.fits"), register=cmats, reject=None,
                       interpolation=method)  # fmt: skip
    assert globbed.attrs["job_token"] == mixed.attrs["job_token"]


def test_frames_of_different_shapes_need_a_registration(shifted, tmp_path):
    paths, mats, _ = shifted
    cpaths, _ = _cropped(tmp_path, paths, mats, [(0, 120, 0, 150), (0, 100, 0, 150)] * 2)
    with pytest.raises(se.FrameMismatchError, match="crop1.fits: shape mismatch"):
        se.stack(cpaths)
    with pytest.raises(se.FrameMismatchError, match="different shapes"):
        se.stack([np.zeros((5, 6)), np.zeros((5, 7))], register=np.eye(3)[None].repeat(2, 0))


@pytest.mark.filterwarnings("ignore::astropy.utils.exceptions.AstropyWarning")
def test_real_lights_normalize_photometrically_once_registered():
    """uam_ngc2420 B lights (2, 3, 3, 60, 60, 60 s; drifting): unregistered, their stars
    do not match; registered, every frame matches dozens and the 60 s frames scale to
    the 3 s reference by about the exposure ratio 3/60 (the sky's transparency and the
    shutter of the 2 s frame leave a few per cent)."""
    files = sorted(glob.glob(str(REAL / "uam_ngc2420" / "science_NGC2420_B*")))
    ds = se.stack(se.open_frames(files), register="stars", normalize="photometric",
                  reference=1)  # fmt: skip
    assert (ds["n_stars"].values >= 50).all()
    scale = ds["scale"].values.ravel()
    exptime = np.array([fits.getheader(f)["EXPTIME"] for f in files])
    ratio = scale / (exptime[1] / exptime)
    assert np.all(np.abs(ratio[3:] - 1) < 0.15), ratio
    assert np.ptp(ratio[3:]) < 0.06, ratio


@pytest.mark.parametrize(
    ("dtype", "bzero"),
    [("uint16", 32768), ("int16", 0), ("uint8", 0), ("int8", -128), ("int32", 0),
     ("float32", 0), ("float64", 0)],
)  # fmt: skip
def test_every_pixel_type_reads_the_same_through_the_tile_boxes(tmp_path, dtype, bzero):
    """Registered tile tasks read each frame's box from a memory map when its values are
    exactly float32 (8/16-bit integers, float32), else through the reader: with identity
    matrices the registered stack is the plain stack (read by strips), calibrated or
    not, bit for bit (int32 and float64 frames are resampled as float32: within
    float32 rounding)."""
    rng = np.random.default_rng(4)
    info = np.iinfo(dtype) if dtype.startswith(("u", "i")) else None
    lo, hi = (info.min, info.max) if info else (-1e4, 1e4)
    paths = []
    for k in range(4):
        data = rng.uniform(lo, hi, (70, 90)).astype(dtype)
        paths.append(str(tmp_path / f"t{k}.fits"))
        hdu = fits.PrimaryHDU(data)
        if dtype == "int8":  # FITS stores signed bytes as uint8 with BZERO -128
            hdu = fits.PrimaryHDU((data.astype(np.int16) + 128).astype(np.uint8))
            hdu.header["BZERO"] = bzero
        hdu.writeto(paths[-1])
    bias = str(tmp_path / "bias.fits")
    fits.PrimaryHDU(rng.normal(10, 2, (70, 90)).astype(np.float32)).writeto(bias)
    eye = np.repeat(np.eye(3)[None], 4, axis=0)
    for calibration in (None, {"bias": bias}):
        plain = se.stack(se.open_frames(paths), calibration=calibration)
        reg = se.stack(se.open_frames(paths), register=eye, calibration=calibration)
        if dtype in ("int32", "float64"):  # resampled as float32: rounded once more
            np.testing.assert_allclose(reg["image"].values, plain["image"].values, rtol=0,
                                       atol=float(hi) * 2**-22)  # fmt: skip
        else:
            np.testing.assert_array_equal(reg["image"].values, plain["image"].values)


@pytest.mark.parametrize("dtype", ["uint16", "float64"])  # memory-mapped, read by the reader
def test_more_frames_than_open_files_allowed(tmp_path, dtype):
    """A registered stack keeps one frame's file (and memory map) open per thread at a
    time: 80 frames stack under a limit of 48 open files."""
    import subprocess
    import sys

    rng = np.random.default_rng(9)
    for k in range(80):
        fits.PrimaryHDU(rng.uniform(0, 1000, (40, 50)).astype(dtype)).writeto(
            tmp_path / f"f{k:02d}.fits"
        )
    script = (
        "import resource, glob, numpy as np, stackengine as se\n"
        "resource.setrlimit(resource.RLIMIT_NOFILE, (48, 48))\n"
        f"paths = sorted(glob.glob({str(tmp_path)!r} + '/f*.fits'))\n"
        "mats = np.repeat(np.eye(3)[None], len(paths), axis=0)\n"
        "mats[:, 0, 2] = np.linspace(0, 3.5, len(paths))\n"
        "ds = se.stack(se.open_frames(paths), register=mats, memory_limit='2MiB').compute()\n"
        "print(int(ds['count'].values.max()))\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "80"


def _render(shape, xy, flux, sigma, matrix, sky, noise, rng):
    """Gaussian stars of ``flux`` at output positions ``xy`` drawn where ``matrix``
    (output -> frame) puts them, pixel-integrated (erf), plus sky and noise."""
    from scipy.special import erf

    h, w = shape
    p = matrix @ np.vstack([xy.T, np.ones(len(xy))])
    fx, fy = p[0] / p[2], p[1] / p[2]
    scale = np.sqrt(abs(np.linalg.det(matrix[:2, :2])))
    s = sigma / scale  # a frame of finer pixels sees a wider star
    img = np.full(shape, sky, dtype=np.float64)
    edges_x, edges_y = np.arange(w + 1) - 0.5, np.arange(h + 1) - 0.5
    for x, y, f in zip(fx, fy, flux, strict=True):
        x0, x1 = max(int(x) - 12, 0), min(int(x) + 13, w)
        y0, y1 = max(int(y) - 12, 0), min(int(y) + 13, h)
        if x1 <= x0 or y1 <= y0:
            continue
        gx = np.diff(erf((edges_x[x0 : x1 + 1] - x) / (np.sqrt(2) * s))) / 2
        gy = np.diff(erf((edges_y[y0 : y1 + 1] - y) / (np.sqrt(2) * s))) / 2
        img[y0:y1, x0:x1] += f * np.outer(gy, gx)
    return (img + rng.normal(0, noise, shape)).astype(np.float32)


@pytest.mark.filterwarnings("ignore::astropy.utils.exceptions.AstropyWarning")
def test_synthetic_frames_from_a_real_star_field(tmp_path):
    """Frames drawn from the stars of a real field (uam_ngc2420 V: positions and
    fluxes found by sep) at known sub-pixel shifts, rotations and small scale changes:
    transforms recovered within 0.05 px RMS over the field, and stacked star fluxes
    within 0.5 % of the truth for lanczos3, bicubic and bilinear (conserve_flux: a
    frame of another scale holds the flux in other pixels)."""
    sep = pytest.importorskip("sep")
    real = sorted(glob.glob(str(REAL / "uam_ngc2420" / "science_NGC2420_V*")))[-1]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        data = fits.getdata(real).astype(np.float64)[200:712, 200:712].copy()
    bkg = sep.Background(data)
    obj = sep.extract(data - bkg, 8, err=bkg.globalrms)
    obj = obj[(obj["flag"] == 0) & (obj["peak"] < 20000)]
    xy = np.column_stack([obj["x"], obj["y"]])
    flux = np.clip(obj["flux"], 2000, None) * 5  # bright enough to measure to 0.1 %
    rng = np.random.default_rng(12)
    shape, sigma, n = (512, 512), 1.4, 6
    truths, paths = [], []
    for k in range(n):
        if k == 0:
            m = np.eye(3)
        else:
            a, s = np.radians(rng.uniform(-3, 3)), 1 + rng.uniform(-0.003, 0.003)
            c, si = s * np.cos(a), s * np.sin(a)
            m = np.array([[c, -si, rng.uniform(-6, 6)], [si, c, rng.uniform(-6, 6)], [0, 0, 1]])
        truths.append(m)
        paths.append(str(tmp_path / f"s{k}.fits"))
        fits.PrimaryHDU(_render(shape, xy, flux, sigma, m, 100.0, 2.0, rng)).writeto(paths[-1])
    table = se.register(se.open_frames(paths), reference=0)
    gy, gx = np.mgrid[0:512:32, 0:512:32]
    grid = np.vstack([gx.ravel(), gy.ravel(), np.ones(gx.size)])
    for m_fit, m_true in zip(table["matrix"].values, truths, strict=True):
        a, b = m_fit @ grid, m_true @ grid
        err = np.hypot(a[0] / a[2] - b[0] / b[2], a[1] / a[2] - b[1] / b[2])
        assert np.sqrt(np.mean(err**2)) < 0.05
    # isolated stars well inside every frame
    inside = (xy[:, 0] > 40) & (xy[:, 0] < 472) & (xy[:, 1] > 40) & (xy[:, 1] < 472)
    dist = np.hypot(*(xy[:, None, :] - xy[None, :, :]).transpose(2, 0, 1))
    np.fill_diagonal(dist, np.inf)
    keep = inside & (dist.min(axis=1) > 15)
    assert keep.sum() >= 20
    for method in ("lanczos3", "bicubic", "bilinear"):
        ds = se.stack(se.open_frames(paths), register=table, interpolation=method,
                      conserve_flux=True, reject=None)  # fmt: skip
        img = ds["image"].values.astype(np.float64) - 100.0
        got, _, _ = sep.sum_circle(img, xy[keep, 0], xy[keep, 1], 7 * sigma)
        ratio = got / flux[keep]
        assert abs(np.median(ratio) - 1) < 0.005, (method, np.median(ratio))
