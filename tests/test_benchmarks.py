"""Smoke tests of the benchmark harness (benchmarks/) on tiny workloads."""

from __future__ import annotations

import json

import numpy as np
import pytest
from astropy.io import fits
from astropy.stats import mad_std, sigma_clip

from benchmarks import (
    Workload,
    cosmic_ray_mask,
    format_report,
    frame_scales,
    prepare_workload,
    truth_image,
)
from benchmarks.bench_sigma import main
from benchmarks.methods import ALGORITHMS, algorithm_kwargs, parse_algorithms
from benchmarks.normalization import (
    MODES,
    normalization_checks,
    normalization_quality,
    parse_modes,
    summarize_normalization,
    truth_factor,
)
from benchmarks.runner import _checks


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
    assert report["results"]["astropy"]["truth"]["n_pixels"] == 64 * 64
    assert report["algorithms"] == {}


def test_truth_and_cosmic_ray_mask_match_the_generated_frames(tmp_path):
    # Without noise and cosmic rays every frame is scale_i * truth_model exactly.
    clean = Workload(n_frames=4, height=96, width=80, noise=0.0, cosmic_fraction=0.0)
    manifest, _ = prepare_workload(clean, tmp_path)
    cube = np.stack([fits.getdata(p).astype(np.float64) for p in _frames(manifest)])
    scales = json.loads(manifest.read_text())["scales"]
    assert frame_scales(clean) == scales
    for path, scale in zip(_frames(manifest), scales, strict=True):
        assert fits.getheader(path)["BENCHSCL"] == pytest.approx(scale, rel=1e-12)
    truth = truth_image(clean)
    assert truth.shape == (96, 80) and truth.dtype == np.float32
    np.testing.assert_allclose(truth, cube.mean(axis=0), rtol=2e-6)
    assert truth.max() > 1.1 * truth.min()  # stars, not just sky

    # Noise and cosmic rays leave the truth alone; the mask is where rays landed.
    wl = Workload(n_frames=8, height=128, width=128, cosmic_fraction=2e-3)
    manifest, _ = prepare_workload(wl, tmp_path)
    cube = np.stack([fits.getdata(p).astype(np.float64) for p in _frames(manifest)])
    truth = truth_image(wl).astype(np.float64)
    scales = np.asarray(frame_scales(wl))
    excess = cube - scales[:, None, None] * (truth / scales.mean())  # noise + cosmic rays
    hit_any = (excess > 200.0).any(axis=0)  # noise 30 ADU: 200 is 6.7 sigma; rays >= 300
    mask = cosmic_ray_mask(wl)
    assert mask.dtype == bool and mask.shape == (128, 128)
    np.testing.assert_array_equal(mask, hit_any)
    assert 0.5 * 8 * 2e-3 * 128 * 128 < mask.sum() <= 8 * round(2e-3 * 128 * 128)
    clean_mean = cube.mean(axis=0)[~mask] - truth[~mask]
    assert abs(mad_std(clean_mean) - 30.0 / np.sqrt(8)) < 0.1 * 30.0 / np.sqrt(8)
    assert abs(np.median(clean_mean)) < 1.0


def test_parse_algorithms():
    assert parse_algorithms("all") == list(ALGORITHMS)
    assert list(ALGORITHMS)[0] == "sigma" and len(ALGORITHMS) == 7
    assert parse_algorithms("winsorized") == ["sigma", "winsorized"]  # the reference joins
    assert parse_algorithms("esd, minmax+sigma,esd") == ["sigma", "esd", "minmax+sigma"]
    assert parse_algorithms("all,extrema+sigma")[-1] == "extrema+sigma"
    kw = algorithm_kwargs("minmax+sigma")
    assert kw["reject"] == ["minmax", "sigma"] and kw["combine"] == "mean"
    assert (kw["min_value"], kw["max_value"], kw["sigma_lower"]) == (0.0, 65535.0, 3.0)
    assert algorithm_kwargs("linear_fit")["sigma_upper"] == 2.5
    for bad in ("bogus", "sigma+linear_fit", " , "):  # unknown; sigma_lower 3 vs 5; empty
        with pytest.raises(ValueError):
            parse_algorithms(bad)
    with pytest.raises(SystemExit):
        main(["--algorithms", "bogus", "--methods", "none"])
    with pytest.raises(SystemExit):
        main(["--methods", "none"])  # nothing to run


