"""Frames by fsspec URL: memory://, file:// and a range-recording test filesystem.

memory:// lives in this process only, so everything here runs on dask's threaded or
synchronous scheduler (the ``threads`` fixture).
"""

from __future__ import annotations

import importlib.util
import io
import os
import pickle
import time
import uuid

import dask
import fsspec
import numpy as np
import pytest
import tifffile
import zarr
from astropy.io import fits
from fsspec.spec import AbstractBufferedFile, AbstractFileSystem

import stackengine
from stackengine.errors import FrameError
from stackengine.frames import source_of
from stackengine.io import remote

MEM = fsspec.filesystem("memory")


@pytest.fixture
def threads():
    with dask.config.set(scheduler="threads"):
        yield


@pytest.fixture
def mem():
    """A fresh memory:// folder URL (no trailing slash), removed afterwards."""
    root = f"memory://se-{uuid.uuid4().hex[:10]}"
    yield root
    if MEM.exists(root):
        MEM.rm(root, recursive=True)


def _frames(n=5, shape=(23, 17), seed=0):
    rng = np.random.default_rng(seed)
    data = rng.normal(1000.0, 30.0, (n, *shape))
    data[rng.random(data.shape) < 0.03] += 900.0  # outliers for the rejection
    return data.astype(np.float32)


def _fits_bytes(frame, exptime=10.0):
    buf = io.BytesIO()
    fits.PrimaryHDU(frame, header=fits.Header({"EXPTIME": exptime})).writeto(buf)
    return buf.getvalue()


def _write_fits(frames, local_dir, url_dir):
    """The same FITS frames as local files and as URLs (written through fsspec)."""
    local_dir.mkdir(exist_ok=True)
    for i, frame in enumerate(frames):
        hdr = fits.Header({"EXPTIME": 10.0 + i, "FILTER": "R"})
        fits.PrimaryHDU(frame, header=hdr).writeto(local_dir / f"f_{i:02d}.fits")
        with fsspec.open(f"{url_dir}/f_{i:02d}.fits", "wb") as f:
            fits.PrimaryHDU(frame, header=hdr).writeto(f)


# -- helpers -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("s3://bucket/x.fits", True),
        ("memory://frames/f_*.fits", True),
        ("file:///data/f.tif", True),
        ("simplecache::s3://bucket/x.fits", True),
        ("/data/x.fits", False),
        ("lights/*.fits", False),
        ("C:\\data\\x.fits", False),
        ("C://data/x.fits", False),  # a drive letter is no protocol
        ("notes::v2.fits", False),  # "::" chains only after a protocol fsspec knows
    ],
)
def test_is_url(path, expected):
    assert remote.is_url(path) is expected


def test_is_url_rejects_path_objects(tmp_path):
    assert remote.is_url(tmp_path / "x.fits") is False


def test_expand_sorts_url_globs_like_local_globs(tmp_path, mem):
    names = ["f_10.fits", "f_2.fits", "f_1.fits", "g_1.fits"]
    for name in names:
        (tmp_path / name).write_bytes(b"x")
        MEM.pipe_file(f"{mem}/{name}", b"x")
    local = remote.expand(str(tmp_path / "f_*.fits"))
    urls = remote.expand(f"{mem}/f_*.fits")
    assert [os.path.basename(p) for p in local] == ["f_1.fits", "f_10.fits", "f_2.fits"]
    # same order, and in the form the pattern was written in (memory://x, not memory:///x)
    assert urls == [f"{mem}/{os.path.basename(p)}" for p in local]
    # a list keeps its order; a local path and a URL mix
    mixed = remote.expand([f"{mem}/g_1.fits", str(tmp_path / "f_2.fits")])
    assert mixed == [f"{mem}/g_1.fits", str(tmp_path / "f_2.fits")]


def test_expand_url_folder_lists_frames(mem):
    for name in ["b.fits", "a.tif", "notes.txt"]:
        MEM.pipe_file(f"{mem}/dir/{name}", b"x")
    z = zarr.create_array(f"{mem}/dir/store", shape=(4, 4), dtype="f4")  # no .zarr suffix
    z[:] = 1
    assert remote.expand(f"{mem}/dir") == [f"{mem}/dir/{n}" for n in ("a.tif", "b.fits", "store")]
    assert remote.frame_kind(f"{mem}/dir/store") == "zarr"
    assert remote.frame_kind(f"{mem}/dir/notes.txt") is None


