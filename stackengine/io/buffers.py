"""Per-thread reusable buffers for the tile tasks' reads, outputs and conversions."""

from __future__ import annotations

import math
import threading
from typing import Any

import numpy as np

__all__ = ["thread_buffer"]

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
    need = math.prod(shape) * np.dtype(dtype).itemsize  # (np.prod: 10x the time)
    buffers = _THREAD.__dict__.setdefault("buffers", {})
    mem = buffers.get(slot)
    if mem is None or mem.nbytes < need:
        mem = buffers[slot] = np.empty(max(need, 1), dtype=np.uint8)
    return mem[:need].view(dtype).reshape(shape)
