"""zarr output, written tile by tile into a resumable partial store.

The store is built beside the target as ``.NAME.partial``: xarray writes the
metadata (and the small per-frame variables) first, then one task per output
tile writes that tile's chunk of every variable and, last, a marker file in
``.NAME.partial/_tiles_done/``. A finished run consolidates the metadata,
removes the markers and renames the store to ``NAME``, so the target only ever
appears complete.

If the run is killed, the partial store stays. Running the same job again
with ``resume=True`` (``--resume``) checks that the store was made by the same
job (a fingerprint of the graph's inputs and parameters), reuses every tile
with a marker and computes only the others. Without ``resume`` an existing
partial store is an error, so nothing is ever mixed up silently.
"""

from __future__ import annotations

import json
import logging
import os
import warnings
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import dask
import dask.array as da
import xarray as xr

from ..cluster import local_scheduler
from ..errors import OutputError
from .atomic import _commit, remove_path

__all__ = ["write_zarr", "partial_path"]

log = logging.getLogger("stackengine")
MARKERS = "_tiles_done"
FINGERPRINT = "stackengine_partial"


def partial_path(path: Path) -> Path:
    """The resumable partial store of ``path``."""
    return path.with_name(f".{path.name}.partial")


def _fingerprint(ds: xr.Dataset) -> str:
    parts = {
        name: [var.data.name, list(var.shape), [list(c) for c in var.data.chunks], str(var.dtype)]
        for name, var in ds.data_vars.items()
        if isinstance(var.data, da.Array)
    }
    return json.dumps(parts, sort_keys=True)


def _aligned(ds: xr.Dataset) -> xr.Dataset:
    """Every dask variable over (y, x) chunked like ``image``; other dask values computed."""
    image = ds["image"]
    ds = ds.copy()
    for name, var in ds.data_vars.items():
        if not isinstance(var.data, da.Array) or name == "image":
            continue
        if var.dims[:2] == ("y", "x"):
            chunks = {"y": image.chunks[0], "x": image.chunks[1]}
            ds[name] = var.chunk({**chunks, **{d: -1 for d in var.dims[2:]}})
        else:
            ds[name] = var.compute()
    return ds


def _tiles(ds: xr.Dataset) -> list[tuple[int, ...]]:
    image = ds["image"].data
    grid = image.numblocks[:2]
    return [(iy, ix) for iy in range(grid[0]) for ix in range(grid[1])]


def _region(chunks: tuple[tuple[int, ...], ...], index: tuple[int, ...]) -> tuple[slice, ...]:
    out = []
    for axis_chunks, i in zip(chunks, index, strict=True):
        start = sum(axis_chunks[:i])
        out.append(slice(start, start + axis_chunks[i]))
    return tuple(out)


def _write_tile(store: str, marker: str, regions: dict, blocks: dict) -> None:
    """Task body: write one tile of every variable, then its marker."""
    import zarr

    for name, value in blocks.items():
        zarr.open_array(store, path=name, mode="r+")[regions[name]] = value
    Path(marker).touch()


def _compute(tasks: list[Any]) -> None:
    """Compute the tile tasks. On dask's threaded scheduler they run in a pool of
    our own that is drained before returning, also after a failure: no tile is
    still being written when the caller cleans up the partial store."""
    import dask.threaded
    from dask.base import get_scheduler

    if local_scheduler() is None and get_scheduler(collections=tasks) is not dask.threaded.get:
        dask.compute(*tasks)
        return
    workers = dask.config.get("num_workers", None) or os.cpu_count() or 1
    pool = ThreadPoolExecutor(int(workers))
    try:
        # the threaded scheduler by its function: by name, dask would import distributed
        dask.compute(*tasks, scheduler=dask.threaded.get, pool=pool)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def write_zarr(
    ds: xr.Dataset,
    path: Path,
    *,
    overwrite: bool,
    encoding: dict[str, dict[str, Any]],
    resume: bool = False,
    report: Callable[[str], None] | None = None,
) -> None:
    """Write ``ds`` to the zarr store ``path`` tile by tile (see the module notes)."""
    import zarr

    report = report or log.info
    ds = _aligned(ds)
    partial = partial_path(path)
    fingerprint = _fingerprint(ds)
    if partial.exists():
        if not resume:
            raise OutputError(
                f"{partial}: an interrupted run left this partial output; pass --resume "
                "(resume=True) to continue it, or delete it"
            )
        attrs = zarr.open_group(str(partial), mode="r").attrs.asdict()
        if attrs.get(FINGERPRINT) != fingerprint:
            raise OutputError(
                f"{partial}: this partial output was made by a different job (other inputs "
                "or parameters); delete it to start again"
            )
    else:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", "Consolidated metadata")
            ds.to_zarr(
                partial,
                mode="w-",
                zarr_format=3,
                consolidated=False,
                compute=False,
                encoding=encoding,
            )
        zarr.open_group(str(partial), mode="r+").attrs[FINGERPRINT] = fingerprint
        (partial / MARKERS).mkdir()
    tiles = _tiles(ds)
    done = {name for name in os.listdir(partial / MARKERS)}
    todo = [t for t in tiles if "_".join(map(str, t)) not in done]
    if resume:
        report(
            f"resuming {partial.name}: {len(tiles) - len(todo)} of {len(tiles)} tiles "
            f"already written, computing {len(todo)}"
        )
    arrays = {n: v.data for n, v in ds.data_vars.items() if isinstance(v.data, da.Array)}
    tasks = []
    for tile in todo:
        blocks, regions = {}, {}
        for name, arr in arrays.items():
            index = tile + (0,) * (arr.ndim - len(tile))
            blocks[name] = arr.blocks[index]
            regions[name] = _region(arr.chunks, index)
        marker = str(partial / MARKERS / "_".join(map(str, tile)))
        tasks.append(dask.delayed(_write_tile)(str(partial), marker, regions, blocks))
    _compute(tasks)
    group = zarr.open_group(str(partial), mode="r+")
    del group.attrs[FINGERPRINT]
    remove_path(partial / MARKERS)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Consolidated metadata")
        zarr.consolidate_metadata(str(partial))
    _commit(partial, path, overwrite)
