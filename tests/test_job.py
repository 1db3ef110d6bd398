"""The explicit job (stackengine.tasks.job): results that cannot be mixed up.

Two stacks that differ in anything compute their own results in one
``dask.compute`` (issue 14, 3a), and a partial zarr store is resumed only by
the job that made it (3b, 3c); both also as hypothesis properties over pairs
of parameter sets. The references are each stack computed on its own and
numpy's sigma clipping written separately in tests/reference.py.
"""

from __future__ import annotations

import pickle

import dask
import numpy as np
import pytest
import xarray as xr
from astropy.io import fits
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import stackengine as se
from stackengine.errors import OutputError
from stackengine.io.write_zarr import partial_path
from stackengine.tasks import formats
from stackengine.tasks.graph import job_of

VARIABLES = ("image", "count", "rejected_low", "rejected_high", "noise")


@pytest.fixture(scope="module")
def frames(tmp_path_factory):
    folder = tmp_path_factory.mktemp("job_frames")
    rng = np.random.default_rng(11)
    data = rng.normal(100.0, 5.0, (7, 48, 40)).astype(np.float32)
    data[2, 10, 10] = 1e4
    data[4, 20:23, 5] = -500
    paths = []
    for k, frame in enumerate(data):
        path = folder / f"f{k}.fits"
        header = fits.Header({"EXPTIME": 10.0 + k})
        fits.PrimaryHDU(frame, header=header).writeto(path)
        paths.append(str(path))
    return paths, data


def test_bug_3a_two_parameter_sets_in_one_compute(frames):
    """The case from the issue: sigma_lower 3 and 0.5 computed together."""
    paths, data = frames
    fr = se.open_frames(paths)
    a = se.stack(fr, sigma_lower=3)
    b = se.stack(fr, sigma_lower=0.5)
    ia, ib = dask.compute(a.image.data, b.image.data)
    assert not np.array_equal(ia, ib, equal_nan=True)
    np.testing.assert_array_equal(ia, se.stack(fr, sigma_lower=3).image.values)
    np.testing.assert_array_equal(ib, se.stack(fr, sigma_lower=0.5).image.values)
    assert a.attrs["job_token"] != b.attrs["job_token"]


def test_tokens_differ_in_frames_weights_normalization_and_memory(frames):
    paths, data = frames
    fr = se.open_frames(paths)
    tokens = {
        se.stack(fr).attrs["job_token"],
        se.stack(se.open_frames(paths[:-1])).attrs["job_token"],
        se.stack(fr, weights="exptime").attrs["job_token"],
        se.stack(fr, weights=np.arange(1.0, 8.0)).attrs["job_token"],
        se.stack(fr, normalize="additive").attrs["job_token"],
        se.stack(fr, memory_limit="64KiB").attrs["job_token"],
        se.stack(data).attrs["job_token"],
        se.stack(data * 2).attrs["job_token"],
    }
    assert len(tokens) == 8
    # the same job twice: the same token (deterministic, so resume can match it)
    assert se.stack(fr).attrs["job_token"] == se.stack(se.open_frames(paths)).attrs["job_token"]


def test_token_follows_the_input_files(frames, tmp_path):
    paths, data = frames
    copy = tmp_path / "f.fits"
    fits.PrimaryHDU(data[0]).writeto(copy)
    first = se.stack(se.open_frames([str(copy), *paths[1:3]])).attrs["job_token"]
    fits.PrimaryHDU(data[1]).writeto(copy, overwrite=True)  # rewritten: other pixels
    second = se.stack(se.open_frames([str(copy), *paths[1:3]])).attrs["job_token"]
    assert first != second


def test_job_is_in_the_graph_and_pickles(frames):
    paths, _ = frames
    ds = se.stack(se.open_frames(paths), normalize="multiplicative")
    job = job_of(ds["image"].data)
    assert job is not None and job.token == ds.attrs["job_token"]
    clone = pickle.loads(pickle.dumps(job))
    assert clone.token == job.token
    with pytest.raises(AttributeError):
        job.combine = "median"  # frozen
    assert job_of((ds["image"] + 0).data) is None  # a modified variable is not the job's


# ---- hypothesis: pairs of parameter sets ----

