"""Tests of stackengine.write: round trips through astropy, tifffile and xarray/zarr."""

from __future__ import annotations

import json
import os
import threading

import dask.array as da
import numpy as np
import pytest
import tifffile
import xarray as xr
import zarr
from astropy.io import fits

import stackengine.io.write_tiff as write_tiff
import stackengine.tasks.formats as formats
from stackengine.errors import OutputError, ParameterError
from stackengine.tasks.write import write

ATTRS = {
    "reject": "sigma",
    "sigma_lower": 3.0,
    "maxiters": None,
    "combine": "mean",
    "memory_limit": "1GiB",
    "n_frames": 3,
    "stackengine_version": "0.1.0",
    "input_dtype": "uint16",
    "clip": True,
    "stages": ["minmax", "sigma"],
}
PATHS = ["/data/a.fits", "/data/bb.fits", "/data/c.fits"]
MAPS = ("count", "rejected_low", "rejected_high", "noise")


class Counter:
    """Thread-safe record of the blocks a map_blocks function was called for."""

    def __init__(self):
        self.calls: list[tuple[int, ...]] = []
        self.lock = threading.Lock()

    def __call__(self, block, block_info=None):
        with self.lock:
            self.calls.append(tuple(block_info[None]["chunk-location"]))
        return block


def first_header() -> str:
    h = fits.Header()
    h["SIMPLE"] = True
    h["BITPIX"] = 16
    h["NAXIS"] = 2
    h["NAXIS1"] = 10
    h["NAXIS2"] = 10
    h["BZERO"] = 32768
    h["BSCALE"] = 1
    h["OBJECT"] = "M31"
    h["CTYPE1"] = "RA---TAN"
    h["CRVAL1"] = 10.6847
    h["CRVAL2"] = 41.2690
    h["NCOMBINE"] = 1
    return h.tostring()


def make_result(shape=(70, 53), chunks=(32, 32), *, rgb=False, seed=0, counter=None):
    """A fake stack() result: dask variables derived from one packed array, like stack()."""
    rng = np.random.default_rng(seed)
    full = (*shape, 3) if rgb else shape
    dims = ("y", "x", "channel") if rgb else ("y", "x")
    ref = {
        "image": rng.normal(1000, 50, full).astype(np.float32),
        "count": rng.integers(0, 4, full).astype(np.int32),
        "rejected_low": rng.integers(0, 2, full).astype(np.int32),
        "rejected_high": rng.integers(0, 2, full).astype(np.int32),
        "noise": rng.uniform(1, 2, full).astype(np.float32),
    }
    ref["image"][0, 0] = np.nan
    packed = da.from_array(
        np.stack([ref[n].astype(np.float64) for n in ref]),
        chunks=(5, *chunks, *((3,) if rgb else ())),
    )
    if counter is not None:
        packed = packed.map_blocks(counter, meta=np.empty((0,) * packed.ndim))
    data = {n: (dims, packed[i].astype(ref[n].dtype)) for i, n in enumerate(ref)}
    data["scale"] = ("frame", np.array([1.0, 1.25, 0.8]))
    data["n_stars"] = ("frame", np.array([10, 12, 9]))
    ds = xr.Dataset(
        data,
        coords={"path": ("frame", np.array(PATHS))},
        attrs={**ATTRS, "fits_header": first_header()},
    )
    return ds, ref


def fits_order(a):
    return np.moveaxis(a, -1, 0) if a.ndim == 3 else a


# ------------------------------------------------------------------ zarr


