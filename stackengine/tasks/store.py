"""Storing a stack's outputs with one task per tile.

A job's tile task computes all five outputs of a tile (image, count,
rejected_low, rejected_high, noise) as the planes of a packed array; the
result's variables are those planes (:mod:`stackengine.tasks.graph`). Stored
one variable at a time (``da.store``), each plane of each tile would be a task
of its own, after the tile's task and often on the other thread, and every
tile's packed outputs would be fresh memory held until the last plane was
stored.

:func:`store_together` recognizes the unmodified outputs of a job
(:func:`~stackengine.tasks.graph.job_of`) and stores them with one task per
tile. When the job reads its frames from files, that task reads, reduces and
writes the tile: its outputs and their conversion to the file's types go
through the thread's reused buffers
(:func:`~stackengine.io.buffers.thread_buffer`), so a run allocates no memory
per tile. Any other source is stored by one task per chunk for all the sources
of its shape.
"""

from __future__ import annotations

from typing import Any

import dask
import dask.array as da
import numpy as np
from dask.base import tokenize

from ..io.buffers import thread_buffer
from .graph import job_of
from .job import StackJob
from .tile import packed_dtype, read_reduce_into

__all__ = ["store_together"]


def _region(location: list[tuple[int, int]]) -> tuple[slice, ...]:
    return tuple(slice(a, b) for a, b in location)


def _put(target: Any, region: tuple[slice, ...], plane: np.ndarray, dtype: np.dtype) -> None:
    """``target[region] = plane.astype(dtype)``, converted by the target when it can
    go straight from the packed values to its own type (no array in between)."""
    stored = getattr(target, "dtype", None)
    same = stored is not None and np.dtype(stored).newbyteorder("=") == dtype.newbyteorder("=")
    target[region] = plane if same else plane.astype(dtype)


def _locate(
    block_info: dict, chunks: tuple[tuple[int, ...], ...], planes: int
) -> list[tuple[int, int]]:
    """The tile's (start, stop) per axis of the packed array from the block index."""
    index = block_info[None]["chunk-location"]
    location = [(0, planes)]
    for axis_chunks, i in zip(chunks, index, strict=True):
        start = sum(axis_chunks[:i])
        location.append((start, start + axis_chunks[i]))
    return location


def _read_reduce_store(
    job: StackJob,
    planes: list[tuple[int, np.dtype]],
    targets: list[Any],
    tiles: tuple[tuple[int, ...], ...],
    block_info: dict,
) -> np.ndarray:
    """Task body: read and reduce one tile into this thread's buffer, store its planes."""
    location = _locate(block_info, tiles, job.n_planes)
    shape = tuple(b - a for a, b in location)
    out = thread_buffer("packed", shape, packed_dtype(job.n_frames))
    read_reduce_into(job, location, out)
    region = _region(location[1:])
    for (k, dtype), target in zip(planes, targets, strict=True):
        _put(target, region, out[k], dtype)
    return np.ones((1,) * (len(shape) - 1), dtype=bool)


def _store_planes(
    packed: np.ndarray, planes: list[tuple[int, np.dtype]], targets: list[Any], block_info: dict
) -> np.ndarray:
    """Task body: store the planes of a computed packed tile."""
    region = _region(block_info[0]["array-location"][1:])
    for (k, dtype), target in zip(planes, targets, strict=True):
        _put(target, region, packed[k], dtype)
    return np.ones((1,) * (packed.ndim - 1), dtype=bool)


def _store_blocks(*blocks: np.ndarray, targets: list[Any], block_info: dict) -> np.ndarray:
    """Task body: assign block i to ``targets[i]`` at its location."""
    for i, (block, target) in enumerate(zip(blocks, targets, strict=True)):
        target[_region(block_info[i]["array-location"])] = block
    return np.ones((1,) * blocks[0].ndim, dtype=bool)


def _ones(chunks: tuple[tuple[int, ...], ...]) -> dict[str, Any]:
    """map_blocks keywords of a bool array with one element per chunk."""
    return dict(
        dtype=bool,
        chunks=tuple((1,) * len(c) for c in chunks),
        meta=np.empty((0,) * len(chunks), dtype=bool),
    )


def _store_job(job: StackJob, sources: list[da.Array], targets: list[Any]) -> da.Array:
    """One task per tile of ``job`` storing the given output planes into ``targets``."""
    planes = [(job.plane_of(s.name), np.dtype(s.dtype)) for s in sources]
    name = f"store-{job.token}-{tokenize(planes, targets)}"
    tiles = sources[0].chunks
    if job.source is not None:  # read, reduce and store in one task, in reused memory
        node = dask.delayed(job, name=job.key, pure=True)
        return da.map_blocks(
            _read_reduce_store, node, planes=planes, targets=targets, tiles=tiles, name=name,
            **_ones(tiles),
        )  # fmt: skip
    # in-memory frames: the packed tiles, as in the planes' own graph
    dtype = packed_dtype(job.n_frames)
    packed = da.Array(
        sources[0].dask,
        job.packed_name,
        ((job.n_planes,), *tiles),
        meta=np.empty((0,) * (len(tiles) + 1), dtype),
    )
    return da.map_blocks(
        _store_planes, packed, planes=planes, targets=targets, drop_axis=0, name=name,
        **_ones(tiles),
    )  # fmt: skip


def store_together(sources: list[da.Array], targets: list[Any]) -> list[da.Array]:
    """Like ``da.store(sources, targets, compute=False)``, one task per chunk for all.

    Returns lazy arrays to compute (one True per chunk stored). See the module notes.
    """
    jobs: dict[str, tuple[StackJob, list[int]]] = {}
    groups: dict[tuple[int, ...], list[int]] = {}
    for i, source in enumerate(sources):
        job = job_of(source)
        if job is not None:
            jobs.setdefault(job.token, (job, []))[1].append(i)
        else:
            groups.setdefault(tuple(source.shape), []).append(i)
    out = []
    for job, members in jobs.values():
        mine = [sources[i] for i in members]
        out.append(_store_job(job, mine, [targets[i] for i in members]))
    for members in groups.values():
        arrays = [sources[i] for i in members]
        out.append(
            da.map_blocks(
                _store_blocks,
                *arrays,
                targets=[targets[i] for i in members],
                token="store-together",
                **_ones(arrays[0].chunks),
            )  # fmt: skip
        )
    return out
