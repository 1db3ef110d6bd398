"""Computing a result into each output format's sink, in one pass over the input.

* FITS (:func:`fits_output`; also in astropy CCDData's layout): the file is laid out first
  (:func:`~stackengine.io.write_fits.create_fits`); every image-like variable is
  stored into its data area by one graph (one task per tile for a job's
  outputs: :func:`~stackengine.tasks.store.store_together`), computed together
  with the per-frame values, which are then appended as a table.
* TIFF (:func:`tiff_output`): row strips of the image are computed in order, a
  few at a time (enough blocks to keep the threads busy), and streamed into the
  tiled TIFF. If the image's blocks share upstream tasks (e.g. per-frame
  statistics that every tile needs), computing the strips in separate batches
  would repeat that work: the image is then first stored in one pass into a
  raw staging file beside the output and the strips are read from it.
* zarr (:func:`zarr_output`): one task per output tile writes that tile of
  every variable and its marker into the partial store; a resumed run computes
  only the tiles without a marker.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import dask
import dask.array as da
import numpy as np
import xarray as xr
from dask.core import istask

from ..io.atomic import FileTarget, remove_path
from ..io.write_fits import append_frame_table, create_fits, image_header, primary_cards
from ..io.write_tiff import tile_shape, write_tiled
from ..io.write_zarr import done_tiles, tile_marker, write_tile
from ..progress import progress_phase
from .cluster import compute, local_scheduler
from .store import store_together

__all__ = ["NoValueMask", "fits_output", "tiff_output", "zarr_tiles", "zarr_output"]


def _fits_order(var: xr.DataArray) -> da.Array:
    """The variable's data with the channel axis first (FITS NAXIS3), lazily."""
    dims = [d for d in var.dims if d == "channel"] + [d for d in var.dims if d != "channel"]
    data = var.transpose(*dims).data
    return data if isinstance(data, da.Array) else da.asarray(data)


class NoValueMask:
    """A store target that takes a count map and stores where it is 0 (no value kept)
    as uint8 1, else 0: CCDData's MASK extension, written from the count plane in the
    same tile task as the other outputs."""

    def __init__(self, target: Any) -> None:
        self.target = target
        self.shape = target.shape
        self.ndim = target.ndim

    def __dask_tokenize__(self) -> tuple:
        return ("NoValueMask", self.target.__dask_tokenize__())

    def __setitem__(self, key: Any, value: Any) -> None:
        self.target[key] = (np.asarray(value) == 0).astype(np.uint8)


def _maps(ds: xr.Dataset) -> list[Any]:
    maps = [n for n in ds.data_vars if n != "image" and "frame" not in ds[n].dims]
    return [n for n in maps if ds[n].ndim > 0]


def fits_output(ds: xr.Dataset, tmp: Path, layout: str = "stackengine") -> None:
    """Write ``ds`` as a FITS file at ``tmp`` (see :func:`stackengine.write`); ``layout``
    "ccddata": the image, then MASK (uint8, 1 where ``count`` is 0) and UNCERT (the
    ``noise``, UTYPE StdDevUncertainty) as :meth:`astropy.nddata.CCDData.read` reads
    them, then the other maps."""
    frame_names = sorted(
        (n for n, v in ds.variables.items() if "frame" in v.dims), key=lambda n: n != "path"
    )
    # (source, EXTNAME, stored dtype or None for the source's, extra cards)
    images: list[tuple[da.Array, str | None, Any, dict[str, Any]]] = [
        (_fits_order(ds["image"]), None, None, {})
    ]
    maps = _maps(ds)
    if layout == "ccddata":
        images.append((_fits_order(ds["count"]), "MASK", np.uint8, {}))
        images.append((_fits_order(ds["noise"]), "UNCERT", None, {"UTYPE": "StdDevUncertainty"}))
        maps = [n for n in maps if n != "noise"]
    images += [(_fits_order(ds[n]), str(n).upper(), None, {}) for n in maps]
    hdus = []
    for source, extname, dtype, cards in images:
        header, stored, bzero = image_header(source.shape, dtype or source.dtype, extname)
        for key, value in cards.items():
            header[key] = value
        hdus.append((header, source.shape, stored, bzero))
    primary_cards(hdus[0][0], dict(ds.attrs))
    targets = create_fits(tmp, hdus)
    targets = [NoValueMask(t) if image[1] == "MASK" and layout == "ccddata" else t
               for t, image in zip(targets, images, strict=True)]  # fmt: skip
    sources = [image[0] for image in images]
    # one graph: the maps and the per-frame values share their upstream tasks
    jobs = store_together(sources, targets)
    frame_data = [ds[n].transpose("frame", ...).data for n in frame_names]
    frame_values = compute(*jobs, *frame_data)[len(jobs) :]
    if frame_names:
        append_frame_table(tmp, dict(zip(map(str, frame_names), frame_values, strict=True)))