@pytest.mark.parametrize("rgb", [False, True])
def test_zarr_round_trip(tmp_path, rgb):
    ds, ref = make_result(rgb=rgb)
    out = write(ds, tmp_path / "s.zarr")
    assert out == tmp_path / "s.zarr"
    assert zarr.open_group(out, mode="r").metadata.zarr_format == 3
    back = xr.open_zarr(out)
    for name, expected in ref.items():
        assert back[name].dims == ds[name].dims
        assert back[name].dtype == expected.dtype
        np.testing.assert_array_equal(back[name].values, expected)
    np.testing.assert_array_equal(back["scale"].values, [1.0, 1.25, 0.8])
    np.testing.assert_array_equal(back["n_stars"].values, [10, 12, 9])
    assert [str(p) for p in back["path"].values] == PATHS
    assert back.attrs == {**ATTRS, "fits_header": first_header()}
    assert sorted(os.listdir(tmp_path)) == ["s.zarr"]


@pytest.mark.parametrize(
    ("compression", "codec"),
    [
        (None, zarr.codecs.ZstdCodec),
        ("zstd", zarr.codecs.ZstdCodec),
        ("zlib", zarr.codecs.GzipCodec),
        ("NONE", None),
    ],
)
def test_zarr_compression(tmp_path, compression, codec):
    ds, ref = make_result()
    out = write(ds, tmp_path / "s.zarr", compression=compression)
    compressors = zarr.open_array(out / "image", mode="r").compressors
    if codec is None:
        assert compressors == ()
    else:
        assert [type(c) for c in compressors] == [codec]
    np.testing.assert_array_equal(xr.open_zarr(out)["count"].values, ref["count"])


def test_zarr_irregular_chunks(tmp_path):
    ds, ref = make_result()
    ds["noise"] = ds["noise"].chunk({"y": (10, 30, 30), "x": 53})
    out = write(ds, tmp_path / "s.zarr")
    np.testing.assert_array_equal(xr.open_zarr(out)["noise"].values, ref["noise"])


# ------------------------------------------------------------------ FITS


@pytest.mark.parametrize("rgb", [False, True])
def test_fits_round_trip(tmp_path, rgb):
    ds, ref = make_result(rgb=rgb)
    out = write(ds, tmp_path / "s.fits")
    with fits.open(out) as hdul:
        hdul.verify("exception")
        assert [h.name for h in hdul] == [
            "PRIMARY",
            "COUNT",
            "REJECTED_LOW",
            "REJECTED_HIGH",
            "NOISE",
            "FRAMES",
        ]
        h0 = hdul[0].header
        assert h0["BITPIX"] == -32
        assert h0["NAXIS"] == (3 if rgb else 2)
        assert (h0["NAXIS1"], h0["NAXIS2"]) == (53, 70)
        if rgb:
            assert h0["NAXIS3"] == 3
        np.testing.assert_array_equal(hdul[0].data, fits_order(ref["image"]))
        for name in MAPS:
            np.testing.assert_array_equal(hdul[name.upper()].data, fits_order(ref[name]))
        assert hdul["COUNT"].header["BITPIX"] == 32
        assert hdul["NOISE"].header["BITPIX"] == -32
        # copied from the first frame, without its layout keywords
        assert h0["OBJECT"] == "M31"
        assert h0["CRVAL1"] == pytest.approx(10.6847)
        assert h0["CTYPE1"] == "RA---TAN"
        assert "BZERO" not in h0 and "BSCALE" not in h0
        assert h0["NCOMBINE"] == 3
        assert list(h0.keys()).count("NCOMBINE") == 1
        assert h0["HIERARCH STACKENGINE REJECT"] == "sigma"
        assert h0["HIERARCH STACKENGINE SIGMA_LOWER"] == 3.0
        assert h0["HIERARCH STACKENGINE MAXITERS"] is None
        assert h0["HIERARCH STACKENGINE CLIP"] is True
        history = "\n".join(h0["HISTORY"])
        assert 'stages = ["minmax", "sigma"]' in history
        table = hdul["FRAMES"].data
        assert list(table["path"]) == PATHS
        np.testing.assert_array_equal(table["scale"], [1.0, 1.25, 0.8])
        np.testing.assert_array_equal(table["n_stars"], [10, 12, 9])
    assert sorted(os.listdir(tmp_path)) == ["s.fits"]


