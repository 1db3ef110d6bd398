"""Knowing the frames (issue 15, item 1): se.summary, frame_kind, group_table and
``stackengine info --by``, on the real frames of ../shared/data/real, against ccdproc's
ImageFileCollection reading the same files."""

from __future__ import annotations

import math
import os
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import stackengine as se
from stackengine.calibrate.summary import (
    COLUMNS,
    FILTER_KEYS,
    KINDS,
    frame_kind,
    group_table,
    overrides_from_text,
    summary,
)
from stackengine.cli import main
from stackengine.errors import FrameError, ParameterError


@pytest.mark.parametrize(
    "raw, kind",
    [
        ("bias", "bias"),
        ("BIAS", "bias"),
        ("Bias Frame", "bias"),
        ("  bias    ", "bias"),
        ("zero", "bias"),
        ("Zero", "bias"),
        ("BIAS_FRAME", "bias"),
        ("dark", "dark"),
        ("Dark Frame", "dark"),
        ("DARK-FRAME", "dark"),
        ("DARKFLAT", "dark"),  # N.I.N.A.: darks for the flats
        ("flat", "flat"),
        ("Flat Field", "flat"),
        ("Flat Frame", "flat"),
        ("FLATFIELD", "flat"),
        ("SKYFLAT", "flat"),
        ("sky flat", "flat"),
        ("DOMEFLAT", "flat"),
        ("Dome_Flat", "flat"),
        ("TWILIGHT FLAT", "flat"),
        ("light", "light"),
        ("Light", "light"),
        ("Light Frame", "light"),
        ("LIGHT", "light"),
        ("object", "light"),
        ("OBJECT", "light"),
        ("science", "light"),
        ("Tricolor Image", "light"),  # MaxIm DL's colour lights
        ("Master Bias", None),  # a master is not a raw frame
        ("arc", None),
        ("focus", None),
        ("flat dark light", None),
        ("", None),
        ("   ", None),
        (None, None),
        (3, None),
    ],
)
def test_frame_kind(raw, kind):
    assert frame_kind(raw) == kind


def test_kinds_and_filter_keys():
    assert KINDS == ("bias", "dark", "flat", "light")
    assert FILTER_KEYS == ("FILTER", "FILTNAME", "INSFLNAM", "FILTER1")
    assert se.summary is summary and "summary" in se.__all__


def _ccdproc_summary(location: Path, keywords: list[str]) -> list[dict]:
    """ccdproc's view of every FITS file in ``location`` (any case of suffix)."""
    from ccdproc import ImageFileCollection

    names = sorted(os.listdir(location))
    with warnings.catch_warnings():  # CAFOS headers repeat two HIERARCH cards
        warnings.simplefilter("ignore")
        table = ImageFileCollection(location, keywords=keywords, filenames=names).summary
    return [{k: row[k] for k in ["file", *keywords]} for row in table]


def _groups_of(df: pd.DataFrame, columns: list[str]) -> dict[tuple, set[str]]:
    out: dict[tuple, set[str]] = {}
    for row in df.itertuples(index=False):
        key = tuple(getattr(row, c) for c in columns)
        out.setdefault(key, set()).add(os.path.basename(row.path))
    return out


@pytest.fixture(scope="module")
def uam(real_dir):
    return real_dir / "uam_ngc2420"


@pytest.fixture(scope="module")
def ast443(real_dir):
    return real_dir / "ast443_bigccd"