def test_expand_errors(mem):
    with pytest.raises(FrameError, match=f"{mem}/none_\\*.fits: no file matches"):
        remote.expand(f"{mem}/none_*.fits")
    MEM.pipe_file(f"{mem}/empty/notes.txt", b"x")
    with pytest.raises(FrameError, match="folder holds no FITS, TIFF or zarr"):
        remote.expand(f"{mem}/empty")


def test_file_identity_local_is_stat(tmp_path):
    p = tmp_path / "a.fits"
    p.write_bytes(b"0123456789")
    st = os.stat(p)
    assert remote.file_identity(str(p)) == (str(p), st.st_mtime_ns, 10)
    with pytest.raises(FrameError, match="b.fits: no such file"):
        remote.file_identity(str(tmp_path / "b.fits"))


def test_file_identity_url_tracks_changes(mem):
    url = f"{mem}/a.fits"
    MEM.pipe_file(url, b"0123456789")
    first = remote.file_identity(url)
    assert first[0] == url and first[2] == 10
    assert isinstance(first[1], int)  # memory:// reports a modification time
    assert remote.file_identity(url) == first
    time.sleep(0.002)
    MEM.pipe_file(url, b"9876543210")  # same size, new content
    second = remote.file_identity(url)
    assert second[2] == 10 and second[1] > first[1]
    z = zarr.create_array(f"{mem}/s.zarr", shape=(4, 4), dtype="f4")
    z[:] = 0
    ident = remote.file_identity(f"{mem}/s.zarr")  # a store: its zarr.json
    assert ident[0] == f"{mem}/s.zarr" and ident[2] == len(MEM.cat_file(f"{mem}/s.zarr/zarr.json"))
    with pytest.raises(FrameError, match=f"{mem}/b.fits: no such file"):
        remote.file_identity(f"{mem}/b.fits")


# -- reading -------------------------------------------------------------------------------


def test_fits_url_glob_matches_local_and_astropy(tmp_path, mem, threads):
    data = _frames()
    _write_fits(data, tmp_path / "local", mem)
    by_url = stackengine.open_frames(f"{mem}/f_*.fits", chunks=(7, 5))
    local = stackengine.open_frames(str(tmp_path / "local" / "f_*.fits"), chunks=(7, 5))
    expected = np.stack([fits.getdata(p) for p in sorted((tmp_path / "local").iterdir())])
    np.testing.assert_array_equal(by_url.values, expected)
    np.testing.assert_array_equal(local.values, expected)
    assert list(by_url.coords["path"].values) == [f"{mem}/f_{i:02d}.fits" for i in range(5)]
    np.testing.assert_array_equal(by_url.coords["exptime"].values, 10.0 + np.arange(5))
    # full headers (keyword weights) come through fsspec too
    assert source_of(by_url.data).frames[2].full_header()["EXPTIME"] == 12.0


def test_tile_compressed_fits_by_url(mem, threads):
    frame = _frames(1, (30, 20), seed=7)[0]
    with fsspec.open(f"{mem}/a.fits.fz", "wb") as f:
        hdus = [fits.PrimaryHDU(), fits.CompImageHDU(frame, compression_type="RICE_1",
                                                     quantize_level=0)]  # fmt: skip
        fits.HDUList(hdus).writeto(f)
    arr = stackengine.open_frames(f"{mem}/a.fits.fz", chunks=(7, 20))
    with fsspec.open(f"{mem}/a.fits.fz", "rb") as f:
        expected = fits.getdata(f, ext=1)
    np.testing.assert_array_equal(arr.values[0], expected)


