"""IRAF sections, overscan levels and their subtraction against ccdproc (issue 15 item 4).

References: ``ccdproc.utils.slices.slice_from_string(..., fits_convention=True)``
for the sections, ``ccdproc.subtract_overscan(ccd, fits_section=...,
overscan_axis=1, median=True, model=None)`` and ``ccdproc.trim_image`` for the
arithmetic. Tolerance: exact (same bits) where ccdproc computes in float64
(integer and float64 data), and for float32 strips against ccdproc's float64
result rounded to float32. On float32 *data* ccdproc takes the median in
float32 (the mean of the two middle values rounded to float32) while we take
it in float64: the results may differ by one float32 step of the level plus
one of the result.
"""

from __future__ import annotations

import numpy as np
import pytest
from astropy.io import fits
from astropy.nddata import CCDData
from ccdproc import subtract_overscan, trim_image
from ccdproc.utils.slices import slice_from_string
from hypothesis import given, settings
from hypothesis import strategies as st

from stackengine.calibrate.overscan import measure_overscan, overscan_levels, subtract_levels
from stackengine.calibrate.sections import ascending, parse_section, section_of
from stackengine.errors import CalibrationError, ParameterError
from stackengine.frames import frame_sources

SAAO = "ccdproc_saao_single_frame/a8280271.fits"


def _same_pixels_as_ccdproc(text: str, shape: tuple[int, int]) -> None:
    image = np.arange(shape[0] * shape[1]).reshape(shape)
    ours = image[parse_section(text, shape)]
    theirs = image[slice_from_string(text, fits_convention=True)]
    assert ours.shape == theirs.shape and ours.size > 0
    np.testing.assert_array_equal(ours, theirs)


# -- sections ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, shape",
    [
        ("[1:11,1:7]", (7, 11)),
        ("[*,*]", (7, 11)),
        ("[3:5,2:4]", (7, 11)),
        ("[ 4 : 9 , 1 : 7 ]", (7, 11)),
        ("[  17: 528,   1: 520]", (520, 536)),  # the SAAO frame's TRIMSEC, as written
        ("[5:5,7:7]", (7, 11)),  # one pixel
        ("[11:1,*]", (7, 11)),  # reversed: the same columns, right to left
        ("[2:1,1:2]", (7, 11)),  # reversed down to the first column (stop None)
        ("[10:3,6:2]", (7, 11)),  # both reversed
        ("[-*,*]", (7, 11)),
        ("[*,-*]", (7, 11)),
        ("[3:8,-*]", (7, 11)),
    ],
)
def test_sections_select_what_ccdproc_selects(text, shape):
    _same_pixels_as_ccdproc(text, shape)


def test_tabs_are_spaces_too():
    # ccdproc strips only spaces (a tab makes it fail); any whitespace is ignored here
    assert parse_section("\t[1:3,\t2:3] ", (7, 11)) == parse_section(" [1:3, 2:3] ", (7, 11))
    _same_pixels_as_ccdproc(" [1:3, 2:3] ", (7, 11))


def test_section_slices_by_hand():
    assert parse_section("[4:13,1:520]", (520, 536)) == (slice(0, 520), slice(3, 13))
    assert parse_section("[*,*]", (5, 6)) == (slice(0, 5), slice(0, 6))
    assert parse_section("[6:2,-*]", (5, 6)) == (slice(4, None, -1), slice(5, 0, -1))
    assert parse_section("[2:1,3:3]", (5, 6)) == (slice(2, 3), slice(1, None, -1))
    assert ascending(slice(5, 0, -1)) == slice(1, 6)
    assert ascending(slice(4, None, -1)) == slice(0, 5)
    assert ascending(slice(2, 3)) == slice(2, 3)


def _axis_text(draw, n: int) -> str:
    kind = draw(st.sampled_from(["range", "range", "range", "*", "-*"]))
    if kind != "range":
        return kind
    a, b = draw(st.integers(1, n)), draw(st.integers(1, n))
    sp = st.sampled_from(["", " ", "  "])
    return f"{draw(sp)}{a}{draw(sp)}:{draw(sp)}{b}{draw(sp)}"