def test_uam_summary_agrees_with_ccdproc(uam):
    df = se.summary(uam)
    assert list(df.columns) == list(COLUMNS) and len(df) == 15
    theirs = _ccdproc_summary(uam, ["imagetyp", "exptime", "insflnam"])
    assert [os.path.basename(p) for p in df["path"]] == [r["file"] for r in theirs]
    assert list(df["imagetyp_raw"]) == [r["imagetyp"] for r in theirs]
    assert list(df["exptime"]) == [float(r["exptime"]) for r in theirs]
    assert list(df["filter"]) == [r["insflnam"] for r in theirs]
    # the same groups as ccdproc's raw values give, with the type normalized
    expected: dict[tuple, set[str]] = {}
    for r in theirs:
        key = (frame_kind(r["imagetyp"]), r["insflnam"], float(r["exptime"]))
        expected.setdefault(key, set()).add(r["file"])
    assert _groups_of(df, ["imagetyp", "filter", "exptime"]) == expected
    assert len(expected) == 8


def test_uam_types_and_filters(uam):
    df = se.summary(str(uam / "*.fits"))
    assert df["imagetyp"].value_counts().to_dict() == {"light": 11, "bias": 2, "flat": 2}
    assert set(df["imagetyp_raw"]) == {"bias", "flat", "science"}
    # the filter is only in INSFLNAM, never FILTER; the bias frames carry one too
    assert set(df["filter_key"]) == {"INSFLNAM"}
    bias = df[df["imagetyp"] == "bias"]
    assert list(bias["filter"]) == ["JohnsonV", "JohnsonV"] and set(bias["exptime"]) == {0.0}
    flats = df[df["imagetyp"] == "flat"].set_index("filter")["exptime"].to_dict()
    assert flats == {"JohnsonB": 15.0, "JohnsonV": 3.5}
    lights = df[df["imagetyp"] == "light"]
    assert lights["filter"].value_counts().to_dict() == {"JohnsonB": 6, "JohnsonV": 5}
    assert sorted(set(lights["exptime"])) == [2.0, 3.0, 60.0]
    assert df["decided"].iloc[0] == "imagetyp 'bias' -> bias; filter 'JohnsonV' from INSFLNAM"
    assert (
        df["decided"] == "imagetyp 'science' -> light; filter 'JohnsonB' from INSFLNAM"
    ).sum() == 6
    # cards kept as raw strings (BIASSEC is malformed: checked when it is used, not here)
    assert set(df["biassec"]) == {"[0,513:0,1536]"} and set(df["datasec"]) == {
        "[513,513:1536,1536]"
    }
    assert df["trimsec"].isna().all() and df["bayerpat"].isna().all()
    assert set(df["binning"]) == {"1x1"}  # CAFOS says CCDBINX/CCDBINY
    assert set(df["ccd_temp"]) == {-99.0}  # CCDTEMP
    assert (
        df["object"].iloc[2] == "[flat] dome B" and df["date_obs"].iloc[0] == "2021-03-18T15:09:53"
    )
    assert df["shape"].iloc[0] == (1024, 1024) and df["plane"].isna().all()


def test_filter_keys_are_configurable(uam):
    df = se.summary(uam, filter_keys=("FILTER",))
    assert df["filter"].isna().all() and df["filter_key"].isna().all()
    assert df["decided"].str.endswith("no filter (FILTER)").all()
    df = se.summary(uam, filter_keys=["insflnam"])  # keywords in any case
    assert set(df["filter"]) == {"JohnsonB", "JohnsonV"}
    df = se.summary(uam, filter_keys=["HIERARCH CAHA INS FILT1 NAME", "INSFLNAM"])
    assert set(df["filter_key"]) == {"HIERARCH CAHA INS FILT1 NAME"}
    with pytest.raises(ParameterError, match="filter_keys"):
        se.summary(uam, filter_keys=[])


