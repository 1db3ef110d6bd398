"""Background matching of WCS mosaics (normalize/overlap.py): additive offsets per frame.

Synthetic mosaics: TAN frames (1 arcsec pixels, some rotated) tiling a field of
a smooth sky with Gaussian stars, each frame with its own additive offset
(uniform in [-50, 50]) and Gaussian noise (sigma 2). References: the offsets put
in, and reproject's ``reproject_and_coadd(..., match_background=True)`` on the
same frames (its pairwise medians and SGD corrections, captured as it runs).
"""

from __future__ import annotations

import time
import warnings

import numpy as np
import pytest
import xarray as xr
from astropy.io import fits
from astropy.wcs import WCS
from dask.base import tokenize

import stackengine as se
from stackengine.frames import source_of
from stackengine.normalize.overlap import plan_background_matching
from stackengine.register.sky import plan_sky_registration

SCALE = 1.0 / 3600  # 1 arcsec pixels
SHAPE = (120, 150)
NOISE = 2.0
# Tolerances (ADU), set by the noise. Background bins are 8 x 8 pixels on these small
# frames (about 32 along the longer side): a bin median of 64 pixels has sigma about
# 1.25 * 2 / 8 = 0.3, a cell sample (bilinear between bins) about 0.2-0.3, and an
# overlap of 13-85 cells (cell=8) gives d_ab to about 0.1 (measured rms 0.13 against
# the truth; reproject's medians over some 1000-5000 pixels each: 0.06). An offset a
# pair or two from the reference: about 0.1-0.15, 0.4 is about 3 sigma for the worst
# of 9 frames. Measured: 0.21 at most against the truth (3 x 3 mosaic), see the tests.
TRUTH_TOL = 0.4
PAIR_TOL = 0.5  # our d_ab against reproject's pairwise median (measured 0.33 at most)
REPROJECT_TOL = 0.4  # our offsets against reproject's corrections

_RNG = np.random.default_rng(3)
_STARS = np.column_stack([150 + _RNG.uniform(-0.12, 0.12, 400), 2 + _RNG.uniform(-0.12, 0.12, 400)])
_FLUX = _RNG.uniform(200, 3000, 400)


def _sky(ra: np.ndarray, dec: np.ndarray) -> np.ndarray:
    """A smooth sky (a gentle curved gradient) with Gaussian stars (sigma 1.8")."""
    u, v = (ra - 150) / 0.03, (dec - 2) / 0.03
    value = 100 + 20 * u + 10 * v + 2 * u * v
    cosd = np.cos(np.radians(2.0))
    for (r, d), f in zip(_STARS, _FLUX, strict=True):
        dx, dy = (ra - r) * cosd * 3600, (dec - d) * 3600
        near = (np.abs(dx) < 12) & (np.abs(dy) < 12)
        if near.any():
            value[near] += f * np.exp(-(dx[near] ** 2 + dy[near] ** 2) / (2 * 1.8**2))
    return value


def _header(ra: float, dec: float, rot: float) -> fits.Header:
    a = np.radians(rot)
    h = fits.Header()
    h.update({
        "CTYPE1": "RA---TAN", "CTYPE2": "DEC--TAN", "CRVAL1": ra, "CRVAL2": dec,
        "CRPIX1": SHAPE[1] / 2 + 0.5, "CRPIX2": SHAPE[0] / 2 + 0.5,
        "CD1_1": -SCALE * np.cos(a), "CD1_2": SCALE * np.sin(a),
        "CD2_1": SCALE * np.sin(a), "CD2_2": SCALE * np.cos(a),
    })  # fmt: skip
    return h


def _write(tmp, name: str, centres: list, offsets: np.ndarray, seed: int) -> list[str]:
    """Frames at ``centres`` ((ra, dec, rotation) each), sky + offset + noise."""
    rng = np.random.default_rng(seed)
    paths = []
    yy, xx = np.mgrid[0 : SHAPE[0], 0 : SHAPE[1]].astype(float)
    for k, ((ra, dec, rot), off) in enumerate(zip(centres, offsets, strict=True)):
        h = _header(ra, dec, rot)
        sra, sdec = WCS(h).all_pix2world(xx, yy, 0)
        data = (_sky(sra, sdec) + off + rng.normal(0, NOISE, SHAPE)).astype(np.float32)
        path = tmp / f"{name}_{k}.fits"
        fits.PrimaryHDU(data, header=h).writeto(path)
        paths.append(str(path))
    return paths


