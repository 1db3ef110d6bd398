"""Smoke tests of the benchmark harness (benchmarks/) on tiny workloads."""

from __future__ import annotations

import json
import statistics

import numpy as np
import pytest
import tifffile
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
from benchmarks import evaluate as evaluate_mod
from benchmarks.accuracy import deviation, truth_accuracy
from benchmarks.bench_sigma import _parser, _workload, main
from benchmarks.checks import format_checks, scaling_checks, sigma_checks
from benchmarks.formats import parse_variants
from benchmarks.methods import ALGORITHMS, METHODS, algorithm_kwargs, parse_algorithms, parse_bytes
from benchmarks.normalization import (
    MODES,
    normalization_checks,
    normalization_quality,
    parse_modes,
    summarize_normalization,
    truth_factor,
)
from benchmarks.runner import Job, run_jobs
from benchmarks.scaling import parse_frames
from benchmarks.stats import summarize_runs
from benchmarks.system import estimated_bytes, memory_skip_reason
from benchmarks.workload import subset_manifest

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
TINY = ["--memory-limit", "64MiB", "--no-warmup"]


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


def _one_pass_clip_mean(cube, sigma=3.0):
    """ccdproc's combine: one clipping pass about the median by mad_std, then the mean."""
    x = cube.astype(np.float64)
    center = np.median(x, axis=0)
    spread = 1.482602218505602 * np.median(np.abs(x - center), axis=0)
    keep = np.abs(x - center) <= sigma * spread
    return np.where(keep, x, 0.0).sum(axis=0) / keep.sum(axis=0)


def _table_rows(text, first_word):
    """Lines of the first table whose header starts with ``first_word``, by their first word."""
    lines = text.splitlines()
    start = next(i for i, ln in enumerate(lines) if ln.startswith(first_word + " "))
    rows = {}
    for line in lines[start + 1 :]:
        if not line.strip():
            break
        rows[line.split()[0]] = line
    return rows


def _assert_png(path):
    import matplotlib.image

    assert path.read_bytes()[:8] == PNG_MAGIC, path
    image = matplotlib.image.imread(path)
    assert image.ndim == 3 and image.shape[0] > 100 and image.shape[1] > 100
    assert image.std() > 0  # not blank


def test_standard_mode_all_methods_end_to_end(tmp_path, capsys):
    out, md, plots = tmp_path / "report.json", tmp_path / "report.md", tmp_path / "plots"
    argv = ["--frames", "5", "--size", "64", "--dir", str(tmp_path), *TINY, "--keep"]
    argv += ["--json", str(out), "--markdown", str(md), "--plots", str(plots)]
    assert main(argv) == 0  # --methods defaults to all
    table = capsys.readouterr().out
    assert "FAILED" not in table
    rows = _table_rows(table, "method")
    assert set(rows) == set(METHODS)
    for name in ("numpy-median", "bottleneck-median"):
        assert rows[name].endswith("[median only]")
    assert "[median only]" not in rows["bottleneck"] + rows["stackengine"]

    report = json.loads(out.read_text())
    assert list(report["results"]) == list(METHODS)
    assert report["median_only"] == ["numpy-median", "bottleneck-median"]
    assert report["astropy_reference"] == {"source": "astropy", "rows": [0, 64], "rtol": 1e-6}
    for name, res in report["results"].items():
        assert res["ok"], name
        assert res["n_runs"] == res["n_ok"] == 1
        assert res["wall_s"] >= res["child_wall_s"] > 0 and res["cpu_s"] > 0
        assert 10 * 2**20 < res["peak_rss_bytes"] < 4 * 2**30
        assert res["mpix_frames_per_s"] == 5 * 64 * 64 / 1e6 / res["wall_s"]
        assert res["work_s"] == pytest.approx(res["child_wall_s"] - res["phases_s"]["import"])
        for key in ("truth", "vs_astropy"):
            assert res[key]["n_pixels"] == 64 * 64, (name, key)
        assert "mem_limit" in report["params"][name] or "ccdproc" not in name

    wl = Workload(n_frames=5, height=64, width=64)
    paths = _frames(tmp_path / wl.key() / "manifest.json")
    cube = np.stack([fits.getdata(p).astype(np.float32) for p in paths])
    image = {n: fits.getdata(r["out"]) for n, r in report["results"].items()}

    # Each child's image against an independent computation.
    expected = (
        sigma_clip(cube, axis=0, sigma=3, maxiters=5, cenfunc="median", stdfunc="mad_std")
        .mean(axis=0)
        .filled(np.nan)
    )
    np.testing.assert_array_equal(image["astropy"], expected.astype(np.float32))
    np.testing.assert_array_equal(image["numpy-median"], np.median(cube, axis=0))
    np.testing.assert_array_equal(image["bottleneck-median"], np.median(cube, axis=0))
    np.testing.assert_allclose(
        image["numpy-median"], np.median(cube.astype(np.float64), axis=0), rtol=1e-7
    )
    for name in ("stackengine", "bottleneck"):  # cumulative rejection, 5 passes
        np.testing.assert_allclose(image[name], _cumulative_clip_mean(cube), rtol=1e-6, atol=1e-3)
    np.testing.assert_array_equal(image["ccdproc-tuned"], image["ccdproc"])  # same, chunked
    np.testing.assert_allclose(image["ccdproc"], _one_pass_clip_mean(cube), rtol=1e-6)
    assert "mem_limit=67108864" in report["params"]["ccdproc-tuned"]  # = --memory-limit 64MiB

    # Deviation from astropy and accuracy against the truth, recounted here.
    truth = truth_image(wl).astype(np.float64)
    background = truth <= truth.min() + 0.01 * 30 / np.sqrt(5)
    ref = expected.astype(np.float32).astype(np.float64)  # the astropy image, as written
    for name, res in report["results"].items():
        diff = np.abs(image[name].astype(np.float64) - ref)
        acc = res["vs_astropy"]
        assert acc["max_abs"] == pytest.approx(diff.max(), rel=1e-12, abs=1e-12), name
        assert acc["n_differ"] == np.count_nonzero(diff > 1e-6 * np.abs(ref)), name
        assert res["truth"]["noise_ratio"] == pytest.approx(
            mad_std(image[name][background] - truth[background]) / (30 / np.sqrt(5)), rel=1e-4
        )
    assert report["results"]["astropy"]["vs_astropy"]["max_abs"] == 0.0
    assert report["results"]["numpy-median"]["vs_astropy"]["frac_differ"] > 0.5  # not a clip
    med = report["results"]["numpy-median"]["truth"]["noise_ratio"]
    clip = report["results"]["bottleneck"]["truth"]["noise_ratio"]
    assert med > clip  # clipping keeps most of the mean's noise advantage over the median

    # Markdown: one row per method, the median-only ones labelled; PNG plot.
    text = md.read_text()
    md_rows = {ln.split("|")[1].strip(" `"): ln for ln in text.splitlines() if ln.startswith("| `")}
    assert set(md_rows) == set(METHODS)
    assert "| median only |" in md_rows["numpy-median"]
    assert "| clip + mean |" in md_rows["stackengine"]
    assert "**FAIL** [issue 6] stackengine throughput (whole process)" in text  # tiny frames
    (png,) = sorted(plots.iterdir())
    assert png.name == "standard.png"
    _assert_png(png)


