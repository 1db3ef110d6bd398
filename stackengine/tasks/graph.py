"""From a :class:`~stackengine.tasks.job.StackJob` to its lazy result, and back.

:func:`job_dataset` builds the graph of a job: the job itself is one node of it
(key :attr:`~StackJob.key`); one task per output tile depends on that node and
computes the tile's packed outputs (:attr:`~StackJob.packed_name`); each output
variable is one plane of them, under a name of its own
(:meth:`~StackJob.plane_name`). Every name carries the job's token, so the
graphs of two different jobs never share a task.

:func:`job_of` goes the other way: given a variable of a result, it returns
the job whose unmodified output it is, found in the variable's own graph under
the key its name implies, or None. Any operation on a variable (arithmetic, a
selection, a rechunk) gives it a new name, so a modified variable is never
mistaken for the job's output; it is then computed and stored as any array.
"""

from __future__ import annotations

from typing import Any

import dask
import dask.array as da
import numpy as np
import xarray as xr

from .job import StackJob
from .tile import packed_dtype, read_reduce_tile, reduce_tile, reduce_weighted_tile

__all__ = ["job_dataset", "job_of", "packed_array"]

_PLANE_PREFIX = "stack-"


def _plane(packed: np.ndarray, k: int, dtype: np.dtype) -> np.ndarray:
    return packed[k].astype(dtype)


def packed_array(
    job: StackJob, data: da.Array | None = None, weights: da.Array | None = None
) -> da.Array:
    """The job's packed outputs (planes, y, x[, c]): one task per tile.

    ``data`` is the frames as a dask array chunked by the job's tiles when the
    job has no file source (in-memory or modified frames); ``weights``, chunked
    like it, a weight per value (:attr:`StackJob.pixel_weights`).
    """
    node = dask.delayed(job, name=job.key, pure=True)
    ty, tx = job.tile
    height, width = job.shape[1], job.shape[2]
    chunks = (
        (job.n_planes,),
        tuple(min(ty, height - y) for y in range(0, height, ty)),
        tuple(min(tx, width - x) for x in range(0, width, tx)),
        *((c,) for c in job.shape[3:]),
    )
    dtype = packed_dtype(job.n_frames)
    out = dict(
        chunks=chunks,
        dtype=dtype,
        meta=np.empty((0,) * len(chunks), dtype=dtype),
        name=job.packed_name,
    )
    if job.source is not None:
        return da.map_blocks(read_reduce_tile, node, **out)
    if data is None:
        raise ValueError("a job without a file source needs its frames as a dask array")
    if job.pixel_weights is not None:
        if weights is None or weights.name != job.pixel_weights:
            raise ValueError("the job's weight per value must be given as its dask array")
        return da.map_blocks(reduce_weighted_tile, data, weights, node, **out)
    return da.map_blocks(reduce_tile, data, node, **out)


def job_dataset(
    job: StackJob,
    *,
    data: da.Array | None = None,
    weights: da.Array | None = None,
    dims: tuple[str, ...],
    coords: dict[str, Any],
    frame_variables: dict[str, Any],
) -> xr.Dataset:
    """The lazy result of ``job``: its output variables over ``dims``, the per-frame
    variables, ``coords`` and the job's attrs (``data``, ``weights``: see
    :func:`packed_array`)."""
    packed = packed_array(job, data, weights)
    variables: dict[str, Any] = {}
    for k, (name, _) in enumerate(job.outputs):
        dtype = job.output_dtype(name)
        plane = da.map_blocks(
            _plane, packed, k, dtype, drop_axis=0, dtype=dtype,
            meta=np.empty((0,) * (packed.ndim - 1), dtype=dtype), name=job.plane_name(name),
        )  # fmt: skip
        variables[name] = (dims, plane)
    variables.update(frame_variables)
    return xr.Dataset(variables, coords=coords, attrs=job.attrs())


def job_of(data: Any) -> StackJob | None:
    """The job whose unmodified output variable ``data`` (a dask array) is, or None."""
    name = getattr(data, "name", None)
    if not isinstance(name, str) or not name.startswith(_PLANE_PREFIX):
        return None
    token = name.rsplit("-", 1)[-1]
    try:
        node = data.__dask_graph__().get(f"stackjob-{token}")
    except AttributeError:
        return None
    job = getattr(node, "value", node)
    if not isinstance(job, StackJob) or job.token != token or job.plane_of(name) is None:
        return None
    return job
