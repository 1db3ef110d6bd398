"""Smoke tests of benchmarks/survey.py (the synthetic survey of WCS co-adds) on a tiny survey:
the generator's invariants, and the reproject (and, when installed, SWarp) co-adds through
the harness passing the star checks. stackengine's own WCS co-add is not run here."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
import sep
from astropy.io import fits

from benchmarks import survey as sv
from benchmarks.workload import manifest_files
from stackengine.register.wcs import frame_wcs as strict_frame_wcs

#: 8 frames of 640^2 over 1.3 frame areas, twice the real field's star density: ~10 stars
#: pass the benchmark's selection; frame 3 has a satellite trail
SPEC = sv.Survey(n_frames=8, size=640, field=1.3, density=2.0)


@pytest.fixture(scope="module")
def survey(tmp_path_factory):
    manifest, made = sv.prepare_survey(SPEC, tmp_path_factory.mktemp("survey"))
    assert made
    return manifest


@pytest.fixture(scope="module")
def report(survey):
    """The harness end to end on the survey: reproject, and SWarp when installed."""
    tools = ["reproject"] + (["swarp-clipped"] if sv.swarp_executable() else [])
    root = survey.parent.parent
    return sv.run_survey(
        SPEC, root, tools=tools, memory_limit="256MiB", warmup=False, log=lambda _: None
    )


def _frames(manifest):
    return [(f, fits.getheader(f), fits.getdata(f)) for f in manifest_files(manifest)]


def test_survey_files_headers_and_reuse(survey, tmp_path):
    data = json.loads(survey.read_text())
    assert len(data["files"]) == SPEC.n_frames
    assert (survey.parent / "grid.head").is_file() and (survey.parent / "truth.fits").is_file()
    assert sv.prepare_survey(SPEC, survey.parent.parent) == (survey, False)  # reused
    rotations, sips = set(), set()
    for path, h, img in _frames(survey):
        assert h["BITPIX"] == -32 and img.dtype == np.dtype(">f4") and img.shape == (640, 640)
        assert h["CTYPE1"] == "RA---TAN-SIP" and h["A_ORDER"] == 3 and h["EXPTIME"] == 60.0
        assert path.with_suffix(".head").is_file()
        strict_frame_wcs(h, str(path))  # stackengine's strict reading accepts every card
        w = sv.frame_wcs(h)
        corners = np.array([[0, 0], [639, 0], [0, 639], [639, 639]], float)
        dist = np.hypot(*(w.sip_pix2foc(corners, 0) - (corners + 1 - w.wcs.crpix)).T)
        assert 1.5 < dist.max() < 8  # a few px of distortion at the corners
        rotations.add(round(float(h["CD1_2"]), 12))
        sips.add(round(float(h["A_3_0"]), 18))
        assert np.nanmax(img) <= sv.SATURATION_ADU
    assert len(rotations) == len(sips) == SPEC.n_frames  # every frame its own WCS
    # frame k does not depend on the number of frames
    two, _ = sv.prepare_survey(replace(SPEC, n_frames=2), tmp_path)
    for k in range(2):
        name = f"frame_{k:04d}.fits"
        np.testing.assert_array_equal(
            fits.getdata(two.parent / name), fits.getdata(survey.parent / name)
        )
    # the grid holds every frame
    _, gw, (ny, nx) = sv.grid_wcs(survey)
    for _, h, _ in _frames(survey):
        edge = np.array([[-0.5, -0.5], [639.5, -0.5], [-0.5, 639.5], [639.5, 639.5]])
        g = gw.wcs_world2pix(sv.frame_wcs(h).all_pix2world(edge, 0), 0)
        assert (g >= -0.5).all() and (g[:, 0] <= nx - 0.5).all() and (g[:, 1] <= ny - 0.5).all()


def test_each_frame_holds_the_truth_stars_where_its_wcs_puts_them(survey):
    """The truth catalogue through each frame's full WCS (SIP included) lands on the stars'
    light: windowed centroids within noise, aperture fluxes at the truth; the linear WCS
    alone (SIP dropped) misses the corners' stars by pixels."""
    cat = sv.read_catalogue(survey)
    truth_fwhm = [p["fwhm_px"] for p in json.loads(survey.read_text())["truth"]["frames"]]
    for (_, h, img), fwhm in zip(_frames(survey), truth_fwhm, strict=True):
        w = sv.frame_wcs(h)
        idx, x, y = sv.project_stars(w, cat["ra"], cat["dec"], 640, -25)  # 25 px inside
        flux = cat["flux"][idx]
        d = np.hypot(x[:, None] - x[None, :], y[:, None] - y[None, :])
        np.fill_diagonal(d, np.inf)
        keep = (flux > 2e4) & (flux < 2e5) & (d.min(axis=1) > 20)
        assert keep.sum() >= 3
        sub = img.astype(np.float64) - sv.SKY_ADU
        sig = fwhm / 2.3548
        wx, wy, flag = sep.winpos(sub, x[keep], y[keep], sig)
        off = np.hypot(wx - x[keep], wy - y[keep])
        assert (flag == 0).all()
        assert np.median(off) < 0.02 and np.percentile(off, 80) < 0.04, off  # noise, a CR
        got, _, _ = sep.sum_circle(sub, x[keep], y[keep], 4 * fwhm, bkgann=(15, 20), subpix=0)
        assert abs(np.median(got / flux[keep]) - 1) < 0.02
        xl, yl = w.wcs_world2pix(cat["ra"][idx], cat["dec"][idx], 0)  # no SIP
        far = np.hypot(x - 319.5, y - 319.5) > 250
        assert np.hypot(xl - x, yl - y)[far].max() > 1.0


