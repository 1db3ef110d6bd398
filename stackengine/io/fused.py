"""Writing a stack's maps in the tile tasks that compute them.

:func:`stackengine.stack` computes all five outputs of a tile (image, count,
rejected_low, rejected_high, noise) in one task, as the planes of a packed
array; the dataset's variables are those planes (:func:`packed_plane`).
Stored one variable at a time (``da.store``), each plane of each tile would
be a task of its own, after the tile's task and often on the other thread,
and every tile's packed outputs would be fresh memory held until the last
plane was stored.

:func:`store_together` recognizes the planes (:func:`plane_of`) and stores
them with one task per tile. When the stack reads its frames from files
(:func:`remember_tiles`), that task reads, reduces and writes the tile:
its outputs and their conversion to the file's types go through the
thread's reused buffers (:func:`~stackengine.tiles.thread_buffer`), so a run
allocates no memory per tile. Any other source is stored by one task per
chunk for all the sources of its shape.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from ..kernels.engine import N_OUT
from ..tiles import packed_dtype, read_reduce_into, thread_buffer

if TYPE_CHECKING:
    import dask.array as da

__all__ = ["packed_plane", "plane_of", "remember_tiles", "store_together"]

#: attribute of a dask array made by :func:`packed_plane`: (packed array, plane index)
_PLANE_ATTR = "_stackengine_plane"
#: attribute of a packed array read from files: (FrameStack, kernel arguments)
_TILES_ATTR = "_stackengine_tiles"


def packed_plane(packed: da.Array, k: int, dtype: Any) -> da.Array:
    """Plane ``k`` of the lazy packed outputs of :func:`stackengine.stack`, as ``dtype``.

    The array remembers where it came from (:func:`plane_of`). Any operation
    on it gives a new array that has forgotten this, and that is stored as
    any other array.
    """
    arr = packed[k].astype(dtype)
    setattr(arr, _PLANE_ATTR, (packed, k))
    return arr


def plane_of(arr: Any) -> tuple[da.Array, int] | None:
    """(packed array, plane index) when ``arr`` is exactly a :func:`packed_plane`, else None."""
    return getattr(arr, _PLANE_ATTR, None)


def remember_tiles(packed: da.Array, source: Any, args: tuple) -> None:
    """Record that ``packed`` is ``read_reduce_tile(source, *args)`` per tile."""
    setattr(packed, _TILES_ATTR, (source, args))


def _region(location: list[tuple[int, int]]) -> tuple[slice, ...]:
    return tuple(slice(a, b) for a, b in location)


def _put(target: Any, region: tuple[slice, ...], plane: np.ndarray, dtype: np.dtype) -> None:
    """``target[region] = plane.astype(dtype)``, converted by the target when it can
    go straight from the packed values to its own type (no array in between)."""
    stored = getattr(target, "dtype", None)
    same = stored is not None and np.dtype(stored).newbyteorder("=") == dtype.newbyteorder("=")
    target[region] = plane if same else plane.astype(dtype)


def _locate(block_info: dict, chunks: tuple[tuple[int, ...], ...]) -> list[tuple[int, int]]:
    """The tile's (start, stop) per axis of the packed array from the block index."""
    index = block_info[None]["chunk-location"]
    location = [(0, N_OUT)]
    for axis_chunks, i in zip(chunks[1:], index, strict=True):
        start = sum(axis_chunks[:i])
        location.append((start, start + axis_chunks[i]))
    return location


def _read_reduce_store(
    source: Any,
    *args: Any,
    packed_chunks: tuple,
    planes: list[tuple[int, np.dtype]],
    targets: list[Any],
    block_info: dict,
) -> np.ndarray:
    """Task body: read and reduce one tile into this thread's buffer, store its planes."""
    location = _locate(block_info, packed_chunks)
    shape = tuple(b - a for a, b in location)
    out = thread_buffer("packed", shape, packed_dtype(source.shape[0]))
    read_reduce_into(source, args, location, out)
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


def store_together(sources: list[da.Array], targets: list[Any]) -> list[da.Array]:
    """Like ``da.store(sources, targets, compute=False)``, one task per chunk for all.

    Returns lazy arrays to compute (one True per chunk stored). See the module notes.
    """
    import dask.array as da
    from dask.base import tokenize

    packs: dict[str, list[int]] = {}
    groups: dict[tuple[int, ...], list[int]] = {}
    for i, source in enumerate(sources):
        plane = plane_of(source)
        if plane is not None:
            packs.setdefault(plane[0].name, []).append(i)
        else:
            groups.setdefault(tuple(source.shape), []).append(i)
    jobs = []
    for members in packs.values():
        packed = plane_of(sources[members[0]])[0]
        planes = [(plane_of(sources[i])[1], np.dtype(sources[i].dtype)) for i in members]
        mine = [targets[i] for i in members]
        name = f"store-{packed.name}-{tokenize(planes, mine)}"
        tiles = getattr(packed, _TILES_ATTR, None)
        if tiles is not None:  # read, reduce and store in one task, in reused memory
            source, args = tiles
            job = da.map_blocks(
                _read_reduce_store, source, *args, packed_chunks=packed.chunks, planes=planes,
                targets=mine, name=name, **_ones(packed.chunks[1:]),
            )  # fmt: skip
        else:
            job = da.map_blocks(
                _store_planes, packed, planes=planes, targets=mine, drop_axis=0, name=name,
                **_ones(packed.chunks[1:]),
            )  # fmt: skip
        jobs.append(job)
    for members in groups.values():
        arrays = [sources[i] for i in members]
        jobs.append(
            da.map_blocks(
                _store_blocks,
                *arrays,
                targets=[targets[i] for i in members],
                token="store-together",
                **_ones(arrays[0].chunks),
            )  # fmt: skip
        )
    return jobs
