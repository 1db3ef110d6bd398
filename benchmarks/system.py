"""The machine around a benchmark: free memory, busy CPUs, the page cache, memory estimates.

Linux ``/proc`` files; elsewhere the functions return None (no guard, no
warming). Imports only the standard library.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from .methods import get_method
from .workload import Workload

__all__ = [
    "MEMORY_HEADROOM",
    "available_bytes",
    "busy_cpu_s",
    "estimated_bytes",
    "memory_skip_reason",
    "COLD",
    "evict_page_cache",
    "page_cache",
    "warm_page_cache",
]

#: A run is skipped when its memory estimate exceeds this fraction of the available memory.
MEMORY_HEADROOM = 0.8
#: The page cache is warmed only when the files take at most this fraction of it.
CACHE_FRACTION = 0.5
GIB = 1024**3


def available_bytes() -> int | None:
    """``MemAvailable`` of ``/proc/meminfo`` in bytes, or None."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def busy_cpu_s() -> float | None:
    """CPU seconds the whole machine has been busy (Linux ``/proc/stat``), or None."""
    try:
        fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    except OSError:
        return None
    ticks = [int(f) for f in fields[:8]]  # user nice system idle iowait irq softirq steal
    return (sum(ticks) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")


def estimated_bytes(method: str, wl: Workload) -> int | None:
    """Peak memory of an in-memory method: its ``memory_factor`` x the float32 stack,
    at most its ``memory_cap``.

    None for a bounded (out-of-core) method.
    """
    meth = get_method(method)
    if not meth.memory_factor:
        return None
    need = meth.memory_factor * wl.n_frames * wl.height * wl.width * 4
    return int(min(need, meth.memory_cap) if meth.memory_cap else need)


def memory_skip_reason(method: str, wl: Workload, available: int | None) -> str | None:
    """Why ``method`` should not run on ``wl`` (it would not fit in memory), or None.

    A run is skipped when its estimate exceeds :data:`MEMORY_HEADROOM` x
    ``available`` (so the machine never swaps or kills a process).
    """
    need = estimated_bytes(method, wl)
    if need is None or available is None or need <= MEMORY_HEADROOM * available:
        return None
    return (
        f"skipped: needs about {need / GIB:.1f} GiB, {available / GIB:.1f} GiB available "
        f"(limit {MEMORY_HEADROOM:g} x available)"
    )


#: what a report says of the page cache with ``--cold-cache``
COLD = (
    "cold: each run's frames evicted from the page cache first (POSIX_FADV_DONTNEED; "
    "a virtual machine's host may still hold them)"
)


def evict_page_cache(files: Iterable[Path]) -> None:
    """Drop the files' pages from the page cache (``posix_fadvise(DONTNEED)``), so that
    the next run reads them from the disk (the files are not written: no page is dirty)."""
    for f in files:
        fd = os.open(f, os.O_RDONLY)
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def page_cache(files: Iterable[Path], available: int | None, warm: bool, cold: bool) -> str:
    """Prepare the page cache for the timed runs and say how: ``cold`` (the frames are
    evicted before each run, by :func:`benchmarks.runner.run_jobs`), else ``warm``
    (:func:`warm_page_cache`), else nothing."""
    if cold:
        return COLD
    return warm_page_cache(files, available) if warm else "not warmed"


def warm_page_cache(files: Iterable[Path], available: int | None) -> str:
    """Read every file once (untimed), so the timed runs find it in the page cache.

    Skipped when the files take more than :data:`CACHE_FRACTION` of the
    available memory (they would not stay cached). Returns what was done.
    """
    files = list(files)
    total = sum(Path(f).stat().st_size for f in files)
    if available is None:
        return "not warmed (free memory unknown)"
    if total > CACHE_FRACTION * available:
        return f"not warmed: {total / GIB:.1f} GiB of frames, {available / GIB:.1f} GiB available"
    for f in files:
        with open(f, "rb", buffering=0) as fh:
            while fh.read(1 << 24):
                pass
    return f"warmed ({total / GIB:.2f} GiB read once before the timed runs)"
