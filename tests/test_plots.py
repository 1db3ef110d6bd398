"""Normalization report figures (stackengine.plots): files, refusal to overwrite, plotted numbers.

The frames are the photometric acceptance set of test_photometric (the real SAAO frame
plus injected stars), four frames with known scales and injected gradients.
"""

from __future__ import annotations

import struct
import sys

import numpy as np
import pytest
import xarray as xr
from scipy.interpolate import RegularGridInterpolator
from test_photometric import _gradient, _truth

import stackengine as se
from stackengine.errors import OutputError, ParameterError
from stackengine.normalize import plan_normalization
from stackengine.plots import (
    gradient_figure,
    gradient_profiles,
    normalization_report,
    photometry_figure,
    plot_normalization,
    summary_figure,
)

pytest.importorskip("matplotlib")

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def photometric_set(real_dir):
    truth = _truth(real_dir)
    rng = np.random.default_rng(5)
    n = 4
    amplitude = 0.2 * float(np.median(truth))
    ks = np.array([1.0, 0.7, 1.25, 0.9])
    grads = [_gradient(truth.shape, amplitude, rng) for _ in range(n)]
    data = np.stack(
        [truth / ks[i] + grads[i] + rng.normal(0, 3.0, truth.shape) for i in range(n)]
    ).astype(np.float32)
    paths = [f"/night/light_{i:03d}.fits" for i in range(n)]
    frames = xr.DataArray(data, dims=("frame", "y", "x"), coords={"path": ("frame", paths)})
    norm = plan_normalization(frames, "photometric", reference=0)
    return frames, norm, ks, grads


def _png_size(path):
    head = path.read_bytes()[:24]
    assert head[:8] == PNG, path
    return struct.unpack(">II", head[16:24])  # IHDR width, height


def test_report_writes_two_graphs_per_frame_and_a_summary(photometric_set, tmp_path):
    frames, norm, *_ = photometric_set
    folder = tmp_path / "report" / "nested"  # created
    written = normalization_report(norm, folder, frames=frames)
    expected = [
        f"frame_{i:03d}_{kind}.png" for i in (1, 2, 3) for kind in ("photometry", "gradient")
    ] + ["summary.png"]
    assert [p.name for p in written] == expected
    assert sorted(p.name for p in folder.iterdir()) == sorted(expected)  # no temporary left
    assert len(written) == 2 * (frames.sizes["frame"] - 1) + 1
    for p in written:
        width, height = _png_size(p)
        assert width >= 700 and height >= 400, (p, width, height)
    assert _png_size(folder / "frame_001_photometry.png") == (1100, 460)


def test_existing_files_are_not_overwritten(photometric_set, tmp_path):
    frames, norm, *_ = photometric_set
    (tmp_path / "frame_003_gradient.png").write_bytes(b"mine")
    with pytest.raises(OutputError, match=r"frame_003_gradient\.png: exists"):
        normalization_report(norm, tmp_path, frames=frames)
    # every target is checked before anything is written
    assert [p.name for p in tmp_path.iterdir()] == ["frame_003_gradient.png"]
    assert (tmp_path / "frame_003_gradient.png").read_bytes() == b"mine"
    (tmp_path / "summary.png").write_bytes(b"mine")
    with pytest.raises(OutputError, match=r"summary\.png: exists"):  # before any pixel is read
        plot_normalization(frames, tmp_path, mode="additive")
    written = normalization_report(norm, tmp_path, frames=frames, overwrite=True)
    assert len(written) == 7 and len(list(tmp_path.iterdir())) == 7
    for name in ("frame_003_gradient.png", "summary.png"):
        assert (tmp_path / name).read_bytes()[:8] == PNG
    afile = tmp_path / "a_file"
    afile.write_text("x")
    with pytest.raises(OutputError, match="a_file: exists and is not a folder"):
        normalization_report(norm, afile)


