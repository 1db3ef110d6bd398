"""The maps of a stack written by the tile tasks that compute them (stackengine.tasks.store).

Every test compares the fused path with the same result written the plain
way: computed first (numpy arrays, one task per variable), so the two share
no code between the kernel and the file.
"""

from __future__ import annotations

import numpy as np
import pytest
from astropy.io import fits

import stackengine as se
from stackengine.tasks.graph import job_of
from stackengine.tasks.store import store_together

MAPS = ("COUNT", "REJECTED_LOW", "REJECTED_HIGH", "NOISE")


def hdus(path):
    with fits.open(path) as hdul:
        return {h.name: (h.data.copy() if h.data is not None else None) for h in hdul}


def assert_same_fits(a, b):
    ha, hb = hdus(a), hdus(b)
    assert list(ha) == list(hb)
    for name in ha:
        if name == "FRAMES":
            continue
        assert ha[name].dtype == hb[name].dtype, name
        np.testing.assert_array_equal(ha[name], hb[name], err_msg=name)


@pytest.mark.parametrize("memory_limit", ["64KiB", "1GiB"])
def test_fused_fits_equals_computed(tmp_path, fits_frames, memory_limit):
    """Read, reduce and store in one task per tile gives the file of the computed result."""
    paths, _ = fits_frames
    ds = se.stack(se.open_frames(paths), memory_limit=memory_limit)
    assert job_of(ds["image"].data) is not None
    se.write(ds, tmp_path / "fused.fits")
    se.write(ds.compute(), tmp_path / "plain.fits")
    assert_same_fits(tmp_path / "fused.fits", tmp_path / "plain.fits")
    assert hdus(tmp_path / "fused.fits")["COUNT"].dtype == np.dtype(">i2")


def test_fused_in_memory_frames(tmp_path):
    """Frames already in memory: the planes are stored by one task per tile after it."""
    rng = np.random.default_rng(2)
    data = rng.normal(50.0, 3.0, (7, 40, 30)).astype(np.float32)
    data[2, 5, 5] = 1e4
    ds = se.stack(data, memory_limit="32KiB")
    se.write(ds, tmp_path / "fused.fits")
    se.write(ds.compute(), tmp_path / "plain.fits")
    assert_same_fits(tmp_path / "fused.fits", tmp_path / "plain.fits")
    with fits.open(tmp_path / "fused.fits") as hdul:
        assert hdul["REJECTED_HIGH"].data[5, 5] >= 1


def test_changed_variable_is_not_taken_from_the_tiles(tmp_path, fits_frames):
    """A variable replaced after stack() is written as it is, not as the packed plane."""
    paths, _ = fits_frames
    ds = se.stack(se.open_frames(paths), memory_limit="64KiB")
    ds["image"] = ds["image"] * 2
    ds["noise"] = ds["noise"].astype(np.float64)
    assert job_of(ds["image"].data) is None
    se.write(ds, tmp_path / "changed.fits")
    ref = se.stack(se.open_frames(paths)).compute()
    got = hdus(tmp_path / "changed.fits")
    np.testing.assert_array_equal(got["PRIMARY"], 2 * ref["image"].values)
    assert got["NOISE"].dtype == np.dtype(">f8")
    np.testing.assert_array_equal(got["NOISE"], ref["noise"].values.astype(np.float64))
    np.testing.assert_array_equal(got["COUNT"], ref["count"].values)


def test_one_task_per_tile(fits_frames, tmp_path):
    """The five maps of a file-backed stack: one task per tile in the optimized graph."""
    from stackengine.io.atomic import FileTarget

    paths, _ = fits_frames
    ds = se.stack(se.open_frames(paths), memory_limit="64KiB")
    names = ["image", "count", "rejected_low", "rejected_high", "noise"]
    sources = [ds[n].data for n in names]
    targets = []
    for i, s in enumerate(sources):
        path = tmp_path / f"{i}.bin"
        path.write_bytes(bytes(s.nbytes))
        targets.append(FileTarget(path, 0, s.shape, s.dtype))
    (job,) = store_together(sources, targets)
    tiles = sources[0].npartitions
    assert tiles > 1
    from dask._task_spec import Task

    graph = dict(job.__dask_optimize__(job.__dask_graph__(), job.__dask_keys__()))
    assert sum(isinstance(v, Task) for v in graph.values()) == tiles
    assert job.compute().all()
    ref = ds.compute()
    for name, target in zip(names, targets, strict=True):
        np.testing.assert_array_equal(target[...], ref[name].values, err_msg=name)
