"""``stackengine run`` (issue 18): a whole real night with no option, from raw frames to
masters, calibrated registered stacks per filter, a report and a replayable configuration.

The nights are read from ../shared/data/real beside the repository at run time.
uam_ngc2420 (CAFOS): 2 bias, a B and a V dome flat, 6 B and 5 V lights drifting by up
to 4.6 px; its filter is only in INSFLNAM and its BIASSEC is malformed. The
registration is checked against an independent measure: the stars' fwhm in the
stack (found by the registration's own star finder on the in-memory image) is not
worse than in the plain, unregistered stack of the same calibrated lights.
"""

from __future__ import annotations

import os
import shutil
import tomllib
import warnings

import numpy as np
import pytest
from astropy.io import fits

import stackengine as se
from stackengine.cli import main
from stackengine.io.fits import FitsFrame

UAM_FILES = ["master_bias.fits", "master_flat_JohnsonB.fits", "master_flat_JohnsonV.fits",
             "stack_JohnsonB.fits", "stack_JohnsonV.fits", "report.png", "report.md",
             "config.toml"]  # fmt: skip


def _hdus(path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with fits.open(path) as hdul:
            return {h.name: (h.header.copy(), None if h.data is None else np.array(h.data))
                    for h in hdul}  # fmt: skip


@pytest.fixture(scope="module")
def uam(real_dir):
    return real_dir / "uam_ngc2420"


@pytest.fixture(scope="module")
def uam_run(uam, tmp_path_factory):
    """``stackengine run uam_ngc2420 -o DIR`` with no other option."""
    out = tmp_path_factory.mktemp("run") / "night"
    assert main(["run", str(uam), "-o", str(out)]) == 0
    return out


def test_run_writes_masters_stacks_report_and_config(uam_run):
    assert sorted(p.name for p in uam_run.iterdir()) == sorted(UAM_FILES)
    bias = _hdus(uam_run / "master_bias.fits")
    assert bias["PRIMARY"][0]["IMAGETYP"] == "bias" and bias["PRIMARY"][0]["NCOMBINE"] == 2
    for band in "BV":
        flat = _hdus(uam_run / f"master_flat_Johnson{band}.fits")["PRIMARY"]
        assert flat[0]["IMAGETYP"] == "flat" and flat[0]["FILTER"] == f"Johnson{band}"
        assert abs(float(np.nanmean(flat[1])) - 1) < 1e-4  # normalized to mean 1
    for band, n in (("B", 6), ("V", 5)):
        stack = _hdus(uam_run / f"stack_Johnson{band}.fits")
        image, count = stack["PRIMARY"][1], stack["COUNT"][1]
        assert image.shape == (1024, 1024)
        assert count.max() == n  # every light registered and stacked
        present = count + stack["REJECTED_LOW"][1] + stack["REJECTED_HIGH"][1]
        assert (present == n).mean() > 0.9  # drift of a few pixels: the borders lose a frame
        assert np.isfinite(image[count > 0]).all()
        assert "REJECTED_HIGH" in stack and stack["REJECTED_HIGH"][1].sum() > 0
    png = (uam_run / "report.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 20_000
    report = (uam_run / "report.md").read_text()
    for text in ("## Decisions", "BIASSEC", "6 of 6", "5 of 5", "registration rms",
                 "flat_JohnsonB", "stack_JohnsonV.fits"):  # fmt: skip
        assert text in report, text
    config = tomllib.loads((uam_run / "config.toml").read_text())
    assert config["stack"]["register"] == "stars" and config["inputs"]


def _fwhm(image: np.ndarray) -> float:
    """Median star fwhm of an image, by the registration's star finder."""
    image = np.where(np.isfinite(image), image, np.nanmedian(image)).astype(np.float32)
    table = se.register(np.stack([image, image]))
    return float(table["fwhm"].values[0])


@pytest.mark.parametrize("band", ["B", "V"])
def test_stacks_are_registered_not_blurred_by_the_drift(uam_run, uam, band):
    """B: the 2-3 s lights lie 5 px off the 60 s ones; the registered stack is sharper
    than the plain one (measured 5.62 against 5.79 px). V drifts by 1 px at most
    (5.51 against 5.44 px: lanczos3 resampling costs about 1 %): not worse than 3 %."""
    lights = sorted(str(p) for p in uam.glob(f"science_NGC2420_{band}_*"))
    calibration = {"bias": str(uam_run / "master_bias.fits"),
                   "flat": str(uam_run / f"master_flat_Johnson{band}.fits")}  # fmt: skip
    with pytest.warns(UserWarning, match="flat pixels below min_value"):
        plain = se.stack(se.open_frames(lights), calibration=calibration,
                         normalize="additive+scale", weights="noise")  # fmt: skip
    plain_fwhm = _fwhm(plain["image"].values)
    ours = _fwhm(_hdus(uam_run / f"stack_Johnson{band}.fits")["PRIMARY"][1])
    assert ours < plain_fwhm if band == "B" else ours < 1.03 * plain_fwhm, (ours, plain_fwhm)
    rows = [r for r in (uam_run / "report.md").read_text().splitlines()
            if r.startswith(f"| Johnson{band}")]  # fmt: skip
    rms_median, rms_max = (float(v) for v in rows[0].split("|")[7].split("/"))
    assert rms_median < 0.35 and rms_max < 0.5  # pixels, over 50-200 matched stars


def test_config_replay_gives_the_same_bits(uam_run, tmp_path):
    out = tmp_path / "replay"
    assert main(["run", "--config", str(uam_run / "config.toml"), "-o", str(out)]) == 0
    for name in UAM_FILES[:5]:
        first, again = _hdus(uam_run / name), _hdus(out / name)
        assert first.keys() == again.keys()
        for hdu in first:
            if first[hdu][1] is not None and first[hdu][1].dtype.names is None:
                np.testing.assert_array_equal(first[hdu][1], again[hdu][1], err_msg=name)


def test_a_second_run_refuses_and_names_the_output(uam_run, uam, capsys):
    before = (uam_run / "master_bias.fits").stat().st_mtime_ns
    assert main(["run", str(uam), "-o", str(uam_run)]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("stackengine: error:") and "master_bias.fits: exists" in err
    assert len(err.splitlines()) == 1 and "--overwrite" in err
    assert (uam_run / "master_bias.fits").stat().st_mtime_ns == before


def test_dry_run_reads_no_pixel_and_prints_the_plan(uam, tmp_path, monkeypatch, capsys):
    def no_pixels(*args, **kwargs):
        raise AssertionError("a pixel was read")

    for name in ("read", "read_into", "read_float32", "_read_rows", "_read_compressed"):
        monkeypatch.setattr(FitsFrame, name, no_pixels)
    out = tmp_path / "dry"
    assert main(["run", str(uam), "-o", str(out), "--dry-run"]) == 0
    text = capsys.readouterr().out
    assert not out.exists()
    for line in ("light     JohnsonB  60", "flat_JohnsonB", "stack_JohnsonV.fits",
                 "BIASSEC '[0,513:0,1536]'", "would write into"):  # fmt: skip
        assert line in text, line


def test_overrides_from_the_command_line_change_the_plan(uam, tmp_path, capsys):
    args = ["run", str(uam), "-o", str(tmp_path / "x"), "--dry-run",
            "--option", "calibration.flat=none", "--set", "*_0023.fits:imagetyp=bias"]  # fmt: skip
    assert main(args) == 0
    text = capsys.readouterr().out
    assert "not flat-fielded" in text and "master_flat" not in text
    assert "bias      JohnsonB  2" in text  # the 2 s light, now a bias
    assert main(["run", str(uam), "-o", str(tmp_path), "--option", "stack.nonsense=1"]) == 1
    assert "unknown key stack.nonsense" in capsys.readouterr().err


def test_no_lights_is_one_clear_error(real_dir, tmp_path, capsys):
    out = tmp_path / "none"
    assert main(["run", str(real_dir / "msumastro_feder_bias"), "-o", str(out)]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "no lights among the 5 frames (5 bias)" in err
    assert not out.exists()


def test_a_filter_without_flat_and_frames_of_another_size(uam, tmp_path):
    """A V light cropped to another size is stacked apart; V without its flat is
    stacked, said in the plan (a decision, not a failure)."""
    folder = tmp_path / "raw"
    folder.mkdir()
    for p in uam.glob("*.fits"):
        if "flat_V" not in p.name:
            (folder / p.name).symlink_to(p)
    plan = se.plan_night([str(folder)])
    names = {g.name: g for g in plan.lights}
    assert set(names) == {"JohnsonB", "JohnsonV"} and names["JohnsonV"].flat is None
    assert any("no flat for filter JohnsonV" in d for d in plan.decisions)
    data = fits.getdata(uam / "science_NGC2420_V_uamA_0029.fits")[:600, :700]
    header = fits.getheader(uam / "science_NGC2420_V_uamA_0029.fits")
    fits.writeto(folder / "science_crop.fits", data, header, output_verify="silentfix")
    plan = se.plan_night([str(folder)])
    names = {g.name: g for g in plan.lights}
    assert set(names) == {"JohnsonB", "JohnsonV_1024x1024", "JohnsonV_600x700"}
    assert names["JohnsonV_600x700"].bias is None  # no bias of that size
    assert "master_bias_1024x1024.fits" in [m.file for m in plan.masters]


def test_a_colour_night_stacks_rgb(real_dir, tmp_path):
    """seestar_ngc7023: Bayer lights only, two sessions rotated 121.5 deg apart."""
    result = se.run_night([str(real_dir / "seestar_ngc7023")], tmp_path / "seestar")
    (stats,) = result.stacks
    assert stats.name == "IRCUT" and stats.used == 6 and max(stats.rms_px) < 1.0
    image = _hdus(stats.file)["PRIMARY"][1]
    assert image.shape == (3, 1920, 1080)  # RGB
    assert (tmp_path / "seestar" / "report.png").exists()
    shutil.rmtree(tmp_path / "seestar")


def test_config_round_trip_and_errors(tmp_path):
    from stackengine.errors import ParameterError
    from stackengine.night import config_text, load_config
    from stackengine.night.config import set_option

    overrides = {"imagetyp": {"flat-*.FIT": "flat"}}
    flats = {"B 2": "none"}
    config = load_config(
        {"frames": {"overrides": overrides}, "calibration": {"flats": flats}, "inputs": "a.fits"}
    )
    set_option(config, "stack.normalize=photometric")
    set_option(config, "stack.sigma_upper=2.5")
    set_option(config, 'frames.exclude=["x*", "y*"]')
    text = config_text(config, "a header\nof two lines")
    assert text.startswith("# a header\n# of two lines\n")
    assert tomllib.loads(text) == config and load_config(tomllib.loads(text)) == config
    assert config["inputs"] == ["a.fits"] and config["stack"]["sigma_upper"] == 2.5
    path = tmp_path / "c.toml"
    path.write_text(text)
    assert load_config(path) == config
    for bad, message in (({"stack": {"sigma_upper": "x"}}, "expected a number"),
                         ({"stack": {"drop_failed": 1}}, "expected true or false"),
                         ({"calibrate": {}}, "unknown key calibrate"),
                         ({"stack": []}, "must be a table")):  # fmt: skip
        with pytest.raises(ParameterError, match=message):
            load_config(bad)
    path.write_text("stack = [")
    with pytest.raises(ParameterError, match="not a valid TOML file"):
        load_config(path)


def test_darks_by_exposure_or_scaled_and_mislabelled_flats(real_dir, tmp_path, capsys):
    """ast443_bigccd: darks of 30, 60 and 300 s and 23 s flats saved as 'Light Frame'."""
    night = str(real_dir / "ast443_bigccd")
    plan = se.plan_night([night])
    made = {m.name: m for m in plan.masters}
    assert set(made) == {"bias", "dark_30s", "dark_60s", "dark_300s", "dark_per_s"}
    assert made["dark_60s"].bias == "bias" and len(made["dark_60s"].paths) == 4
    assert made["dark_per_s"].dark_scale and len(made["dark_per_s"].paths) == 6
    (group,) = plan.lights  # the flats, as their headers say; the plan says to check
    assert group.dark == "dark_per_s" and group.dark_scale  # no 23 s dark: scaled
    assert any("the file name says flat: check" in d for d in plan.decisions)
    matched = se.plan_night([night], {"calibration": {"dark": "match"}})
    assert matched.lights[0].dark is None and "dark_per_s" not in [m.name for m in matched.masters]
    # told they are flats: no lights left, one clear line
    args = ["run", night, "-o", str(tmp_path / "a"), "--set", "flat-*:imagetyp=flat"]
    assert main(args) == 1
    err = capsys.readouterr().err.strip()
    assert err == (
        "stackengine: error: no lights among the 12 frames (6 dark, 3 bias, 3 flat): nothing "
        "to stack; mark the lights in frames.overrides (--set 'PATTERN:imagetyp=light'), or "
        "make masters only with 'stackengine master'"
    )


def test_lights_without_enough_stars_are_stacked_unregistered_and_said(real_dir, tmp_path, capsys):
    """astropy_data_M13_blue: faint trailed stars, 0-2 found a frame."""
    out = tmp_path / "m13"
    assert main(["run", str(real_dir / "astropy_data_M13_blue"), "-o", str(out)]) == 0
    assert "NOT REGISTERED" in capsys.readouterr().err
    assert "NOT REGISTERED" in (out / "report.md").read_text()
    assert fits.getdata(out / "stack_nofilter.fits", "COUNT").max() == 5
    assert main(["run", str(real_dir / "astropy_data_M13_blue"), "-o", str(tmp_path / "e"),
                 "--option", 'stack.if_unregistered="error"']) == 1  # fmt: skip
    assert "cannot register" in capsys.readouterr().err


def test_lights_of_several_objects_in_one_filter_are_stacked_apart(uam, capsys):
    objects = {"*_0031.fits": "M 67", "*_0032.fits": "M  67"}  # spaces do not matter
    plan = se.plan_night([str(uam)], {"frames": {"overrides": {"object": objects}}})
    names = {g.name: len(g.paths) for g in plan.lights}
    assert names == {"JohnsonB": 6, "NCG2420_V_JohnsonV": 3, "M_67_JohnsonV": 2}
    assert any("lights of 2 objects" in d for d in plan.decisions)
    assert all(g.flat == "flat_JohnsonV" for g in plan.lights if "V" in g.name)
    one = {"*_0031.fits": "M 67"}  # a field of one light: not split, said
    plan = se.plan_night([str(uam)], {"frames": {"overrides": {"object": one}}})
    assert {g.name for g in plan.lights} == {"JohnsonB", "JohnsonV"}
    assert any("stacked together" in d for d in plan.decisions)
    config = {"frames": {"overrides": {"object": objects}, "split_by_object": "no"}}
    assert {g.name for g in se.plan_night([str(uam)], config).lights} == {"JohnsonB", "JohnsonV"}
    with pytest.raises(se.ParameterError, match="split_by_object = 'maybe': choose 'auto'"):
        se.plan_night([str(uam)], {"frames": {"split_by_object": "maybe"}})


def _synthetic_night(folder, light_filter="R"):
    """Raw frames with an overscan strip (BIASSEC/TRIMSEC), the filter in FILTNAME,
    IMAGETYP 'zero' / 'Dark Frame' / 'SKYFLAT' / 'object', 30 s darks for 60 s lights,
    four R lights drifting by a few pixels over 25 stars, one G light with no flat."""
    rows, cols, data_cols = 100, 110, 100
    rng = np.random.default_rng(18)
    y, x = np.mgrid[:rows, :data_cols]
    stars = rng.uniform(8, 92, (25, 2))
    flux = rng.uniform(2000, 20000, 25)
    response = 1 - 0.15 * ((x - 50) ** 2 + (y - 50) ** 2) / 50**2

    def sky(dy, dx):
        image = np.full((rows, data_cols), 300.0)
        for (sy, sx), f in zip(stars, flux, strict=True):
            image += (
                f
                / (2 * np.pi * 1.5**2)
                * np.exp(-((y - sy - dy) ** 2 + (x - sx - dx) ** 2) / (2 * 1.5**2))
            )
        return image

    def write(name, kind, exptime, signal, filt="R"):
        level = 1000 + 3.0 * np.sin(np.arange(rows) / 7.0)[:, None]
        raw = level + rng.normal(0, 2.0, (rows, cols))
        raw[:, :data_cols] += signal + 0.5 * exptime  # dark current 0.5 ADU/s
        header = fits.Header({"IMAGETYP": kind, "EXPTIME": exptime, "FILTNAME": filt,
                              "BIASSEC": f"[{data_cols + 1}:{cols},1:{rows}]",
                              "TRIMSEC": f"[1:{data_cols},1:{rows}]"})  # fmt: skip
        fits.PrimaryHDU(np.round(raw).astype(np.uint16), header=header).writeto(folder / name)

    for k in range(3):
        write(f"zero_{k}.fits", "zero", 0.0, 0.0)
        write(f"dark_{k}.fits", "Dark Frame", 30.0, 0.0)
        write(f"skyflat_{k}.fits", "SKYFLAT", 5.0, (8000 + 2000 * k) * response)
    for k in range(4):
        write(f"obj_{k}.fits", "object", 60.0, response * sky(1.3 * k, -0.8 * k), light_filter)
    write("obj_g.fits", "object", 60.0, response * sky(0, 0), filt="G")


def test_a_night_with_overscan_darks_to_scale_and_a_filter_without_flat(tmp_path, capsys):
    raw = tmp_path / "raw"
    raw.mkdir()
    _synthetic_night(raw)
    out = tmp_path / "out"
    assert main(["run", str(raw), "-o", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "overscan [101:110,1:100] (BIASSEC) subtracted" in printed
    assert "stack G: no flat for filter G" in printed and "stack G: a single light" in printed
    names = sorted(p.name for p in out.glob("*.fits"))
    assert names == ["master_bias.fits", "master_dark_30s.fits", "master_dark_per_s.fits",
                     "master_flat_R.fits", "stack_G.fits", "stack_R.fits"]  # fmt: skip
    flat = _hdus(out / "master_flat_R.fits")["PRIMARY"]
    assert flat[1].shape == (100, 100) and flat[0]["FILTER"] == "R"  # trimmed
    per_s = fits.getdata(out / "master_dark_per_s.fits")
    assert abs(float(np.median(per_s)) - 0.5) < 0.02  # the dark current, per second
    stack = _hdus(out / "stack_R.fits")
    assert stack["PRIMARY"][1].shape == (100, 100) and stack["COUNT"][1].max() == 4
    sky = float(np.nanmedian(stack["PRIMARY"][1]))
    y, x = np.mgrid[:100, :100]
    mean_response = float(np.mean(1 - 0.15 * ((x - 50) ** 2 + (y - 50) ** 2) / 50**2))
    # bias, overscan and the scaled dark removed; the flat (mean 1) leaves the mean response
    assert abs(sky - 300 * mean_response) < 2
    report = (out / "report.md").read_text()
    assert "| R | 4 of 4 |" in report and "dark_per_s (scaled)" in report


def test_filters_that_headers_name_otherwise_are_matched_by_overrides(tmp_path):
    """Flats say 'R', lights 'Rc': told they are one filter, the lights get the flat
    (the calibration's own filter check does not refuse the match)."""
    raw = tmp_path / "raw"
    raw.mkdir()
    _synthetic_night(raw, light_filter="Rc")
    plan = se.plan_night([str(raw)])
    assert {g.name: g.flat for g in plan.lights} == {"Rc": None, "G": None}
    config = {"frames": {"overrides": {"filter": {"obj_[0-9].fits": "R"}}}}
    result = se.run_night([str(raw)], tmp_path / "out", config)
    (r,) = [s for s in result.stacks if s.name == "R"]
    assert r.used == 4 and {g.name: g.flat for g in result.plan.lights}["R"] == "flat_R"
    again = tomllib.loads((tmp_path / "out" / "config.toml").read_text())
    assert again["frames"]["overrides"] == config["frames"]["overrides"]


def test_frames_without_imagetyp_are_typed_by_their_names(tmp_path):
    for name, data in (("bias_1.fits", 0), ("bias_2.fits", 0), ("m42_light_1.fits", 5),
                       ("m42_light_2.fits", 5), ("focus.fits", 1)):  # fmt: skip
        fits.PrimaryHDU(np.full((20, 30), 100 + data, np.uint16)).writeto(tmp_path / name)
    plan = se.plan_night([str(tmp_path)])
    assert [m.name for m in plan.masters] == ["bias"] and plan.lights[0].n_frames == 2
    assert any("taken as bias by their file names" in d for d in plan.decisions)
    assert [os.path.basename(p) for p, _ in plan.dropped] == ["focus.fits"]
    with pytest.raises(se.ParameterError, match=r"no lights among the 5 frames \(5 of no known"):
        se.plan_night([str(tmp_path)], {"frames": {"types_from_names": False}})


def test_a_failed_run_leaves_no_partial_night(tmp_path, monkeypatch, capsys):
    """The stack step fails after the masters are written: the run removes the files it
    wrote (and the folder it made), keeps what it did not write (the user's, an earlier
    run's, one another process wrote meanwhile), and the command says one line and
    exits non-zero."""
    from stackengine.night import execute

    raw = tmp_path / "raw"
    raw.mkdir()
    _synthetic_night(raw)
    out = tmp_path / "night"
    other = {"write": False}

    def fail(*args, **kwargs):
        assert any(p.name.startswith("master_") for p in out.iterdir())  # written already
        if other["write"]:  # another run writes into the folder meanwhile
            (out / "stack_R.fits").write_bytes(b"another run's stack")
        raise se.StackEngineError("obj_0.fits: the disk is gone")

    monkeypatch.setattr(execute, "_stack_group", fail)
    with pytest.raises(se.StackEngineError, match="disk is gone"):
        se.run_night([str(raw)], out)
    assert not out.exists()  # made by the run, emptied, removed

    other["write"] = True
    with pytest.raises(se.StackEngineError, match="disk is gone"):
        se.run_night([str(raw)], out)
    assert sorted(p.name for p in out.iterdir()) == ["stack_R.fits"]  # not this run's

    (out / "stack_R.fits").unlink()
    other["write"] = False
    (out / "notes.txt").write_text("mine")
    (out / "report.md").write_text("an earlier run's report")
    assert main(["run", str(raw), "-o", str(out), "--overwrite"]) == 1
    err = capsys.readouterr().err
    assert "disk is gone" in err
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt", "report.md"]
    assert (out / "report.md").read_text() == "an earlier run's report"  # not rewritten yet