def test_simple_mode_writes_the_summary_only(photometric_set, tmp_path):
    frames, *_ = photometric_set
    written = plot_normalization(frames, tmp_path, mode="additive+scale", reference=1)
    assert [p.name for p in written] == ["summary.png"]
    assert _png_size(written[0])[0] >= 700
    with pytest.raises(ParameterError, match="unknown normalization"):
        plot_normalization(frames, tmp_path / "x", mode="gradient")
    with pytest.raises(ParameterError, match="smoothness=-1"):
        plot_normalization(frames, tmp_path / "x", smoothness=-1)
    with pytest.raises(ParameterError, match="star_fallback='median'"):
        plot_normalization(frames, tmp_path / "x", star_fallback="median")
    assert not (tmp_path / "x").exists()


def test_missing_matplotlib_says_how_to_install(photometric_set, tmp_path, monkeypatch):
    frames, norm, *_ = photometric_set
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError
    with pytest.raises(ParameterError, match=r'pip install "stackengine\[plots\]"'):
        normalization_report(norm, tmp_path)
    assert not any(tmp_path.iterdir())


def test_labels_must_match_the_frames(photometric_set, tmp_path):
    frames, norm, *_ = photometric_set
    with pytest.raises(ParameterError, match="3 frames, the normalization 4"):
        normalization_report(norm, tmp_path, frames=frames[:3])


@pytest.mark.parametrize(
    "grid_shape, shape, step",
    [
        ((5, 7), (37, 61), (9.0, 10.0)),  # nodes edge to edge
        ((4, 3), (50, 45), (7.5, 13.0)),  # frame beyond the last node: G is held constant
        ((2, 2), (9, 4), (8.0, 3.0)),
    ],
)
def test_profiles_are_the_mean_of_the_bilinear_surface(grid_shape, shape, step):
    grid = np.random.default_rng(1).normal(0, 10, grid_shape)
    y_nodes = step[0] * np.arange(grid_shape[0])
    x_nodes = step[1] * np.arange(grid_shape[1])
    surface = RegularGridInterpolator((y_nodes, x_nodes), grid, method="linear")
    ys = np.clip(np.arange(shape[0]), 0, y_nodes[-1])  # clamped as in the tile kernels
    xs = np.clip(np.arange(shape[1]), 0, x_nodes[-1])
    x, along_x, y, along_y = gradient_profiles(grid, step, shape)
    np.testing.assert_allclose(x, x_nodes)
    np.testing.assert_allclose(y, y_nodes)
    yy, xx = np.meshgrid(ys, x_nodes, indexing="ij")  # every pixel row, at each node column
    np.testing.assert_allclose(along_x, surface((yy, xx)).mean(axis=0), atol=1e-10)
    yy, xx = np.meshgrid(y_nodes, xs, indexing="ij")
    np.testing.assert_allclose(along_y, surface((yy, xx)).mean(axis=1), atol=1e-10)


def test_profiles_match_the_gradient_the_stack_subtracts(photometric_set):
    frames, norm, ks, grads = photometric_set
    normalized, table = se.normalize(frames, "photometric", reference=0)
    raw = frames.values.astype(np.float64)
    out = normalized.values.astype(np.float64)
    h, w = raw.shape[1:]
    amplitude = float(np.ptp(grads[0]))
    for i in (1, 2, 3):
        k = float(table["scale"].values[i])
        subtracted = k * raw[i] + float(table["offset"].values[i]) - out[i]  # G_i(y, x)
        x, along_x, y, along_y = gradient_profiles(norm.grad[i, 0], norm.step, (h, w))
        np.testing.assert_allclose(
            np.interp(np.arange(w), x, along_x), subtracted.mean(axis=0), atol=2e-3
        )
        np.testing.assert_allclose(
            np.interp(np.arange(h), y, along_y), subtracted.mean(axis=1), atol=2e-3
        )
        # and it is the injected gradient difference k_i g_i - g_0 (up to 3 % of its range)
        truth = k * grads[i] - grads[0]
        err_x = np.interp(np.arange(w), x, along_x) - truth.mean(axis=0)
        err_y = np.interp(np.arange(h), y, along_y) - truth.mean(axis=1)
        assert np.abs(err_x).max() < 0.03 * amplitude and np.abs(err_y).max() < 0.03 * amplitude