def _rows(text):
    """Table lines by their first word (after the title; the first wins: checks come later)."""
    rows = {}
    for line in text.splitlines()[1:]:
        if line.strip():
            rows.setdefault(line.split()[0], line)
    return rows


def _row(wall, rss=2**29, stack=None):
    return {
        "ok": True,
        "wall_s": wall,
        "cpu_s": wall,
        "peak_rss_bytes": rss,
        "mpix_frames_per_s": 1.0 / wall,
        "phases_s": {"stack+write": stack if stack is not None else wall - 1},
    }


def test_slowdown_checks_pass_and_fail_at_three_times_sigma():
    algs = {"sigma": _row(10.0), "winsorized": _row(29.0), "linear_fit": _row(31.0, 2**31)}
    checks = {c["name"].split()[0]: c for c in _checks({}, None, algs)}
    assert checks["winsorized"]["ok"] and checks["winsorized"]["value"] == 2.9
    assert not checks["linear_fit"]["ok"] and checks["linear_fit"]["value"] == 3.1
    assert checks["linear_fit"]["note"] == "stack+write phase alone: 3.33 x"  # 30 / 9
    assert not checks["peak"]["ok"] and checks["peak"]["value"] == 2.0  # 2 GiB > 1 GiB
    report = {
        "benchmark": "sigma",
        "workload": {"n_frames": 3, "height": 8, "width": 8},
        "memory_limit": "1MiB",
        "cpu_count": 2,
        "data_dir": "x",
        "subject": None,
        "results": {},
        "params": {},
        "accuracy": {},
        "algorithms": algs,
        "algorithm_params": {name: "p" for name in algs},
        "checks": list(checks.values()),
    }
    text = format_report(report)
    assert "winsorized wall / sigma wall (throughput within 3x): 2.90 x (<= 3) PASS" in text
    assert "linear_fit wall / sigma wall (throughput within 3x): 3.10 x (<= 3) FAIL" in text
    rows = _rows(text)
    assert rows["winsorized"].split()[5] == "0.34x"  # throughput / sigma = 10 / 29
    assert rows["sigma"].split()[5] == "1.00x"


def test_algorithms_end_to_end(tmp_path, capsys):
    out = tmp_path / "report.json"
    argv = ["--frames", "7", "--size", "64", "--dir", str(tmp_path), "--memory-limit", "64MiB"]
    argv += ["--methods", "none", "--algorithms", "extrema,minmax+percentile"]
    argv += ["--json", str(out), "--no-warmup", "--keep"]
    assert main(argv) == 0
    table = capsys.readouterr().out
    assert "FAILED" not in table
    rows = _rows(table)
    assert {"algorithm", "sigma", "extrema", "minmax+percentile"} <= set(rows)
    assert "stackengine faster" not in table  # no peers ran
    assert "  peak RSS, every algorithm: " in table

    report = json.loads(out.read_text())
    algs = report["algorithms"]
    assert list(algs) == ["sigma", "extrema", "minmax+percentile"]
    for name, res in algs.items():
        assert res["ok"], name
        assert res["wall_s"] >= res["child_wall_s"] > 0 and res["cpu_s"] > 0
        assert res["mpix_frames_per_s"] == 7 * 64 * 64 / 1e6 / res["wall_s"]
        ratio = algs["sigma"]["wall_s"] / res["wall_s"]
        assert rows[name].split()[5] == f"{ratio:.2f}x"
        assert name in report["algorithm_params"]
    assert "reject=['minmax', 'percentile']" in report["algorithm_params"]["minmax+percentile"]

    wl = Workload(n_frames=7, height=64, width=64)
    cube = np.stack(
        [fits.getdata(p).astype(np.float64) for p in _frames(tmp_path / wl.key() / "manifest.json")]
    )
    image = {name: fits.getdata(res["out"]).astype(np.float64) for name, res in algs.items()}
    # Independent numpy references of what each child computed.
    np.testing.assert_allclose(image["sigma"], _cumulative_clip_mean(cube), rtol=1e-6)
    np.testing.assert_allclose(image["extrema"], np.sort(cube, axis=0)[1:-1].mean(0), rtol=1e-6)
    med = np.median(cube, axis=0)
    keep = ((med - cube) / med <= 0.2) & ((cube - med) / med <= 0.1)  # minmax keeps all
    pct = np.where(keep, cube, 0.0).sum(0) / keep.sum(0)
    np.testing.assert_allclose(image["minmax+percentile"], pct, rtol=1e-6)

    # Accuracy against the truth, recounted here.
    truth = truth_image(wl).astype(np.float64)
    hits = cosmic_ray_mask(wl)
    threshold = 5 * 30.0 / np.sqrt(7)
    plain_resid = np.abs(cube.mean(0) - truth) > threshold
    assert plain_resid.sum() >= 5  # cosmic rays stand out in a plain mean
    for name, res in algs.items():
        acc = res["truth"]
        resid = np.abs(image[name] - truth) > threshold
        assert acc["n_residual"] == resid.sum(), name
        assert acc["n_cr_left"] == (resid & hits).sum(), name
        assert acc["n_cr_pixels"] == hits.sum()
        assert acc["noise_ratio"] == pytest.approx(
            mad_std(image[name] - truth) / (30.0 / np.sqrt(7)), rel=1e-4
        )
        assert acc["n_residual"] < plain_resid.sum(), name  # rejection removed cosmic rays
        assert f"{acc['n_residual']:>10d} {acc['n_cr_left']:>8d}" in rows[name]


