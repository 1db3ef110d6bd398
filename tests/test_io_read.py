"""Per-format frame readers (FITS, TIFF, zarr) against the libraries' own reads."""

from __future__ import annotations

import pickle
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import tifffile
import zarr
from astropy.io import fits

from stackengine.errors import FrameError
from stackengine.io import fits as fits_io
from stackengine.io.fits import FitsFrame, open_fits
from stackengine.io.sources import FrameSource, FrameStack
from stackengine.io.tiff import TiffFrame, open_tiff
from stackengine.io.zarr import ZarrFrame, open_zarr

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
REAL = SHARED / "data" / "real"
PEER = SHARED / "data" / "peer" / "imgstack_tiffs"

H, W = 23, 19
YS, XS = slice(3, 17), slice(5, 11)  # an odd sub-rectangle
ALL = slice(None)


def check_frame(frame: FrameSource, ref: np.ndarray) -> None:
    """Full frame and odd sub-rectangles of ``frame`` equal ``ref`` (values and dtype)."""
    assert isinstance(frame, FrameSource)
    assert frame.shape == ref.shape
    assert frame.dtype == ref.dtype.newbyteorder("=") and frame.dtype.isnative
    for ys, xs in [(ALL, ALL), (YS, XS), (slice(0, 1), slice(W - 1, W)), (slice(1, 2), ALL)]:
        got = frame.read(ys, xs)
        want = ref[ys, xs]
        assert got.shape == want.shape
        assert got.dtype == frame.dtype
        np.testing.assert_array_equal(got, want)


def roundtrip(frame):
    return pickle.loads(pickle.dumps(frame))


# --------------------------------------------------------------------- FITS


def write_raw_fits(path: Path, raw: np.ndarray, **cards) -> Path:
    """A FITS file holding ``raw``'s bytes as they are (no scaling by the writer)."""
    bitpix = {"u1": 8, "i2": 16, "i4": 32, "i8": 64, "f4": -32, "f8": -64}[raw.dtype.str[1:]]
    hdr = fits.Header([("SIMPLE", True), ("BITPIX", bitpix), ("NAXIS", raw.ndim)])
    for i, n in enumerate(raw.shape[::-1], start=1):
        hdr[f"NAXIS{i}"] = n
    for key, value in cards.items():
        hdr[key.replace("_", "-")] = value
    data = raw.astype(raw.dtype.newbyteorder(">")).tobytes()
    path.write_bytes(hdr.tostring().encode() + data + b"\0" * (-len(data) % 2880))
    return path


rng = np.random.default_rng(12345)
FITS_CASES = {
    # name: (raw array, cards, expected output dtype)
    "uint8": (rng.integers(0, 256, (H, W)).astype("u1"), {}, "uint8"),
    "int8": (rng.integers(0, 256, (H, W)).astype("u1"), {"BZERO": -128}, "int8"),
    "u8-scaled": (
        rng.integers(0, 256, (H, W)).astype("u1"),
        {"BZERO": 3.5, "BSCALE": 0.1},
        "float32",
    ),
    "int16": (rng.integers(-(2**15), 2**15, (H, W)).astype("i2"), {}, "int16"),
    "uint16": (rng.integers(-(2**15), 2**15, (H, W)).astype("i2"), {"BZERO": 32768}, "uint16"),
    "i16-scaled": (
        rng.integers(-(2**15), 2**15, (H, W)).astype("i2"),
        {"BZERO": 100.25, "BSCALE": 1.7},
        "float32",
    ),
    "i16-blank": (rng.integers(-5, 5, (H, W)).astype("i2"), {"BLANK": -3}, "float32"),
    "int32": (rng.integers(-(2**31), 2**31, (H, W)).astype("i4"), {}, "int32"),
    "uint32": (rng.integers(-(2**31), 2**31, (H, W)).astype("i4"), {"BZERO": 2**31}, "uint32"),
    "i32-scaled": (rng.integers(-(2**31), 2**31, (H, W)).astype("i4"), {"BSCALE": 0.5}, "float64"),
    "int64": (rng.integers(-(2**62), 2**62, (H, W)).astype("i8"), {}, "int64"),
    "uint64": (rng.integers(-(2**62), 2**62, (H, W)).astype("i8"), {"BZERO": 2**63}, "uint64"),
    "float32": (rng.standard_normal((H, W)).astype("f4"), {}, "float32"),
    "f32-scaled": (
        rng.standard_normal((H, W)).astype("f4"),
        {"BZERO": 5, "BSCALE": 3.0},
        "float32",
    ),
    "float64": (rng.standard_normal((H, W)), {}, "float64"),
}


