"""Per-frame normalization: pass-1 measurements, the modes, and :func:`normalize`.

:func:`stackengine.stack` applies a normalization inside its tile tasks;
:func:`normalize` gives the normalized frames themselves (lazily) plus the
per-frame table, for users who stack elsewhere.
"""

from __future__ import annotations

from typing import Any

import dask.array as da
import numpy as np
import xarray as xr

from .measure import clear_cache, measure_frames, sampled_strips
from .modes import MODES, SIMPLE_MODES
from .plan import Normalization, plan_normalization

__all__ = [
    "normalize",
    "measure_frames",
    "sampled_strips",
    "clear_cache",
    "MODES",
    "SIMPLE_MODES",
    "Normalization",
    "plan_normalization",
]


def _apply(block: np.ndarray, norm: Normalization, block_info: Any = None) -> np.ndarray:
    from ..kernels.normalize import apply_block, geometry

    location = block_info[0]["array-location"]
    n = block.shape[0]
    grad = norm.grad if norm.grad is not None else np.zeros(norm.scale.shape + (1, 1))
    geom = geometry(block.shape, location[1][0], location[2][0], norm.step)
    flat = np.ascontiguousarray(block).reshape(n, -1)
    return apply_block(flat, norm.scale, norm.offset, grad, geom).reshape(block.shape)


def normalize(
    frames: Any,
    mode: str = "additive+scale",
    *,
    reference: int | str | None = None,
    smoothness: float = 2.0,
    star_fallback: str | None = None,
    memory_limit: str | int = "1GiB",
) -> tuple[xr.DataArray, xr.Dataset]:
    """Normalize every frame to a reference frame.

    Parameters
    ----------
    frames : xarray.DataArray or array
        From :func:`stackengine.open_frames`, or any (frame, y, x[, channel]) array.
    mode : str
        "additive", "multiplicative", "additive+scale", "multiplicative+scale"
        or "photometric" (see the normalization docs for the formulas).
    reference : int, str or None
        The reference frame (index or path); None chooses one automatically.
    smoothness : float
        Photometric mode: smoothness of the gradient model.
    star_fallback : None or "additive+scale"
        Photometric mode: error (None) or fall back for frames with too few stars.
    memory_limit : str or int
        Memory budget per worker for the tiles of the normalized array.

    Returns
    -------
    normalized : xarray.DataArray
        Lazy float32 frames, ``x' = scale x + offset - G(y, x)``, same dims
        and coordinates as ``frames``.
    table : xarray.Dataset
        Per-frame (and per-channel) ``scale``, ``offset``, ``location``,
        ``spread``, ``noise`` and, in photometric mode, ``n_stars`` and the
        fit quality; attrs ``mode`` and ``reference``.

    Notes
    -----
    Computing the table measures every frame once (pass 1), so this call
    reads the frames; the normalized frames stay lazy.
    """
    from ..frames import _from_memory, tiled_array

    arr = frames if isinstance(frames, xr.DataArray) else _from_memory(frames, None)
    norm = plan_normalization(
        arr, mode, reference=reference, smoothness=smoothness, star_fallback=star_fallback
    )
    data = tiled_array(arr, memory_limit)
    out = da.map_blocks(
        _apply, data, norm, dtype=np.float32, meta=np.empty((0,) * data.ndim, np.float32)
    )
    normalized = xr.DataArray(out, dims=arr.dims, coords=arr.coords, name="normalized")
    frame_coords = {k: v for k, v in arr.coords.items() if v.dims == ("frame",)}
    table = xr.Dataset(
        norm.variables(arr.ndim == 4),
        coords=frame_coords,
        attrs={"mode": mode, "reference": int(norm.reference)},
    )
    return normalized, table
