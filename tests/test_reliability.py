"""Outputs that cannot be lost (issue 14, 3c-3j), through the Python API.

The command line's cases (exit codes, the one error line, kill -9, SIGINT,
concurrent runs) are in tests/test_faults.py; here each rule of
stackengine.io.atomic and stackengine.tasks.write is checked on its own.
Disk full is a real small tmpfs (mounted here as root).
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import tifffile
import xarray as xr
from astropy.io import fits

import stackengine as se
from stackengine.errors import FrameError, OutputError, ParameterError
from stackengine.io.atomic import HOST, OutputLock, clean_stale, lock_holder, temporary_path

FORMATS = ("fits", "tif", "zarr")


@pytest.fixture(scope="module")
def frames(tmp_path_factory):
    folder = tmp_path_factory.mktemp("rel_frames")
    rng = np.random.default_rng(5)
    data = rng.normal(200.0, 4.0, (5, 40, 36)).astype(np.float32)
    data[1, 3, 3] = 5e3
    paths = []
    for k, frame in enumerate(data):
        path = folder / f"f{k}.fits"
        fits.PrimaryHDU(frame).writeto(path)
        paths.append(str(path))
    return paths, data


def _image(path):
    path = str(path)
    if path.endswith(".fits"):
        return fits.getdata(path)
    if path.endswith(".tif"):
        return tifffile.imread(path)
    with xr.open_zarr(path) as ds:
        return ds["image"].values


@pytest.mark.parametrize("fmt", FORMATS)
def test_3j_computed_result_writes_the_same_bits(frames, tmp_path, fmt):
    paths, _ = frames
    lazy = se.stack(se.open_frames(paths), memory_limit="32KiB")
    se.write(lazy, tmp_path / f"lazy.{fmt}")
    se.write(lazy.compute(), tmp_path / f"computed.{fmt}")
    a, b = _image(tmp_path / f"lazy.{fmt}"), _image(tmp_path / f"computed.{fmt}")
    assert a.dtype == b.dtype
    np.testing.assert_array_equal(a, b)


def test_3e_overwrite_never_deletes_a_users_directory(frames, tmp_path):
    paths, _ = frames
    ds = se.stack(se.open_frames(paths))
    for name in ("out.fits", "out.zarr"):
        folder = tmp_path / name
        folder.mkdir()
        (folder / "notes.txt").write_text("mine")
        with pytest.raises(OutputError, match="not written by stackengine"):
            se.write(ds, folder, overwrite=True)
        assert (folder / "notes.txt").read_text() == "mine"
    # a store stackengine wrote is replaced; so is any file
    se.write(ds, tmp_path / "own.zarr")
    se.write(se.stack(se.open_frames(paths), combine="median"), tmp_path / "own.zarr",
             overwrite=True)  # fmt: skip
    with xr.open_zarr(tmp_path / "own.zarr") as got:
        assert got.attrs["combine"] == "median"
    (tmp_path / "file.fits").write_bytes(b"not a fits file")
    se.write(ds, tmp_path / "file.fits", overwrite=True)
    assert fits.getdata(tmp_path / "file.fits").shape == (40, 36)
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]  # no leftovers


def test_3f_the_output_is_never_an_input(frames, tmp_path):
    paths, data = frames
    with pytest.raises(ParameterError, match="is one of the stack's input frames"):
        se.write(se.stack(se.open_frames(paths)), paths[0], overwrite=True)
    np.testing.assert_array_equal(fits.getdata(paths[0]), data[0])  # untouched
    with pytest.raises(FrameError, match=r"f1.fits: given twice"):
        se.open_frames([paths[0], paths[1], paths[1]])
    twice = se.open_frames([paths[0], paths[0]], allow_duplicates=True)
    assert twice.sizes["frame"] == 2


def test_3f_a_link_to_an_input_is_the_same_file(frames, tmp_path):
    paths, _ = frames
    link = tmp_path / "link.fits"
    link.symlink_to(paths[2])
    with pytest.raises(FrameError, match="given twice"):
        se.open_frames([paths[2], str(link)])


def test_3d_lock_refuses_a_second_writer_and_names_the_first(tmp_path):
    out = tmp_path / "out.fits"
    with OutputLock(out):
        assert lock_holder(out) == f"pid {os.getpid()} on {HOST}"
        # another process (a lock is per open file description) is refused at once
        code = textwrap.dedent(
            f"""
            from pathlib import Path
            from stackengine.io.atomic import OutputLock
            try:
                with OutputLock(Path({str(out)!r})):
                    print("taken")
            except Exception as exc:
                print(exc)
            """
        )
        got = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
        assert got.stdout.strip() == (
            f"{out} is being written by another run (pid {os.getpid()} on {HOST})"
        )
    assert lock_holder(out) is None and not (tmp_path / ".out.fits.lock").exists()


def test_3d_a_dead_writers_lock_is_taken_over(tmp_path):
    out = tmp_path / "out.fits"
    code = f"from pathlib import Path; from stackengine.io.atomic import OutputLock; " \
        f"OutputLock(Path({str(out)!r})).__enter__(); import os; os._exit(0)"  # fmt: skip
    subprocess.run([sys.executable, "-c", code], check=True)
    assert (tmp_path / ".out.fits.lock").exists()  # left behind by the dead process
    assert lock_holder(out) is None
    with OutputLock(out):
        pass


def test_3h_stale_temporaries_of_dead_writers_are_removed(tmp_path):
    out = tmp_path / "out.fits"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True).stdout.strip()  # fmt: skip
    stale = tmp_path / f".out.fits.tmp-{dead}-{HOST}-0123abcd"
    stale.write_bytes(b"x" * 1000)
    staged = tmp_path / f".out.fits.tmp-{dead}-{HOST}-0123abcd.stage"
    staged.write_bytes(b"x")
    mine = temporary_path(out)  # this process is alive: kept
    mine.write_bytes(b"y")
    elsewhere = tmp_path / f".out.fits.tmp-{dead}-otherhost-0123abcd"  # unknown: kept
    elsewhere.write_bytes(b"z")
    user = tmp_path / ".out.fits.tmp-notes"  # not ours: kept
    user.write_bytes(b"u")
    said = []
    clean_stale(out, said.append)
    assert not stale.exists() and not staged.exists()
    assert mine.exists() and elsewhere.exists() and user.exists()
    assert len(said) == 2 and f"pid {dead}" in said[0] and "removed stale temporary" in said[0]


def test_3h_an_output_moved_aside_by_a_killed_writer_is_put_back(tmp_path):
    out = tmp_path / "out.fits"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True).stdout.strip()  # fmt: skip
    aside = tmp_path / f".out.fits.old-{dead}-{HOST}-89abcdef"
    aside.write_bytes(b"old output")
    clean_stale(out, lambda s: None)
    assert out.read_bytes() == b"old output" and not aside.exists()


@pytest.fixture
def small_disk(tmp_path):
    """A 1 MiB tmpfs (root can mount one here); skipped where mounting is not allowed."""
    mount = tmp_path / "disk"
    mount.mkdir()
    got = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)],
                         capture_output=True)  # fmt: skip
    if got.returncode:
        pytest.skip(f"cannot mount a tmpfs here: {got.stderr.decode().strip()}")
    yield mount
    subprocess.run(["umount", str(mount)], check=False)


@pytest.mark.parametrize("fmt", FORMATS)
def test_3g_disk_full_names_the_output_and_leaves_nothing(tmp_path, small_disk, fmt):
    rng = np.random.default_rng(1)
    data = rng.normal(0, 1, (3, 400, 400)).astype(np.float32)  # 640 KiB image + maps: > 1 MiB
    out = small_disk / f"out.{fmt}"
    old = b"an older output"
    out.write_bytes(old) if fmt != "zarr" else None
    with pytest.raises(OutputError) as info:
        se.write(se.stack(data, memory_limit="256KiB"), out, overwrite=True)
    message = str(info.value)
    assert message.startswith(f"{out}: no space left on device (") and "bytes free)" in message
    left = sorted(p.name for p in small_disk.iterdir())
    assert left == ([] if fmt == "zarr" else [out.name])
    if fmt != "zarr":
        assert out.read_bytes() == old