@pytest.mark.parametrize("case", sorted(FITS_CASES))
def test_fits_bitpix_cases_equal_astropy(tmp_path, case):
    raw, cards, dtype = FITS_CASES[case]
    path = write_raw_fits(tmp_path / f"{case}.fits", raw, EXPTIME=5.0, FILTER="B", **cards)
    ref = fits.getdata(path)
    (frame,) = open_fits(path)
    assert frame.dtype == np.dtype(dtype)
    assert frame.block == (1, W)
    assert frame.header == {"EXPTIME": 5.0, "FILTER": "B"}
    check_frame(frame, ref)
    np.testing.assert_array_equal(roundtrip(frame).read(YS, XS), ref[YS, XS])


@pytest.mark.parametrize("case", sorted(FITS_CASES))
def test_fits_read_into_place(tmp_path, case):
    """Full-width strips of unscaled HDUs are read straight into the caller's array;
    everything else declines (returns False, leaves the array alone)."""
    raw, cards, dtype = FITS_CASES[case]
    path = write_raw_fits(tmp_path / f"{case}.fits", raw, **cards)
    ref = fits.getdata(path)
    (frame,) = open_fits(path)
    out = np.zeros((6, W), dtype=frame.dtype)
    done = frame.read_into(slice(3, 9), slice(0, W), out)
    assert done is ("scaled" not in case and "blank" not in case)
    if done:
        np.testing.assert_array_equal(out, ref[3:9])
    else:
        assert not out.any()
    narrow = np.zeros((6, W - 1), dtype=frame.dtype)
    assert frame.read_into(slice(3, 9), slice(1, W), narrow) is False
    assert frame.read_into(slice(3, 9), slice(0, W), np.zeros((6, W), "f8")[:, :]) is (
        done and frame.dtype == np.float64
    )
    stack = FrameStack([frame, frame])
    np.testing.assert_array_equal(stack[:, 2:7, :], np.stack([ref[2:7]] * 2))
    np.testing.assert_array_equal(stack[:, 2:7, 1:4], np.stack([ref[2:7, 1:4]] * 2))


def test_fits_blank_is_nan(tmp_path):
    raw = np.array([[1, -3, 7], [-3, 0, 2]], dtype="i2")
    (frame,) = open_fits(write_raw_fits(tmp_path / "b.fits", raw, BLANK=-3, BSCALE=2.0))
    want = np.array([[2, np.nan, 14], [np.nan, 0, 4]], dtype="float32")
    np.testing.assert_array_equal(frame.read(ALL, ALL), want)
    np.testing.assert_array_equal(frame.read(slice(1, 2), slice(0, 2)), want[1:2, 0:2])


def test_fits_blank_on_pseudo_unsigned(tmp_path):
    # astropy keeps uint16 and ignores BLANK here; we follow the FITS standard (NaN).
    raw = rng.integers(-(2**15), 2**15, (H, W)).astype("i2")
    raw[2, 3] = raw[7, 0] = -32768
    path = write_raw_fits(tmp_path / "u.fits", raw, BZERO=32768, BLANK=-32768)
    (frame,) = open_fits(path)
    assert frame.dtype == np.float32
    values = fits.getdata(path).astype("float32")  # uint16 values, blanks not applied
    blank = fits.getdata(path, do_not_scale_image_data=True) == -32768
    assert blank.sum() >= 2
    check_frame(frame, np.where(blank, np.float32(np.nan), values))


def test_fits_cube_frames(tmp_path):
    cube = rng.standard_normal((5, H, W)).astype("f4")
    path = tmp_path / "cube.fits"
    fits.PrimaryHDU(cube).writeto(path)
    frames = open_fits(path)
    assert len(frames) == 5
    assert [f.plane for f in frames] == list(range(5))
    for k, frame in enumerate(frames):
        check_frame(frame, fits.getdata(path)[k])
    np.testing.assert_array_equal(roundtrip(frames[3]).read(YS, XS), cube[3, YS, XS])


def test_fits_uint16_cube_via_astropy_writer(tmp_path):
    cube = rng.integers(0, 65536, (3, H, W)).astype("u2")
    path = tmp_path / "u16cube.fits"
    fits.PrimaryHDU(cube).writeto(path)  # astropy writes BITPIX 16 + BZERO 32768
    frames = open_fits(path)
    assert [f.dtype for f in frames] == [np.dtype("uint16")] * 3
    for k, frame in enumerate(frames):
        check_frame(frame, cube[k])