def test_photometry_graph_plots_the_matched_stars_and_the_fit(photometric_set):
    frames, norm, ks, _ = photometric_set
    for i in (1, 2, 3):
        fig = photometry_figure(norm, i, f"frame {i}")
        left = fig.axes[0]
        pairs = norm.details["pairs"][i]
        used = pairs["used"]
        assert used.sum() >= 20 and (~used).sum() < used.sum()
        np.testing.assert_array_equal(
            left.collections[0].get_offsets(),
            np.column_stack([pairs["tgt_flux"], pairs["ref_flux"]])[used],
        )
        np.testing.assert_array_equal(
            left.collections[1].get_offsets(),
            np.column_stack([pairs["tgt_flux"], pairs["ref_flux"]])[~used],
        )
        line_x, line_y = left.lines[0].get_data()
        slope = (line_y[1] - line_y[0]) / (line_x[1] - line_x[0])
        assert abs(slope / ks[i] - 1) < 0.01  # the fitted line is the true scale
        k, err = norm.scale[i, 0], norm.table["scale_err"][i, 0]
        assert f"k = {k:.5f} ± {err:.5f}" in fig.get_suptitle()
        # the ratio panel: ref / tgt of every star with a positive target flux
        ratio = fig.axes[1].collections[0].get_offsets()
        keep = used & (pairs["tgt_flux"] > 0)
        np.testing.assert_allclose(ratio[:, 1], (pairs["ref_flux"] / pairs["tgt_flux"])[keep])


def test_gradient_graph_lines_are_the_profiles(photometric_set):
    frames, norm, *_ = photometric_set
    fig = gradient_figure(norm, 2, "frame 2", (frames.sizes["y"], frames.sizes["x"]))
    x, along_x, y, along_y = gradient_profiles(norm.grad[2, 0], norm.step, (520, 536))
    np.testing.assert_allclose(fig.axes[0].lines[0].get_data(), (x, along_x))
    np.testing.assert_allclose(fig.axes[1].lines[0].get_data(), (y, along_y))
    assert x[-1] == pytest.approx(535) and y[-1] == pytest.approx(519)  # nodes span the frame


def test_summary_plots_scales_weights_and_stars(photometric_set):
    frames, norm, ks, _ = photometric_set
    fig = summary_figure(norm, [f"light_{i:03d}.fits" for i in range(4)])
    scale_ax, weight_ax, star_ax, _ = fig.axes
    points = scale_ax.lines[0].get_ydata()
    np.testing.assert_allclose(points, ks, rtol=0.01)  # the recovered scales are the true ones
    noise = np.asarray(norm.table["noise"])[:, 0]
    k = norm.scale[:, 0]
    expected = (noise[0] / (k * noise)) ** 2  # NSG's weight, the reference's is 1
    heights = [bar.get_height() for bar in weight_ax.patches if bar.get_width() == 0.8]
    np.testing.assert_allclose(heights, expected, rtol=1e-12)
    assert heights[0] == pytest.approx(1.0)
    stacked = se.stack(frames, normalize="photometric", reference=0, weights="photometric")
    np.testing.assert_allclose(heights, stacked["weight"].values, rtol=1e-12)
    bars = [b.get_height() for b in star_ax.patches if b.get_width() == 0.8]
    np.testing.assert_array_equal(bars, norm.table["n_stars"])
    labels = [t.get_text() for t in fig.axes[-1].get_xticklabels()]
    assert labels[2] == "2: light_002.fits"
