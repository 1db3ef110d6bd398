"""RGBA alpha as a missing-value mask, and imgstack compatibility on its own fixtures.

imgstack (drnc/imgstack, Apache-2.0) stacks TIFFs with a sigma-clipped mean:
mean centre, population std, reject |x - mean| > sigma * std, rejections
cumulative, iterate until nothing new is rejected or ``loop`` passes; a pixel
whose alpha is below the dtype maximum is ignored in that frame. The expected
values below are those of imgstack's test_imgstack.py (its output is the
float64 mean cast to the input dtype, i.e. truncated; an all-transparent pixel
gives 0 there and NaN here).
"""

from __future__ import annotations

import numpy as np
import pytest
import tifffile
from conftest import PEER

import stackengine as se
from stackengine.errors import FrameMismatchError
from stackengine.normalize.measure import measure_frames

TIFFS = PEER / "imgstack_tiffs"
ALPHA = [TIFFS / f"image_alpha_{i}.tif" for i in range(1, 5)]


def masked_colour(path):
    """tifffile's RGBA pixels as float, NaN where alpha < the dtype maximum."""
    rgba = tifffile.imread(path)
    colour = rgba[..., :-1].astype(np.float64)
    colour[rgba[..., -1] < np.iinfo(rgba.dtype).max] = np.nan
    return colour


def imgstack_reference(stack, sigma, loops):
    """Independent numpy version of imgstack's algorithm on (frame, ...) data with NaN
    for transparent pixels. Returns (mean with NaN where nothing is left, n clipped)."""
    data = np.ma.masked_invalid(np.asarray(stack, dtype=np.float64))
    masked0 = int(np.ma.count_masked(data))
    average = data.mean(axis=0)
    if len(data) >= 3:
        for _ in range(loops):
            before = int(np.ma.count_masked(data))
            deviation = sigma * data.std(axis=0)
            clip = (np.abs(data - average) > deviation).filled(False)
            data.mask = data.mask | clip
            average = data.mean(axis=0)
            if int(np.ma.count_masked(data)) == before:
                break
    return np.ma.filled(average, np.nan), int(np.ma.count_masked(data)) - masked0


def se_imgstack(frames, sigma, loops):
    if loops == 0:
        return se.stack(frames, reject=None).compute()
    return se.stack(
        frames,
        reject="sigma",
        center="mean",
        spread="std",
        sigma_lower=sigma,
        sigma_upper=sigma,
        maxiters=loops,
    ).compute()


def truncated(image):
    """imgstack's output convention: the mean cast to uint16, 0 where nothing is left."""
    return np.where(np.isnan(image), 0, np.floor(image)).astype(np.int64).tolist()


def n_rejected(result):
    return int(result["rejected_low"].sum() + result["rejected_high"].sum())


def test_peer_rgba_opens_as_rgb_with_nan_where_transparent():
    frames = se.open_frames(ALPHA)
    assert frames.shape == (4, 2, 3, 3) and frames.dtype == np.float32
    assert frames.dims == ("frame", "y", "x", "channel")
    expected = np.stack([masked_colour(p) for p in ALPHA])
    np.testing.assert_array_equal(frames.values, expected.astype(np.float32))
    # alpha < 65535 (also partly transparent 10000, 1000, 10) per frame, by hand from the
    # files: 1: (1,1) (1,2); 2: (1,0) (1,2); 3: (0,2) (1,1) (1,2); 4: (0,1) (1,2)
    transparent = np.isnan(frames.values).all(axis=-1)
    assert transparent.sum(axis=(1, 2)).tolist() == [2, 2, 3, 2]
    assert transparent[2].tolist() == [[False, False, True], [False, True, True]]
    assert transparent[:, 1, 2].all()  # transparent in every frame
    assert not np.isnan(frames.values[~transparent]).any()
    # tiles read the same values
    tiled = se.open_frames(ALPHA, chunks=(1, 2))
    assert tiled.chunks[1:3] == ((1, 1), (2, 1))
    np.testing.assert_array_equal(tiled.values, frames.values)


@pytest.mark.parametrize("sigma,loops", [(1.0, 1), (1.0, 2), (1.0, 5), (2.0, 3), (0.5, 10)])
def test_alpha_stack_equals_imgstack_algorithm(sigma, loops):
    reference, clipped = imgstack_reference(
        np.stack([masked_colour(p) for p in ALPHA]), sigma, loops
    )
    res = se_imgstack(se.open_frames(ALPHA), sigma, loops)
    np.testing.assert_allclose(res["image"].values, reference, rtol=1e-6)
    assert n_rejected(res) == clipped
    assert res["count"].values[1, 2].tolist() == [0, 0, 0]


def test_alpha_stack_matches_imgstack_expected_values():
    # imgstack test_2d_with_alpha_images / test_multiple_files_with_alpha: loop 1, sigma 1
    res = se_imgstack(se.open_frames(ALPHA), 1.0, 1)
    expected = [
        [[10, 99, 999], [49, 500, 5001], [10012, 20015, 29952]],
        [[600, 500, 400], [16, 31, 41], [0, 0, 0]],
    ]  # imgstack also averages the alpha channel (65535 where anything is left): not kept here
    assert truncated(res["image"].values) == expected
    assert n_rejected(res) == 17  # imgstack's clipped_points()


