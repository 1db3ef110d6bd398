"""Tile planning: a memory budget becomes a tile shape aligned to the source layout.

The budget per tile task is the per-worker ``memory_limit`` divided by the
worker's thread count and by a safety factor of 2 (a finished tile's outputs
may still wait to be written while the next one is read). What a task holds:

* frames held in memory (a dask or numpy array): the input block (all frames
  of the tile, in the source dtype) and the per-pixel outputs (five float64
  planes plus their cast copies);
* frames read from files (*streamed*): the task reads its tile a strip of rows
  at a time into one buffer of about :data:`STRIP_BYTES` and reduces each strip
  at once, so it holds that buffer and the outputs only, whatever the number
  of frames.

Either way there are at least :data:`MIN_TILES_PER_THREAD` tiles per thread,
of equal height where the layout allows, so that the threads finish together;
a streamed tile also holds at most about :data:`TILE_WORK` pixel-frames, so
with hundreds of frames the last one to finish is short.
Tiles are multiples of the source's own storage unit: full-width row strips
for FITS (rows are contiguous on disk), whole tiles or strips for TIFF, whole
chunks for zarr.
"""

from __future__ import annotations

import math
import os
import sys

from dask.utils import parse_bytes

from ..errors import ParameterError

__all__ = [
    "MIN_TILES_PER_THREAD",
    "PER_PIXEL_OUTPUT_BYTES",
    "STRIP_BYTES",
    "parse_memory",
    "plan_tiles",
    "square_tiles",
    "threads_per_worker",
]

#: Bytes of output per pixel and channel a tile task holds: 5 float64 planes + casts.
PER_PIXEL_OUTPUT_BYTES = 5 * 8 + 4 * 4
SAFETY = 2
#: bytes per output tile pixel of a registered tile task's per-frame buffers: the box
#: (up to 2x the tile's area, rotated 45 deg) as read (float32), calibrated (float32)
#: and debayered (3 x float32)
REGION_BYTES = 2 * (4 + 4 + 12)
#: bytes of frame data a streamed tile task reads and reduces at a time
STRIP_BYTES = 8 * 2**20
#: tiles per thread at least: the last tiles to finish leave a thread idle for less
MIN_TILES_PER_THREAD = 8
#: ... unless the tiles would get smaller than this many pixels (small images)
MIN_TILE_PIXELS = 2**16
#: streamed tiles hold at most about this many pixel-frames (0.1-0.2 s of one core), so
#: that with hundreds of frames the last tile leaves the other threads idle briefly
TILE_WORK = 2**26


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
    streamed: bool = False,
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
    streamed : bool
        The frames are read from files inside the tile task, a strip at a
        time: the tile need not hold all frames (see the module notes).

    Returns
    -------
    (int, int)
        Tile height and width, multiples of ``block`` where the image allows.
    """
    n, height, width = shape[0], shape[1], shape[2]
    channels = shape[3] if len(shape) > 3 else 1
    threads = n_threads or threads_per_worker()
    budget = parse_memory(memory_limit) // (threads * SAFETY)
    if streamed:
        budget = max(budget - 2 * STRIP_BYTES, budget // 4)  # the strip and the next one
    per_pixel = channels * ((0 if streamed else n * itemsize) + PER_PIXEL_OUTPUT_BYTES)
    pixels = max(1, budget // per_pixel)
    unit_y = max(1, min(block[0], height))
    unit_x = block[1] if 0 < block[1] < width else width
    if pixels >= width * unit_y:
        # full-width strips, whole storage rows, and enough of them to share out
        ty = min(height, _round_down(pixels // width, unit_y))
        if streamed:
            rows = max(TILE_WORK // (n * channels * width), MIN_TILE_PIXELS // width, 1)
            ty = min(ty, _round_down(rows, unit_y))
        return _balanced(height, width, ty, unit_y, threads), width
    tx = min(width, _round_down(pixels // unit_y, unit_x))
    return unit_y, tx


def _balanced(height: int, width: int, ty: int, unit: int, threads: int) -> int:
    """A strip height no taller than ``ty`` (a multiple of ``unit``) that cuts
    ``height`` into at least MIN_TILES_PER_THREAD strips per thread (none of
    fewer than MIN_TILE_PIXELS pixels), a multiple of ``threads`` of them
    where the unit allows, as equal as possible."""
    wanted = min(MIN_TILES_PER_THREAD * threads, height * width // MIN_TILE_PIXELS)
    count = max(math.ceil(height / ty), wanted, 1)
    count = -(-count // threads) * threads
    even = -(-height // count)  # rows per strip
    return max(unit, min(ty, -(-even // unit) * unit))


def n_tiles(shape: tuple[int, ...], tile: tuple[int, int]) -> int:
    """Number of tiles a plan cuts the image into."""
    return math.ceil(shape[1] / tile[0]) * math.ceil(shape[2] / tile[1])


def square_tiles(shape: tuple[int, ...], memory_limit: int | str) -> tuple[int, int]:
    """Square tiles (a multiple of 64 pixels a side) for registered stacks: a tile task
    holds every frame's resampled tile (float32) and the outputs, and reads one frame at
    a time where the tile maps into it: a box up to twice the tile's area for a tile
    turned 45 degrees, read, calibrated and debayered in buffers of
    :data:`REGION_BYTES` per tile pixel; at least :data:`MIN_TILES_PER_THREAD` tiles per
    thread where the image allows."""
    n, height, width = shape[0], shape[1], shape[2]
    channels = math.prod(shape[3:])
    threads = threads_per_worker()
    budget = parse_memory(memory_limit) // (threads * SAFETY)
    per_pixel = (n * 4 + PER_PIXEL_OUTPUT_BYTES) * channels + REGION_BYTES
    pixels = max(1, budget // per_pixel)
    side = max(64, min(1024, int(math.sqrt(pixels)) // 64 * 64))
    while side > 64 and math.ceil(height / side) * math.ceil(width / side) < (
        MIN_TILES_PER_THREAD * threads
    ):
        side //= 2
    return min(side, height), min(side, width)