def _grid_centres(nx: int, ny: int, ra0: float, dec0: float, rots: list) -> list:
    """A mosaic: centres 110" apart in RA and 85" in Dec (40 and 35 pixel overlaps)."""
    out = []
    for j in range(ny):
        for i in range(nx):
            ra = ra0 + (i - (nx - 1) / 2) * 110 * SCALE / np.cos(np.radians(dec0))
            dec = dec0 + (j - (ny - 1) / 2) * 85 * SCALE
            out.append((ra, dec, rots[(j * nx + i) % len(rots)]))
    return out


def _open(paths: list[str]) -> tuple[xr.DataArray, object]:
    frames = se.open_frames(paths, pad=True)
    reg = plan_sky_registration(source_of(frames.data),
                                {"output_wcs": "optimal", "interpolation": "bilinear"})  # fmt: skip
    return frames, reg


@pytest.fixture(scope="module")
def mosaic(tmp_path_factory):
    """A 3 x 3 mosaic, four frames rotated (up to 9 degrees)."""
    tmp = tmp_path_factory.mktemp("mosaic")
    truth = np.random.default_rng(17).uniform(-50, 50, 9)
    centres = _grid_centres(3, 3, 150.0, 2.0, [0.0, 7.0, 0.0, -9.0, 0.0, 4.0, 0.0, -6.0, 0.0])
    paths = _write(tmp, "m", centres, truth, seed=1)
    frames, reg = _open(paths)
    return paths, frames, reg, truth


def test_offsets_equal_the_truth(mosaic):
    paths, frames, reg, truth = mosaic
    start = time.perf_counter()
    norm = plan_background_matching(frames, reg, cell=8)
    elapsed = time.perf_counter() - start
    o = norm.table["background_offset"][:, 0]
    assert norm.reference == 4  # the centre frame overlaps all 8 others
    assert norm.table["overlaps"].tolist() == [3, 5, 3, 5, 8, 5, 3, 5, 3]
    assert o[4] == 0.0
    err = o - (truth - truth[4])
    assert np.abs(err).max() < TRUTH_TOL, err
    np.testing.assert_array_equal(norm.offset, -norm.table["background_offset"])
    np.testing.assert_array_equal(norm.scale, np.ones((9, 1)))
    assert np.all(norm.table["group"] == 0) and np.all(norm.table["group_reference"] == 4)
    assert np.nanmax(norm.table["overlap_residual"]) < 0.5
    # the per-frame variables of a result table (grey: one value per frame)
    variables = norm.variables(False)
    assert variables["background_offset"][0] == ("frame",)
    assert variables["overlaps"][1].shape == (9,)
    assert tokenize(norm) == tokenize(plan_background_matching(frames, reg, cell=8))
    print(f"3x3 mosaic: max |error| {np.abs(err).max():.3f} ADU, {elapsed:.2f} s")

    # another reference, by path: the same offsets up to that frame's
    other = plan_background_matching(frames, reg, reference=paths[0], cell=8)
    assert other.reference == 0
    shifted = other.table["background_offset"][:, 0]
    np.testing.assert_allclose(shifted, o - o[0], atol=1e-9)


def test_thinned_pairs_stay_connected(mosaic):
    """With at most 2 pairs per frame (plus a spanning forest), one group still, the
    same offsets within the noise."""
    _, frames, reg, truth = mosaic
    norm = plan_background_matching(frames, reg, cell=8, max_pairs=2)
    full = plan_background_matching(frames, reg, cell=8)
    assert norm.table["overlaps"].sum() < full.table["overlaps"].sum()
    assert np.all(norm.table["group"] == 0)
    o = norm.table["background_offset"][:, 0]
    ref = norm.reference
    assert np.abs(o - (truth - truth[ref])).max() < TRUTH_TOL


def test_against_reproject_match_background(mosaic, monkeypatch):
    from reproject import reproject_interp
    from reproject.mosaicking import _coadd, reproject_and_coadd

    paths, frames, reg, truth = mosaic
    captured = {}
    original_matrix, original_sgd = _coadd.determine_offset_matrix, _coadd.solve_corrections_sgd

    def matrix(arrays):
        captured["matrix"] = original_matrix(arrays)
        return captured["matrix"]

    def sgd(offset_matrix, **kwargs):
        np.random.seed(0)  # reproject's SGD shuffles with numpy's global generator
        captured["corrections"] = original_sgd(offset_matrix, **kwargs)
        return captured["corrections"]

    monkeypatch.setattr(_coadd, "determine_offset_matrix", matrix)
    monkeypatch.setattr(_coadd, "solve_corrections_sgd", sgd)
    out_wcs = WCS(fits.Header.fromstring(reg.out_header))
    inputs = [(fits.getdata(p).astype(np.float64), WCS(fits.getheader(p))) for p in paths]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        reproject_and_coadd(inputs, out_wcs, shape_out=reg.shape, combine_function="mean",
                            reproject_function=reproject_interp, match_background=True)  # fmt: skip
    corrections = captured["corrections"]
    assert np.isfinite(corrections).all() and corrections.size == 9

    norm = plan_background_matching(frames, reg, cell=8)
    ref = norm.reference
    ours = norm.table["background_offset"][:, 0]
    theirs = corrections - corrections[ref]
    assert np.abs(ours - theirs).max() < REPROJECT_TOL, ours - theirs
    # the pairwise medians: reproject's over every overlapping pixel, ours over cells
    pairs = norm.details["pairs"]
    mat = captured["matrix"][pairs["a"], pairs["b"]]
    assert np.abs(pairs["difference"][:, 0] - mat).max() < PAIR_TOL
    print(f"vs reproject: offsets {np.abs(ours - theirs).max():.3f} ADU, pair medians "
          f"{np.abs(pairs['difference'][:, 0] - mat).max():.3f} ADU, "
          f"reproject vs truth {np.abs(theirs - (truth - truth[ref])).max():.3f} ADU")  # fmt: skip