def test_normalization_modes_and_options():
    from stackengine.normalize import MODES as ENGINE_MODES

    assert set(MODES) == set(ENGINE_MODES)
    assert parse_modes("all") == list(MODES)
    assert parse_modes("photometric, additive+scale,photometric") == [
        "photometric",
        "additive+scale",
    ]
    for bad in ("bogus", " , ", "photometric,additive+"):
        with pytest.raises(ValueError):
            parse_modes(bad)
    with pytest.raises(SystemExit):
        main(["--methods", "none", "--normalize", "bogus"])
    with pytest.raises(SystemExit):
        main(["--methods", "none", "--normalize", "additive", "--stars-per-mpix", "-1"])


def test_normalization_quality_and_check_against_hand_worked_values():
    wl = Workload(n_frames=4, height=64, width=64)
    s = np.asarray(frame_scales(wl))
    r = 2
    exact = {"reference": r, "scale": list(s[r] / s), "offset": [0.0] * 4}
    q = normalization_quality(exact, wl)
    assert q["scale_err_max"] == pytest.approx(0.0, abs=1e-12)
    assert q["sky_err_max_adu"] == pytest.approx(0.0, abs=1e-9)
    assert q["expected_min"] == pytest.approx(min(s[r] / s), rel=1e-12)
    assert not q["has_gradient"] and "n_stars_median" not in q

    # frame 0 scaled 1 % too high; frame 1 gets a gradient model from -3 to +5 ADU
    found = dict(exact, scale=[1.01 * s[r] / s[0], *exact["scale"][1:]])
    found.update(grad_min=[0.0, -3.0, 0.0, 0.0], grad_max=[0.0, 5.0, 0.0, 0.0])
    found["n_stars"] = [40, 30, 50, 20]
    q = normalization_quality(found, wl)
    assert q["scale_err_max"] == pytest.approx(0.01, rel=1e-9)
    assert q["scale_err_median"] == pytest.approx(0.0, abs=1e-12)  # frames 0, 1, 3
    # frame 0: 0.01 s_r sky too bright; frame 1: the sky minus G is off by up to 5 ADU
    assert q["sky_err_max_adu"] == pytest.approx(max(0.01 * s[r] * 1000.0, 5.0), rel=1e-9)
    assert q["sky_err_median_adu"] == pytest.approx(5.0, rel=1e-9)
    assert (q["grad_ptp_median_adu"], q["grad_ptp_max_adu"]) == (0.0, 8.0)
    assert (q["n_stars_median"], q["n_stars_min"]) == (30.0, 20)  # the reference's 50 left out
    assert truth_factor({"normalization": found}, wl) == pytest.approx(s[r] / s.mean())
    assert truth_factor({}, wl) == 1.0

    phases = {"measure_frames": 2.0, "measure_photometry": 9.0, "fits": 1.0, "replan": 0.5}
    row = summarize_normalization({"ok": True, "phases_s": {**phases, "stack+write": 10.5}}, wl)
    assert (row["measure_s"], row["stack_s"], row["ratio"]) == (12.0, 10.0, 1.2)
    (check,) = normalization_checks({"photometric": row})
    assert not check["ok"] and check["value"] == 1.2 and check["target"] == 1.0
    row["measure_s"] = 9.0
    row["ratio"] = 0.9
    assert normalization_checks({"photometric": row})[0]["ok"]
    assert normalization_checks({"multiplicative": row}) == []  # the target is photometric's