def test_in_harness_astropy_reference_on_a_band_of_rows(tmp_path, monkeypatch):
    monkeypatch.setattr(evaluate_mod, "BAND_PIXELS", 10 * 64)  # 10 rows of 64
    out = tmp_path / "report.json"
    argv = ["--frames", "5", "--size", "64", "--dir", str(tmp_path), *TINY, "--keep"]
    argv += ["--methods", "numpy-median,bottleneck", "--json", str(out)]
    assert main(argv) == 0
    report = json.loads(out.read_text())
    ref = report["astropy_reference"]
    assert ref == {"source": "in-harness astropy", "rows": [27, 37], "rtol": 1e-6}
    wl = Workload(n_frames=5, height=64, width=64)
    cube = np.stack([fits.getdata(p) for p in _frames(tmp_path / wl.key() / "manifest.json")])
    band = (
        sigma_clip(cube[:, 27:37], axis=0, sigma=3, maxiters=5, cenfunc="median", stdfunc="mad_std")
        .mean(axis=0)
        .filled(np.nan)
        .astype(np.float32)
        .astype(np.float64)
    )
    for res in report["results"].values():
        got = fits.getdata(res["out"])[27:37].astype(np.float64)
        acc = res["vs_astropy"]
        assert acc["n_pixels"] == 640
        assert acc["max_abs"] == pytest.approx(np.abs(got - band).max(), abs=1e-9)
        assert acc["n_differ"] == np.count_nonzero(np.abs(got - band) > 1e-6 * np.abs(band))


def test_repeats_alternate_and_report_medians(tmp_path, capsys):
    out = tmp_path / "report.json"
    argv = ["--frames", "4", "--size", "32", "--dir", str(tmp_path), *TINY]
    argv += ["--methods", "numpy-median,bottleneck-median", "--repeat", "3", "--json", str(out)]
    assert main(argv) == 0
    table = capsys.readouterr().out
    report = json.loads(out.read_text())
    order = [(r["repeat"], r["method"]) for r in report["runs"]]
    assert order == [(i, m) for i in range(3) for m in ("numpy-median", "bottleneck-median")]
    for name, res in report["results"].items():
        mine = [r for r in report["runs"] if r["method"] == name]
        walls = [r["wall_s"] for r in mine]
        assert res["wall_s"] == sorted(walls)[1]  # the middle of three
        assert (res["wall_s_min"], res["wall_s_max"]) == (min(walls), max(walls))
        assert res["cpu_s"] == sorted(r["cpu_s"] for r in mine)[1]
        assert res["peak_rss_bytes"] == sorted(r["peak_rss_bytes"] for r in mine)[1]
        assert res["mpix_frames_per_s"] == 4 * 32 * 32 / 1e6 / res["wall_s"]
        assert f"{min(walls):.2f}..{max(walls):.2f}" in _table_rows(table, "method")[name]


def test_summarize_runs_medians_by_hand():
    def run(wall, cpu, rss, ok=True):
        return dict(ok=ok, wall_s=wall, cpu_s=cpu, peak_rss_bytes=rss, child_wall_s=wall - 0.5,
                    phases_s={"import": 0.25, "stack": wall - 0.75}, out=f"o{wall}")  # fmt: skip

    runs = [run(4.0, 1.0, 300), run(1.0, 9.0, 100), run(3.0, 2.0, 201), run(2.0, 5.0, 400)]
    runs.append(dict(ok=False, error="boom"))
    s = summarize_runs(runs, 10.0)
    assert s["ok"] and (s["n_runs"], s["n_ok"]) == (5, 4) and s["errors"] == ["boom"]
    assert (s["wall_s"], s["wall_s_min"], s["wall_s_max"]) == (2.5, 1.0, 4.0)  # even: mean of 2, 3
    assert s["cpu_s"] == 3.5 and s["peak_rss_bytes"] == 250  # (2 + 5) / 2, (201 + 300) / 2 -> 250
    assert s["work_s"] == statistics.median([3.25, 0.25, 2.25, 1.25])  # child wall - import
    assert s["mpix_frames_per_s"] == 4.0 and s["mpix_frames_per_s_max"] == 10.0
    assert s["out"] == "o2.0"  # the median run: |2 - 2.5| = |3 - 2.5|, the faster wins
    skipped = summarize_runs([dict(ok=False, skipped="skipped: too big")], 1.0)
    assert not skipped["ok"] and skipped["skipped"] == "skipped: too big"


def test_memory_guard_skips_without_running(tmp_path):
    wl = Workload(n_frames=10, height=1000, width=1000)
    assert estimated_bytes("stackengine", wl) is None  # out of core
    assert estimated_bytes("astropy", wl) == int(3.6 * 10 * 1000 * 1000 * 4)
    assert estimated_bytes("ccdproc", wl) == int(10.0 * 10 * 1000 * 1000 * 4)
    big = Workload(n_frames=500, height=2048, width=2048)
    assert estimated_bytes("ccdproc", big) == int(14e9)  # ccdproc chunks by its mem_limit
    assert memory_skip_reason("astropy", wl, 10**9) is None  # 0.14 GB <= 0.8 GB
    reason = memory_skip_reason("astropy", wl, 10**8)
    assert reason.startswith("skipped: needs about 0.1 GiB")
    assert memory_skip_reason("astropy", wl, None) is None  # unknown: no guard
    job = Job("astropy", tmp_path / "missing.json", wl, "x")
    runs = run_jobs([job], tmp_path, "64MiB", repeat=2, log=lambda m: None, available=10**8)
    assert [r["skipped"] for r in runs] == [reason, reason]  # nothing ran (no manifest exists)
    assert summarize_runs(runs, wl.mpix_frames)["skipped"] == reason


