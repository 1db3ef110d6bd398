"""From pass-1 measurements to the per-frame normalization the tile kernels apply.

:class:`Normalization` lives in :mod:`.model` (re-exported here).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import xarray as xr

from ..errors import ParameterError
from .measure import measure_frames
from .model import Normalization
from .modes import MODES, SIMPLE_MODES, choose_reference, linear_map

__all__ = ["Normalization", "plan_normalization", "check_mode"]


def check_mode(mode: Any) -> None:
    """Raise ParameterError unless ``mode`` is None or a known normalization."""
    if mode is not None and mode not in MODES:
        raise ParameterError(f"normalize={mode!r}: unknown normalization; choose from {MODES}")


def _per_channel(values: xr.DataArray) -> np.ndarray:
    data = np.asarray(values.values, dtype=np.float64)
    return data if data.ndim == 2 else data[:, None]


def plan_normalization(
    frames: xr.DataArray,
    mode: str,
    *,
    reference: Any = None,
    smoothness: float = 2.0,
    star_fallback: str | None = None,
    transforms: Any = None,
) -> Normalization:
    """Measure the frames (pass 1) and derive each frame's normalization.

    ``transforms`` (a registration's matrices output pixel -> frame pixel and the
    output shape): the photometric mode matches stars and fits gradients on the
    output grid.

    Reads every frame once (or a documented subsample, see
    :mod:`stackengine.normalize.measure`); results are cached per file.
    """
    check_mode(mode)
    photometry = None
    if mode == "photometric":  # statistics and photometry in one read of each frame
        from .framephot import measure_pass1

        stats, photometry = measure_pass1(frames)
    else:
        stats = measure_frames(frames)
    location = _per_channel(stats["location"])
    spread = _per_channel(stats["scale"])
    table = {
        "location": location,
        "spread": spread,
        "noise": _per_channel(stats["noise"]),
    }
    if mode in SIMPLE_MODES:
        ref = choose_reference(reference, frames, location)
        a, b = linear_map(mode, location, spread, ref, frames)
        return Normalization(mode, ref, a, b, table=table)
    from .photometric import plan_photometric  # lazy: star finding (sep, scipy) only here

    return plan_photometric(
        frames,
        table,
        reference=reference,
        smoothness=smoothness,
        star_fallback=star_fallback,
        photometry=photometry,
        transforms=transforms,
    )