def test_disconnected_groups_and_a_lone_frame(tmp_path):
    """A 2 x 2 group, a pair 6' east and a lone frame 6' north: each group is held at 0
    at its own most connected frame, the lone frame keeps offset 0."""
    truth = np.array([10.0, -20.0, 35.0, 5.0, -40.0, 22.0, 17.0])
    centres = _grid_centres(2, 2, 150.0, 2.0, [0.0, 5.0])
    centres += _grid_centres(2, 1, 150.1, 2.0, [-4.0])
    centres += [(150.0, 2.1, 0.0)]
    frames, reg = _open(_write(tmp_path, "g", centres, truth, seed=2))
    norm = plan_background_matching(frames, reg, cell=8)
    t = norm.table
    o = t["background_offset"][:, 0]
    assert t["group"].tolist() == [0, 0, 0, 0, 1, 1, 2]
    assert t["overlaps"].tolist() == [3, 3, 3, 3, 1, 1, 0]
    # ties in pairs: the most common cells, then the lowest index
    a_ref = norm.reference
    assert a_ref in (0, 1, 2, 3)
    assert t["group_reference"].tolist() == [a_ref] * 4 + [4, 4, 6]
    assert o[a_ref] == 0.0 and o[4] == 0.0 and o[6] == 0.0
    assert np.abs(o[:4] - (truth[:4] - truth[a_ref])).max() < TRUTH_TOL
    assert abs(o[5] - (truth[5] - truth[4])) < TRUTH_TOL
    assert np.isnan(t["overlap_residual"][6, 0]) and norm.offset[6, 0] == 0.0

    # the reference in the pair: that group is group 0, the 2 x 2 keeps its own zero
    norm = plan_background_matching(frames, reg, reference=5, cell=8)
    t = norm.table
    assert norm.reference == 5
    assert t["group"].tolist() == [1, 1, 1, 1, 0, 0, 2]
    assert t["group_reference"].tolist() == [a_ref] * 4 + [5, 5, 6]
    o = t["background_offset"][:, 0]
    assert abs(o[4] - (truth[4] - truth[5])) < TRUTH_TOL and o[5] == 0.0
    assert np.abs(o[:4] - (truth[:4] - truth[a_ref])).max() < TRUTH_TOL


def test_colour_frames_each_channel(mosaic):
    """(frame, y, x, channel) frames: each channel its own offsets. The registration
    comes from the grey files; the colour frames are in memory, on the same pixels."""
    paths, _, reg, _ = mosaic
    rng = np.random.default_rng(8)
    truth = rng.uniform(-50, 50, (9, 3))
    gain = np.array([1.0, 0.7, 0.4])
    yy, xx = np.mgrid[0 : SHAPE[0], 0 : SHAPE[1]].astype(float)
    data = np.empty((9, *SHAPE, 3), dtype=np.float32)
    for k, p in enumerate(paths):
        sra, sdec = WCS(fits.getheader(p)).all_pix2world(xx, yy, 0)
        sky = _sky(sra, sdec)
        for c in range(3):
            data[k, ..., c] = gain[c] * sky + truth[k, c] + rng.normal(0, NOISE, SHAPE)
    frames = xr.DataArray(data, dims=("frame", "y", "x", "channel"))
    norm = plan_background_matching(frames, reg, cell=8)
    o = norm.table["background_offset"]
    assert o.shape == (9, 3) and norm.offset.shape == (9, 3) and norm.scale.shape == (9, 3)
    ref = norm.reference
    err = o - (truth - truth[ref])
    assert np.abs(err).max() < TRUTH_TOL, err
    variables = norm.variables(True)
    assert variables["background_offset"][0] == ("frame", "channel")
    assert variables["group"][0] == ("frame",)