def test_fits_without_header_or_frames(tmp_path):
    ds, ref = make_result()
    ds = ds.drop_vars(["scale", "n_stars", "path"])
    del ds.attrs["fits_header"]
    out = write(ds, tmp_path / "s.fit")
    with fits.open(out) as hdul:
        hdul.verify("exception")
        assert [h.name for h in hdul][-1] == "NOISE"
        assert "OBJECT" not in hdul[0].header
        np.testing.assert_array_equal(hdul[0].data, ref["image"])
    assert os.path.getsize(out) % 2880 == 0


VALUES = np.array([[-5.2, 3.5, 70000.7], [np.nan, 2.5, 65535.4]], dtype=np.float32)


def expected_uint(values, hi):
    # independent of the writer: round half to even, clip, NaN -> 0
    x = np.where(np.isnan(values), 0.0, values.astype(np.float64))
    return np.clip(np.rint(x), 0, hi)


def tiny(values):
    return xr.Dataset(
        {"image": (("y", "x"), da.from_array(values, chunks=1))},
        attrs={"n_frames": 2, "input_dtype": "uint16"},
    )


def test_fits_uint16(tmp_path):
    out = write(tiny(VALUES), tmp_path / "u.fits", dtype="uint16")
    with fits.open(out) as hdul:
        hdul.verify("exception")
        h = hdul[0].header
        assert (h["BITPIX"], h["BZERO"], h["BSCALE"]) == (16, 32768, 1)
        assert hdul[0].data.dtype == np.uint16
        np.testing.assert_array_equal(hdul[0].data, expected_uint(VALUES, 65535))
        np.testing.assert_array_equal(hdul[0].data, [[0, 4, 65535], [0, 2, 65535]])
    with fits.open(out, do_not_scale_image_data=True) as hdul:
        raw = hdul[0].data
        assert raw.dtype == np.dtype(">i2")
        np.testing.assert_array_equal(raw, expected_uint(VALUES, 65535) - 32768)


def test_fits_uint8_and_input_dtype(tmp_path):
    out = write(tiny(VALUES), tmp_path / "u8.fits", dtype="uint8")
    with fits.open(out) as hdul:
        hdul.verify("exception")
        assert hdul[0].header["BITPIX"] == 8 and "BZERO" not in hdul[0].header
        np.testing.assert_array_equal(hdul[0].data, expected_uint(VALUES, 255))
    out = write(tiny(VALUES), tmp_path / "in.fits", dtype="input")
    with fits.open(out) as hdul:
        assert hdul[0].header["BITPIX"] == 16 and hdul[0].data.dtype == np.uint16


def test_float_input_dtype_stays_float32(tmp_path):
    ds = tiny(VALUES)
    ds.attrs["input_dtype"] = "float64"
    out = write(ds, tmp_path / "f.fits", dtype="input")
    with fits.open(out) as hdul:
        assert hdul[0].header["BITPIX"] == -32
        np.testing.assert_array_equal(hdul[0].data, VALUES)


# ------------------------------------------------------------------ TIFF


@pytest.mark.parametrize("rgb", [False, True])
def test_tiff_round_trip(tmp_path, rgb):
    ds, ref = make_result(rgb=rgb)
    out = write(ds, tmp_path / "s.tif")
    with tifffile.TiffFile(out) as tif:
        page = tif.pages[0]
        assert len(tif.pages) == 1 and not tif.is_bigtiff
        assert page.is_tiled and page.tilelength % 16 == 0 and page.tilewidth % 16 == 0
        assert page.photometric == (
            tifffile.PHOTOMETRIC.RGB if rgb else tifffile.PHOTOMETRIC.MINISBLACK
        )
        assert page.dtype == np.float32
        assert json.loads(page.description) == ATTRS
        np.testing.assert_array_equal(tif.asarray(), ref["image"])