def test_fits_extensions_and_hdu_choice(tmp_path):
    a = rng.standard_normal((H, W)).astype("f4")
    b = rng.integers(0, 1000, (H, W)).astype("i2")
    path = tmp_path / "mef.fits"
    hdr = fits.Header({"EXPTIME": 30.0, "IMAGETYP": "LIGHT", "CRVAL1": 12.5})
    table = fits.BinTableHDU.from_columns([fits.Column(name="c", format="E", array=np.ones(3))])
    fits.HDUList(
        [fits.PrimaryHDU(), table, fits.ImageHDU(a, hdr, name="SCI"), fits.ImageHDU(b, name="DQ")]
    ).writeto(path)
    (first,) = open_fits(path)  # hdu=0 has no data: the first image HDU
    assert first.hdu == 2 and first.header == {"EXPTIME": 30.0, "IMAGETYP": "LIGHT"}
    check_frame(first, a)
    assert first.full_header()["CRVAL1"] == 12.5
    assert isinstance(first.full_header(), fits.Header)
    (dq,) = open_fits(path, hdu="DQ")
    check_frame(dq, b)
    (by_index,) = open_fits(path, hdu=3)
    assert by_index.hdu == 3
    for bad in (7, "NOPE"):
        with pytest.raises(FrameError, match="mef.fits: no HDU"):
            open_fits(path, hdu=bad)
    with pytest.raises(FrameError, match="mef.fits.*not an image"):
        open_fits(path, hdu=1)


def test_fits_no_image_data(tmp_path):
    path = tmp_path / "empty.fits"
    fits.PrimaryHDU().writeto(path)
    with pytest.raises(FrameError, match="empty.fits: no image data"):
        open_fits(path)


def test_fits_compressed(tmp_path):
    cube = rng.standard_normal((2, H, W)).astype("f4")
    img = rng.integers(0, 65536, (H, W)).astype("u2")
    path = tmp_path / "c.fits.fz"
    fits.HDUList(
        [
            fits.PrimaryHDU(),
            fits.CompImageHDU(cube, name="SCI", quantize_level=0.0),
            fits.CompImageHDU(img, name="U16", compression_type="RICE_1"),
        ]
    ).writeto(path)
    frames = open_fits(path)
    assert len(frames) == 2 and all(f.compressed for f in frames)
    ref = fits.getdata(path, 1)
    for k, frame in enumerate(frames):
        check_frame(frame, ref[k])
    (u16,) = open_fits(path, hdu="U16")
    assert u16.dtype == np.uint16
    check_frame(u16, fits.getdata(path, "U16"))
    np.testing.assert_array_equal(roundtrip(u16).read(YS, XS), img[YS, XS])
    assert u16.full_header()["EXTNAME"] == "U16"


def test_fits_nonstandard_header_opens_quietly(tmp_path):
    raw = rng.integers(0, 100, (H, W)).astype("i2")
    path = write_raw_fits(tmp_path / "ns.fits", raw, OBJECT="M13", EXPTIME=2.0)
    data = bytearray(path.read_bytes())
    # a non-ASCII comment (astropy warns and replaces it) and an unparsable FILTER card
    end = data.index(b"END     ")
    extra = b"DATE-OBS= '2020-01-02T03:04:05' / caf\xe9".ljust(80) + b"FILTER  = 'B".ljust(80)
    data[end : end + 160] = extra
    data[end + 160 : end + 240] = b"END".ljust(80)
    path.write_bytes(bytes(data))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        (frame,) = open_fits(path)
        got = frame.read(ALL, ALL)
    # astropy may silently "fix" the broken FILTER card (to "'B"): whatever it gives is kept
    kept = {k: v for k, v in frame.header.items() if k != "FILTER"}
    assert kept == {"EXPTIME": 2.0, "DATE-OBS": "2020-01-02T03:04:05", "OBJECT": "M13"}
    np.testing.assert_array_equal(got, raw)