def test_ast443_agrees_with_ccdproc_and_flags_the_mislabelled_flats(ast443):
    df = se.summary(ast443)
    assert len(df) == 12
    theirs = _ccdproc_summary(ast443, ["imagetyp", "exptime", "filter"])
    assert [os.path.basename(p) for p in df["path"]] == [r["file"] for r in theirs]
    assert list(df["imagetyp_raw"]) == [r["imagetyp"] for r in theirs]
    assert list(df["exptime"]) == [float(r["exptime"]) for r in theirs]
    assert df["imagetyp"].value_counts().to_dict() == {"dark": 6, "bias": 3, "light": 3}
    assert set(df["filter"]) == {"Visible"} and set(df["filter_key"]) == {"FILTER"}
    darks = df[df["imagetyp"] == "dark"]
    assert darks["exptime"].value_counts().to_dict() == {60.0: 4, 30.0: 1, 300.0: 1}
    expos1 = darks[darks["path"].str.contains("expos1-")]
    assert list(expos1["exptime"]) == [60.0] * 3  # named "expos1", exposed 60 s
    # the flats say 'Light Frame': the header wins, the note says the name disagrees
    flats = df[df["path"].str.contains("/flat-")]
    assert list(flats["imagetyp"]) == ["light"] * 3
    assert set(flats["decided"]) == {
        "imagetyp 'Light Frame' -> light (the file name says flat: check); "
        "filter 'Visible' from FILTER"
    }
    assert not df.loc[~df.index.isin(flats.index), "decided"].str.contains("check").any()
    assert (df["ccd_temp"].round(1).isin([-4.8, -5.2])).all() and set(df["binning"]) == {"1x1"}


@pytest.mark.parametrize("how", ["dict-glob", "dict-path", "dataframe"])
def test_ast443_flats_overridden(ast443, how):
    flat_paths = sorted(str(p) for p in ast443.glob("flat-*.FIT"))
    if how == "dict-glob":
        overrides = {"imagetyp": {"flat-*": "flat"}}
    elif how == "dict-path":
        overrides = {"imagetyp": {p: "Flat Field" for p in flat_paths}}
    else:  # a column: empty cells leave the header's value
        overrides = pd.DataFrame(
            {
                "path": [*flat_paths, str(ast443 / "biases-Neg5-Vis.00000000.BIAS.FIT")],
                "imagetyp": ["flat"] * 3 + [None],
                "exptime": [np.nan] * 4,
            }
        )
    df = se.summary(ast443, overrides=overrides)
    assert df["imagetyp"].value_counts().to_dict() == {"dark": 6, "bias": 3, "flat": 3}
    flats = df[df["imagetyp"] == "flat"]
    assert sorted(flats["path"]) == flat_paths
    assert list(flats["imagetyp_raw"]) == ["Light Frame"] * 3  # what the header said stays
    assert set(flats["decided"]) == {
        "imagetyp overridden: flat (header: 'Light Frame'); filter 'Visible' from FILTER"
    }
    assert not df[df["imagetyp"] != "flat"]["decided"].str.contains("overridden").any()
    table = group_table(df, ["imagetyp", "filter", "exptime"])
    assert "flat      Visible  23       3" in table and "light" not in table


def test_overrides_of_other_columns(uam):
    df = se.summary(
        uam,
        overrides={
            "filter": {"calib_bias_*": "none"},
            "exptime": {"science_NGC2420_B_uamA_0023.fits": "2.5"},
        },
    )
    bias = df[df["imagetyp"] == "bias"]
    assert set(bias["filter"]) == {"none"} and set(bias["filter_key"]) == {"override"}
    assert bias["decided"].iloc[0] == (
        "imagetyp 'bias' -> bias; filter overridden: none (header: 'JohnsonV')"
    )
    row = df[df["path"].str.endswith("0023.fits")].iloc[0]
    assert row["exptime"] == 2.5 and row["decided"].endswith(
        "; exptime overridden: 2.5 (header: 2)"
    )