def test_tiff_odd_size_several_tile_rows(tmp_path):
    ds, ref = make_result(shape=(700, 530), chunks=(100, 200))
    out = write(ds, tmp_path / "big.tiff", compression="zlib")
    with tifffile.TiffFile(out) as tif:
        page = tif.pages[0]
        assert (page.tilelength, page.tilewidth) == (256, 256)
        assert len(page.dataoffsets) == 3 * 3
        assert page.compression == tifffile.COMPRESSION.ADOBE_DEFLATE
        np.testing.assert_array_equal(tif.asarray(), ref["image"])


def test_tiff_rgb_odd_size(tmp_path):
    ds, ref = make_result(shape=(300, 270), chunks=(64, 100), rgb=True)
    out = write(ds, tmp_path / "rgb.tif", dtype="uint16")
    back = tifffile.imread(out)
    assert back.dtype == np.uint16 and back.shape == (300, 270, 3)
    np.testing.assert_array_equal(back, expected_uint(ref["image"], 65535))


def test_tiff_uint16_values(tmp_path):
    back = tifffile.imread(write(tiny(VALUES), tmp_path / "u.tif", dtype="input"))
    assert back.dtype == np.uint16
    np.testing.assert_array_equal(back, expected_uint(VALUES, 65535))


def test_tiff_bigtiff_above_threshold(tmp_path, monkeypatch):
    monkeypatch.setattr(write_tiff, "BIGTIFF_BYTES", 0)
    ds, ref = make_result()
    out = write(ds, tmp_path / "s.tif")
    with tifffile.TiffFile(out) as tif:
        assert tif.is_bigtiff
        np.testing.assert_array_equal(tif.asarray(), ref["image"])


@pytest.mark.parametrize("name", ["zstd", "lzw", "zlib"])
def test_tiff_compressed_round_trip(tmp_path, name):
    ds, ref = make_result()
    out = write(ds, tmp_path / "s.tif", compression=name)
    with tifffile.TiffFile(out) as tif:
        assert tif.pages[0].compression.name.lower().startswith(name[:3].lower()) or (
            name == "zlib" and tif.pages[0].compression.name in ("ADOBE_DEFLATE", "DEFLATE")
        )
        np.testing.assert_array_equal(tif.asarray(), ref["image"])


@pytest.mark.parametrize("shared", [False, True])
def test_tiff_shared_upstream_is_computed_once(tmp_path, monkeypatch, shared):
    """Blocks that share a task (a reduction, like per-frame statistics) are stored in one
    pass, not batch by batch; without sharing the row batches stream straight to the file."""
    monkeypatch.setattr(formats, "_threads", lambda: 2)  # 6 batches of 2 row-chunks
    staged = []
    real = formats._staged_strips
    monkeypatch.setattr(formats, "_staged_strips", lambda *a: staged.append(1) or real(*a))
    counter = Counter()
    factor = da.from_array(np.array([2.0]), chunks=1).map_blocks(counter, meta=np.empty(0))
    factor = factor.sum() if shared else np.float32(2.0)
    base = np.arange(600 * 40, dtype=np.float32).reshape(600, 40)
    img = (da.from_array(base, chunks=(50, 40)) * factor).astype(np.float32)
    ds = xr.Dataset({"image": (("y", "x"), img)})
    out = write(ds, tmp_path / "s.tif")
    assert counter.calls == ([(0,)] if shared else [])
    assert staged == ([1] if shared else [])
    np.testing.assert_array_equal(tifffile.imread(out), base * 2)
    assert sorted(os.listdir(tmp_path)) == ["s.tif"]


# ------------------------------------------------------------------ one pass


@pytest.mark.parametrize("suffix", [".zarr", ".fits", ".tif"])
def test_each_block_computed_once(tmp_path, suffix):
    counter = Counter()
    ds, ref = make_result(shape=(300, 90), chunks=(40, 50), counter=counter)
    write(ds, tmp_path / f"s{suffix}")
    assert sorted(counter.calls) == sorted({(0, i, j) for i in range(8) for j in range(2)})