def test_fits_real_m13_uint16():
    paths = sorted((REAL / "astropy_data_M13_blue").glob("*.fits"))
    assert len(paths) == 5
    for path in paths:
        (frame,) = open_fits(path)
        ref = fits.getdata(path)
        assert frame.dtype == np.uint16 and frame.shape == (1040, 1392)
        np.testing.assert_array_equal(frame.read(ALL, ALL), ref)
        np.testing.assert_array_equal(
            frame.read(slice(333, 517), slice(7, 901)), ref[333:517, 7:901]
        )
        assert frame.header["EXPTIME"] == fits.getheader(path)["EXPTIME"]
        assert frame.header["DATE-OBS"] == fits.getheader(path)["DATE-OBS"]
    np.testing.assert_array_equal(roundtrip(frame).read(YS, XS), ref[YS, XS])


def test_fits_real_naco_cube():
    path = REAL / "vip_naco_betapic_cube" / "naco_betapic_cube.fits"
    frames = open_fits(path)
    ref = fits.getdata(path)
    assert len(frames) == 61 == ref.shape[0]
    for k in (0, 1, 30, 60):
        check_frame(frames[k], ref[k])
    stack = FrameStack(frames)
    np.testing.assert_array_equal(stack[:, 40:61, 13:77], ref[:, 40:61, 13:77])


