"""What every frame stack shares, whatever its source: the frame-axis coordinates
read from headers and the tile plan of a lazy array (:func:`chunks_for`).

Used by :mod:`stackengine.frames` (files) and :mod:`stackengine.ccddata`
(CCDData in memory), which do not import each other's internals.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .errors import ParameterError
from .tasks.plan import plan_tiles

__all__ = ["DEFAULT_MEMORY", "HEADER_COORDS", "chunks_for"]

#: frame-axis coordinates taken from headers: coordinate name -> header keywords tried in turn
HEADER_COORDS = {
    "exptime": ("EXPTIME", "EXPOSURE"),
    "filter": ("FILTER",),
    "imagetyp": ("IMAGETYP",),
    "date_obs": ("DATE-OBS",),
}
_NUMERIC_COORDS = {"exptime"}

#: the memory budget ``chunks="auto"`` plans for
DEFAULT_MEMORY = "1GiB"


def chunks_for(
    shape: tuple[int, ...], dtype: np.dtype, chunks: Any, block: tuple[int, int] = (1, 0)
) -> tuple[int, int]:
    """Resolve ``chunks`` ("auto", an int, a (y, x) pair or a memory size) to a tile shape."""
    if chunks is None or chunks == "auto":
        return plan_tiles(shape, np.dtype(dtype).itemsize, DEFAULT_MEMORY, block=block)
    if isinstance(chunks, str):
        return plan_tiles(shape, np.dtype(dtype).itemsize, chunks, block=block)
    if isinstance(chunks, int):
        chunks = (chunks, chunks)
    if isinstance(chunks, dict):
        chunks = (chunks.get("y", shape[1]), chunks.get("x", shape[2]))
    ty, tx = (
        int(c) if c not in (None, -1) else full for c, full in zip(chunks, shape[1:3], strict=True)
    )
    if ty <= 0 or tx <= 0:
        raise ParameterError(f"chunks={chunks!r}: tile sizes must be positive")
    return min(ty, shape[1]), min(tx, shape[2])