def test_fits_frame_values_share_the_graph(tmp_path):
    """Per-frame dask values and the maps come from one compute of their common input."""
    counter = Counter()
    ds, ref = make_result(chunks=(35, 53))
    scale = da.from_array(np.array([1.0, 1.25, 0.8]), chunks=3)
    ds["scale"] = ("frame", scale := scale.map_blocks(counter, meta=np.empty(0)))
    ds["image"] = ds["image"] * scale[0].astype(np.float32)
    out = write(ds, tmp_path / "s.fits")
    assert counter.calls == [(0,)]
    with fits.open(out) as hdul:
        np.testing.assert_array_equal(hdul["FRAMES"].data["scale"], [1.0, 1.25, 0.8])
        np.testing.assert_array_equal(hdul[0].data, ref["image"])


# ------------------------------------------------------------------ checks and atomicity


@pytest.mark.parametrize("suffix", [".zarr", ".fits", ".tif"])
def test_existing_output(tmp_path, suffix):
    counter = Counter()
    target = tmp_path / f"s{suffix}"
    write(make_result(seed=1)[0], target)
    ds, ref = make_result(seed=2, counter=counter)
    with pytest.raises(OutputError, match="exists.*overwrite"):
        write(ds, target)
    assert counter.calls == []
    write(ds, target, overwrite=True)
    if suffix == ".zarr":
        back = xr.open_zarr(target)["image"].values
    elif suffix == ".fits":
        back = fits.getdata(target)
    else:
        back = tifffile.imread(target)
    np.testing.assert_array_equal(back, ref["image"])
    assert sorted(os.listdir(tmp_path)) == [target.name]


def test_missing_folder(tmp_path):
    ds, _ = make_result()
    with pytest.raises(OutputError, match="nowhere"):
        write(ds, tmp_path / "nowhere" / "s.fits")
    assert os.listdir(tmp_path) == []


def test_unwritable_folder(tmp_path, monkeypatch):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o500)
    if os.geteuid() == 0:
        # root may write anywhere: make the permission check see what a user would
        real_access = os.access
        monkeypatch.setattr(
            os, "access", lambda p, mode: False if str(p) == str(folder) else real_access(p, mode)
        )
    try:
        with pytest.raises(OutputError, match="not writable"):
            write(make_result()[0], folder / "s.tif")
        assert os.listdir(folder) == []
    finally:
        folder.chmod(0o700)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"path": "s.png"}, "s.png: unknown output format"),
        ({"path": "s.fits", "dtype": "complex64"}, "dtype"),
        ({"path": "s.fits", "dtype": "float16"}, "dtype"),
        ({"path": "s.fits", "dtype": "bogus"}, "dtype"),
        ({"path": "s.fits", "compression": "zlib"}, "compression"),
        ({"path": "s.zarr", "compression": "lzw"}, "compression"),
        ({"path": "s.tif", "compression": "jpeg"}, "compression"),
    ],
)
def test_bad_parameters(tmp_path, kwargs, match):
    counter = Counter()
    ds, _ = make_result(counter=counter)
    kwargs["path"] = tmp_path / kwargs["path"]
    with pytest.raises(ParameterError, match=match):
        write(ds, **kwargs)
    assert counter.calls == [] and os.listdir(tmp_path) == []


def failing(block, block_info=None):
    if block_info[None]["chunk-location"][1] == 1:
        raise RuntimeError("disk on fire")
    return block


@pytest.mark.parametrize("suffix", [".zarr", ".fits", ".tif"])
@pytest.mark.parametrize("existing", [False, True])
def test_failure_leaves_nothing(tmp_path, suffix, existing):
    target = tmp_path / f"s{suffix}"
    if existing:
        write(make_result(seed=1)[0], target)
        before = sorted(p.name for p in target.rglob("*")) if target.is_dir() else None
        size = os.path.getsize(target)
    ds, _ = make_result(shape=(600, 90), chunks=(40, 50))
    meta = np.empty((0, 0), np.float32)
    ds["image"] = ds["image"].copy(data=ds["image"].data.map_blocks(failing, meta=meta))
    with pytest.raises(RuntimeError, match="disk on fire"):
        write(ds, target, overwrite=True)
    if existing:
        assert sorted(os.listdir(tmp_path)) == [target.name]
        assert os.path.getsize(target) == size
        if before is not None:
            assert sorted(p.name for p in target.rglob("*")) == before
    else:
        assert os.listdir(tmp_path) == []