@st.composite
def valid_sections(draw):
    shape = (draw(st.integers(1, 40)), draw(st.integers(1, 40)))
    text = f"[{_axis_text(draw, shape[1])},{_axis_text(draw, shape[0])}]"
    return text, shape


@settings(max_examples=300, deadline=None)
@given(valid_sections())
def test_random_valid_sections_match_ccdproc(case):
    text, shape = case
    _same_pixels_as_ccdproc(text, shape)
    ys, xs = parse_section(text, shape)
    image = np.arange(shape[0] * shape[1]).reshape(shape)
    up = image[ascending(ys), ascending(xs)]
    # the ascending slices select the same pixels, in increasing order
    assert np.array_equal(np.sort(up, axis=None), np.sort(image[ys, xs], axis=None))
    assert np.all(np.diff(up, axis=1) == 1) and np.all(np.diff(up, axis=0) == shape[1])


@settings(max_examples=400, deadline=None)
@given(st.text(alphabet="[]:,*-+0123456789 ", max_size=14), st.integers(1, 12), st.integers(1, 12))
def test_any_text_is_an_error_or_what_ccdproc_selects(text, rows, cols):
    try:
        parse_section(text, (rows, cols), path="f.fits", card="TRIMSEC")
    except CalibrationError as err:
        message = str(err)
        assert message.startswith("f.fits: bad TRIMSEC ") and "\n" not in message
        return
    _same_pixels_as_ccdproc(text, (rows, cols))


@pytest.mark.parametrize(
    "text, why",
    [
        ("[0,513:0,1536]", "3 comma-separated fields, not 2"),
        ("[513,513:1536,1536]", "3 comma-separated fields, not 2"),
        ("[1:10]", "1 comma-separated fields, not 2"),
        ("[1:2,1:2,1:2]", "3 comma-separated fields, not 2"),
        ("", "the value is empty"),
        ("   ", "the value is empty"),
        ("1:10,1:5", "not enclosed in one pair of square brackets"),
        ("[[1:10,1:5]]", "x range '[1:10' is not 'first:last' or '*'"),
        ("[5,*]", "x range '5' is not 'first:last' or '*'"),  # IRAF: column 5; ccdproc: 1..5
        ("[1:10:2,*]", "x range '1:10:2' is not"),  # steps
        ("[*,1:5:-1]", "y range '1:5:-1' is not"),
        ("[+1:3,1:2]", "x range '+1:3' is not"),
        ("[-1:3,1:2]", "x range '-1:3' is not"),
        ("[a:b,1:2]", "x range 'a:b' is not"),
        ("[1:,1:2]", "x range '1:' is not"),
        ("[0:10,1:5]", "x = 0 is outside the image's 1..11 columns"),
        ("[1:12,1:5]", "x = 12 is outside the image's 1..11 columns"),
        ("[1:10,8:1]", "y = 8 is outside the image's 1..7 rows"),
        ("[1:10,0:7]", "y = 0 is outside the image's 1..7 rows"),
    ],
)
def test_malformed_sections_are_one_clear_error(text, why):
    with pytest.raises(CalibrationError) as info:
        parse_section(text, (7, 11), path="lights/a.fits", card="BIASSEC")
    message = str(info.value)
    assert message.startswith(f"lights/a.fits: bad BIASSEC {text!r}: ")
    assert "expected [x1:x2,y1:y2] with 1-based pixel ranges" in message
    assert why in message and "\n" not in message


def test_a_section_the_user_gives_and_a_non_string_card():
    with pytest.raises(CalibrationError, match=r"^bad section '\[0:3,\*\]': expected"):
        parse_section("[0:3,*]", (4, 4))
    with pytest.raises(
        CalibrationError, match=r"^x\.fits: bad TRIMSEC 17: expected .*not a string"
    ):
        section_of({"TRIMSEC": 17}, "TRIMSEC", (4, 4), "x.fits")
    assert issubclass(CalibrationError, ValueError)