def test_file_url_glob_matches_local(tmp_path, threads):
    data = _frames(4, (19, 11), seed=1)
    for i, frame in enumerate(data):
        fits.PrimaryHDU(frame).writeto(tmp_path / f"f_{i}.fits")
        tifffile.imwrite(tmp_path / f"t_{i}.tif", (frame * 10).astype(np.uint16), rowsperstrip=4)
    z = zarr.create_array(tmp_path / "c.zarr", shape=data.shape, chunks=(1, 8, 4), dtype="f4")
    z[:] = data
    base = f"file://{tmp_path}"
    by_url = stackengine.open_frames(f"{base}/f_*.fits", chunks=(6, 4))
    assert list(by_url.coords["path"].values) == [f"{base}/f_{i}.fits" for i in range(4)]
    np.testing.assert_array_equal(by_url.values, data)
    tif = stackengine.open_frames(f"{base}/t_*.tif", chunks=(6, 4)).values
    np.testing.assert_array_equal(tif, [tifffile.imread(tmp_path / f"t_{i}.tif") for i in range(4)])
    cube = stackengine.open_frames(f"{base}/c.zarr", chunks=(6, 4)).values
    np.testing.assert_array_equal(cube, zarr.open_array(tmp_path / "c.zarr", mode="r")[:])


