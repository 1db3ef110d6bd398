"""The global normalizations (DESIGN.md "Normalization") as per-frame linear maps.

Every simple mode turns frame i into ``x' = a_i x + b_i`` per channel, from the
pass-1 location m (median) and scale s (mad_std) of frame i and of the
reference r:

=====================  ==========================  ===============================
mode                   formula                     a_i, b_i
=====================  ==========================  ===============================
additive               x - m_i + m_r               1, m_r - m_i
multiplicative         x m_r / m_i                 m_r / m_i, 0
additive+scale         (x - m_i) s_r / s_i + m_r   s_r / s_i, m_r - m_i s_r / s_i
multiplicative+scale   (x / m_i)(s_r / s_i) m_r    (s_r / s_i)(m_r / m_i), 0
=====================  ==========================  ===============================
"""

from __future__ import annotations

from typing import Any

import numpy as np
import xarray as xr

from ..errors import ParameterError
from ..frames import frame_index

__all__ = ["SIMPLE_MODES", "MODES", "linear_map", "choose_reference"]

SIMPLE_MODES = ("additive", "multiplicative", "additive+scale", "multiplicative+scale")
MODES = SIMPLE_MODES + ("photometric",)


def _label(frames: xr.DataArray, k: int) -> str:
    if "path" in frames.coords:
        return f"frame {k} ({frames.coords['path'].values[k]})"
    return f"frame {k}"


def _nonzero(values: np.ndarray, what: str, frames: xr.DataArray) -> None:
    bad = np.flatnonzero(~np.all(np.isfinite(values) & (values != 0), axis=-1))
    if bad.size:
        raise ParameterError(
            f"{_label(frames, int(bad[0]))}: its {what} is {values[bad[0]]}, so it cannot be "
            "normalized by this mode (use 'additive' or check the frame)"
        )


def linear_map(
    mode: str, location: np.ndarray, scale: np.ndarray, ref: int, frames: xr.DataArray
) -> tuple[np.ndarray, np.ndarray]:
    """``(a, b)`` of shape (n_frames, n_channels) for a simple ``mode``.

    ``location`` and ``scale`` are (n_frames, n_channels) pass-1 statistics.
    """
    m = np.asarray(location, dtype=np.float64)
    s = np.asarray(scale, dtype=np.float64)
    if mode in ("multiplicative", "multiplicative+scale"):
        _nonzero(m, "median", frames)
    if mode in ("additive+scale", "multiplicative+scale"):
        _nonzero(s, "robust scale (mad_std)", frames)
    m_r, s_r = m[ref], s[ref]
    if mode == "additive":
        a = np.ones_like(m)
        b = m_r - m
    elif mode == "multiplicative":
        a = m_r / m
        b = np.zeros_like(m)
    elif mode == "additive+scale":
        a = s_r / s
        b = m_r - m * a
    elif mode == "multiplicative+scale":
        a = (s_r / s) * (m_r / m)
        b = np.zeros_like(m)
    else:  # pragma: no cover - callers validate the mode
        raise ParameterError(f"normalize={mode!r}: unknown normalization")
    return a, b


def choose_reference(
    reference: Any, frames: xr.DataArray, location: np.ndarray, n_stars: np.ndarray | None = None
) -> int:
    """The reference frame's index.

    ``reference`` may be an index (negative counts from the end), a path (the
    full path or just the file name of one frame) or None. None picks the
    frame with the darkest background (lowest median, summed over channels);
    when star counts are known (photometric mode), among the frames whose
    background is within 10 % of the darkest, the one with the most stars.
    """
    n = frames.sizes["frame"]
    if reference is None:
        sky = np.asarray(location, dtype=np.float64).reshape(n, -1).sum(axis=1)
        sky = np.where(np.isfinite(sky), sky, np.inf)
        if n_stars is None:
            return int(np.argmin(sky))
        darkest = sky.min()
        margin = 0.1 * abs(darkest)
        candidates = np.flatnonzero(sky <= darkest + margin)
        return int(candidates[np.argmax(np.asarray(n_stars)[candidates])])
    paths = [str(p) for p in frames.coords["path"].values] if "path" in frames.coords else []
    return frame_index(reference, paths or [f"frame {k}" for k in range(n)])