def test_cold_cache_evicts_each_run_s_frames(tmp_path, monkeypatch):
    """--cold-cache: before every run, that run's frames leave the page cache."""
    from benchmarks import runner, system

    frames = []
    for i in range(2):
        frames.append(tmp_path / f"frame_{i}.fits")
        frames[-1].write_bytes(b"x" * 8192)
    system.evict_page_cache(frames)  # a real posix_fadvise on real files: no error
    events = []
    monkeypatch.setattr(runner, "manifest_files", lambda manifest: [manifest])
    monkeypatch.setattr(runner, "evict_page_cache", lambda files: events.append(("evict", files)))

    def child(method, manifest, out, *args):
        events.append(("run", method))
        return {"method": method, "ok": True, "wall_s": 1.0}

    monkeypatch.setattr(runner, "run_child", child)
    wl = Workload(n_frames=2, height=8, width=8)
    a, b = "numpy-median", "bottleneck-median"
    jobs = [Job(a, frames[0], wl, "x"), Job(b, frames[1], wl, "y")]
    run_jobs(jobs, tmp_path, "64MiB", repeat=2, log=lambda m: None, cold=True)
    assert events == [("evict", [frames[0]]), ("run", a), ("evict", [frames[1]]), ("run", b)] * 2
    events.clear()
    run_jobs(jobs, tmp_path, "64MiB", repeat=1, log=lambda m: None)
    assert events == [("run", a), ("run", b)]
    assert system.page_cache(frames, None, warm=True, cold=True) == system.COLD
    assert system.page_cache(frames, None, warm=False, cold=False) == "not warmed"


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
    checks = {c["name"].split()[0]: c for c in sigma_checks({}, None, algs)}
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
    assert "[issue 3] peak RSS, every algorithm: " in table

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
        bg = truth <= truth.min() + 0.01 * 30.0 / np.sqrt(7)  # no star light
        assert acc["noise_ratio"] == pytest.approx(
            mad_std(image[name][bg] - truth[bg]) / (30.0 / np.sqrt(7)), rel=1e-4
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


def test_uint16_fits_and_tiff_hold_the_mapped_float_frames(tmp_path):
    common = dict(n_frames=3, height=48, width=40)
    float_wl = Workload(**common)
    u16 = dict(common, dtype="uint16", int_gain=2.0, int_offset=100.0)
    fits_wl, tiff_wl = Workload(**u16), Workload(**u16, format="tiff")
    floats = [fits.getdata(p) for p in _frames(prepare_workload(float_wl, tmp_path)[0])]
    fits_paths = _frames(prepare_workload(fits_wl, tmp_path)[0])
    tiff_paths = _frames(prepare_workload(tiff_wl, tmp_path)[0])
    assert [p.suffix for p in fits_paths + tiff_paths] == [".fits"] * 3 + [".tif"] * 3
    for x, fp, tp in zip(floats, fits_paths, tiff_paths, strict=True):
        assert x.dtype == np.dtype(">f4")
        want = np.clip(np.rint(x * np.float32(2.0) + np.float32(100.0)), 0, 65535)
        want = want.astype(np.uint16)
        assert 2 * 700 < want.min() and want.max() < 65535  # inside the range: no clipping
        with fits.open(fp) as hdul:  # as cameras write it: int16 with BZERO 32768
            assert hdul[0].header["BITPIX"] == 16 and hdul[0].header["BZERO"] == 32768
            assert hdul[0].data.dtype == np.uint16
            np.testing.assert_array_equal(hdul[0].data, want)
        with tifffile.TiffFile(tp) as tif:
            page = tif.pages[0]
            assert page.dtype == np.uint16 and page.compression == 1  # uncompressed
            assert page.rowsperstrip == 48  # 256 KiB strips, at most the whole frame
            np.testing.assert_array_equal(page.asarray(), want)
            meta = json.loads(page.description)
        assert meta["BENCHSCL"] == pytest.approx(fits.getheader(fp)["BENCHSCL"], rel=1e-12)
    # the truth, the noise and the cosmic-ray mask follow the mapping
    np.testing.assert_allclose(
        truth_image(fits_wl), 2.0 * truth_image(float_wl).astype(np.float64) + 100.0, rtol=1e-6
    )
    assert fits_wl.ideal_noise == pytest.approx(2.0 * 30.0 / np.sqrt(3))
    assert float_wl.ideal_noise == pytest.approx(30.0 / np.sqrt(3))  # gain ignored for float
    np.testing.assert_array_equal(cosmic_ray_mask(tiff_wl), cosmic_ray_mask(float_wl))
    # a bigger frame: strips of 256 KiB of whole rows
    big = Workload(n_frames=3, height=300, width=1024, dtype="uint16", format="tiff")
    with tifffile.TiffFile(_frames(prepare_workload(big, tmp_path)[0])[0]) as tif:
        assert tif.pages[0].rowsperstrip == 128  # 262144 / (1024 x 2 bytes)
    with pytest.raises(ValueError, match="format"):
        prepare_workload(Workload(format="png"), tmp_path)


def test_rows_of_uint16_fits_frames(tmp_path):
    """The in-harness references read bands of rows; uint16 FITS has BZERO 32768."""
    from benchmarks.frameio import load_cube, read_frame

    wl = Workload(n_frames=3, height=40, width=24, dtype="uint16")
    paths = _frames(prepare_workload(wl, tmp_path)[0])
    band = read_frame(paths[1], slice(5, 12))
    assert band.dtype == np.uint16
    np.testing.assert_array_equal(band, fits.getdata(paths[1])[5:12])
    cube = load_cube(paths, slice(5, 12))
    assert cube.shape == (3, 7, 24) and cube.dtype == np.float32


def test_subset_manifest_is_the_smaller_frame_set(tmp_path):
    manifest, _ = prepare_workload(Workload(n_frames=6, height=32, width=32), tmp_path / "a")
    small, _ = prepare_workload(Workload(n_frames=3, height=32, width=32), tmp_path / "b")
    sub = subset_manifest(manifest, 3)
    assert sub.parent == manifest.parent and sub.name == "manifest_first_3.json"
    first, alone = _frames(sub), _frames(small)
    assert len(first) == 3
    for a, b in zip(first, alone, strict=True):
        assert a.read_bytes() == b.read_bytes()  # frame i does not depend on N
    assert json.loads(sub.read_text())["scales"] == json.loads(small.read_text())["scales"]
    for bad in (0, 7):
        with pytest.raises(ValueError):
            subset_manifest(manifest, bad)


def test_accuracy_on_a_hand_made_case(tmp_path):
    wl = Workload(n_frames=4, height=40, width=50, cosmic_fraction=2e-2)
    truth, hits = truth_image(wl), cosmic_ray_mask(wl)
    ideal = wl.ideal_noise  # 15 ADU
    path = tmp_path / "image.fits"

    def acc(image):
        fits.PrimaryHDU(image.astype(np.float32)).writeto(path, overwrite=True)
        return truth_accuracy(path, truth, ideal, hits)

    exact = acc(truth)
    assert exact["n_residual"] == exact["n_cr_left"] == exact["n_nonfinite"] == 0
    assert exact["noise_adu"] == 0.0 and exact["noise_ratio"] == 0.0
    assert exact["n_cr_pixels"] == hits.sum() > 10
    background = truth <= truth.min() + 0.01 * ideal  # sky only: no star light
    assert exact["n_background"] == background.sum() < truth.size  # the stars are left out

    # 3 residuals, 2 of them where cosmic rays hit; one NaN; a star pixel far off
    image = truth.astype(np.float64)
    cr_y, cr_x = np.nonzero(hits & background)
    clean_y, clean_x = np.nonzero(~hits & background)
    image[cr_y[:2], cr_x[:2]] += 6 * ideal
    image[clean_y[0], clean_x[0]] -= 6 * ideal
    image[clean_y[1], clean_x[1]] = np.nan
    star = np.unravel_index(np.argmax(truth), truth.shape)
    image[star] += 4.9 * ideal  # within 5 ideal noises: not a residual
    got = acc(image)
    assert (got["n_residual"], got["n_cr_left"], got["n_nonfinite"]) == (4, 2, 1)
    assert got["noise_adu"] == 0.0  # the median absolute deviation ignores 3 outliers

    # noise: +3 on half the background pixels, -3 on the other half: median 0, MAD 3
    where = np.flatnonzero(background)
    assert where.size % 2 == 0
    noisy = truth.astype(np.float64).reshape(-1)
    noisy[where[: where.size // 2]] += 3.0
    noisy[where[where.size // 2 :]] -= 3.0
    noisy = noisy.reshape(truth.shape)
    noisy[~background] += 1000.0  # star pixels do not count
    got = acc(noisy)
    assert got["noise_adu"] == pytest.approx(1.482602218505602 * 3.0, rel=1e-5)
    assert got["noise_ratio"] == pytest.approx(1.482602218505602 * 3.0 / ideal, rel=1e-5)
    assert got["median_bias_adu"] == pytest.approx(0.0, abs=1e-3)

    # deviation from a reference: a known offset at known pixels
    ref = np.full((4, 5), 1000.0)
    img = ref.copy()
    img[0, 0] += 0.5  # 5e-4 relative
    img[1, 1] += 0.0005  # 5e-7 relative: float32 rounding, not a difference
    img[2, 2] = np.nan
    d = deviation(img, ref, noise=30.0)
    assert d["max_abs"] == 0.5 and d["max_abs_over_noise"] == 0.5 / 30.0
    assert (d["n_differ"], d["n_nan_mismatch"], d["n_pixels"]) == (2, 1, 20)
    assert d["frac_differ"] == 0.1
    assert deviation(ref, ref, 30.0)["n_differ"] == 0
    assert deviation(img, ref, 30.0, rtol=1e-3)["n_differ"] == 1  # the NaN only


def test_scaling_mode_end_to_end(tmp_path, capsys):
    out, md, plots = tmp_path / "s.json", tmp_path / "s.md", tmp_path / "plots"
    argv = ["--scaling", "--scaling-frames", "6,3", "--scaling-size", "48", "--dir", str(tmp_path)]
    argv += [*TINY, "--methods", "numpy-median,bottleneck-median", "--json", str(out)]
    argv += ["--markdown", str(md), "--plots", str(plots)]
    assert main(argv) == 0
    table = capsys.readouterr().out
    report = json.loads(out.read_text())
    assert report["benchmark"] == "scaling" and report["frames"] == [3, 6]
    assert report["subject"] == "numpy-median"
    assert not (tmp_path / "fits_3x48x48_float32").exists()  # N = 3: the first 3 frames of 6
    for method, points in report["points"].items():
        assert [p["n_frames"] for p in points] == [3, 6]
        for p in points:
            n = p["n_frames"]
            assert p["ok"], method
            assert p["wall_per_frame_s"] == p["wall_s"] / n
            assert p["work_per_frame_s"] == p["work_s"] / n
            assert p["mpix_frames_per_s"] == n * 48 * 48 / 1e6 / p["wall_s"]
            assert 10 * 2**20 < p["peak_rss_bytes"] < 2**31
    grid = _table_rows(table, "ms per frame")
    pts = report["points"]["numpy-median"]
    assert grid["numpy-median"].split()[1:3] == [f"{p['work_per_frame_s'] * 1e3:.1f}" for p in pts]
    time_check, rss_check = report["checks"]
    # the subject also ran after an untimed tiny stack in the same process: its
    # steady time leaves out the process's one-time costs and is what is checked
    assert time_check["name"].startswith("numpy-median steady time per frame")
    steady_runs = [r for r in report["runs"] if r["label"].endswith("-steady")]
    assert sorted(r["label"] for r in steady_runs) == ["n3-steady", "n6-steady"]
    for r in steady_runs:
        assert r["method"] == "numpy-median" and "warm-up" in r["phases_s"]
        assert r["steady_s"] == pytest.approx(
            r["child_wall_s"] - r["phases_s"]["warm-up"] - r["phases_s"]["import"]
        )
        assert 0 < r["steady_s"] < r["child_wall_s"] - r["phases_s"]["warm-up"] + 1e-9
    work = [p["steady_per_frame_s"] for p in pts]
    assert work == [
        r["steady_s"] / n
        for r, n in zip(
            sorted(steady_runs, key=lambda r: int(r["label"][1:].split("-")[0])),
            (3, 6),
            strict=True,
        )
    ]
    dev = max(abs(w / statistics.median(work) - 1) for w in work)
    assert time_check["value"] == pytest.approx(100 * dev) and time_check["ok"] == (dev <= 0.15)
    assert rss_check["value"] == pts[1]["peak_rss_bytes"] / 2**30
    verdict = "PASS" if rss_check["ok"] else "FAIL"
    assert f"[issue 6] {rss_check['name']}: {rss_check['value']:.2f} GiB" in table
    assert verdict in table
    text = md.read_text()
    for title in ("ms per frame (after imports)", "peak RSS GiB", "Mpix-frames/s"):
        assert f"| {title} | N=3 | N=6 |" in text
    assert "| `numpy-median` (median only) |" in text
    names = sorted(p.name for p in plots.iterdir())
    assert names == [
        "scaling_memory.png",
        "scaling_throughput.png",
        "scaling_time_per_frame.png",
    ]
    for path in plots.iterdir():
        _assert_png(path)


def _point(n, work, rss):
    return dict(ok=True, n_frames=n, work_per_frame_s=work, wall_per_frame_s=work + 1.0 / n,
                peak_rss_bytes=rss)  # fmt: skip


def test_scaling_and_format_checks_by_hand():
    gib = 2**30
    pts = [_point(10, 1.0, gib), _point(50, 1.1, gib), _point(500, 0.9, gib + 100 * 2**20)]
    t, m = scaling_checks(pts, "stackengine")
    assert t["ok"] and t["value"] == pytest.approx(10.0)  # +-10 % about the median 1.0
    assert m["ok"] and m["target"] == pytest.approx(1.1 + 64 / 1024)  # 1.1 x 1 GiB + 64 MiB
    pts[2] = _point(500, 0.8, 1.2 * gib)
    t, m = scaling_checks(pts, "stackengine")
    assert not t["ok"] and t["value"] == pytest.approx(20.0)  # 0.8 vs median 1.0
    assert not m["ok"] and m["value"] == pytest.approx(1.2)
    assert scaling_checks(pts[:1], "stackengine") == []  # one N: nothing to compare

    def rate(x):
        return {"ok": True, "mpix_frames_per_s": x}

    (c,) = format_checks({"tiff:uint16": rate(210.0), "fits:float32": rate(200.0)}, "se")
    assert c["ok"] and c["value"] == pytest.approx(1.05)
    (c,) = format_checks({"tiff:uint16": rate(190.0), "fits:float32": rate(200.0)}, "se")
    assert not c["ok"] and c["value"] == pytest.approx(0.95)
    assert format_checks({"tiff:uint16": rate(1.0)}, "se") == []


def test_issue6_checks_by_hand():
    gib = 2**30
    n_mpix = 50 * 4096 * 4096 / 1e6  # 838.9 Mpix-frames

    def row(wall, rss=gib // 2):
        return {
            "ok": True,
            "wall_s": wall,
            "peak_rss_bytes": rss,
            "mpix_frames_per_s": n_mpix / wall,
        }

    results = {"stackengine": row(4.0, int(0.7 * gib)), "ccdproc": row(104.0), "astropy": row(30.0)}
    checks = {(c.get("issue"), c["name"]): c for c in sigma_checks(results, "stackengine", {})}
    rate = checks[(6, "stackengine throughput (whole process)")]
    assert rate["ok"] and rate["value"] == pytest.approx(n_mpix / 4.0)  # 209.7 >= 200
    assert checks[(6, "stackengine faster than ccdproc")]["value"] == 26.0
    assert checks[(6, "stackengine faster than ccdproc")]["ok"]
    assert not checks[(6, "stackengine faster than astropy")]["ok"]  # 7.5 < 8
    assert checks[(2, "stackengine faster than astropy")]["ok"]  # 7.5 >= 2.5
    assert checks[(6, "stackengine peak RSS")]["ok"]  # 0.7 <= 0.75
    results["stackengine"] = row(4.5, int(0.8 * gib))
    checks = {(c.get("issue"), c["name"]): c for c in sigma_checks(results, "stackengine", {})}
    assert not checks[(6, "stackengine throughput (whole process)")]["ok"]  # 186 < 200
    assert (
        not checks[(6, "stackengine peak RSS")]["ok"] and checks[(2, "stackengine peak RSS")]["ok"]
    )


def test_formats_mode_end_to_end(tmp_path, capsys):
    out, plots = tmp_path / "f.json", tmp_path / "plots"
    argv = ["--compare-formats", "--frames", "5", "--size", "40", "--dir", str(tmp_path), *TINY]
    argv += ["--methods", "numpy-median", "--json", str(out), "--plots", str(plots), "--keep"]
    assert main(argv) == 0
    table = capsys.readouterr().out
    report = json.loads(out.read_text())
    assert report["benchmark"] == "formats"
    assert report["variants"] == ["fits:float32", "tiff:uint16"]
    (check,) = report["checks"]
    res = {v: report["results"][v]["numpy-median"] for v in report["variants"]}
    ratio = res["tiff:uint16"]["mpix_frames_per_s"] / res["fits:float32"]["mpix_frames_per_s"]
    assert check["value"] == pytest.approx(ratio) and check["ok"] == (ratio >= 1.0)
    assert "numpy-median tiff:uint16 throughput / fits:float32 throughput" in table
    # the uint16 TIFF child's median equals numpy's median of the frames read with tifffile
    wl = Workload(n_frames=5, height=40, width=40, dtype="uint16", format="tiff")
    cube = np.stack([tifffile.imread(p) for p in _frames(tmp_path / wl.key() / "manifest.json")])
    assert cube.dtype == np.uint16
    expected = np.median(cube.astype(np.float32), axis=0)
    np.testing.assert_array_equal(fits.getdata(res["tiff:uint16"]["out"]), expected)
    for r in res.values():
        assert r["truth"]["n_pixels"] == 40 * 40 and 1.0 < r["truth"]["noise_ratio"] < 1.6
    assert [p.name for p in plots.iterdir()] == ["formats.png"]
    _assert_png(plots / "formats.png")


def test_calibrate_mode_end_to_end(tmp_path, capsys):
    """--calibrate: masters made by the harness, plain and calibrated stacks alternating, the
    ratio and RSS targets, and the calibrated image against numpy's calibration + clip."""
    from benchmarks.calibration import KINDS, READ_NOISE, _patterns

    out, md, plots = tmp_path / "c.json", tmp_path / "c.md", tmp_path / "plots"
    argv = ["--calibrate", "--frames", "4", "--size", "256", "--dir", str(tmp_path), *TINY]
    argv += ["--repeat", "2", "--keep", "--json", str(out), "--markdown", str(md)]
    assert main([*argv, "--plots", str(plots)]) == 0  # --methods defaults to stackengine
    table = capsys.readouterr().out
    report = json.loads(out.read_text())
    assert report["benchmark"] == "calibration" and report["methods"] == ["stackengine"]
    order = [(r["repeat"], r["label"]) for r in report["runs"]]
    assert order[:4] == [(0, "plain"), (0, "calibrated"), (1, "plain"), (1, "calibrated")]
    assert {lbl for _, lbl in order[4:]} == {"calibrated-tiles", "calibrated-workers"}
    plain, cal = (report["results"][k]["stackengine"] for k in ("plain", "calibrated"))
    assert plain["ok"] and cal["ok"] and plain["n_ok"] == cal["n_ok"] == 2
    assert "--bias" not in report["params"]["stackengine"]
    assert "--bias BIAS --dark DARK --flat FLAT" in report["calibrated_params"]["stackengine"]

    # the ratio and RSS fields, and the issue-15 checks made of them
    ratios = report["ratios"]["stackengine"]
    assert ratios["wall"] == pytest.approx(cal["wall_s"] / plain["wall_s"])
    assert ratios["work"] == pytest.approx(cal["work_s"] / plain["work_s"])
    assert ratios["cpu"] == pytest.approx(cal["cpu_s"] / plain["cpu_s"])
    assert len(ratios["per_round"]) == 2
    for r in (plain, cal):
        assert 10 * 2**20 < r["peak_rss_bytes"] < 4 * 2**30
    checks = {c["name"]: c for c in report["checks"]}
    ratio_check = checks["stackengine calibrated stack wall / plain stack wall"]
    assert ratio_check["value"] == ratios["wall"] and ratio_check["target"] == 1.25
    assert ratio_check["ok"] == (ratios["wall"] <= 1.25) and ratio_check["issue"] == 15
    rss_check = checks["stackengine calibrated stack peak RSS"]
    assert rss_check["value"] == cal["peak_rss_bytes"] / 2**30
    assert rss_check["target"] == pytest.approx((64 + 256) / 1024)  # memory_limit + 256 MiB
    same = checks["stackengine calibrated image bit-identical across tile sizes and schedulers"]
    assert same["ok"] and same["value"] == 2.0, same
    assert report["identity"]["calibrated-workers"]["identical"]
    assert "stackengine calibrated stack wall / plain stack wall:" in table
    assert "| `stackengine` | calibrated |" in md.read_text()
    assert [p.name for p in plots.iterdir()] == ["calibration.png"]
    _assert_png(plots / "calibration.png")

    # the masters: made by stackengine master from the harness's raw frames, beside the frames
    wl = Workload(n_frames=4, height=256, width=256)
    files = report["masters"]["files"]
    assert report["masters"]["generated"] and report["masters"]["raw_frames"] == 5
    assert all(str(tmp_path / wl.key()) in files[k] for k in KINDS)
    bias, dark, flat = (fits.getdata(files[k]).astype(np.float64) for k in KINDS)
    pattern = _patterns(wl)
    assert abs(np.mean(bias - pattern["bias"])) < 0.2
    # the read noise of a clipped mean of 5 frames (a little above a plain mean's)
    assert 1.0 < mad_std(bias - pattern["bias"]) / (READ_NOISE / np.sqrt(5)) < 1.25
    assert np.mean(flat) == pytest.approx(1.0, abs=1e-6)  # the master flat: mean 1
    hot = pattern["dark"] > 40  # the hot pixels, 50 .. 2000 ADU above a dark of 3
    assert np.all(dark[hot] > 30) and abs(np.median(dark[~hot]) - 3.0) < 0.5

    # the calibrated image against numpy's calibration and a numpy / astropy sigma clip
    cube = np.stack([fits.getdata(p).astype(np.float32) for p in _frames(
        tmp_path / wl.key() / "manifest.json")])  # fmt: skip
    calibrated = (cube.astype(np.float64) - bias - dark) / (flat / flat.mean())
    calibrated = calibrated.astype(np.float32)  # as stackengine stores the calibrated values
    image = fits.getdata(cal["out"])
    np.testing.assert_allclose(image, _cumulative_clip_mean(calibrated), rtol=1e-6, atol=1e-3)
    expected = (
        sigma_clip(calibrated, axis=0, sigma=3, maxiters=5, cenfunc="median", stdfunc="mad_std")
        .mean(axis=0)
        .filled(np.nan)
        .astype(np.float32)
        .astype(np.float64)
    )
    diff = np.abs(image.astype(np.float64) - expected)
    assert cal["vs_astropy"]["max_abs"] == pytest.approx(diff.max(), abs=1e-9)
    assert cal["vs_astropy"]["n_differ"] == np.count_nonzero(diff > 1e-6 * np.abs(expected))
    assert cal["vs_astropy"]["frac_differ"] < 1e-3
    # not the plain stack: bias + dark (about 200 ADU) off every pixel, less what the
    # vignetted flat gives back in the corners
    assert np.all(np.abs(image - fits.getdata(plain["out"])) > 50)
    # mapped back, the calibrated image is as close to the truth as the plain one
    assert cal["truth"]["uncalibrated"]
    assert cal["truth"]["noise_ratio"] == pytest.approx(plain["truth"]["noise_ratio"], rel=0.02)
    assert cal["truth"]["n_residual"] <= plain["truth"]["n_residual"] + 2

    # the masters are reused while their record matches
    assert main([*argv, "--repeat", "1", "--no-identity"]) == 0
    report = json.loads(out.read_text())
    assert not report["masters"]["generated"] and report["identity"] == {}
    assert len(report["checks"]) == 2
    capsys.readouterr()


def test_calibration_checks_by_hand():
    from benchmarks.calibration import calibration_checks

    gib = 2**30

    def row(wall, rss):
        return {"ok": True, "wall_s": wall, "peak_rss_bytes": rss}

    res = {"plain": {"se": row(4.0, gib // 2)}, "calibrated": {"se": row(4.8, int(0.7 * gib))}}
    ratios = {"se": {"wall": 1.2, "per_round": [1.1, 1.3]}}
    same = {"t": {"setting": "tiles", "identical": True}, "w": {"setting": "w", "identical": True}}
    speed, rss, ident = calibration_checks(res, ratios, "se", "512MiB", same)
    assert speed["ok"] and speed["value"] == 1.2 and "per round 1.10 .. 1.30" in speed["note"]
    assert rss["ok"] and rss["target"] == 0.75  # 512 MiB + 256 MiB
    assert ident["ok"] and ident["value"] == 2
    res["calibrated"]["se"] = row(5.2, int(0.8 * gib))
    same["w"] = {"setting": "w", "identical": False, "n_differ": 3}
    speed, rss, ident = calibration_checks(res, {"se": {"wall": 1.3}}, "se", "512MiB", same)
    assert not speed["ok"] and not rss["ok"] and not ident["ok"]
    assert "w: DIFFERENT (3 pixels differ)" in ident["note"]
    assert len(calibration_checks(res, {"se": {}}, "se", "512MiB")) == 1  # RSS only


def test_register_mode_end_to_end(tmp_path, capsys, monkeypatch):
    """--register: a shifted and rotated workload from a larger star field, plain and
    registered stacks (and Siril, when installed) alternating, the transforms against the
    truth, the images against the truth and each other, the issue-16 targets."""
    import shutil

    from benchmarks import registration as reg

    out, md, plots = tmp_path / "r.json", tmp_path / "r.md", tmp_path / "plots"
    argv = ["--register", "--frames", "4", "--size", "320", "--stars-per-mpix", "1500"]
    argv += ["--dir", str(tmp_path), *TINY, "--json", str(out)]
    assert main([*argv, "--repeat", "2", "--markdown", str(md), "--plots", str(plots)]) == 0
    table = capsys.readouterr().out
    report = json.loads(out.read_text())
    assert report["benchmark"] == "registration" and report["generated"]
    siril = shutil.which("siril-cli") is not None
    labels = ["plain", "lanczos3", "bilinear", *(["siril"] if siril else [])]
    assert [(r["repeat"], r["label"]) for r in report["runs"]] == [
        (k, lb) for k in range(2) for lb in labels
    ]
    res = report["results"]
    for label in ("plain", "lanczos3", "bilinear"):
        assert res[label]["ok"] and res[label]["n_ok"] == 2, res[label]
    assert "--register stars -o" in report["params"]["lanczos3"]
    assert "--register stars --interpolation bilinear -o" in report["params"]["bilinear"]
    assert "--register" not in report["params"]["plain"]

    # the frames: float32 and their uint16 copies (the same noise, rounded), the truth kept
    wl = Workload(n_frames=4, height=320, width=320, stars_per_mpix=1500.0)
    manifest = tmp_path / f"{wl.key()}_registered" / "manifest.json"
    data = json.loads(manifest.read_text())
    truth = data["truth"]
    assert len(truth["transforms"]) == 4 and truth["pad"] == reg.margin(wl, 20.0, 2.0)
    for t in truth["transforms"]:
        assert abs(t["dx"]) <= 20 and abs(t["dy"]) <= 20 and abs(t["angle_deg"]) <= 2
    u16 = json.loads(manifest.with_name("manifest_uint16.json").read_text())["files"]
    f32 = fits.getdata(_frames(manifest)[1]).astype(np.float64)
    with fits.open(manifest.parent / u16[1]) as hdul:
        assert hdul[0].header["BITPIX"] == 16
        assert np.all(np.abs(hdul[0].data.astype(np.float64) - f32) <= 0.5)
    # a frame holds the canvas's stars where its true transform puts them
    stars = reg._star_field(wl, truth["pad"])
    bright = int(np.argmax(stars["peak"] * (stars["x"] > 80) * (stars["x"] < 320)
                           * (stars["y"] > 80) * (stars["y"] < 320)))  # fmt: skip
    inv = np.linalg.inv(np.asarray(truth["frame_to_canvas"][1]))
    x, y, _ = inv @ [stars["x"][bright], stars["y"][bright], 1.0]
    iy, ix = int(round(y)), int(round(x))
    assert f32[iy, ix] > 1000 + 0.5 * stars["peak"][bright]

    # the transforms: se.register against the truth
    t = report["transforms"]
    assert t["n_frames"] == 4 and t["rms_px"] < 0.1 and t["max_px"] < 0.3, t
    assert 0 <= t["reference"] < 4

    # the images against the truth: registered stacks close to it, the plain one smeared
    lz, bl, plain = res["lanczos3"]["truth"], res["bilinear"]["truth"], res["plain"]["truth"]
    assert lz["n_residual"] < plain["n_residual"] / 5 and abs(lz["median_bias_adu"]) < 1.0
    assert 0.6 < lz["noise_ratio"] < 1.3 and 0.5 < bl["noise_ratio"] < 1.3
    fwhm = report["images"]["fwhm"]["fwhm_px"]
    assert abs(fwhm["lanczos3"] / fwhm["truth"] - 1) < 0.2, fwhm

    # the ratios and the checks made of them
    for label in ("lanczos3", "bilinear"):
        ratio = report["ratios"][label]
        assert ratio["wall"] == pytest.approx(res[label]["wall_s"] / res["plain"]["wall_s"])
        assert len(ratio["per_round"]) == 2
    checks = {c["name"]: c for c in report["checks"]}
    speed = checks["stackengine registered stack (lanczos3) wall / plain stack wall"]
    assert speed["target"] == 2.0 and speed["ok"] == (report["ratios"]["lanczos3"]["wall"] <= 2)
    rss = checks["stackengine registered stack (bilinear) peak RSS"]
    assert rss["target"] == pytest.approx((64 + 256) / 1024) and rss["issue"] == 16
    assert len(checks) == 4
    assert "stackengine registered stack (lanczos3) wall / plain stack wall:" in table
    assert "| lanczos3 |" in md.read_text()
    assert [p.name for p in plots.iterdir()] == ["registration.png"]
    _assert_png(plots / "registration.png")

    # Siril, when installed: registered and stacked all frames, agreeing with stackengine
    if siril:
        s = res["siril"]
        assert s["ok"] and s["siril_stacked_frames"] == 4 and s["siril_failed_frames"] == 0, s
        assert s["siril_peak_rss_bytes"] > 0 and "register" in s["siril_steps_s"]
        agree = report["images"]["siril_vs_stackengine"]
        assert agree["correlation"] > 0.98 and abs(agree["median_offset_adu"]) < 2.0, agree
        assert report["images"]["fwhm"]["shift_px"]["siril"] < 0.5

    # reused frames; without siril-cli only that peer is left out
    monkeypatch.setattr(reg, "siril_available", lambda: None)
    assert main([*argv, "--repeat", "1"]) == 0
    report = json.loads(out.read_text())
    assert not report["generated"]
    assert report["results"]["siril"]["skipped"] == "siril-cli is not installed"
    assert [r["label"] for r in report["runs"]] == ["plain", "lanczos3", "bilinear"]
    assert all(report["results"][k]["ok"] for k in ("plain", "lanczos3", "bilinear"))
    assert "siril_vs_stackengine" not in report["images"]
    capsys.readouterr()


def test_registration_truth_matrices_and_checks_by_hand():
    from benchmarks import registration as reg

    wl = Workload(n_frames=3, height=100, width=200)
    ts = [{"dx": 0.0, "dy": 0.0, "angle_deg": 0.0}, {"dx": 3.0, "dy": -2.0, "angle_deg": 0.0},
          {"dx": 0.0, "dy": 0.0, "angle_deg": 90.0}]  # fmt: skip
    truth = {"frame_to_canvas": [reg.frame_to_canvas(wl, t, 10).tolist() for t in ts]}
    m = reg.truth_matrices(truth, 0)
    np.testing.assert_allclose(m[0], np.eye(3), atol=1e-12)
    # frame 1 sits 3 px right and 2 px up on the canvas: reference pixel (x, y) is its (x-3, y+2)
    np.testing.assert_allclose(m[1] @ [50.0, 40.0, 1.0], [47.0, 42.0, 1.0])
    # frame 2 is turned 90 degrees about the centre (99.5, 49.5)
    np.testing.assert_allclose(m[2] @ [99.5 + 10, 49.5, 1.0], [99.5, 49.5 - 10, 1.0], atol=1e-9)
    assert reg.margin(wl, 0.0, 0.0) == 16

    gib = 2**30

    def row(wall, rss):
        return {"ok": True, "wall_s": wall, "peak_rss_bytes": rss}

    res = {"plain": row(4.0, gib // 2), "lanczos3": row(7.9, int(0.7 * gib)),
           "bilinear": row(8.4, int(0.8 * gib))}  # fmt: skip
    ratios = {"lanczos3": {"wall": 7.9 / 4, "cpu": 2.0, "per_round": [1.9, 2.1]},
              "bilinear": {"wall": 8.4 / 4, "cpu": 2.0}}  # fmt: skip
    l_speed, l_rss, b_speed, b_rss = reg.registration_checks(res, ratios, "512MiB")
    assert l_speed["ok"] and "per round 1.90 .. 2.10" in l_speed["note"]
    assert l_rss["ok"] and l_rss["target"] == 0.75
    assert not b_speed["ok"] and not b_rss["ok"]
    assert reg._siril_steps(
        "log: Running command: register\nlog: Execution time: 1.50 s.\n"
        "log: Running command: stack\nlog: Execution time: 250.00 ms.\n"
    ) == {"register": 1.5, "stack": 0.25}


def test_command_line_presets_and_errors(capsys):
    p = _parser()
    assert _workload(p, p.parse_args([])) == Workload()  # the standard workload
    wl = _workload(p, p.parse_args(["--preset", "quick", "--dtype", "uint16", "--format", "tiff"]))
    assert (wl.n_frames, wl.height, wl.width, wl.dtype, wl.format) == (
        20,
        1024,
        1024,
        "uint16",
        "tiff",
    )
    wl = _workload(p, p.parse_args(["--preset", "large", "--frames", "30"]))
    assert (wl.n_frames, wl.height) == (30, 4096)
    assert parse_bytes("512MiB") == 512 * 2**20 and parse_bytes("1.5GB") == 1_500_000_000
    assert parse_bytes("4096") == 4096
    assert parse_frames("50, 10,20,10") == [10, 20, 50]
    assert parse_variants("FITS:float32, tiff:uint16,fits:float32") == [
        "fits:float32",
        "tiff:uint16",
    ]
    for func, bad in ((parse_bytes, "lots"), (parse_frames, "10"), (parse_frames, "2,10")):
        with pytest.raises(ValueError):
            func(bad)
    for bad in ("fits:float32", "fits:float32,png:uint16", "fits:int8,tiff:uint16"):
        with pytest.raises(ValueError):
            parse_variants(bad)
    for argv in (
        ["--scaling", "--compare-formats"],
        ["--scaling", "--algorithms", "sigma"],
        ["--methods", "bogus"],
        ["--scaling", "--scaling-frames", "5"],
        ["--ccdproc-mem-limit", "lots"],
        ["--calibrate", "--methods", "astropy"],
        ["--calibrate", "--scaling"],
        ["--calibrate", "--calibration-frames", "0"],
        ["--register", "--methods", "astropy"],
        ["--register", "--calibrate"],
        ["--register", "--max-rotation", "90"],
    ):
        with pytest.raises(SystemExit):
            main(argv)
    capsys.readouterr()


def test_the_installed_command_has_no_bench(capsys):
    """The harness runs as python -m benchmarks; the package never imports a checkout."""
    from stackengine.cli import main as cli_main

    with pytest.raises(SystemExit) as exc:
        cli_main(["bench", "--help"])
    assert exc.value.code == 2
    assert "invalid choice: 'bench'" in capsys.readouterr().err


def test_bayer_scaling_smoke(tmp_path):
    """benchmarks.bayer_scaling on 3 Seestar-like GRBG frames: RGB stack, count, sharp stars."""
    from benchmarks.bayer_scaling import format_bayer_scaling, prepare_bayer, run_bayer_scaling

    report = run_bayer_scaling([3], tmp_path, warmup=False, log=lambda _: None)
    (point,) = report["points"]
    assert point["ok"], point.get("error")
    assert point["rss_ok"] and point["image"]["rgb"] and point["image"]["count_max"] == 3
    assert abs(report["truth"]["fwhm_px"] - 3.0) < 0.3
    assert point["image"]["green_fwhm_px"] < 1.25 * report["truth"]["fwhm_px"]
    manifest, generated = prepare_bayer(3, tmp_path)  # reused
    assert not generated
    header = fits.getheader(manifest.parent / "frame_0000.fits")
    assert header["BAYERPAT"] == "GRBG" and header["EXPTIME"] == 10 and header["BITPIX"] == 16
    assert "N" in format_bayer_scaling(report)