def test_normalization_end_to_end(tmp_path, capsys):
    out = tmp_path / "report.json"
    argv = ["--frames", "5", "--size", "256", "--stars-per-mpix", "1200", "--dir", str(tmp_path)]
    argv += ["--methods", "none", "--normalize", "photometric,multiplicative"]
    argv += ["--memory-limit", "64MiB", "--json", str(out), "--no-warmup", "--keep"]
    assert main(argv) == 0
    table = capsys.readouterr().out
    assert "FAILED" not in table
    rows = _rows(table)
    report = json.loads(out.read_text())
    norms = report["normalizations"]
    assert list(norms) == ["photometric", "multiplicative"]

    wl = Workload(n_frames=5, height=256, width=256, stars_per_mpix=1200.0)
    paths = _frames(tmp_path / wl.key() / "manifest.json")
    cube = np.stack([fits.getdata(p).astype(np.float64) for p in paths])
    s = np.array([fits.getheader(p)["BENCHSCL"] for p in paths])  # the generator's scales
    for mode, res in norms.items():
        assert res["ok"], mode
        ph = res["phases_s"]
        parts = ("measure_frames", "measure_photometry", "fits")
        assert res["measure_s"] == pytest.approx(sum(ph.get(p, 0.0) for p in parts))
        assert res["stack_s"] == pytest.approx(ph["stack+write"] - ph["replan"])
        assert res["stack_s"] > 0 and res["ratio"] == res["measure_s"] / res["stack_s"]
        assert ("measure_photometry" in ph) == (mode == "photometric")
        assert res["wall_s"] >= res["child_wall_s"] > res["measure_s"]
        found = res["normalization"]
        r = found["reference"]
        k = np.asarray(found["scale"])
        # frame i is s_i (sky + stars) + noise: the scale bringing it to the reference is s_r / s_i
        tol = 0.02 if mode == "photometric" else 1e-3
        np.testing.assert_allclose(k, s[r] / s, rtol=tol)
        assert k[r] == 1.0
        q = res["quality"]
        assert q["scale_err_max"] == pytest.approx(np.delete(np.abs(k * s / s[r] - 1), r).max())
        assert f"{q['scale_min']:.4f}..{q['scale_max']:.4f}" in rows[mode]
        # the stack converges to the reference frame's sky + stars
        assert res["truth"]["noise_ratio"] < 1.5
        assert abs(res["truth"]["median_bias_adu"]) < 3.0
    phot = norms["photometric"]
    assert np.median(np.delete(phot["normalization"]["n_stars"], 0)) >= 8
    assert phot["quality"]["n_stars_median"] >= 8 and "grad_min" in phot["normalization"]

    # multiplicative, recomputed here: reference = darkest median, x m_r / m_i, sigma-clipped mean
    med = np.median(cube.reshape(5, -1), axis=1)
    r = int(np.argmin(med))
    assert norms["multiplicative"]["normalization"]["reference"] == r
    normalized = cube * (med[r] / med)[:, None, None]
    np.testing.assert_allclose(
        fits.getdata(norms["multiplicative"]["out"]),
        _cumulative_clip_mean(normalized),
        rtol=1e-5,
        atol=1e-3,
    )

    (check,) = [c for c in report["checks"] if c["name"].startswith("photometric measure")]
    assert check["value"] == phot["ratio"] and check["ok"] == (phot["ratio"] <= 1.0)
    verdict = "PASS" if check["ok"] else "FAIL"
    assert f"photometric measure pass / stack pass: {phot['ratio']:.2f} x (<= 1) {verdict}" in table
    assert rows["photometric"].split()[1] == f"{phot['measure_s']:.2f}"
