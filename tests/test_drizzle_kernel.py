"""The drizzle kernel against the ``drizzle`` package (STScI): one frame and
several weighted frames; flux and weight conservation; bit-identical tiles;
missing values, missing map entries and zero weights."""

from __future__ import annotations

import numpy as np
import pytest
from drizzle.resample import Drizzle

from stackengine.kernels.drizzle import drizzle_into

SHAPE = (60, 50)  # input frames
OUT = (140, 150)  # output grid: every drop lands inside it
SCALE = 1.6  # output pixels per input pixel (output finer, as drizzle is used)
KERNELS = ["square", "point", "turbo"]


def _pixmap(dx=60.3, dy=5.7, angle=20.0, curved=False, shape=SHAPE):
    """Output (x, y) of each input pixel centre: rotation, scale SCALE, shift;
    ``curved`` adds quadratic terms (a non-affine map)."""
    y, x = np.mgrid[0 : shape[0], 0 : shape[1]].astype(np.float64)
    a = np.radians(angle)
    ox = SCALE * (np.cos(a) * x - np.sin(a) * y) + dx
    oy = SCALE * (np.sin(a) * x + np.cos(a) * y) + dy
    if curved:
        ox = ox + 0.004 * (y - 30) ** 2
        oy = oy + 0.003 * (x - 25) ** 2
    return ox, oy


def _frame(seed, shape=SHAPE):
    return np.random.default_rng(seed).normal(100, 10, shape).astype(np.float32)


def _ours(frames, maps, weights=None, kernel="square", pixfrac=1.0, tile=None):
    """sum(num), sum(den) over the frames into one tile (y0, x0, rows, cols)."""
    y0, x0, rows, cols = tile or (0, 0) + OUT
    num = np.zeros((rows, cols))
    den = np.zeros((rows, cols))
    kw = dict(pixfrac=pixfrac, kernel=kernel, pixel_scale_ratio=1 / SCALE)
    counts = []
    for k, (src, (ox, oy)) in enumerate(zip(frames, maps, strict=True)):
        w = None if weights is None else weights[k]
        counts.append(drizzle_into(src, ox, oy, y0, x0, num, den, in_weight=w, **kw))
    return num, den, counts


def _theirs(frames, maps, weights=None, kernel="square", pixfrac=1.0):
    """The drizzle package adding the frames one after another."""
    d = Drizzle(kernel=kernel, out_shape=OUT)
    for k, (src, (ox, oy)) in enumerate(zip(frames, maps, strict=True)):
        w = None if weights is None else weights[k]
        pixmap = np.dstack([ox, oy])
        kw = dict(weight_map=w, pixfrac=pixfrac, pixel_scale_ratio=1 / SCALE)
        _nmiss, nskip = d.add_image(src, exptime=1.0, pixmap=pixmap, **kw)
        assert nskip == 0  # every input row drizzled
    return d.out_img, d.out_wht


def _ratio(num, den):
    return np.divide(num, den, out=np.full(num.shape, np.nan), where=den > 0)


def _assert_agrees(num, den, img, wht, rtol=1e-4):
    """num/den is drizzle's image and den its weight where it has weight; nothing elsewhere."""
    have = wht > 0
    np.testing.assert_array_equal(den > 0, have)
    np.testing.assert_allclose(_ratio(num, den)[have], img[have], rtol=rtol, atol=0)
    np.testing.assert_allclose(den[have], wht[have], rtol=rtol, atol=0)
    assert np.isnan(img[~have]).all()


@pytest.mark.parametrize("curved", [False, True], ids=["affine", "curved"])
@pytest.mark.parametrize("pixfrac", [0.6, 1.0])
@pytest.mark.parametrize("kernel", KERNELS)
def test_one_frame_is_drizzles(kernel, pixfrac, curved):
    src = _frame(1)
    maps = [_pixmap(curved=curved)]
    num, den, (count,) = _ours([src], maps, kernel=kernel, pixfrac=pixfrac)
    img, wht = _theirs([src], maps, kernel=kernel, pixfrac=pixfrac)
    _assert_agrees(num, den, img, wht)
    assert count == src.size


def _four_frames():
    rng = np.random.default_rng(2)
    shifts = [(60.3, 5.7, 20.0), (63.9, 8.2, 19.0), (57.1, 9.4, 21.5), (61.6, 3.3, 20.4)]
    frames = [_frame(10 + k) for k in range(4)]
    maps = [_pixmap(dx, dy, a, curved=k == 3) for k, (dx, dy, a) in enumerate(shifts)]
    weights = [rng.uniform(0.2, 2.0, SHAPE).astype(np.float32) for _ in range(4)]
    return frames, maps, weights


