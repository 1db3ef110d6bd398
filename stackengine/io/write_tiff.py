"""TIFF output, a sink: the image streamed tile by tile into a tiled (Big)TIFF.

:func:`write_tiled` takes the image as an iterator of row strips (computed by
:mod:`stackengine.tasks.write`, in order), cuts them into TIFF tiles (256x256,
or one smaller tile per axis for small images) one row of tiles at a time and
feeds them to ``tifffile.imwrite`` as a generator. Memory stays bounded by a
strip plus one row of tiles.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from .._version import __version__
from ..errors import ParameterError

__all__ = ["write_tiled", "check_tiff_compression", "tile_shape", "TILE", "BIGTIFF_BYTES"]

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


def tile_shape(shape: tuple[int, ...]) -> tuple[int, int]:
    """TIFF tiles are multiples of 16; small images get one smaller tile."""
    return (min(TILE, -(-shape[0] // 16) * 16), min(TILE, -(-shape[1] // 16) * 16))


def write_tiled(
    tmp: Path,
    strips: Iterator[np.ndarray],
    shape: tuple[int, ...],
    dtype: np.dtype,
    compression: str | None,
    attrs: dict[str, Any],
) -> None:
    """Write the image given as row ``strips`` (in order) as a tiled TIFF at ``tmp``;
    ``attrs`` go into ImageDescription as JSON."""
    import tifffile

    tile = tile_shape(shape)
    rgb = len(shape) == 3 and shape[2] == 3
    nbytes = int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize
    tifffile.imwrite(
        tmp,
        _tiles(strips, shape[0], tile),
        shape=shape,
        dtype=dtype,
        tile=tile,
        bigtiff=nbytes >= BIGTIFF_BYTES,
        photometric="rgb" if rgb else "minisblack",
        planarconfig="contig" if len(shape) == 3 else None,
        compression=None if compression in (None, "none") else compression,
        description=json.dumps(attrs, default=str),
        metadata=None,
        software=f"stackengine {__version__}",
    )