@pytest.mark.parametrize(
    "loops,expected,clipped",
    [
        (0, [[[10, 96, 1134], [52, 497, 4990], [10068, 19889, 29962]],
             [[601, 501, 377], [19, 31, 39], [1, 1, 1]]], 0),
        (1, [[[10, 99, 999], [49, 502, 5002], [10012, 20015, 29976]],
             [[600, 499, 399], [19, 31, 41], [1, 0, 1]]], 27),
        (2, [[[10, 100, 1000], [50, 502, 5003], [10012, 20014, 29976]],
             [[600, 500, 400], [19, 31, 41], [1, 0, 1]]], 42),
    ],
)  # fmt: skip
def test_rgb_without_alpha_matches_imgstack(loops, expected, clipped):
    paths = [TIFFS / f"image_{i}.tif" for i in range(1, 5)]
    frames = se.open_frames(paths)
    assert frames.dtype == np.uint16 and frames.shape == (4, 2, 3, 3)
    res = se_imgstack(frames, 1.0, loops)
    assert truncated(res["image"].values) == expected
    assert n_rejected(res) == clipped


@pytest.mark.parametrize(
    "sigma,loops,expected,clipped",
    [
        (1.0, 0, [19, 4700, 1171, 9073], 0),
        (1.0, 1, [10, 99, 1015, 10144], 4),
        (1.0, 2, [10, 99, 1005, 9982], 12),
        (1.0, 3, [10, 99, 998, 9991], 22),
        (1.0, 4, [10, 100, 997, 10003], 26),
        (1.0, 7, [10, 100, 997, 10002], 28),
        (2.5, 1, [10, 99, 1015, 10144], 4),
        (2.5, 4, [10, 99, 1015, 9982], 5),
    ],
)
def test_1d_rows_match_imgstack(sigma, loops, expected, clipped):
    frames = se.open_frames([TIFFS / f"1d_{i}.tif" for i in range(1, 10)])
    assert frames.shape == (9, 1, 4)
    res = se_imgstack(frames, sigma, loops)
    assert truncated(res["image"].values) == [expected]
    assert n_rejected(res) == clipped


def test_two_files_are_averaged_like_imgstack():
    # imgstack's TiffStacker test_2_files (loop 1, sigma 1): with 2 values each is
    # exactly one std from the mean, so nothing is clipped
    res = se_imgstack(se.open_frames([TIFFS / "1d_1.tif", TIFFS / "1d_2.tif"]), 1.0, 1)
    assert truncated(res["image"].values) == [[9, 97, 997, 9997]]


def test_float_alpha_flag_is_data_like_imgstack_without_alpha():
    # 4d_float_*.tif flag channel 3 as associated alpha but hold data there; imgstack's
    # tests stack them with alpha off (test_float32_compressed: loop 2, sigma 1)
    frames = se.open_frames([TIFFS / f"4d_float_{i}.tif" for i in range(1, 4)])
    assert frames.shape == (3, 2, 2, 4) and frames.dtype == np.float32
    res = se_imgstack(frames, 1.0, 2)
    expected = [
        [[10.5, 102.5, 997.5, 8912], [49.5, 501, 4996, 62.0]],
        [[10002.0, 19992.5, 30020.5, 1040.5], [10.0, 19.0, 30.5, 499]],
    ]
    np.testing.assert_array_equal(res["image"].values, np.array(expected, np.float32))
    res = se_imgstack(frames, 1.2, 1)  # test_4d_float_images
    assert truncated(res["image"].values) == [
        [[10, 102, 997, 8912], [49, 501, 4996, 62]],
        [[10002, 19992, 30020, 1040], [10, 19, 30, 499]],
    ]
    assert n_rejected(res) == 17


def test_uint8_rgba_and_grey_alpha(tmp_path):
    rng = np.random.default_rng(5)
    rgba = rng.integers(0, 256, (3, 6, 7, 4), dtype=np.uint8)
    rgba[..., 3] = np.where(rng.random((3, 6, 7)) < 0.3, rng.integers(0, 255, (3, 6, 7)), 255)
    paths = [tmp_path / f"rgba{i}.tif" for i in range(3)]
    for p, frame in zip(paths, rgba, strict=True):
        tifffile.imwrite(p, frame, photometric="rgb", extrasamples=["unassalpha"])
    frames = se.open_frames(paths)
    assert frames.shape == (3, 6, 7, 3) and frames.dtype == np.float32
    np.testing.assert_array_equal(frames.values, np.stack([masked_colour(p) for p in paths]))
    # grey + alpha: the alpha channel goes, the frames are 2-D
    grey = rgba[..., [0, 3]]
    gpaths = [tmp_path / f"ga{i}.tif" for i in range(3)]
    for p, frame in zip(gpaths, grey, strict=True):
        tifffile.imwrite(p, frame, photometric="minisblack", extrasamples=["assocalpha"])
    gframes = se.open_frames(gpaths)
    assert gframes.dims == ("frame", "y", "x") and gframes.shape == (3, 6, 7)
    expected = np.where(grey[..., 1] == 255, grey[..., 0], np.nan).astype(np.float32)
    np.testing.assert_array_equal(gframes.values, expected)


def test_alpha_in_some_frames_only_is_a_mismatch(tmp_path):
    data = np.full((4, 5, 4), 7, np.uint16)
    tifffile.imwrite(tmp_path / "a.tif", data, photometric="rgb", extrasamples=["unassalpha"])
    tifffile.imwrite(tmp_path / "b.tif", data, photometric="rgb", extrasamples=["unspecified"])
    with pytest.raises(FrameMismatchError, match=r"b\.tif: alpha mismatch"):
        se.open_frames([tmp_path / "a.tif", tmp_path / "b.tif"])


def test_measure_ignores_transparent_pixels():
    res = measure_frames(se.open_frames(ALPHA))
    assert res["location"].dims == ("frame", "channel")
    for k, (path, n_opaque) in enumerate(zip(ALPHA, [4, 4, 3, 4], strict=True)):
        colour = masked_colour(path)
        for c in range(3):
            values = colour[..., c][np.isfinite(colour[..., c])]
            assert res["location"].values[k, c] == np.median(values)
            assert res["n_pixels"].values[k, c] == values.size == n_opaque
