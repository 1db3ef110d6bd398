"""Smoke tests of the benchmark harness (benchmarks/) on tiny workloads."""

from __future__ import annotations

import json

import numpy as np
from astropy.io import fits
from astropy.stats import mad_std, sigma_clip

from benchmarks import Workload, prepare_workload
from benchmarks.bench_sigma import main


def _frames(manifest):
    names = json.loads(manifest.read_text())["files"]
    return [manifest.parent / name for name in names]


def _cumulative_clip_mean(cube, sigma=3.0, maxiters=5):
    """Sigma clip (median, mad_std) with cumulative rejection, then the mean; float64."""
    x = cube.astype(np.float64)
    keep = np.isfinite(x)
    for _ in range(maxiters):
        kept = np.where(keep, x, np.nan)
        center = np.nanmedian(kept, axis=0)
        spread = 1.482602218505602 * np.nanmedian(np.abs(kept - center), axis=0)
        new = keep & (x >= center - sigma * spread) & (x <= center + sigma * spread)
        if np.array_equal(new, keep):
            break
        keep = new
    return np.where(keep, x, 0.0).sum(axis=0) / keep.sum(axis=0)


def test_workload_is_seeded_written_as_float32_fits_and_reused(tmp_path):
    wl = Workload(n_frames=3, height=128, width=96)
    manifest, generated = prepare_workload(wl, tmp_path / "a")
    assert generated
    paths = _frames(manifest)
    scales = json.loads(manifest.read_text())["scales"]
    assert len(paths) == 3
    for path, scale in zip(paths, scales, strict=True):
        with fits.open(path) as hdul:
            assert hdul[0].header["BITPIX"] == -32
            data = hdul[0].data.astype(np.float64)
        assert data.shape == (128, 96)
        assert 0.97 <= scale <= 1.03
        assert abs(np.median(data) - 1000.0 * scale) < 5.0  # sky, a few stars aside
        assert abs(mad_std(data) - 30.0) < 3.0  # the Gaussian noise
        assert np.count_nonzero(data > 1000.0 * scale + 250.0) >= 3  # cosmic rays and stars
    first = paths[0].read_bytes()
    mtimes = [p.stat().st_mtime_ns for p in paths]

    again, generated = prepare_workload(wl, tmp_path / "a")
    assert not generated and again == manifest
    assert [p.stat().st_mtime_ns for p in paths] == mtimes

    elsewhere, _ = prepare_workload(wl, tmp_path / "b")
    assert _frames(elsewhere)[0].read_bytes() == first  # seeded: same bits

    changed, generated = prepare_workload(
        Workload(n_frames=3, height=128, width=96, noise=5.0), tmp_path / "a"
    )
    assert generated  # the manifest no longer matches
    with fits.open(_frames(changed)[0]) as hdul:
        assert abs(mad_std(hdul[0].data.astype(np.float64)) - 5.0) < 1.0


def test_harness_end_to_end(tmp_path, capsys):
    out = tmp_path / "report.json"
    argv = ["--frames", "5", "--size", "64", "--dir", str(tmp_path), "--memory-limit", "64MiB"]
    argv += ["--methods", "stackengine,astropy", "--json", str(out), "--no-warmup", "--keep"]
    assert main(argv) == 0
    table = capsys.readouterr().out
    rows = {line.split()[0] for line in table.splitlines() if line.strip()}
    assert {"method", "stackengine", "astropy"} <= rows
    assert "FAILED" not in table

    report = json.loads(out.read_text())
    for name in ("stackengine", "astropy"):
        res = report["results"][name]
        assert res["ok"]
        assert res["wall_s"] > 0 and res["cpu_s"] > 0
        assert 10 * 2**20 < res["peak_rss_bytes"] < 4 * 2**30
        assert res["wall_s"] >= res["child_wall_s"] > 0
        assert res["mpix_frames_per_s"] == 5 * 64 * 64 / 1e6 / res["wall_s"]

    # The astropy child's image equals an independent in-process computation.
    cube = np.stack(
        [
            fits.getdata(p).astype(np.float32)
            for p in _frames(tmp_path / "fits_5x64x64_float32" / "manifest.json")
        ]
    )
    expected = (
        sigma_clip(cube, axis=0, sigma=3, maxiters=5, cenfunc="median", stdfunc="mad_std")
        .mean(axis=0)
        .filled(np.nan)
    )
    np.testing.assert_array_equal(
        fits.getdata(report["results"]["astropy"]["out"]), expected.astype(np.float32)
    )

    # stackengine follows the design's cumulative rejection: an independent numpy reference.
    np.testing.assert_allclose(
        fits.getdata(report["results"]["stackengine"]["out"]),
        _cumulative_clip_mean(cube),
        rtol=1e-6,
        atol=1e-3,
    )
    acc = report["accuracy"]["astropy"]
    assert acc["n_pixels"] == 64 * 64
    assert acc["n_nan_mismatch"] == 0
    assert 0 <= acc["n_differ"] <= 0.05 * 64 * 64  # astropy re-admits early-clipped values