def test_tpv_sidecars_hold_the_same_distortion(survey):
    data = json.loads(survey.read_text())
    assert data["truth"]["tpv_vs_sip_max_px"] < 1e-6
    g = np.linspace(-10, 650, 12)
    pix = np.column_stack([a.ravel() for a in np.meshgrid(g, g)])
    for path, h, _ in _frames(survey):
        tpv = h.copy()
        for key in [k for k in tpv if k[:2] in ("A_", "B_")]:
            del tpv[key]
        tpv.update(fits.Header.fromtextfile(path.with_suffix(".head")))
        assert tpv["CTYPE1"] == "RA---TPV" and "PV1_7" in tpv and "A_ORDER" not in tpv
        sip_w, tpv_w = sv.frame_wcs(h), sv.frame_wcs(tpv)
        back = sip_w.all_world2pix(tpv_w.all_pix2world(pix, 0), 0, tolerance=1e-10)
        assert np.abs(back - pix).max() < 1e-6


def test_reproject_coadd_passes_the_star_checks(report):
    r = report["rows"]["reproject"]
    assert r["ok"], r.get("error")
    assert r["wall_s"] > 0 and r["cpu_s"] > 0 and r["peak_rss_bytes"] > 10 * 2**20
    s = r["stars"]
    assert 6 <= s["n_stars"] <= report["selection"]["n"]
    assert s["rms_px"] < sv.RMS_TARGET_PX and s["max_px"] < 0.05
    assert abs(s["mean_dx_px"]) < 0.01 and abs(s["mean_dy_px"]) < 0.01
    assert abs(s["flux_ratio_median"] - 1) < 0.01
    assert s["header_wcs_offset_px"] < 1e-6  # the co-add's header is the grid
    assert r["trail_leak"] > 0.7  # a plain mean keeps the satellite trail
    floor = report["truth_render"]
    assert floor["rms_px"] < 1e-3 and abs(floor["flux_ratio_median"] - 1) < 1e-3
    text = sv.format_survey(report)
    assert "`reproject`" in text and "truth render (floor)" in text
    assert report["checks"] == []  # the targets are stackengine's; it did not run here


def test_swarp_reads_the_tpv_sidecars_like_astropy_reads_sip(report):
    if not sv.swarp_executable():
        pytest.skip("SWarp (Debian package swarp) is not installed: an optional peer")
    r = report["rows"]["swarp-clipped"]
    assert r["ok"], r.get("error")
    s = r["stars"]
    assert s["rms_px"] < sv.RMS_TARGET_PX and abs(s["mean_dx_px"]) < 0.01
    assert abs(s["mean_dy_px"]) < 0.01 and abs(s["flux_ratio_median"] - 1) < 0.01
    assert s["header_wcs_offset_px"] < 1e-6  # SWarp took the grid from OUT.head
    assert r["trail_leak"] < report["rows"]["reproject"]["trail_leak"] - 0.3  # clipped