def test_real_uam_cards_are_clear_errors(real_dir):
    paths = sorted((real_dir / "uam_ngc2420").glob("*.fits"))
    assert len(paths) == 15
    for path in paths:
        header = fits.getheader(path)
        shape = (header["NAXIS2"], header["NAXIS1"])
        assert shape == (1024, 1024)
        assert section_of(header, "TRIMSEC", shape, str(path)) is None  # absent
        for card, value in (("BIASSEC", "[0,513:0,1536]"), ("DATASEC", "[513,513:1536,1536]")):
            assert header[card] == value
            with pytest.raises(CalibrationError) as info:
                section_of(header, card, shape, str(path))
            assert str(info.value) == (
                f"{path}: bad {card} {value!r}: expected [x1:x2,y1:y2] with 1-based pixel "
                "ranges; 3 comma-separated fields, not 2"
            )
    # ccdproc itself only fails deep inside numpy, naming neither file nor card
    ccd = CCDData(np.zeros((1024, 1024)), unit="adu")
    with pytest.raises(IndexError, match="too many indices"):
        trim_image(ccd, fits_section="[513,513:1536,1536]")


def test_real_saao_cards_parse_as_ccdproc_does(real_dir):
    header = fits.getheader(real_dir / SAAO)
    shape = (header["NAXIS2"], header["NAXIS1"])
    assert section_of(header, "BIASSEC", shape) == (slice(0, 520), slice(3, 13))
    assert section_of(header, "TRIMSEC", shape) == (slice(0, 520), slice(16, 528))
    for card in ("BIASSEC", "TRIMSEC"):
        _same_pixels_as_ccdproc(header[card], shape)


# -- overscan against ccdproc ---------------------------------------------------------


def _synthetic(dtype, *, seed=0, rows=40, cols=60, over=9) -> np.ndarray:
    """Sky + stars in the first columns, an overscan strip of ``over`` columns whose
    level drifts from row to row, read noise everywhere."""
    rng = np.random.default_rng(seed)
    level = 1000 + 30 * np.sin(np.arange(rows) / 5) + rng.normal(0, 3, rows)
    data = rng.normal(0, 4, (rows, cols)) + level[:, None]
    data[:, : cols - over] += rng.gamma(2, 50, (rows, cols - over))
    if np.dtype(dtype).kind in "ui":
        data = np.round(data)
    return data.astype(dtype)


def _ccdproc(data, bias, trim, axis=1):
    ccd = CCDData(data, unit="adu")
    done = subtract_overscan(ccd, fits_section=bias, overscan_axis=axis, median=True, model=None)
    return trim_image(done, fits_section=trim).data


class _Memory:
    """An in-memory 2-D FrameSource."""

    def __init__(self, data, path="memory"):
        self.data, self.path, self.shape = data, path, data.shape

    def read(self, ys, xs):
        assert ys.step is None and xs.step is None
        return self.data[ys, xs]


def _ours(data, bias, trim, axis=1, out_dtype=np.float64):
    levels = measure_overscan(_Memory(data), parse_section(bias, data.shape), axis)
    ys, xs = parse_section(trim, data.shape)
    strip = data[ys, xs].astype(out_dtype)[None]
    return subtract_levels(strip, levels[None], ys.start, xs.start, axis=axis)[0]


@pytest.mark.parametrize("bias", ["[52:60,*]", "[60:52, *]", "[53:59,1:40]"])
@pytest.mark.parametrize("dtype", [np.uint16, np.int32, np.float64])
def test_overscan_and_trim_equal_ccdproc(dtype, bias):
    data = _synthetic(dtype)
    expected = _ccdproc(data, bias, "[1:50,*]")
    assert expected.dtype == np.float64
    np.testing.assert_array_equal(_ours(data, bias, "[1:50,*]"), expected)
    if np.dtype(dtype).kind == "f":
        return  # a float32 strip of float64 data rounds the data before the subtraction
    # integers read into a float32 strip: ccdproc's float64 result rounded once to float32
    got32 = _ours(data, bias, "[1:50,*]", out_dtype=np.float32)
    assert got32.dtype == np.float32
    np.testing.assert_array_equal(got32, expected.astype(np.float32))


def test_overscan_on_float32_data_within_a_float32_step():
    data = _synthetic(np.float32, seed=4, over=10)  # an even count: ccdproc averages in float32
    expected = _ccdproc(data, "[51:60,*]", "[1:50,*]")
    assert expected.dtype == np.float32
    got = _ours(data, "[51:60,*]", "[1:50,*]", out_dtype=np.float32)
    level = np.median(data[:, 50:].astype(np.float64), axis=1)[:, None]
    tolerance = np.spacing(np.float32(np.abs(level))) + np.spacing(np.abs(expected))
    assert np.all(np.abs(got.astype(np.float64) - expected) <= tolerance)


