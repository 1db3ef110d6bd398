"""Resampling through a map of positions: the matrix kernel's bits for a matrix's
positions, scipy's map_coordinates for bilinear, map_box holding every tap."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.ndimage import map_coordinates

from stackengine.kernels.resample import MARGINS, METHODS, resample
from stackengine.kernels.resample_map import map_box, resample_map


def _positions(m, rows, cols, y0=0, x0=0):
    y, x = np.mgrid[y0 : y0 + rows, x0 : x0 + cols].astype(np.float64)
    return m[0, 0] * x + m[0, 1] * y + m[0, 2], m[1, 0] * x + m[1, 1] * y + m[1, 2]


@pytest.mark.parametrize("method", list(METHODS))
def test_a_matrix_positions_give_the_matrix_kernels_bits(method):
    rng = np.random.default_rng(5)
    frame = rng.normal(100, 10, (90, 110)).astype(np.float32)
    frame[40:43, 50:52] = np.nan
    a = np.radians(4.0)
    m = np.array([[np.cos(a), -np.sin(a), 3.3], [np.sin(a), np.cos(a), -2.7], [0, 0, 1.0]])
    want = np.empty((60, 80), np.float32)
    resample(frame, 0, 0, m, want, 10, 12, method, frame_shape=frame.shape)
    fx, fy = _positions(m, 60, 80, 10, 12)
    got = np.empty((60, 80), np.float32)
    resample_map(frame, 0, 0, fx, fy, got, method, frame_shape=frame.shape)
    np.testing.assert_array_equal(got, want)


def test_bilinear_through_a_curved_map_is_scipys():
    rng = np.random.default_rng(6)
    frame = rng.normal(0, 1, (120, 130)).astype(np.float32)
    y, x = np.mgrid[0:80, 0:90].astype(np.float64)
    fx = 20 + x * 1.02 + 0.002 * (y - 40) ** 2 + 0.37
    fy = 15 + y * 0.98 + 0.001 * (x - 45) ** 2 + 0.61
    box = map_box(fx, fy, MARGINS[METHODS["bilinear"]], frame.shape)
    y0, y1, x0, x1 = box
    out = np.empty((80, 90), np.float32)
    resample_map(frame[y0:y1, x0:x1], y0, x0, fx, fy, out, "bilinear", frame_shape=frame.shape)
    ref = map_coordinates(frame.astype(np.float64), [fy, fx], order=1)
    np.testing.assert_allclose(out, ref, rtol=0, atol=2e-6)


def test_map_box_holds_every_tap_and_misses_are_errors():
    rng = np.random.default_rng(7)
    frame = rng.normal(0, 1, (50, 60)).astype(np.float32)
    fx = rng.uniform(-5, 65, (20, 20))
    fy = rng.uniform(-5, 55, (20, 20))
    for method in METHODS:
        y0, y1, x0, x1 = map_box(fx, fy, MARGINS[METHODS[method]], frame.shape)
        out = np.empty((20, 20), np.float32)
        resample_map(frame[y0:y1, x0:x1], y0, x0, fx, fy, out, method, frame_shape=frame.shape)
        assert np.isfinite(out).any()
    with pytest.raises(ValueError, match="misses taps"):
        resample_map(frame[5:10, 5:10], 5, 5, fx, fy, out, "bilinear", frame_shape=frame.shape)
    assert map_box(np.full((2, 2), np.nan), np.full((2, 2), np.nan), 3, frame.shape) == (0, 0, 0, 0)


def _curved_nodes(step=8.0, ny0=-8.0, nx0=16.0, gy=14, gx=15):
    """Node values of a curved mapping (output -> frame), NaN at one node."""
    a, b = np.mgrid[0:gy, 0:gx].astype(np.float64)
    y, x = ny0 + a * step, nx0 + b * step
    nfx = 5 + 0.97 * x + 0.05 * y + 3e-4 * (y - 40) ** 2 + 1e-6 * x**3
    nfy = -3 + 1.01 * y - 0.04 * x + 2e-4 * (x - 60) ** 2
    nfx[4, 5] = np.nan  # e.g. beyond a projection's limit
    return nfx, nfy, ny0, nx0, step


def _plain_positions(nodes, y0, y1, x0, x1, footprint, origin):
    """A plain-Python transcription of the node interpolation (the module's formula)."""
    nfx, nfy, ny0, nx0, step = nodes
    fx = np.full((y1 - y0, x1 - x0), np.nan)
    fy = np.full_like(fx, np.nan)
    gy, gx = nfx.shape
    for i, y in enumerate(range(y0, y1)):
        for j, x in enumerate(range(x0, x1)):
            if not (footprint[0] <= y < footprint[1] and footprint[2] <= x < footprint[3]):
                continue
            iy = min(max(int((y - ny0) // step), 0), gy - 2)
            ix = min(max(int((x - nx0) // step), 0), gx - 2)
            ty, tx = (y - (ny0 + iy * step)) / step, (x - (nx0 + ix * step)) / step
            for f, dst, o in ((nfx, fx, origin[1]), (nfy, fy, origin[0])):
                a0 = f[iy, ix] * (1 - tx) + f[iy, ix + 1] * tx
                a1 = f[iy + 1, ix] * (1 - tx) + f[iy + 1, ix + 1] * tx
                dst[i, j] = a0 * (1 - ty) + a1 * ty - o
    return fx, fy


def test_node_positions_extent_and_fused_resampling():
    """grid_positions equals a plain transcription bit for bit, in any region; the
    extent is exactly the positions' range; resample_nodes gives resample_map's bits
    at those positions."""
    from stackengine.kernels.resample_nodes import grid_positions, node_extent, resample_nodes

    nodes = _curved_nodes()
    footprint, origin = (2, 95, 20, 118), (1, 2)
    fx, fy, extent = grid_positions(*nodes, 0, 100, 10, 120, footprint, origin)
    wx, wy = _plain_positions(nodes, 0, 100, 10, 120, footprint, origin)
    np.testing.assert_array_equal(fx, wx)
    np.testing.assert_array_equal(fy, wy)
    for y0, y1, x0, x1 in ((0, 100, 10, 120), (13, 47, 31, 88), (50, 51, 10, 120)):
        part_x, part_y, ext = grid_positions(*nodes, y0, y1, x0, x1, footprint, origin)
        np.testing.assert_array_equal(part_x, fx[y0:y1, x0 - 10 : x1 - 10])
        ok = np.isfinite(part_x)
        assert ext == (part_x[ok].min(), part_x[ok].max(), part_y[ok].min(), part_y[ok].max())
        assert ext == node_extent(*nodes, y0, y1, x0, x1, footprint, origin)
    assert node_extent(*nodes, 96, 100, 10, 120, footprint, origin) is None
    rng = np.random.default_rng(8)
    frame = rng.normal(100, 10, (140, 150)).astype(np.float32)
    for method in METHODS:
        box = map_box(None, None, MARGINS[METHODS[method]], frame.shape, extent)
        want = np.empty((100, 110), np.float32)
        src = frame[box[0] : box[1], box[2] : box[3]]
        resample_map(src, box[0], box[2], fx, fy, want, method, frame_shape=frame.shape)
        got = np.empty((100, 110), np.float32)
        resample_nodes(src, box[0], box[2], nodes, got, 0, 10, method, frame_shape=frame.shape,
                       footprint=footprint, origin=origin)  # fmt: skip
        np.testing.assert_array_equal(got, want)