@pytest.mark.parametrize(
    "overrides, says",
    [
        ({"colour": {"*": "red"}}, "unknown column 'colour'"),
        ({"path": {"*": "x"}}, "unknown column 'path'"),
        ({"imagetyp": {"nothing-like-this-*.fits": "flat"}}, "'nothing-like-this-*.fits'"),
        ({"imagetyp": {"*": "sky"}}, "imagetyp 'sky' is not one of bias, dark, flat, light"),
        ({"exptime": {"*": "long"}}, "exptime 'long' is not a number"),
        ({"imagetyp": "flat"}, "expected {column: {pattern: value}}"),
        (pd.DataFrame({"file": ["x"], "imagetyp": ["flat"]}), "'path' column"),
        (pd.DataFrame({"path": ["x.fits"], "imagetyp": ["flat"]}), "'x.fits' (imagetyp)"),
    ],
)
def test_bad_overrides_name_the_problem(uam, overrides, says):
    with pytest.raises(ParameterError) as info:
        se.summary(uam, overrides=overrides)
    assert says in str(info.value)


def test_seestar_and_feder(real_dir):
    df = se.summary(real_dir / "seestar_ngc7023")
    assert set(df["imagetyp_raw"]) == {"Light"} and set(df["imagetyp"]) == {"light"}
    assert set(df["filter"]) == {"IRCUT"} and set(df["bayerpat"]) == {"GRBG"}
    assert df["exptime"].value_counts().to_dict() == {10.0: 4, 20.0: 2}
    assert set(df["shape"]) == {(1920, 1080)} and set(df["object"]) == {"NGC 7023"}
    assert df["ccd_temp"].between(30, 34).all()  # an uncooled sensor on a summer night
    feder = se.summary(real_dir / "msumastro_feder_bias")
    assert set(feder["imagetyp_raw"]) == {"BIAS"} and set(feder["imagetyp"]) == {"bias"}
    assert feder["filter"].isna().all() and set(feder["exptime"]) == {0.0}
    assert feder["ccd_temp"].between(-35.2, -34.8).all() and set(feder["binning"]) == {"1x1"}
    # a night of frames of different shapes is fine (open_frames would refuse to stack them)
    both = se.summary([real_dir / "msumastro_feder_bias", real_dir / "seestar_ngc7023"])
    assert len(both) == 11 and set(both["shape"]) == {(100, 100), (1920, 1080)}


def test_cube_gives_one_row_per_plane(real_dir):
    cube = real_dir / "vip_naco_betapic_cube" / "naco_betapic_cube.fits"
    df = se.summary([cube, cube])  # named twice, listed once
    assert len(df) == 61 and list(df["plane"]) == list(range(61))
    assert df["imagetyp"].isna().all() and math.isnan(df["exptime"].iloc[0])
    assert set(df["decided"]) == {"no IMAGETYP; no filter (FILTER/FILTNAME/INSFLNAM/FILTER1)"}


def test_tiff_has_no_type_unless_overridden(tmp_path):
    import tifffile

    for name in ("a.tif", "flat_1.tif"):
        tifffile.imwrite(tmp_path / name, np.zeros((8, 8), np.uint16))
    df = se.summary(tmp_path / "*.tif")
    assert df["imagetyp"].isna().all() and df["filter"].isna().all()
    assert df["decided"].iloc[1].startswith("no IMAGETYP (the file name says flat: check)")
    df = se.summary(tmp_path, overrides={"imagetyp": {"a.tif": "light", "flat_1.tif": "flat"}})
    assert list(df["imagetyp"]) == ["light", "flat"]


def test_missing_input_is_a_frame_error(tmp_path):
    with pytest.raises(FrameError, match="no file matches"):
        se.summary(tmp_path / "*.fits")


def _table_rows(text: str) -> list[list[str]]:
    """The group lines of a group table, split on runs of two spaces or more."""
    lines = text.splitlines()
    end = next(i for i, line in enumerate(lines) if " frames in " in line)
    return [[c for c in line.split("  ") if c.strip()] for line in lines[1:end]]


