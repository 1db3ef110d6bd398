"""Tile planning: a memory budget becomes a tile shape aligned to the source layout.

A tile task holds, at once, the input block (all frames of the tile, in the
source dtype) and the per-pixel outputs (five float64 planes plus their cast
copies). The budget per task is the per-worker ``memory_limit`` divided by the
worker's thread count and by a safety factor of 2 (a finished tile's outputs
may still wait to be written while the next one is read).

Tiles are multiples of the source's own storage unit: full-width row strips
for FITS (rows are contiguous on disk), whole tiles or strips for TIFF, whole
chunks for zarr.
"""

from __future__ import annotations

import math
import os
import sys

from dask.utils import parse_bytes

from .errors import ParameterError

__all__ = ["parse_memory", "plan_tiles", "threads_per_worker", "PER_PIXEL_OUTPUT_BYTES"]

#: Bytes of output per pixel and channel a tile task holds: 5 float64 planes + casts.
PER_PIXEL_OUTPUT_BYTES = 5 * 8 + 4 * 4
SAFETY = 2


def parse_memory(memory_limit: int | float | str) -> int:
    """Turn ``"512MiB"``, ``"2 GB"`` or a number of bytes into an int, validating it."""
    try:
        value = parse_bytes(memory_limit) if isinstance(memory_limit, str) else int(memory_limit)
    except (ValueError, TypeError) as exc:
        raise ParameterError(f"memory_limit={memory_limit!r}: not a size ({exc})") from None
    if value <= 0:
        raise ParameterError(f"memory_limit={memory_limit!r}: must be positive")
    return int(value)


def threads_per_worker() -> int:
    """Threads that run tile tasks at once in one worker of the active scheduler."""
    client = None
    if "distributed" in sys.modules:  # no client can be active without it
        try:
            from distributed import get_client

            client = get_client()
        except (ImportError, ValueError):
            client = None
    if client is not None:
        nthreads = client.nthreads()
        if nthreads:
            return max(1, min(nthreads.values()))
    import dask

    configured = dask.config.get("num_workers", None)
    if configured:
        return int(configured)
    return os.cpu_count() or 1


def _round_down(value: int, unit: int) -> int:
    return max(unit, (value // unit) * unit)


def plan_tiles(
    shape: tuple[int, ...],
    itemsize: int,
    memory_limit: int | str,
    *,
    block: tuple[int, int] = (1, 0),
    n_threads: int | None = None,
) -> tuple[int, int]:
    """Choose ``(tile_y, tile_x)`` for a stack of ``shape`` = (frames, y, x[, channel]).

    Parameters
    ----------
    shape : tuple of int
        The stack's shape; the frame axis is always one chunk.
    itemsize : int
        Bytes per input value.
    memory_limit : int or str
        The per-worker budget.
    block : (int, int)
        The source's storage unit ``(rows, cols)``; ``cols`` of 0 or the full
        width means row strips.
    n_threads : int, optional
        Threads per worker (default: the active scheduler's).

    Returns
    -------
    (int, int)
        Tile height and width, multiples of ``block`` where the image allows.
    """
    n, height, width = shape[0], shape[1], shape[2]
    channels = shape[3] if len(shape) > 3 else 1
    budget = parse_memory(memory_limit) // ((n_threads or threads_per_worker()) * SAFETY)
    per_pixel = channels * (n * itemsize + PER_PIXEL_OUTPUT_BYTES)
    pixels = max(1, budget // per_pixel)
    unit_y = max(1, min(block[0], height))
    unit_x = block[1] if 0 < block[1] < width else width
    if pixels >= width * unit_y:
        # full-width strips, whole storage rows
        ty = min(height, _round_down(pixels // width, unit_y))
        return ty, width
    tx = min(width, _round_down(pixels // unit_y, unit_x))
    return unit_y, tx


def n_tiles(shape: tuple[int, ...], tile: tuple[int, int]) -> int:
    """Number of tiles a plan cuts the image into."""
    return math.ceil(shape[1] / tile[0]) * math.ceil(shape[2] / tile[1])