def test_fits_errors(tmp_path, monkeypatch):
    with pytest.raises(FrameError, match="missing.fits: no such file"):
        open_fits(tmp_path / "missing.fits")
    text = tmp_path / "notes.fits"
    text.write_text("this is not a FITS file\n" * 200)
    with pytest.raises(FrameError, match="notes.fits: not a valid FITS file"):
        open_fits(text)
    good = REAL / "astropy_data_M13_blue" / "M13_blue_0001.fits"
    cut = tmp_path / "cut.fits"
    cut.write_bytes(good.read_bytes()[: 2880 + 100_000])
    with pytest.raises(FrameError, match=r"cut.fits: truncated: expected 2895360 bytes .* 100000"):
        open_fits(cut)
    header_only = tmp_path / "half_header.fits"
    header_only.write_bytes(good.read_bytes()[:1000])
    with pytest.raises(FrameError, match="half_header.fits"):
        open_fits(header_only)
    with pytest.raises(FrameError, match="is a directory"):
        open_fits(tmp_path)

    def no_permission(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(fits_io, "open", no_permission, raising=False)
    with pytest.raises(FrameError, match="M13_blue_0001.fits: cannot open .*Permission denied"):
        open_fits(good)


@pytest.mark.parametrize("case", sorted(FITS_CASES))
def test_fits_batch_read_through_handles(tmp_path, case):
    """Tiles read through open handles go frame by frame in one batch (one positional
    read per frame, one swap for all) where every frame stores raw rows: the same
    values as astropy, for every BITPIX case (the scaled ones decline the batch)."""
    raw, cards, _ = FITS_CASES[case]
    paths = []
    for i in range(3):  # different values per frame: a mix-up between frames shows
        paths.append(write_raw_fits(tmp_path / f"{case}{i}.fits", np.roll(raw, i, 0), **cards))
    stack = FrameStack([f for p in paths for f in open_fits(p)])
    refs = np.stack([fits.getdata(p) for p in paths])
    batch = "scaled" not in case and "blank" not in case  # unsigned: a sign-bit flip
    assert (stack._layout is not None) is batch
    out = np.full((3, 6, W), 7, dtype=stack.dtype)
    with stack.open_handles() as handles:
        for y0 in (0, 6, 3):  # the same buffer again and again, as a tile task does
            got = stack.read_tile(slice(y0, y0 + 6), slice(0, W), out=out, handles=handles)
            assert got is out
            np.testing.assert_array_equal(out, refs[:, y0 : y0 + 6])


def test_batch_read_needs_one_layout_and_names_a_truncated_file(tmp_path):
    data = rng.standard_normal((3, H, W)).astype("f4")
    paths = [tmp_path / f"f{i}.fits" for i in range(3)]
    for p, d in zip(paths, data, strict=True):
        fits.PrimaryHDU(d).writeto(p)
    frames = [f for p in paths for f in open_fits(p)]
    assert FrameStack(frames)._layout.offsets == (2880,) * 3
    # a float64 file among float32 ones is another stored dtype: frame by frame
    other = write_raw_fits(tmp_path / "f64.fits", data[0].astype("f8"))
    mixed = FrameStack([*frames[:2], *open_fits(other)])
    assert mixed._layout is None
    # a file cut short after the frames were opened: the error names it
    paths[1].write_bytes(paths[1].read_bytes()[: 2880 + 4 * W * 5])
    stack = FrameStack(frames)
    out = np.empty((3, 6, W), dtype=np.float32)
    with stack.open_handles() as handles:
        stack.read_tile(slice(0, 5), slice(0, W), out=out[:, :5].copy(), handles=handles)
        with pytest.raises(FrameError, match=r"f1.fits: truncated: rows 4:10"):
            stack.read_tile(slice(4, 10), slice(0, W), out=out, handles=handles)


def test_fits_file_truncated_after_open(tmp_path):
    path = tmp_path / "shrinks.fits"
    fits.PrimaryHDU(rng.standard_normal((H, W)).astype("f4")).writeto(path)
    (frame,) = open_fits(path)
    path.write_bytes(path.read_bytes()[: 2880 + 4 * W * 5])
    np.testing.assert_array_equal(frame.read(slice(0, 5), ALL).shape, (5, W))
    with pytest.raises(FrameError, match="shrinks.fits: truncated"):
        frame.read(slice(4, 9), ALL)


# --------------------------------------------------------------------- TIFF

TIFF_CASES = {
    # name: (array, imwrite keywords, expected frame shape, expected block)
    "u8-strips": (rng.integers(0, 256, (H, W), dtype="u1"), {"rowsperstrip": 5}, (5, W)),
    "u16-strips": (rng.integers(0, 65536, (H, W), dtype="u2"), {"rowsperstrip": 4}, (4, W)),
    "f32-onestrip": (rng.random((H, W), dtype="f4"), {}, (H, W)),
    "u16-tiled": (rng.integers(0, 65536, (H, W), dtype="u2"), {"tile": (16, 16)}, (16, 16)),
    "u16-bigtiff-zlib": (
        rng.integers(0, 65536, (H, W), dtype="u2"),
        {"bigtiff": True, "compression": "zlib", "rowsperstrip": 3},
        (3, W),
    ),
    "u16-bigendian": (rng.integers(0, 65536, (H, W), dtype="u2"), {"byteorder": ">"}, (H, W)),
    "rgb-u8": (
        rng.integers(0, 256, (H, W, 3), dtype="u1"),
        {"photometric": "rgb", "rowsperstrip": 6},
        (6, W),
    ),
    "rgb-u16-tiled": (
        rng.integers(0, 65536, (H, W, 3), dtype="u2"),
        {"photometric": "rgb", "tile": (16, 32)},
        (16, 32),
    ),
    "rgb-f32-zlib": (
        rng.random((H, W, 3), dtype="f4"),
        {"photometric": "rgb", "compression": "zlib", "rowsperstrip": 7},
        (7, W),
    ),
    "rgba-u16": (
        rng.integers(0, 65536, (H, W, 4), dtype="u2"),
        {"photometric": "rgb", "extrasamples": ["unassalpha"]},
        (H, W),
    ),
}


@pytest.mark.parametrize("case", sorted(TIFF_CASES))
def test_tiff_cases_equal_tifffile(tmp_path, case):
    data, kwargs, block = TIFF_CASES[case]
    path = tmp_path / f"{case}.tif"
    tifffile.imwrite(path, data, **kwargs)
    ref = tifffile.imread(path)
    np.testing.assert_array_equal(ref, data)
    (frame,) = open_tiff(path)
    assert frame.block == block
    assert frame.alpha == (3 if data.ndim == 3 and data.shape[2] == 4 else None)
    check_frame(frame, ref)
    np.testing.assert_array_equal(roundtrip(frame).read(YS, XS), ref[YS, XS])


@pytest.mark.parametrize("case", sorted(TIFF_CASES))
def test_tiff_direct_reads(tmp_path, case):
    """Uncompressed strips are read by byte offset (in place for full-width tiles);
    compressed or tiled data go through tifffile. Both equal tifffile's reading."""
    data, kwargs, _ = TIFF_CASES[case]
    path = tmp_path / f"{case}.tif"
    tifffile.imwrite(path, data, **kwargs)
    ref = tifffile.imread(path)
    (frame,) = open_tiff(path)
    direct = "zlib" not in case and "tiled" not in case
    assert (frame._offset >= 0) is direct
    out = np.zeros((7, *frame.shape[1:]), dtype=frame.dtype)
    assert frame.read_into(slice(2, 9), slice(0, W), out) is direct
    if direct:
        np.testing.assert_array_equal(out, ref[2:9])
    assert frame.read_into(slice(2, 9), slice(1, W), out[:, 1:]) is False
    np.testing.assert_array_equal(frame.read(slice(5, 20), slice(2, 11)), ref[5:20, 2:11])
    if data.ndim == 2:
        stack = FrameStack([frame, frame])
        np.testing.assert_array_equal(stack[:, 3:8, :], np.stack([ref[3:8]] * 2))


def test_tiff_direct_read_truncated(tmp_path):
    path = tmp_path / "short.tif"
    tifffile.imwrite(path, rng.integers(0, 65536, (40, 30), dtype="u2"), rowsperstrip=4)
    (frame,) = open_tiff(path)
    path.write_bytes(path.read_bytes()[: frame._offset + 2 * 30 * 20])
    np.testing.assert_array_equal(frame.read(slice(0, 20), ALL).shape, (20, 30))
    with pytest.raises(FrameError, match="short.tif: truncated"):
        frame.read(slice(10, 30), ALL)


def test_tiff_planar_separate_is_channel_last(tmp_path):
    data = rng.integers(0, 65536, (3, H, W), dtype="u2")
    path = tmp_path / "planar.tif"
    tifffile.imwrite(path, data, photometric="rgb", planarconfig="separate", rowsperstrip=8)
    ref = tifffile.imread(path)
    assert ref.shape == (3, H, W)
    (frame,) = open_tiff(path)
    assert frame.shape == (H, W, 3) and frame.block == (8, W)
    check_frame(frame, np.moveaxis(ref, 0, -1))


def test_tiff_multipage_stack_is_frames(tmp_path):
    data = rng.integers(0, 256, (4, H, W), dtype="u1")
    path = tmp_path / "pages.tif"
    tifffile.imwrite(path, data, photometric="minisblack")
    frames = open_tiff(path)
    assert len(frames) == 4
    for k, frame in enumerate(frames):
        check_frame(frame, tifffile.imread(path, key=k))


def test_tiff_header_date(tmp_path):
    path = tmp_path / "dated.tif"
    tifffile.imwrite(path, np.zeros((4, 5), "u2"), datetime="2024:01:02 03:04:05")
    assert open_tiff(path)[0].header == {"DATE-OBS": "2024-01-02T03:04:05"}


def test_tiff_reads_only_touched_strips(tmp_path):
    data = rng.integers(0, 256, (64, 40), dtype="u1")
    path = tmp_path / "damaged.tif"
    tifffile.imwrite(path, data, compression="zlib", rowsperstrip=8)
    with tifffile.TiffFile(path) as tif:
        offset = tif.pages[0].dataoffsets[2]  # rows 16..23
    raw = bytearray(path.read_bytes())
    raw[offset : offset + 16] = b"\xff" * 16
    path.write_bytes(bytes(raw))
    (frame,) = open_tiff(path)  # the damage is inside the data: found at read time
    np.testing.assert_array_equal(frame.read(slice(0, 16), slice(3, 9)), data[0:16, 3:9])
    np.testing.assert_array_equal(frame.read(slice(24, 64), ALL), data[24:64])
    with pytest.raises(FrameError, match="damaged.tif: cannot read TIFF data"):
        frame.read(slice(10, 20), ALL)


def test_tiff_peer_rgb_and_rgba():
    for name, channels in [("image", 3), ("image_alpha", 4)]:
        for i in range(1, 5):
            path = PEER / f"{name}_{i}.tif"
            (frame,) = open_tiff(path)
            ref = tifffile.imread(path)
            assert frame.shape == (2, 3, channels) and frame.dtype == np.uint16
            assert frame.alpha == (3 if channels == 4 else None)
            np.testing.assert_array_equal(frame.read(ALL, ALL), ref)
            np.testing.assert_array_equal(frame.read(slice(1, 2), slice(1, 3)), ref[1:2, 1:3])
            assert frame.header["DATE-OBS"].startswith("20")
    # imgstack's README values for image_1.tif
    assert open_tiff(PEER / "image_1.tif")[0].read(ALL, ALL)[1, 2].tolist() == [0, 3, 2]


def test_tiff_peer_4d_float():
    """2x2 float32 with 4 samples, the 4th flagged as (associated) alpha.

    The fourth channel holds data (e.g. 10000 at [0, 0]), not opacity, and
    imgstack stacks these with alpha handling off: the reader must return all
    four channels unchanged as a (2, 2, 4) frame and only report ``alpha=3``.
    """
    frames = [open_tiff(PEER / f"4d_float_{i}.tif")[0] for i in (1, 2, 3)]
    for i, frame in enumerate(frames, start=1):
        ref = tifffile.imread(PEER / f"4d_float_{i}.tif")
        assert frame.shape == (2, 2, 4) and frame.dtype == np.float32
        assert frame.alpha == 3 and frame.block == (2, 2)
        np.testing.assert_array_equal(frame.read(ALL, ALL), ref)
        np.testing.assert_array_equal(frame.read(slice(1, 2), slice(0, 1)), ref[1:2, 0:1])
    first = frames[0].read(ALL, ALL)
    assert first[0, 0].tolist() == [10.0, 100.0, 1000.0, 10000.0]
    stack = FrameStack(frames)
    assert stack.shape == (3, 2, 2, 4)
    np.testing.assert_array_equal(
        stack[:, 0:1, 1:2, 2:4],
        np.stack([tifffile.imread(PEER / f"4d_float_{i}.tif")[0:1, 1:2, 2:4] for i in (1, 2, 3)]),
    )


def test_tiff_peer_1d_rows():
    for name in ("1d_1", "long_1d", "uint8_1d"):
        path = PEER / f"{name}.tif"
        (frame,) = open_tiff(path)
        ref = tifffile.imread(path)
        assert ref.ndim == 1
        assert frame.shape == (1, ref.shape[0]) and frame.dtype == ref.dtype
        np.testing.assert_array_equal(frame.read(ALL, ALL), ref[np.newaxis])
        np.testing.assert_array_equal(frame.read(slice(0, 1), slice(1, 3)), ref[np.newaxis, 1:3])
        assert frame.read(slice(1, 1), ALL).shape == (0, ref.shape[0])
    assert open_tiff(PEER / "1d_1.tif")[0].read(ALL, ALL).tolist() == [[10, 100, 1000, 10000]]


def test_tiff_errors(tmp_path):
    with pytest.raises(FrameError, match="missing.tif: no such file"):
        open_tiff(tmp_path / "missing.tif")
    text = tmp_path / "notes.tif"
    text.write_text("plain text, not an image\n" * 20)
    with pytest.raises(FrameError, match="notes.tif: not a valid TIFF file"):
        open_tiff(text)
    good = PEER / "image_1.tif"
    tiny = tmp_path / "tiny.tif"
    tiny.write_bytes(good.read_bytes()[:6])
    with pytest.raises(FrameError, match="tiny.tif: not a valid TIFF file"):
        open_tiff(tiny)
    path = tmp_path / "cut.tif"
    tifffile.imwrite(path, rng.integers(0, 256, (64, 64), dtype="u1"), rowsperstrip=8)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 100])
    with pytest.raises(FrameError, match=r"cut.tif: truncated: image data ends at byte \d+"):
        open_tiff(path)
    with pytest.raises(FrameError, match="is a directory"):
        open_tiff(tmp_path)