PARAMS = st.fixed_dictionaries(
    {
        "sigma_lower": st.sampled_from([0.5, 1.5, 3.0]),
        "sigma_upper": st.sampled_from([1.0, 3.0]),
        "maxiters": st.sampled_from([1, 3, None]),
        "reject": st.sampled_from(["sigma", "winsorized", None, ["extrema", "sigma"]]),
        "combine": st.sampled_from(["mean", "median"]),
        "memory_limit": st.sampled_from(["48KiB", "1GiB"]),
        "normalize": st.sampled_from([None, "additive"]),
    }
)


def _differ(p: dict, q: dict) -> bool:
    return p != q


@settings(max_examples=25, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture])  # fmt: skip
@given(p=PARAMS, q=PARAMS)
def test_property_pairs_compute_their_own_results(frames, p, q):
    paths, _ = frames
    fr = se.open_frames(paths)
    a, b = se.stack(fr, **p), se.stack(fr, **q)
    together = dask.compute(*(a[v].data for v in VARIABLES), *(b[v].data for v in VARIABLES))
    alone_a = se.stack(fr, **p).compute()
    alone_b = se.stack(fr, **q).compute()
    for k, v in enumerate(VARIABLES):
        np.testing.assert_array_equal(together[k], alone_a[v].values, err_msg=v)
        np.testing.assert_array_equal(together[5 + k], alone_b[v].values, err_msg=v)
    assert (a.attrs["job_token"] != b.attrs["job_token"]) == _differ(p, q)


def _interrupted_write(ds: xr.Dataset, out, after: int = 2) -> None:
    """Write ``ds`` to zarr and stop it (KeyboardInterrupt) after ``after`` tiles."""
    real = formats.write_tile
    written = []

    def stop(*args):
        if len(written) >= after:
            raise KeyboardInterrupt
        written.append(1)
        real(*args)

    formats.write_tile = stop
    try:
        with pytest.raises(KeyboardInterrupt):
            with dask.config.set(scheduler="synchronous"):
                se.write(ds, out)
    finally:
        formats.write_tile = real


def _tree(path) -> dict:
    return {
        str(p.relative_to(path)): p.read_bytes() if p.is_file() else None
        for p in sorted(path.rglob("*"))
    }


def test_bug_3b_3c_resume_with_other_parameters_is_refused_and_keeps_the_store(frames, tmp_path):
    paths, _ = frames
    out = tmp_path / "s.zarr"
    fr = se.open_frames(paths)
    _interrupted_write(se.stack(fr, sigma_lower=3, memory_limit="48KiB"), out)
    partial = partial_path(out)
    before = _tree(partial)
    with pytest.raises(OutputError, match=r"different job \(sigma_lower 3.0 -> 0.5\)"):
        se.write(se.stack(fr, sigma_lower=0.5, memory_limit="48KiB"), out, resume=True)
    assert _tree(partial) == before and not out.exists()  # kept, untouched
    se.write(se.stack(fr, sigma_lower=3, memory_limit="48KiB"), out, resume=True)
    ref = se.stack(fr, sigma_lower=3).compute()
    with xr.open_zarr(out) as got:
        for v in VARIABLES:
            np.testing.assert_array_equal(got[v].values, ref[v].values, err_msg=v)
        assert got.attrs["sigma_lower"] == 3.0


@settings(max_examples=8, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture])  # fmt: skip
@given(p=PARAMS, q=PARAMS)
def test_property_resume_only_by_the_same_job(frames, tmp_path_factory, p, q):
    paths, _ = frames
    out = tmp_path_factory.mktemp("resume") / "s.zarr"
    fr = se.open_frames(paths)
    p = {**p, "memory_limit": "48KiB"}
    q = {**q, "memory_limit": "48KiB"}
    _interrupted_write(se.stack(fr, **p), out)
    if _differ(p, q):
        before = _tree(partial_path(out))
        with pytest.raises(OutputError, match="different job"):
            se.write(se.stack(fr, **q), out, resume=True)
        assert _tree(partial_path(out)) == before
    se.write(se.stack(fr, **p), out, resume=True)
    ref = se.stack(fr, **p).compute()
    with xr.open_zarr(out) as got:
        for v in VARIABLES:
            np.testing.assert_array_equal(got[v].values, ref[v].values, err_msg=v)