def test_group_table_uam(uam):
    text = group_table(se.summary(uam), ["imagetyp", "filter", "exptime"])
    rows = [[c.strip() for c in r] for r in _table_rows(text)]
    assert [r[:4] for r in rows] == [
        ["bias", "JohnsonV", "0", "2"],
        ["flat", "JohnsonB", "15", "1"],
        ["flat", "JohnsonV", "3.5", "1"],
        ["light", "JohnsonB", "2", "1"],
        ["light", "JohnsonB", "3", "2"],
        ["light", "JohnsonB", "60", "3"],
        ["light", "JohnsonV", "3", "2"],
        ["light", "JohnsonV", "60", "3"],
    ]
    assert rows[5][4] == "science_NGC2420_B_uamA_0026.fits .. science_NGC2420_B_uamA_0028.fits"
    assert rows[0][4] == "calib_bias_uamA_0001.fits, calib_bias_uamA_0002.fits"
    assert "15 frames in 8 groups" in text
    assert "     6 x imagetyp 'science' -> light; filter 'JohnsonB' from INSFLNAM" in text
    with pytest.raises(ParameterError, match="unknown column 'colour'"):
        group_table(se.summary(uam), ["imagetyp", "colour"])


def test_overrides_from_text():
    assert overrides_from_text(["flat-*.FIT:imagetyp=flat", "s3://b/x.fits:exptime=2"]) == {
        "imagetyp": {"flat-*.FIT": "flat"},
        "exptime": {"s3://b/x.fits": "2"},
    }
    assert overrides_from_text(["a.fits:date_obs=2021-03-18T15:09:53"]) == {
        "date_obs": {"a.fits": "2021-03-18T15:09:53"}
    }
    with pytest.raises(ParameterError, match="PATTERN:COLUMN=VALUE"):
        overrides_from_text(["imagetyp=flat"])


def test_cli_info_by(ast443, capsys):
    by = ["--by", "imagetyp,filter,exptime"]
    assert main(["info", str(ast443), *by]) == 0
    out = capsys.readouterr().out
    rows = [[c.strip() for c in r[:4]] for r in _table_rows(out)]
    assert rows == [
        ["bias", "Visible", "0", "3"],
        ["dark", "Visible", "30", "1"],
        ["dark", "Visible", "60", "4"],
        ["dark", "Visible", "300", "1"],
        ["light", "Visible", "23", "3"],
    ]
    assert "(the file name says flat: check)" in out
    assert main(["info", str(ast443), *by, "--set", "flat-*.FIT:imagetyp=flat"]) == 0
    out = capsys.readouterr().out
    assert [c.strip() for c in _table_rows(out)[-1][:4]] == ["flat", "Visible", "23", "3"]
    assert "3 x imagetyp overridden: flat (header: 'Light Frame')" in out


def test_cli_info_lists_types_filters_and_decisions(uam, capsys):
    assert main(["info", str(uam / "calib_*.fits"), "--filter-keys", "FILTER,INSFLNAM"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("4 frames, shape (1024, 1024)")
    assert "calib_flat_V_uamA_0048.fits  type=flat  filter=JohnsonV  EXPTIME=3.5" in out
    assert "IMAGETYP=flat" in out
    assert "     2 x imagetyp 'bias' -> bias; filter 'JohnsonV' from INSFLNAM" in out


@pytest.mark.parametrize(
    "extra, says",
    [
        (["--by", "imagetyp,colour"], "unknown column 'colour'"),
        (["--by", ""], "(none given)"),
        (["--set", "imagetyp=flat"], "PATTERN:COLUMN=VALUE"),
        (["--set", "nothing*:imagetyp=flat"], "'nothing*' (imagetyp) matches no frame"),
        (["--set", "*:imagetyp=sky", "--by", "imagetyp"], "imagetyp 'sky' is not one of"),
        (["--filter-keys", ","], "filter_keys"),
    ],
)
def test_cli_info_bad_values_one_line(uam, capsys, extra, says):
    assert main(["info", str(uam), *extra]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("stackengine: error: ") and says in err[0]
