"""The tile tasks of :func:`stackengine.stack`: one dask task per output tile.

Frames opened by :func:`stackengine.open_frames` are read *inside* the tile
task (:func:`read_reduce_tile`), strip by strip into one reused buffer of
about :data:`STRIP_BYTES` (:func:`thread_buffer`), each strip reduced by the kernel as soon as it is
read: the graph has one task per tile instead of a read task and a reduce
task, every file is opened once per task, the frames' bytes go from the page
cache into a buffer that is still in the CPU cache when the kernel loads it,
and no tile-sized block is ever allocated. Any other dask array (frames
modified by the user, in-memory data) goes through :func:`reduce_tile` block
by block. Every pixel is reduced on its own, so both give the same bits for
any tile or strip size.
"""

from __future__ import annotations

import contextlib
import os
import threading
from typing import Any

import numpy as np

from .io.prefetch import StripReader
from .kernels.engine import N_OUT, reduce_block
from .kernels.normalize import geometry
from .plan import STRIP_BYTES

__all__ = [
    "MIN_READ_BYTES",
    "STRIP_BYTES",
    "packed_dtype",
    "packed_output",
    "read_reduce_into",
    "read_reduce_tile",
    "reduce_tile",
    "thread_buffer",
]

#: bytes read from each file at a time at least (the strip grows past
#: STRIP_BYTES for hundreds of frames rather than read a few rows per call)
MIN_READ_BYTES = 32 * 2**10


def _reduce(block: np.ndarray, y0: int, x0: int, args: tuple, out: np.ndarray) -> None:
    """Reduce the in-memory ``block`` (frames, rows, cols[, channels]) at (y0, x0) into
    ``out`` (N_OUT, rows, cols[, channels]) of :func:`packed_dtype`."""
    stages, stage_params, tables, combine, weights, use_weights, fallback, norm = args
    n = block.shape[0]
    flat = np.ascontiguousarray(block).reshape(n, -1)
    scale = offset = grad = geom = None
    if norm is not None:
        scale, offset, grad = norm.scale, norm.offset, norm.grad
        geom = geometry(block.shape, y0, x0, norm.step)
    flat_out = out.reshape(N_OUT, -1)  # a view when each plane's rows are contiguous
    reduce_block(
        flat,
        stages,
        stage_params,
        combine,
        weights,
        use_weights,
        tables=tables,
        fallback=fallback,
        scale=scale,
        offset=offset,
        grad=grad,
        geom=geom,
        out=flat_out,
    )
    if not np.shares_memory(flat_out, out):  # the reshape had to copy: put them in place
        out[...] = flat_out.reshape(out.shape)


def _origin(block_info: dict | None, key: Any) -> tuple[int, int]:
    if not block_info:
        return 0, 0
    location = block_info[key]["array-location"]
    return location[1][0], location[2][0]


def packed_dtype(n_frames: int) -> np.dtype:
    """The dtype of a tile's packed outputs: float32, which holds the float32 image
    and noise as they are and any count up to 2**24 exactly (so the kernel
    writes 20 bytes per pixel, not 40), else float64."""
    return np.dtype(np.float32 if n_frames <= 2**24 else np.float64)


def packed_output(shape: tuple[int, ...], n_frames: int) -> np.ndarray:
    """A new (N_OUT, y, x[, channel]) output array of :func:`packed_dtype`."""
    return np.empty(shape, dtype=packed_dtype(n_frames))


def reduce_tile(block: np.ndarray, *args: Any, block_info: dict | None = None) -> np.ndarray:
    """``map_blocks`` function: reduce one (frames, y, x[, channel]) block."""
    y0, x0 = _origin(block_info, 0)
    out = packed_output((N_OUT, *block.shape[1:]), block.shape[0])
    _reduce(block, y0, x0, args, out)
    return out


def read_reduce_tile(stack: Any, *args: Any, block_info: dict | None = None) -> np.ndarray:
    """``map_blocks`` function without array input: read and reduce one output tile.

    ``stack`` is the :class:`~stackengine.io.sources.FrameStack`; the tile is
    the output block's location (``block_info[None]``).
    """
    location = block_info[None]["array-location"]
    shape = tuple(b - a for a, b in location[1:])
    out = packed_output((N_OUT, *shape), stack.shape[0])
    read_reduce_into(stack, args, location, out)
    return out


def read_reduce_into(stack: Any, args: tuple, location: list, out: np.ndarray) -> None:
    """Read the frames' tile at ``location`` (the packed output's (start, stop) per
    axis) strip by strip and reduce each strip into ``out`` (N_OUT, y, x[, channel])."""
    (y0, y1), (x0, x1) = location[1], location[2]
    rest = tuple(stack.shape[3:])
    n = stack.shape[0]
    ny, nx = y1 - y0, x1 - x0
    row_bytes = n * nx * int(np.prod(rest, dtype=np.int64)) * np.dtype(stack.dtype).itemsize
    frame_row = max(row_bytes // max(n, 1), 1)  # one row of one frame
    rows = max(STRIP_BYTES // max(row_bytes, 1), -(-MIN_READ_BYTES // frame_row), 1)
    rows = int(min(ny, rows))
    strips = [(r0, min(ny, r0 + rows)) for r0 in range(0, ny, rows)]
    with stack.open_handles() as handles:  # each file opened once per task
        if prefetching(stack, x0, x1):  # from a disk: the next strip read during this one
            with contextlib.closing(
                iter(StripReader(stack, handles, y0, strips, thread_buffer))
            ) as it:
                for r0, r1, buf in it:
                    _reduce(buf, y0 + r0, x0, args, out[:, r0:r1])
            return
        for r0, r1 in strips:
            buf = thread_buffer("strip", (n, r1 - r0, nx, *rest), stack.dtype)
            stack.read_tile(slice(y0 + r0, y0 + r1), slice(x0, x1), out=buf, handles=handles)
            _reduce(buf, y0 + r0, x0, args, out[:, r0:r1])


def prefetching(stack: Any, x0: int, x1: int) -> bool:
    """Whether the tile's strips go through :class:`~stackengine.io.prefetch.StripReader`,
    which reads them ahead when they come from a disk: full-width strips of frames read
    by byte offset from local files, unless ``STACKENGINE_PREFETCH=0`` is set."""
    layout = getattr(stack, "_layout", None)
    return (
        layout is not None
        and layout.local
        and (x0, x1) == (0, stack.shape[2])
        and os.environ.get("STACKENGINE_PREFETCH", "1") != "0"
    )


_THREAD = threading.local()


def thread_buffer(slot: str, shape: tuple[int, ...], dtype: Any) -> np.ndarray:
    """A C-contiguous array of ``shape`` and ``dtype`` in this thread's buffer ``slot``.

    The tile tasks a thread runs reuse the same memory for their strips
    (slot "strip"), and, where a tile is written by the task that computes it,
    for the tile's outputs and their conversion to the file's types. Fresh
    memory costs a page fault per 4 KiB page when first written (about 1.3 ms
    per MiB on the benchmark machine), and the C library hands large blocks
    back to the system when they are freed, so a new array per task paid that
    again and again. A buffer grows when a task needs more and stays with its
    thread; a task never hands it on, and never uses it across the tasks.
    """
    need = int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize
    buffers = _THREAD.__dict__.setdefault("buffers", {})
    mem = buffers.get(slot)
    if mem is None or mem.nbytes < need:
        mem = buffers[slot] = np.empty(max(need, 1), dtype=np.uint8)
    return mem[:need].view(dtype).reshape(shape)