# --------------------------------------------------------------------- zarr


@pytest.mark.parametrize("zarr_format", [2, 3])
@pytest.mark.parametrize("dtype", ["u1", "u2", ">u2", "f4", ">f8"])
def test_zarr_cube_frames(tmp_path, zarr_format, dtype):
    data = (rng.random((3, H, W)) * 200).astype(dtype)
    path = tmp_path / "cube.zarr"
    arr = zarr.create_array(
        path, shape=data.shape, chunks=(1, 8, 6), dtype=dtype, zarr_format=zarr_format
    )
    arr[:] = data
    arr.attrs.update({"exptime": 5, "Filter": "R", "nested": {"a": 1}, "list": [1], "none": None})
    frames = open_zarr(path)
    ref = zarr.open_array(path, mode="r")[:]
    assert len(frames) == 3
    for k, frame in enumerate(frames):
        assert frame.block == (8, 6) and frame.index == k
        assert frame.header == {"EXPTIME": 5, "FILTER": "R"}
        check_frame(frame, ref[k])
    np.testing.assert_array_equal(roundtrip(frames[2]).read(YS, XS), data[2, YS, XS])


def test_zarr_2d_and_4d(tmp_path):
    img = rng.integers(0, 65536, (H, W), dtype="u2")
    arr = zarr.create_array(tmp_path / "img.zarr", shape=img.shape, chunks=(10, 10), dtype="u2")
    arr[:] = img
    (frame,) = open_zarr(tmp_path / "img.zarr")
    assert frame.index is None and frame.block == (10, 10)
    check_frame(frame, zarr.open_array(tmp_path / "img.zarr", mode="r")[:])
    rgb = rng.random((2, H, W, 3), dtype="f4")
    arr = zarr.create_array(tmp_path / "rgb.zarr", shape=rgb.shape, chunks=(1, 7, 9, 3), dtype="f4")
    arr[:] = rgb
    frames = open_zarr(tmp_path / "rgb.zarr")
    assert [f.shape for f in frames] == [(H, W, 3)] * 2 and frames[0].block == (7, 9)
    ref = zarr.open_array(tmp_path / "rgb.zarr", mode="r")[:]
    for k, frame in enumerate(frames):
        check_frame(frame, ref[k])