def test_interrupt_leaves_nothing(tmp_path):
    def interrupt(block, block_info=None):
        raise KeyboardInterrupt

    ds, _ = make_result()
    meta = np.empty((0, 0), np.int32)
    ds["count"] = ds["count"].copy(data=ds["count"].data.map_blocks(interrupt, meta=meta))
    with pytest.raises(KeyboardInterrupt):
        write(ds, tmp_path / "s.fits")
    assert os.listdir(tmp_path) == []


@pytest.mark.slow
def test_distributed_workers_write_every_format(tmp_path):
    """Blocks are stored by worker processes (the FITS memmap target is pickled)."""
    from distributed import Client, LocalCluster

    ds, ref = make_result(shape=(300, 90), chunks=(40, 50))
    shared = da.from_array(np.array([1.0, 2.0]), chunks=2).sum() / 3  # == 1
    ds["scale"] = ("frame", da.from_array(np.array([1.0, 1.25, 0.8]), chunks=3) * shared)
    with (
        LocalCluster(
            n_workers=1, threads_per_worker=2, processes=True, dashboard_address=":0"
        ) as cluster,
        Client(cluster),
    ):
        for suffix in (".zarr", ".fits", ".tif"):
            write(ds, tmp_path / f"s{suffix}")
    np.testing.assert_array_equal(xr.open_zarr(tmp_path / "s.zarr")["noise"].values, ref["noise"])
    with fits.open(tmp_path / "s.fits") as hdul:
        np.testing.assert_array_equal(hdul[0].data, ref["image"])
        np.testing.assert_array_equal(hdul["REJECTED_HIGH"].data, ref["rejected_high"])
        np.testing.assert_array_equal(hdul["FRAMES"].data["scale"], [1.0, 1.25, 0.8])
    np.testing.assert_array_equal(tifffile.imread(tmp_path / "s.tif"), ref["image"])
    assert sorted(os.listdir(tmp_path)) == ["s.fits", "s.tif", "s.zarr"]


def test_file_target_writes_regions_like_numpy(tmp_path):
    """FileTarget writes any block (full-width strips, column ranges, 3-D, an
    integer index) at the right place of a C-ordered array inside a file, in its
    dtype: compared with the same assignments on a numpy array."""
    from stackengine.io.atomic import FileTarget

    rng = np.random.default_rng(5)
    shape = (3, 7, 11)
    path = tmp_path / "t.bin"
    path.write_bytes(b"\xab" * 100 + bytes(4 * np.prod(shape)) + b"\xcd" * 50)
    target = FileTarget(path, 100, shape, ">f4")
    ref = np.zeros(shape, np.float32)
    keys = [
        (slice(0, 3), slice(2, 5), slice(0, 11)),  # full rows: one run per plane
        (slice(1, 2), slice(0, 7), slice(0, 11)),  # a whole plane: one run
        (slice(0, 3), slice(0, 4), slice(3, 8)),  # a column range: one run per row
        (2, slice(5, 7), slice(None)),  # an integer index
    ]
    for key in keys:
        value = rng.normal(size=ref[key].shape)  # float64: converted on the way
        target[key] = value
        ref[key] = value
    raw = path.read_bytes()
    assert raw[:100] == b"\xab" * 100 and raw[-50:] == b"\xcd" * 50
    np.testing.assert_array_equal(np.frombuffer(raw[100:-50], ">f4").reshape(shape), ref)
    np.testing.assert_array_equal(target[1:3, 2:4], ref[1:3, 2:4])
