"""Reading a tile's next strip while the kernel reduces the current one.

A tile task reads its tile a strip of rows at a time (all frames) and reduces
each strip as soon as it is read (:func:`stackengine.tiles.read_reduce_into`).
Read one after the other, the reads and the kernel never overlap within a
task, and each task has one read in flight at a time. From a warm page cache
that costs nothing (a read is a memory copy), but from a disk the task waits
for every strip, and a disk with one request in flight at a time delivers
much less than it can (on the development machine: 0.47 GB/s from one
reader, 0.88 from two, 1.24 from four, 1.49 from eight).

For frames read by byte offset from local files (plain FITS, uncompressed
TIFF strips: a :class:`~stackengine.io.rawbytes.RawLayout`), :class:`StripReader` reads a
task's first strip in the task's thread, as before. When that read came from
a disk (:func:`from_disk`: by the bytes the storage had to fetch, where the
system counts them), it reads the other strips through a small pool of I/O
threads shared by the process: each strip is split by frames into
:data:`READ_JOBS` reads that run at once, and the next strip is read into a
second buffer while the kernel works on the current one. From the page cache
nothing changes: reads in other threads would only compete with the kernels
for the cores. Every read is the same ``preadv`` and in-place byte swap as
before (:func:`~stackengine.io.rawbytes.read_rows_batch`), so the values, and the stack,
are the same bits; a file that cannot be read raises the same
:class:`~stackengine.errors.FrameError` naming it, in the task. A task waits
for its reads before it closes its files or returns.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import numpy as np

from ..io.rawbytes import read_rows_batch

__all__ = ["READ_JOBS", "StripReader", "from_disk", "io_pool", "waits_on_disk"]

#: a first strip whose read made the storage fetch at least this share of its bytes
#: (``read_bytes`` of ``/proc/thread-self/io``) came from a disk, not from the page
#: cache: the task's other strips are read ahead
AHEAD_FETCHED = 0.25
#: where the system does not count a thread's fetched bytes: a first read during which
#: the thread was off the CPU for more than this share of the time waited for a disk ...
AHEAD_WAITING = 0.6
#: ... if it took at least this long (s): a shorter one has nothing to overlap
AHEAD_MIN_S = 1e-3
_IO_STATS = "/proc/thread-self/io"
#: reads in flight per strip (each a share of the frames)
READ_JOBS = 4
#: threads of the process's I/O pool (two tile tasks' reads at a time)
POOL_THREADS = 8

_POOL: tuple[int, ThreadPoolExecutor] | None = None
_POOL_LOCK = threading.Lock()


def io_pool() -> ThreadPoolExecutor:
    """The process's I/O thread pool (made on first use; anew in a forked child)."""
    global _POOL
    with _POOL_LOCK:
        if _POOL is None or _POOL[0] != os.getpid():
            pool = ThreadPoolExecutor(POOL_THREADS, thread_name_prefix="stackengine-read")
            _POOL = (os.getpid(), pool)
        return _POOL[1]


