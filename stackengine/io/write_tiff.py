"""TIFF output: the image only, streamed tile by tile into a tiled (Big)TIFF.

Row-chunks of the image are computed in order, a few at a time (enough blocks
to keep the dask threads busy), buffered until a full row of TIFF tiles is
available and fed to ``tifffile.imwrite`` as a generator of tiles (256x256, or
one smaller tile per axis for small images). Memory stays bounded by a batch of
row-chunks plus one row of tiles.

If the image's blocks share upstream tasks (e.g. per-frame statistics that
every tile needs), computing the row-chunks in separate batches would repeat
that work. Then the image is first stored in one pass (one ``da.store``) into a
raw temporary file beside the output and the tiles are read from it.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import dask.array as da
import numpy as np
import xarray as xr
from dask.core import istask

from .._version import __version__
from ..cluster import compute
from ..errors import ParameterError
from ..progress import progress_phase
from .atomic import FileTarget, remove_path

__all__ = ["write_tiff", "check_tiff_compression", "TILE", "BIGTIFF_BYTES"]

#: TIFF tile edge in pixels (a multiple of 16, as TIFF requires).
TILE = 256
#: uncompressed image size from which BigTIFF is written (classic TIFF offsets are 32-bit).
BIGTIFF_BYTES = 2**32 - 2**28


def check_tiff_compression(compression: str | None) -> None:
    """Raise :class:`ParameterError` if tifffile cannot encode ``compression`` here."""
    if compression in (None, "none"):
        return
    import tifffile

    tag = {"zlib": 8, "zstd": 50000, "lzw": 5}[compression]
    try:
        tifffile.TIFF.COMPRESSORS[tag](b"\0" * 64)
    except Exception as exc:  # KeyError, ImportError ...: codec missing
        raise ParameterError(
            f"compression={compression!r}: writing {compression} TIFF needs the imagecodecs "
            "package (pip install imagecodecs)"
        ) from exc


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
    da.store(img, FileTarget(stage, 0, img.shape, img.dtype), lock=False)
    mm = np.memmap(stage, img.dtype, "r", shape=img.shape)
    for y in range(0, img.shape[0], rows):
        yield mm[y : y + rows]


def _tiles(strips: Iterator[np.ndarray], height: int, tile: tuple[int, int]) -> Iterator[Any]:
    """Cut row strips into tiles, one row of tiles at a time, in TIFF order."""
    th, tw = tile
    pending: list[np.ndarray] = []
    n = done = 0
    for strip in strips:
        pending.append(strip)
        n += strip.shape[0]
        while n >= th or (n and done + n == height):
            rows = np.concatenate(pending) if len(pending) > 1 else pending[0]
            band, rest = rows[:th], rows[th:]
            for x in range(0, band.shape[1], tw):
                yield band[:, x : x + tw]
            done += band.shape[0]
            pending, n = ([rest] if len(rest) else []), len(rest)


def write_tiff(ds: xr.Dataset, tmp: Path, compression: str | None) -> None:
    """Write ``ds["image"]`` as a tiled TIFF at ``tmp`` (see :func:`stackengine.write`)."""
    import tifffile

    var = ds["image"]
    data = var.transpose("y", "x", *(d for d in var.dims if d not in ("y", "x"))).data
    img = data if isinstance(data, da.Array) else da.asarray(data)
    if img.ndim == 3 and img.shape[2] == 1:
        img = img[:, :, 0]
    rgb = img.ndim == 3 and img.shape[2] == 3
    attrs = {k: v for k, v in ds.attrs.items() if k != "fits_header"}
    groups = [_flat(row) for row in img.__dask_keys__()]
    batch = max(1, -(-_threads() // len(img.chunks[1])))
    batches = [sum(groups[i : i + batch], []) for i in range(0, len(groups), batch)]
    staged = _shares_work(img, batches)
    # TIFF tiles are multiples of 16; small images get one smaller tile
    tile = (min(TILE, -(-img.shape[0] // 16) * 16), min(TILE, -(-img.shape[1] // 16) * 16))
    stage = tmp.with_name(tmp.name + ".stage")
    try:
        if staged:
            strips = _staged_strips(img, stage, tile[0])
        else:
            strips = _computed_strips(img, batch)
        tifffile.imwrite(
            tmp,
            _tiles(strips, img.shape[0], tile),
            shape=img.shape,
            dtype=img.dtype,
            tile=tile,
            bigtiff=img.nbytes >= BIGTIFF_BYTES,
            photometric="rgb" if rgb else "minisblack",
            planarconfig="contig" if img.ndim == 3 else None,
            compression=None if compression in (None, "none") else compression,
            description=json.dumps(attrs, default=str),
            metadata=None,
            software=f"stackengine {__version__}",
        )
    finally:
        remove_path(stage)