@pytest.mark.parametrize("kernel", KERNELS)
def test_weighted_frames_are_drizzles_running_mean(kernel):
    frames, maps, weights = _four_frames()
    num, den, _ = _ours(frames, maps, weights, kernel=kernel, pixfrac=0.7)
    img, wht = _theirs(frames, maps, weights, kernel=kernel, pixfrac=0.7)
    _assert_agrees(num, den, img, wht)


@pytest.mark.parametrize("weighted", [False, True], ids=["unit-weights", "weight-maps"])
def test_the_mean_of_the_frames_images_is_not_drizzles(weighted):
    # The plain mean of the per-frame images num_k/den_k weighs a frame that barely
    # touches an output pixel (the edge of its footprint: a small overlap) or has a
    # low input weight there as much as one covering it fully with a high weight;
    # drizzle's running mean, sum(num)/sum(den), weighs each drop by overlap x weight.
    # Where the frames' coverage of a pixel differs the two differ by ~0.1 sigma
    # (values ~N(100, 10)) typically and by about one sigma at worst: the weights
    # (den) must travel with the images.
    frames, maps, weights = _four_frames()
    if not weighted:
        weights = [None] * 4
    num = np.zeros(OUT)
    den = np.zeros(OUT)
    images, dens = [], []
    for src, m, w in zip(frames, maps, weights, strict=True):
        n1, d1, _ = _ours([src], [m], None if w is None else [w], pixfrac=0.7)
        images.append(_ratio(n1, d1))
        dens.append(d1)
        num += n1
        den += d1
    images, dens = np.array(images), np.array(dens)
    everywhere = np.isfinite(images).all(axis=0)
    uneven = everywhere & (dens.min(axis=0) < 0.5 * dens.max(axis=0))
    assert uneven.sum() > 1000
    diff = np.abs(images.mean(axis=0) - _ratio(num, den))[uneven]
    assert np.median(diff) > 0.5
    assert diff.max() > 5.0


@pytest.mark.parametrize("curved", [False, True], ids=["affine", "curved"])
def test_square_pixfrac_1_conserves_weight_and_flux(curved):
    src = _frame(3)
    ox, oy = _pixmap(curved=curved)
    w = np.random.default_rng(4).uniform(0.5, 1.5, SHAPE).astype(np.float32)
    num, den, _ = _ours([src], [(ox, oy)], [w], kernel="square", pixfrac=1.0)
    # every drop lands in the tile: each input pixel hands out exactly its weight,
    # and its weight times its value
    assert den.sum() == pytest.approx(float(w.sum(dtype=np.float64)), rel=1e-12)
    assert num.sum() == pytest.approx(float((w.astype(np.float64) * src).sum()), rel=1e-12)

    # a constant image drizzles to the same constant wherever there is weight
    const = np.full(SHAPE, 7.25, np.float32)
    n2, d2, _ = _ours([const], [(ox, oy)], kernel="square", pixfrac=1.0)
    have = d2 > 0
    np.testing.assert_allclose(n2[have] / d2[have], 7.25, rtol=1e-12, atol=0)

    if not curved:
        # pixfrac 1 tiles the plane: an output pixel inside the footprint has weight
        # (its area in input pixels) / 1 = 1 / SCALE**2 (unit input weights)
        a = np.radians(20.0)
        yy, xx = np.mgrid[0 : OUT[0], 0 : OUT[1]].astype(np.float64)
        u, v = (xx - 60.3) / SCALE, (yy - 5.7) / SCALE
        x_in = np.cos(a) * u + np.sin(a) * v
        y_in = -np.sin(a) * u + np.cos(a) * v
        inside = (x_in > 1) & (x_in < SHAPE[1] - 2) & (y_in > 1) & (y_in < SHAPE[0] - 2)
        assert inside.sum() > 3000
        np.testing.assert_allclose(d2[inside], 1 / SCALE**2, rtol=1e-12, atol=0)