class StripReader:
    """The strips of one tile, each read while the one before is being reduced.

    Parameters
    ----------
    stack : FrameStack
        The frames (their common raw layout is read by offset).
    handles : mapping
        Frame index -> open file, from :meth:`FrameStack.open_handles`.
    y0 : int
        The tile's first row in the frames.
    strips : list of (int, int)
        The strips, as row ranges relative to ``y0``.
    buffer : callable
        ``buffer(slot, shape, dtype)`` -> a reusable C-contiguous array; slots
        ``"strip"`` and ``"strip-next"`` alternate.
    """

    def __init__(
        self, stack: Any, handles: Any, y0: int, strips: list[tuple[int, int]], buffer: Any
    ) -> None:
        self.stack, self.y0, self.strips, self.buffer = stack, y0, strips, buffer
        self.layout = stack._layout
        n = stack.shape[0]
        # every file opened here, in the task's thread: the I/O threads only read
        self.files = {k: handles[k] for k in range(n)}
        self.handles = handles  # for this thread's reads (it keeps their memoryviews)
        size = -(-n // READ_JOBS)
        self.parts = [range(k, min(n, k + size)) for k in range(0, n, size)]

    def _submit(self, i: int) -> tuple[np.ndarray, list[Future]]:
        r0, r1 = self.strips[i]
        stack = self.stack
        shape = (stack.shape[0], r1 - r0, *stack.shape[2:])
        out = self.buffer("strip-next" if i % 2 else "strip", shape, stack.dtype)
        raw = out.view(self.layout.stored)
        pool = io_pool()
        jobs = [
            pool.submit(
                read_rows_batch,
                self.layout,
                stack.frames,
                part,
                self.y0 + r0,
                raw[part.start : part.stop],
                self.files,
            )  # fmt: skip
            for part in self.parts
        ]
        return out, jobs

    def _read_here(self, i: int) -> np.ndarray:
        """Read strip ``i`` in this thread (into the ``"strip"`` buffer)."""
        r0, r1 = self.strips[i]
        stack = self.stack
        out = self.buffer("strip", (stack.shape[0], r1 - r0, *stack.shape[2:]), stack.dtype)
        ys = slice(self.y0 + r0, self.y0 + r1)
        return stack.read_tile(ys, slice(0, stack.shape[2]), out=out, handles=self.handles)

    def __iter__(self) -> Iterator[tuple[int, int, np.ndarray]]:
        """Yield ``(r0, r1, frames)`` per strip, in order; ``frames`` is valid until the
        next step. The first strip is read in this thread (:func:`from_disk` tells
        where it came from): from the page cache every strip is, as before; from a
        disk the others are read ahead through the pool."""
        if not self.strips:
            return
        before = _probe()
        out = self._read_here(0)
        if not from_disk(before, _probe(), out.nbytes):
            r0, r1 = self.strips[0]
            yield r0, r1, out
            for i in range(1, len(self.strips)):
                r0, r1 = self.strips[i]
                yield r0, r1, self._read_here(i)
            return
        pending = self._submit(1) if len(self.strips) > 1 else None
        try:
            r0, r1 = self.strips[0]
            yield r0, r1, out
            for i in range(1, len(self.strips)):
                out, jobs = pending
                pending = None
                try:
                    for job in jobs:
                        job.result()
                finally:
                    _settle(jobs)
                if i + 1 < len(self.strips):
                    pending = self._submit(i + 1)
                yield *self.strips[i], out
        finally:
            if pending is not None:
                _settle(pending[1])


def _fetched() -> int | None:
    """Bytes this thread has made the storage fetch so far, where the system counts them."""
    try:
        with open(_IO_STATS, "rb") as f:
            for line in f:
                if line.startswith(b"read_bytes:"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return None


def _probe() -> tuple[int | None, float, float]:
    """(fetched bytes, wall time, CPU time) of this thread, now."""
    return _fetched(), time.perf_counter(), time.thread_time()


def from_disk(before: tuple, after: tuple, nbytes: int) -> bool:
    """Whether a read of ``nbytes`` between the :func:`_probe` ``before`` and ``after``
    came from a disk. Where the system counts the bytes a thread makes the storage
    fetch (Linux), by those: at least :data:`AHEAD_FETCHED` of what was read. Else by
    the time (:func:`waits_on_disk`). The count is the sure sign: a read from the
    page cache fetches nothing, however long it waited for a core, the GIL or a
    profiler, which the time alone takes for a disk (a thread waits, off the CPU,
    for all three)."""
    if before[0] is not None and after[0] is not None:
        return after[0] - before[0] >= AHEAD_FETCHED * nbytes
    return waits_on_disk(after[1] - before[1], after[2] - before[2])


def waits_on_disk(wall: float, cpu: float) -> bool:
    """Whether a read of ``wall`` seconds, of which the thread spent ``cpu`` on the CPU,
    waited for a device: from the page cache a read is a copy, on the CPU the whole
    time (page faults of a buffer's first use included), so the wait tells a disk
    apart, not the speed."""
    return wall >= AHEAD_MIN_S and wall - cpu > AHEAD_WAITING * wall


def _settle(jobs: list[Future]) -> None:
    """Wait for every job (their files and buffers are in use until then)."""
    for job in jobs:
        if not job.cancel():
            job.exception()