def _shares_work(arr: da.Array, groups: Sequence[Sequence[Any]]) -> bool:
    """True if a task (not plain data) is needed by more than one group of output keys."""
    graph = arr.__dask_graph__()
    dsk = dict(graph)
    deps = graph.get_all_dependencies()
    owner: dict[Any, int] = {}
    for g, keys in enumerate(groups):
        todo = list(keys)
        while todo:
            key = todo.pop()
            if owner.setdefault(key, g) != g:
                if istask(dsk.get(key)):
                    return True
                todo.extend(deps.get(key, ()))  # plain data or an alias: look behind it
                continue
            todo.extend(k for k in deps.get(key, ()) if owner.get(k) != g)
    return False


def _threads() -> int:
    """Worker threads available: the distributed client's, else this machine's CPUs."""
    import sys

    if "distributed" not in sys.modules:  # no client can be active without it
        return os.cpu_count() or 1
    try:
        from distributed import default_client

        return max(1, sum(default_client().nthreads().values()))
    except (ImportError, ValueError):
        return os.cpu_count() or 1


def _flat(nested: Any) -> list[Any]:
    return [k for item in nested for k in _flat(item)] if isinstance(nested, list) else [nested]


def _computed_strips(img: da.Array, batch: int) -> Iterator[np.ndarray]:
    """Row-chunks of ``img``, computed in order, ``batch`` at a time."""
    bounds = np.cumsum((0, *img.chunks[0]))
    rows = list(zip(bounds[:-1], bounds[1:], strict=True))
    with progress_phase(parts=-(-len(rows) // batch)):
        for i in range(0, len(rows), batch):
            yield from compute(*(img[a:b] for a, b in rows[i : i + batch]))


def _staged_strips(img: da.Array, stage: Path, rows: int) -> Iterator[np.ndarray]:
    """Store ``img`` into the raw file ``stage`` in one pass, then read it by rows."""
    with open(stage, "wb") as f:
        f.truncate(img.nbytes)
    compute(*store_together([img], [FileTarget(stage, 0, img.shape, img.dtype)]))
    mm = np.memmap(stage, img.dtype, "r", shape=img.shape)
    for y in range(0, img.shape[0], rows):
        yield mm[y : y + rows]


def tiff_output(ds: xr.Dataset, tmp: Path, compression: str | None) -> None:
    """Write ``ds["image"]`` as a tiled TIFF at ``tmp`` (see :func:`stackengine.write`)."""
    var = ds["image"]
    data = var.transpose("y", "x", *(d for d in var.dims if d not in ("y", "x"))).data
    img = data if isinstance(data, da.Array) else da.asarray(data)
    if img.ndim == 3 and img.shape[2] == 1:
        img = img[:, :, 0]
    attrs = {k: v for k, v in ds.attrs.items() if k != "fits_header"}
    groups = [_flat(row) for row in img.__dask_keys__()]
    batch = max(1, -(-_threads() // len(img.chunks[1])))
    batches = [sum(groups[i : i + batch], []) for i in range(0, len(groups), batch)]
    stage = tmp.with_name(tmp.name + ".stage")
    try:
        if _shares_work(img, batches):
            strips = _staged_strips(img, stage, tile_shape(img.shape)[0])
        else:
            strips = _computed_strips(img, batch)
        write_tiled(tmp, strips, img.shape, img.dtype, compression, attrs)
    finally:
        remove_path(stage)


def _region(chunks: tuple[tuple[int, ...], ...], index: tuple[int, ...]) -> tuple[slice, ...]:
    out = []
    for axis_chunks, i in zip(chunks, index, strict=True):
        start = sum(axis_chunks[:i])
        out.append(slice(start, start + axis_chunks[i]))
    return tuple(out)


def zarr_tiles(ds: xr.Dataset) -> list[tuple[int, ...]]:
    """The output tiles of ``ds`` (its image's blocks over y and x)."""
    grid = ds["image"].data.numblocks[:2]
    return [(iy, ix) for iy in range(grid[0]) for ix in range(grid[1])]


def _compute_drained(tasks: list[Any]) -> None:
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


def zarr_output(ds: xr.Dataset, partial: Path, report: Callable[[str], None] | None) -> None:
    """Write every tile of ``ds`` that has no marker in ``partial`` yet."""
    tiles = zarr_tiles(ds)
    done = done_tiles(partial)
    todo = [t for t in tiles if "_".join(map(str, t)) not in done]
    if report is not None:
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
        marker = tile_marker(partial, tile)
        tasks.append(dask.delayed(write_tile)(str(partial), marker, regions, blocks))
    _compute_drained(tasks)