@pytest.mark.parametrize("kernel", KERNELS)
def test_tiles_are_bit_identical_to_one_tile(kernel):
    src = _frame(5)
    src[20:23, 10:30] = np.nan
    ox, oy = _pixmap(curved=True)
    w = np.random.default_rng(6).uniform(0.2, 2.0, SHAPE).astype(np.float32)
    whole_num, whole_den, _ = _ours([src], [(ox, oy)], [w], kernel=kernel, pixfrac=0.8)
    assert (whole_den > 0).sum() > 1000

    def tiled(row_edges, col_edges):
        num = np.full(OUT, np.nan)
        den = np.full(OUT, np.nan)
        for r0, r1 in zip(row_edges[:-1], row_edges[1:], strict=True):
            for c0, c1 in zip(col_edges[:-1], col_edges[1:], strict=True):
                tile = (r0, c0, r1 - r0, c1 - c0)
                n, d, _ = _ours([src], [(ox, oy)], [w], kernel=kernel, pixfrac=0.8, tile=tile)
                num[r0:r1, c0:c1] = n
                den[r0:r1, c0:c1] = d
        return num, den

    four = tiled([0, 70, 140], [0, 75, 150])
    odd = tiled([0, 13, 14, 51, 97, 140], [0, 1, 38, 77, 111, 150])
    for num, den in (four, odd):
        assert np.array_equal(num, whole_num)
        assert np.array_equal(den, whole_den)


def test_rows_of_a_frame_with_a_masked_margin_are_the_whole_frame():
    # the region contract: a part of the frame with a one-pixel margin of missing
    # neighbours gives the whole frame's drops (rows in order: the same bits)
    src = _frame(7)
    ox, oy = _pixmap(curved=True)
    whole_num, whole_den, _ = _ours([src], [(ox, oy)], kernel="square", pixfrac=0.7)
    num = np.zeros(OUT)
    den = np.zeros(OUT)
    for r0, r1 in ((0, 17), (17, 18), (18, 41), (41, 60)):
        a, b = max(r0 - 1, 0), min(r1 + 1, SHAPE[0])
        part = src[a:b].copy()
        part[: r0 - a] = np.nan
        part[part.shape[0] - (b - r1) :] = np.nan
        drizzle_into(part, ox[a:b], oy[a:b], 0, 0, num, den, pixfrac=0.7)
    assert np.array_equal(num, whole_num)
    assert np.array_equal(den, whole_den)


@pytest.mark.parametrize("kernel", KERNELS)
def test_missing_values_map_entries_and_zero_weights_are_skipped(kernel):
    src = _frame(8)
    ox, oy = _pixmap()
    src[10, 5:9] = np.nan
    src[30, 40] = np.inf
    src[45, 7] = -np.inf
    ox = ox.copy()
    oy = oy.copy()
    ox[25, 25] = np.nan
    oy[40, 12:14] = np.nan
    w = np.ones(SHAPE, np.float32)
    w[50:53, 30:35] = 0
    bad = ~np.isfinite(src)
    num, den, (count,) = _ours([src], [(ox, oy)], [w], kernel=kernel, pixfrac=0.6)
    assert np.isfinite(num).all() and np.isfinite(den).all()
    # drizzle does not skip NaN values itself: give it those pixels with weight 0
    img, wht = _theirs(
        [np.where(bad, 0, src)], [(ox, oy)], [np.where(bad, 0, w)], kernel=kernel, pixfrac=0.6
    )
    _assert_agrees(num, den, img, wht)
    # the square kernel also loses the neighbours of a missing map entry (their corners)
    unmapped = 3 if kernel != "square" else 9 + 12
    assert count == src.size - bad.sum() - 15 - unmapped


def test_unknown_kernel_and_bad_arguments_are_errors():
    src = _frame(9)
    ox, oy = _pixmap()
    num, den = np.zeros(OUT), np.zeros(OUT)
    with pytest.raises(ValueError, match="gaussian"):
        drizzle_into(src, ox, oy, 0, 0, num, den, kernel="gaussian")
    with pytest.raises(ValueError, match="pixfrac"):
        drizzle_into(src, ox, oy, 0, 0, num, den, pixfrac=0.0)
    with pytest.raises(ValueError, match="float32"):
        drizzle_into(src.astype(np.float64), ox, oy, 0, 0, num, den)
    with pytest.raises(ValueError, match="num"):
        drizzle_into(src, ox, oy, 0, 0, num.astype(np.float32), den)
    with pytest.raises(ValueError, match="pixmap"):
        drizzle_into(src, ox[:, :-1], oy, 0, 0, num, den)
    with pytest.raises(ValueError, match="2 x 2"):
        drizzle_into(src[:1], ox[:1], oy[:1], 0, 0, num, den)
    assert not num.any() and not den.any()
