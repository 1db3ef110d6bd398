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
