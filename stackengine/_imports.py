"""Heavy imports without the cyclic garbage collector running through them.

Importing dask.array, xarray, astropy.io.fits and numba creates about a
million long-lived objects, and the collector would scan the growing heap
again and again while they are made (0.1–0.2 s). Pausing it for the import
only changes when garbage is collected, not what is.
"""

from __future__ import annotations

import contextlib
import gc
import importlib
from collections.abc import Iterator
from types import ModuleType

__all__ = ["collector_paused", "import_quietly"]


@contextlib.contextmanager
def collector_paused() -> Iterator[None]:
    """Disable ``gc`` inside the block; restore its previous state after."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def import_quietly(name: str, package: str | None = None) -> ModuleType:
    """``importlib.import_module`` inside :func:`collector_paused`."""
    with collector_paused():
        return importlib.import_module(name, package)