def test_zarr_groups(tmp_path):
    img = rng.random((H, W), dtype="f4")
    group = zarr.open_group(tmp_path / "out.zarr", mode="w")
    group.create_array("image", shape=img.shape, dtype="f4")[:] = img
    group.create_array("count", shape=img.shape, dtype="i4")
    group.create_array("x", shape=(W,), dtype="f8")
    (frame,) = open_zarr(tmp_path / "out.zarr")
    assert frame.array == "image"
    check_frame(frame, img)

    single = zarr.open_group(tmp_path / "single.zarr", mode="w")
    single.create_array("whatever", shape=img.shape, dtype="f4")[:] = img
    (frame,) = open_zarr(tmp_path / "single.zarr")
    assert frame.array == "whatever"
    np.testing.assert_array_equal(roundtrip(frame).read(YS, XS), img[YS, XS])

    both = zarr.open_group(tmp_path / "both.zarr", mode="w")
    both.create_array("data", shape=img.shape, dtype="f4")[:] = img
    both.create_array("mask", shape=img.shape, dtype="u1")
    assert open_zarr(tmp_path / "both.zarr")[0].array == "data"

    many = zarr.open_group(tmp_path / "many.zarr", mode="w")
    many.create_array("a", shape=img.shape, dtype="f4")
    many.create_array("b", shape=img.shape, dtype="f4")
    with pytest.raises(FrameError, match=r"many.zarr: zarr group holds 2 arrays \(a, b\)"):
        open_zarr(tmp_path / "many.zarr")