def test_overscan_per_column_and_with_nans_as_ccdproc():
    data = _synthetic(np.float64, seed=2, rows=60, cols=40).T.copy()  # overscan: rows 32..40
    assert data.shape == (40, 60)
    np.testing.assert_array_equal(
        _ours(data, "[*,33:40]", "[3:58,1:31]", axis=0),
        _ccdproc(data, "[*,33:40]", "[3:58,1:31]", axis=0),
    )
    data = _synthetic(np.float64, seed=3)
    data[5, 55] = np.nan  # a NaN in the overscan: the whole row's level is NaN, as numpy's
    got = _ours(data, "[52:60,*]", "[1:50,*]")
    assert np.isnan(got[5]).all() and not np.isnan(np.delete(got, 5, axis=0)).any()
    np.testing.assert_array_equal(got, _ccdproc(data, "[52:60,*]", "[1:50,*]"))


def test_ccdproc_misaligns_reversed_overscan_rows_and_we_do_not():
    """ccdproc, given the rows of the overscan reversed, subtracts the last row's
    level from the first row; our levels stay at their own rows."""
    data = _synthetic(np.float64, seed=5)
    section = parse_section("[52:60,-*]", data.shape)
    forward = overscan_levels(data[:, 51:60])
    np.testing.assert_array_equal(overscan_levels(data[section]), forward[::-1])  # region order
    np.testing.assert_array_equal(measure_overscan(_Memory(data), section), forward)  # by row
    got = _ours(data, "[52:60,-*]", "[1:50,*]")
    np.testing.assert_array_equal(got, _ours(data, "[52:60,*]", "[1:50,*]"))
    ccd = _ccdproc(data, "[52:60,-*]", "[1:50,*]")
    np.testing.assert_array_equal(ccd, data[:, :50] - forward[::-1, None])
    assert not np.array_equal(ccd, got)


def test_overscan_levels_by_hand_and_bad_input():
    region = np.array([[1, 2, 3, 100], [5, 5, 5, 5], [0, -2, 7, 9]], dtype=np.int16)
    np.testing.assert_array_equal(overscan_levels(region), [2.5, 5.0, 3.5])
    np.testing.assert_array_equal(overscan_levels(region, axis=0), [1.0, 2.0, 5.0, 9.0])
    assert overscan_levels(region).dtype == np.float64
    with pytest.raises(ParameterError, match="overscan axis"):
        overscan_levels(region, axis=2)
    with pytest.raises(ValueError, match="2-D"):
        overscan_levels(region[0])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_subtract_levels_in_place_by_strips(dtype):
    rng = np.random.default_rng(7)
    frames = rng.normal(500, 50, (3, 30, 17)).astype(dtype)
    levels = rng.normal(400, 10, (3, 30))
    expected = (frames.astype(np.float64) - levels[:, :, None]).astype(dtype)
    whole = frames.copy()
    assert subtract_levels(whole, levels, 0) is whole
    np.testing.assert_array_equal(whole, expected)
    pieces = frames.copy()
    for r0, r1 in ((0, 7), (7, 8), (8, 30)):  # strips of any height: the same bits
        strip = np.ascontiguousarray(pieces[:, r0:r1])
        pieces[:, r0:r1] = subtract_levels(strip, levels, r0)
    np.testing.assert_array_equal(pieces, expected)
    view = frames.copy()  # a non-contiguous view is written in place too
    subtract_levels(view[:, 4:9, ::2], levels, 4)
    np.testing.assert_array_equal(view[:, 4:9, ::2], expected[:, 4:9, ::2])
    np.testing.assert_array_equal(view[:, 4:9, 1::2], frames[:, 4:9, 1::2])
    columns = frames.copy()
    subtract_levels(columns[:, :, 5:12], levels[:, :17], 0, 5, axis=0)
    np.testing.assert_array_equal(
        columns[:, :, 5:12],
        (frames[:, :, 5:12].astype(np.float64) - levels[:, None, 5:12]).astype(dtype),
    )