def test_tiff_and_zarr_in_memory_match_direct_reads(mem, threads):
    data = (_frames(3, (21, 14), seed=2) * 20).astype(np.uint16)
    rgb = np.stack([data, data // 2, data // 3], axis=-1)
    for i in range(3):
        with fsspec.open(f"{mem}/t_{i}.tif", "wb") as f:
            tifffile.imwrite(f, rgb[i], tile=(16, 16), photometric="rgb")
    z = zarr.create_array(f"{mem}/c.zarr", shape=data.shape, chunks=(1, 8, 8), dtype="u2")
    z[:] = data
    tif = stackengine.open_frames(f"{mem}/t_*.tif", chunks=(9, 7))
    assert tif.dims == ("frame", "y", "x", "channel")
    expected = []
    for i in range(3):
        with fsspec.open(f"{mem}/t_{i}.tif", "rb") as f:
            expected.append(tifffile.imread(f))
    np.testing.assert_array_equal(tif.values, expected)
    cube = stackengine.open_frames(f"{mem}/c.zarr", chunks=(9, 7))
    assert cube.dtype == np.uint16
    np.testing.assert_array_equal(cube.values, zarr.open_array(f"{mem}/c.zarr", mode="r")[:])


def test_stack_of_memory_frames_equals_local_stack(tmp_path, mem, threads):
    data = _frames(7, (26, 18), seed=4)
    _write_fits(data, tmp_path / "local", mem)
    kw = dict(reject="sigma", normalize="additive+scale", weights="exptime")
    by_url = stackengine.stack(stackengine.open_frames(f"{mem}/f_*.fits"), **kw).compute()
    local = stackengine.stack(
        stackengine.open_frames(str(tmp_path / "local" / "f_*.fits")), **kw
    ).compute()
    for name in ("image", "count", "rejected_low", "rejected_high", "noise", "weight"):
        np.testing.assert_array_equal(by_url[name].values, local[name].values, err_msg=name)
    assert int(by_url["rejected_high"].sum()) > 0  # the outliers were there to reject
    assert by_url.attrs["fits_header"] == local.attrs["fits_header"]


def test_url_frames_pickle_and_reopen_per_task(tmp_path, mem, threads):
    data = _frames(3, (12, 9), seed=5)
    _write_fits(data, tmp_path, mem)
    arr = stackengine.open_frames(f"{mem}/f_*.fits", chunks=(5, 9))
    clone = pickle.loads(pickle.dumps(arr))
    np.testing.assert_array_equal(clone.values, data)


# -- only the tile's bytes; storage_options reach every read ------------------------------


class _RangeFile(AbstractBufferedFile):
    def _fetch_range(self, start, end):
        self.fs.fetched.append((self.path, start, end))
        return self.fs.blobs[self.path][start:end]


class _RangeFS(AbstractFileSystem):
    """A read-only in-memory filesystem that records byte ranges and init options."""

    protocol = "serangetest"
    cachable = False
    blobs: dict[str, bytes] = {}
    fetched: list[tuple[str, int, int]] = []
    options: list[dict] = []

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        _RangeFS.options.append(dict(kwargs))

    def info(self, path, **kwargs):
        path = self._strip_protocol(path)
        if path not in self.blobs:
            raise FileNotFoundError(path)
        return {"name": path, "size": len(self.blobs[path]), "type": "file"}

    def ls(self, path, detail=True, **kwargs):
        path = self._strip_protocol(path).rstrip("/") + "/"
        out = [self.info(p) for p in sorted(self.blobs) if p.startswith(path)]
        return out if detail else [o["name"] for o in out]

    def _open(self, path, mode="rb", block_size=None, autocommit=True, cache_options=None, **kw):
        path = self._strip_protocol(path)
        if path not in self.blobs:
            raise FileNotFoundError(path)
        return _RangeFile(self, path, mode, block_size or "default", cache_options=cache_options,
                          **kw)  # fmt: skip


@pytest.fixture
def rangefs():
    fsspec.register_implementation("serangetest", _RangeFS, clobber=True)
    _RangeFS.blobs.clear()
    _RangeFS.fetched.clear()
    _RangeFS.options.clear()
    yield _RangeFS
    _RangeFS.blobs.clear()


def test_fits_tile_read_fetches_only_its_rows(rangefs, threads):
    frame = np.arange(40 * 16, dtype=np.float32).reshape(40, 16)
    blob = _fits_bytes(frame)
    rangefs.blobs["r/a.fits"] = blob
    with fits.open(io.BytesIO(blob)) as hdul:
        data_start = hdul.fileinfo(0)["datLoc"]
    arr = stackengine.open_frames("serangetest://r/a.fits", chunks=(10, 16))
    rangefs.fetched.clear()
    tile = arr.data.blocks[0, 1, 0].compute(scheduler="sync")
    np.testing.assert_array_equal(tile[0], frame[10:20])
    row = 16 * 4
    assert rangefs.fetched == [("r/a.fits", data_start + 10 * row, data_start + 20 * row)]


def test_tiff_through_buffered_fsspec_file(tmp_path, rangefs, threads):
    img = (np.arange(30 * 20) % 251).astype(np.uint8).reshape(30, 20)
    tifffile.imwrite(tmp_path / "a.tif", img, rowsperstrip=5)
    rangefs.blobs["r/a.tif"] = (tmp_path / "a.tif").read_bytes()
    arr = stackengine.open_frames("serangetest://r/a.tif", chunks=(10, 20))
    np.testing.assert_array_equal(arr.values[0], tifffile.imread(tmp_path / "a.tif"))


def test_storage_options_reach_the_reads(rangefs, threads):
    frame = np.ones((8, 6), dtype=np.float32)
    rangefs.blobs["r/a.fits"] = _fits_bytes(frame)
    arr = stackengine.open_frames("serangetest://r/a.fits", storage_options={"token": "abc"})
    assert source_of(arr.data).frames[0].storage_options == {"token": "abc"}
    rangefs.options.clear()
    arr.values  # noqa: B018
    assert rangefs.options and all(o == {"token": "abc"} for o in rangefs.options)


# -- errors -------------------------------------------------------------------------------


def test_missing_url_raises_frame_error(mem):
    with pytest.raises(FrameError, match=f"{mem}/none.fits: no such file"):
        stackengine.open_frames(f"{mem}/none.fits")
    with pytest.raises(FrameError, match=f"{mem}/none.tif: no such file"):
        stackengine.open_frames(f"{mem}/none.tif")
    with pytest.raises(FrameError, match=f"{mem}/none.zarr: no such file"):
        stackengine.open_frames(f"{mem}/none.zarr")


def test_file_removed_after_open_raises_at_read(mem, threads):
    MEM.pipe_file(f"{mem}/a.fits", _fits_bytes(np.zeros((6, 5), np.float32)))
    arr = stackengine.open_frames(f"{mem}/a.fits")
    MEM.rm(f"{mem}/a.fits")
    with pytest.raises(FrameError, match=f"{mem}/a.fits: no such file"):
        arr.values  # noqa: B018


def test_unknown_protocol_raises_frame_error():
    with pytest.raises(FrameError, match="nosuchproto://b/a.fits: unknown protocol 'nosuchproto'"):
        stackengine.open_frames("nosuchproto://b/a.fits")
    with pytest.raises(FrameError, match="unknown protocol 'nosuchproto'"):
        stackengine.open_frames(["nosuchproto://b/*.fits"])


@pytest.mark.skipif(importlib.util.find_spec("s3fs") is not None, reason="s3fs is installed")
def test_protocol_without_its_package_raises_frame_error():
    with pytest.raises(FrameError, match=r"s3://bucket/x.zarr: protocol 's3' needs a package"):
        stackengine.open_frames("s3://bucket/x.zarr")


def test_corrupt_and_truncated_remote_files(mem):
    MEM.pipe_file(f"{mem}/bad.fits", b"SIMPLE = nonsense" * 20)
    with pytest.raises(FrameError, match=f"{mem}/bad.fits: not a valid FITS file"):
        stackengine.open_frames(f"{mem}/bad.fits")
    blob = _fits_bytes(np.zeros((100, 100), np.float32))
    MEM.pipe_file(f"{mem}/cut.fits", blob[: len(blob) // 2])
    with pytest.raises(FrameError, match=f"{mem}/cut.fits: truncated"):
        stackengine.open_frames(f"{mem}/cut.fits")
    MEM.pipe_file(f"{mem}/bad.tif", b"II*\x00garbage")
    with pytest.raises(FrameError, match=f"{mem}/bad.tif: not a valid TIFF file"):
        stackengine.open_frames(f"{mem}/bad.tif")


@pytest.mark.slow
def test_file_urls_on_worker_processes(tmp_path):
    """file:// URLs and storage_options go to worker processes with the pickled graph."""
    from stackengine.tasks.cluster import scheduler_context

    data = _frames(5, (24, 16), seed=6)
    for i, frame in enumerate(data):
        fits.PrimaryHDU(frame).writeto(tmp_path / f"f_{i}.fits")
    with dask.config.set(scheduler="threads"):
        local = stackengine.stack(stackengine.open_frames(str(tmp_path / "f_*.fits"))).compute()
    with scheduler_context(workers=1, memory_limit="256MiB"):
        frames = stackengine.open_frames(
            f"file://{tmp_path}/f_*.fits", storage_options={"auto_mkdir": False}
        )
        lazy = stackengine.stack(frames, memory_limit="16KiB")
        assert lazy["image"].data.npartitions > 1  # several tile tasks on the worker
        by_url = lazy.compute()
    for name in ("image", "count", "rejected_low", "rejected_high", "noise"):
        np.testing.assert_array_equal(by_url[name].values, local[name].values, err_msg=name)


# -- command line --------------------------------------------------------------------------


def test_cli_stacks_url_frames_with_storage_options(tmp_path, mem, threads, monkeypatch):
    """The CLI reads memory:// frames (in process) and hands --storage-option to fsspec."""
    from stackengine.cli import main

    seen = []
    real = remote.filesystem

    def spy(url, storage_options=None):
        seen.append(storage_options)
        return real(url, storage_options)

    monkeypatch.setattr(remote, "filesystem", spy)
    data = _frames(5, (20, 16), seed=7)
    _write_fits(data, tmp_path / "local", mem)
    out = tmp_path / "url.fits"
    args = ["--quiet", "--storage-option", "skip_instance_cache=true"]
    assert main(["stack", f"{mem}/f_*.fits", "-o", str(out), *args]) == 0
    assert seen and all(s == {"skip_instance_cache": True} for s in seen), seen
    local = tmp_path / "local.fits"
    assert main(["stack", str(tmp_path / "local" / "f_*.fits"), "-o", str(local), "--quiet"]) == 0
    np.testing.assert_array_equal(fits.getdata(out), fits.getdata(local))


def test_cli_storage_option_parsing(capsys):
    from stackengine.cli import _storage_options, main

    assert _storage_options(["anon=true", "client_kwargs.endpoint_url=http://h:9000"]) == {
        "anon": True,
        "client_kwargs": {"endpoint_url": "http://h:9000"},
    }
    assert _storage_options(["retries=3", "profile=astro"]) == {"retries": 3, "profile": "astro"}
    assert _storage_options([]) is None
    assert main(["info", "memory://x/*.fits", "--storage-option", "novalue"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "novalue: expected KEY=VALUE" in err[0]