def test_zarr_errors(tmp_path):
    with pytest.raises(FrameError, match="missing.zarr: no such file"):
        open_zarr(tmp_path / "missing.zarr")
    (tmp_path / "plain.zarr").mkdir()
    with pytest.raises(FrameError, match="plain.zarr: not a valid zarr store"):
        open_zarr(tmp_path / "plain.zarr")
    zarr.create_array(tmp_path / "line.zarr", shape=(10,), dtype="f4")
    with pytest.raises(FrameError, match="line.zarr: zarr array has 1 dimensions"):
        open_zarr(tmp_path / "line.zarr")
    zarr.create_array(tmp_path / "five.zarr", shape=(1, 2, 3, 4, 5), dtype="f4")
    with pytest.raises(FrameError, match="five.zarr: zarr array has 5 dimensions"):
        open_zarr(tmp_path / "five.zarr")


# --------------------------------------------------------------------- common


def test_concurrent_tile_reads(tmp_path):
    """Many threads reading different tiles of the same files get the right bytes."""
    img = rng.integers(0, 65536, (128, 96), dtype="u2")
    fits.PrimaryHDU(img).writeto(tmp_path / "c.fits")
    tifffile.imwrite(tmp_path / "c.tif", img, tile=(32, 32), compression="zlib")
    (fframe,) = open_fits(tmp_path / "c.fits")
    (tframe,) = open_tiff(tmp_path / "c.tif")
    tiles = [(slice(y, y + 24), slice(x, x + 40)) for y in range(0, 128, 24) for x in (0, 40, 80)]
    jobs = [(frame, ys, xs) for frame in (fframe, tframe) for ys, xs in tiles] * 3
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda job: job[0].read(job[1], job[2]), jobs))
    for (_, ys, xs), got in zip(jobs, results, strict=True):
        np.testing.assert_array_equal(got, img[ys, xs])


def test_suffixes_and_types():
    assert fits_io.SUFFIXES == (".fits", ".fit", ".fts", ".fits.fz", ".fit.fz")
    from stackengine.io import tiff
    from stackengine.io import zarr as zarr_io

    assert tiff.SUFFIXES == (".tif", ".tiff")
    assert zarr_io.SUFFIXES == (".zarr",)
    for cls in (FitsFrame, TiffFrame, ZarrFrame):
        assert {"path", "shape", "dtype", "block", "header"} <= set(cls.__dataclass_fields__)