def test_subtract_levels_refuses_what_does_not_fit():
    strip = np.zeros((2, 5, 4), np.float32)
    with pytest.raises(ValueError, match="outside the 10 levels"):
        subtract_levels(strip, np.zeros((2, 10)), 6)
    with pytest.raises(ValueError, match="2 frames"):
        subtract_levels(strip, np.zeros((3, 10)), 0)
    with pytest.raises(ValueError, match="float32/float64"):
        subtract_levels(strip.astype(np.uint16), np.zeros((2, 10)), 0)


# -- real frames read through a FrameSource -------------------------------------------


class _Recorder:
    """A FrameSource that records the rectangles read."""

    def __init__(self, frame):
        self.frame, self.reads = frame, []
        self.path, self.shape = frame.path, frame.shape

    def read(self, ys, xs):
        self.reads.append((ys, xs))
        return self.frame.read(ys, xs)


def test_real_frame_overscan_and_trim_equal_ccdproc(real_dir):
    path = str(real_dir / SAAO)
    frame = frame_sources([path])[0]
    assert frame.shape == (520, 536) and frame.dtype == np.uint16
    header = frame.full_header()
    bias = section_of(header, "BIASSEC", frame.shape, path)
    trim = section_of(header, "TRIMSEC", frame.shape, path)
    recorder = _Recorder(frame)
    levels = measure_overscan(recorder, bias)
    assert recorder.reads == [(slice(0, 520), slice(3, 13))]  # the overscan only
    data = fits.getdata(path)
    np.testing.assert_array_equal(levels, overscan_levels(data[bias]))
    assert np.all(np.isfinite(levels)) and 200 < np.median(levels) < 240

    ccd = CCDData.read(path, unit="adu")
    assert ccd.data.dtype == np.uint16
    done = subtract_overscan(
        ccd, fits_section=header["BIASSEC"], overscan_axis=1, median=True, model=None
    )
    expected = trim_image(done, fits_section=header["TRIMSEC"]).data
    for dtype in (np.float64, np.float32):
        got = np.empty(expected.shape, dtype)
        for r0, r1 in ((0, 100), (100, 333), (333, 520)):  # as the tile task, strip by strip
            strip = frame.read(slice(r0, r1), trim[1]).astype(dtype)[None]
            got[r0:r1] = subtract_levels(strip, levels[None], r0)[0]
        np.testing.assert_array_equal(got, expected.astype(dtype))


def test_real_frame_chosen_sections(real_dir):
    path = str(real_dir / SAAO)
    frame = frame_sources([path])[0]
    data = fits.getdata(path)
    forward = measure_overscan(frame, parse_section("[4:13,*]", frame.shape))
    reverse = measure_overscan(frame, parse_section("[13:4,-*]", frame.shape))
    np.testing.assert_array_equal(reverse, forward)
    partial = measure_overscan(frame, parse_section("[4:13,11:500]", frame.shape))
    assert np.isnan(partial[:10]).all() and np.isnan(partial[500:]).all()
    np.testing.assert_array_equal(partial[10:500], forward[10:500])
    columns = measure_overscan(frame, parse_section("[17:528,501:520]", frame.shape), axis=0)
    assert (
        columns.shape == (536,) and np.isnan(columns[:16]).all() and np.isnan(columns[528:]).all()
    )
    np.testing.assert_array_equal(columns[16:528], np.median(data[500:520, 16:528], axis=0))
    expected = _ccdproc(data, "[*,501:520]", "[17:528,1:500]", axis=0)
    strip = data[:500, 16:528].astype(np.float64)[None]
    np.testing.assert_array_equal(subtract_levels(strip, columns[None], 0, 16, axis=0)[0], expected)


def test_real_uam_frame_with_a_user_section(real_dir):
    path = str(sorted((real_dir / "uam_ngc2420").glob("calib_bias_*.fits"))[0])
    frame = frame_sources([path])[0]
    section = parse_section("[1000:1024, *]", frame.shape)
    levels = measure_overscan(frame, section)
    np.testing.assert_array_equal(levels, overscan_levels(fits.getdata(path)[:, 999:1024]))
    assert levels.shape == (1024,) and np.isfinite(levels).all()
